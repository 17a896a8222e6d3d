"""What loom draws renders: `loom dump --dot` of every shipped model (its forward as built and
after fuse, its training graph, one rank of a mesh, and collapsed with --dot-depth 0 at the
model's own size) through Graphviz's `dot -Tsvg` without a warning or an error; `loom plot` of
two runs' logs (JSON lines and CSV) through an SVG renderer (rsvg-convert) into a PNG; bad
input to both is a clear error. Usage: test_pictures.py LOOM"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SMALL = {"gpt2": "-D n_layer=2 -D d_model=64 -D n_head=4 -D vocab=256 -D seq=32 -D batch=4",
         "llama": "-D n_layer=2 -D d_model=64 -D n_head=4 -D n_kv_head=2 -D d_ff=96 -D vocab=256 -D seq=32 -D batch=4",
         "bert": "-D n_layer=2 -D d_model=64 -D n_head=4 -D d_ff=96 -D vocab=256 -D seq=32 -D batch=4"}
failures = 0


def check(what, ok, detail=""):
    global failures
    print(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail and not ok else ''}")
    failures += not ok


def main():
    loom = sys.argv[1]
    for tool in ("dot", "rsvg-convert"):
        if not shutil.which(tool):
            print(f"FAIL {tool} is not installed (tools/install-deps.sh installs graphviz and librsvg2-bin)")
            return 1
    with tempfile.TemporaryDirectory() as tmp:
        for model in sorted(glob.glob(os.path.join(ROOT, "models", "*.loom"))):
            name = os.path.basename(model)[:-5]
            small = SMALL.get(name, "").split()
            views = [("forward", small), ("after fuse", small + ["--after=fuse"]),
                     ("one mesh rank (tp=2,pp=2 rank 1)", small + ["--mesh", "tp=2,pp=2", "--rank", "1"]),
                     ("collapsed blocks at its own size", ["--dot-depth", "0"])]
            if name != "bert":  # bert has no loss to differentiate
                views.insert(2, ("training graph", small + ["--after=autodiff"]))
            for what, args in views:
                dump = subprocess.run([loom, "dump", model, "--dot", *args], capture_output=True, text=True, timeout=300)
                if dump.returncode:
                    check(f"{name} {what}: loom dump --dot", False, dump.stderr)
                    continue
                svg = subprocess.run(["dot", "-Tsvg", "-o", os.path.join(tmp, "g.svg")], input=dump.stdout,
                                     capture_output=True, text=True, timeout=600)
                check(f"{name} {what}: dot -Tsvg renders {dump.stdout.count(chr(10))} lines",
                      svg.returncode == 0 and not svg.stderr.strip(), svg.stderr)
        bad = subprocess.run([loom, "dump", os.path.join(ROOT, "models", "gpt2.loom"), "--dot", "--dot-depth", "x"],
                             capture_output=True, text=True)
        check("--dot-depth x is an error naming the option", bad.returncode == 1 and "--dot-depth" in bad.stderr,
              bad.stderr)
        # two short runs, JSON lines and CSV, in one picture
        logs = []
        for k, (lr, ext) in enumerate((("3e-3", "jsonl"), ("1e-3", "csv"))):
            log = os.path.join(tmp, f"run{k}.{ext}")
            r = subprocess.run([loom, "train", os.path.join(ROOT, "models", "gpt2.loom"), *SMALL["gpt2"].split(),
                                "--data", os.path.join(ROOT, "data", "tinyshakespeare.txt"), "--steps", "12",
                                "--eval-every", "4", "--eval-batches", "2", "--sample", "0", "--lr", lr, "--log", log],
                               capture_output=True, text=True, timeout=300)
            check(f"loom train --log {ext}", r.returncode == 0, r.stderr)
            logs.append(log)
        for extra in ([], ["--x", "tokens", "--log-y"]):
            svg, png = os.path.join(tmp, "loss.svg"), os.path.join(tmp, "loss.png")
            r = subprocess.run([loom, "plot", *logs, "-o", svg, *extra], capture_output=True, text=True)
            check(f"loom plot {' '.join(extra)}", r.returncode == 0, r.stderr)
            c = subprocess.run(["rsvg-convert", svg, "-o", png], capture_output=True, text=True)
            with open(png, "rb") as f:
                head = f.read(8)
            check(f"rsvg-convert turns it into a PNG ({os.path.getsize(png)} bytes)",
                  c.returncode == 0 and head == b"\x89PNG\r\n\x1a\n" and not c.stderr.strip(), c.stderr)
            with open(svg) as f:
                text = f.read()
            check("the legend names both runs and their validation losses",
                  all(f"{os.path.basename(x)} val loss" in text for x in logs))
        garbage = os.path.join(tmp, "garbage.jsonl")
        with open(garbage, "w") as f:
            f.write('{"step": 1, "loss": 2}\nnot json\n')
        r = subprocess.run([loom, "plot", garbage, "-o", os.path.join(tmp, "x.svg")], capture_output=True, text=True)
        check("a bad log line is an error naming file and line", r.returncode == 1 and "garbage.jsonl:2:" in r.stderr,
              r.stderr)
    print(f"{failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
