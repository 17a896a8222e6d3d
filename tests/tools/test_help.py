"""Every command's --help exits 0 with a synopsis, options and examples, and every example runs
(from the repository root, build/loom replaced by the loom under test, /tmp by a fresh folder);
loom --version. Usage: test_help.py LOOM MPIEXEC"""
import os
import re
import shlex
import shutil
import subprocess
import time
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def main():
    loom, mpiexec = sys.argv[1:3]
    failures = 0
    top = subprocess.run([loom, "--help"], capture_output=True, text=True)
    commands = re.findall(r"^  loom (\S+)", top.stdout, re.M)
    v = subprocess.run([loom, "--version"], capture_output=True, text=True)
    if v.returncode or not re.match(r"loom \d+\.\d+\.\d+$", v.stdout.strip()):
        print(f"FAIL loom --version: {v.returncode} {v.stdout!r}")
        failures += 1
    if len(commands) < 14:
        print(f"FAIL loom --help lists {len(commands)} commands:\n{top.stdout}")
        return 1
    env = dict(os.environ, LOOM_NUM_THREADS="1", OMPI_MCA_btl="self,vader", LOOM_COLL_TIMEOUT="60")
    only = sys.argv[3:]  # a few commands only, when given
    for cmd in commands:
        if only and cmd not in only:
            continue
        h = subprocess.run([loom, cmd, "--help"], capture_output=True, text=True)
        ok = h.returncode == 0 and h.stdout.startswith("usage: loom " + cmd) and "examples" in h.stdout
        ok = ok and ("options:" in h.stdout or cmd in ("devices", "trace-merge"))
        examples = re.findall(r"^  \$ (.*)$", h.stdout, re.M)
        if not ok or not examples:
            print(f"FAIL loom {cmd} --help: exit {h.returncode}, {len(examples)} examples\n{h.stdout}{h.stderr}")
            failures += 1
            continue
        with tempfile.TemporaryDirectory() as tmp:
            for ex in examples:
                # /tmp first: the loom under test may live under /tmp itself
                run = re.sub(r"(?<![\w/])/tmp/", tmp + "/", ex)
                run = re.sub(r"(?<![\w/])build/loom\b", loom, run)
                run = re.sub(r"^mpirun\b", mpiexec, run)
                # OpenMPI's own leaks are not loom's (the mesh tests' COLL_ENV): no LeakSanitizer under mpirun
                ex_env = dict(env, ASAN_OPTIONS="detect_leaks=0") if "mpirun" in ex else env
                r = subprocess.run(["bash", "-o", "pipefail", "-c", run], cwd=ROOT, env=ex_env, capture_output=True,
                                   text=True, timeout=600)
                status = "ok  " if r.returncode == 0 else "FAIL"
                print(f"{status} loom {cmd}: $ {ex}")
                if r.returncode:
                    print(f"     exit {r.returncode}\n{r.stdout[-1500:]}{r.stderr[-2500:]}")
                    failures += 1
    # loom check --json: one object, the same params as the text, a report per rank of the mesh
    if not only or "check" in only:
        import json
        model = os.path.join(ROOT, "models", "gpt2.loom")
        j = subprocess.run([loom, "check", model, "-D", "n_layer=2", "--mesh", "tp=2,pp=2", "--json"],
                           capture_output=True, text=True)
        t = subprocess.run([loom, "check", model, "-D", "n_layer=2"], capture_output=True, text=True)
        try:
            doc = json.loads(j.stdout)
            text_params = int(re.search(r"^params: (\d+)", t.stdout, re.M).group(1))
            ok = (doc["params"]["count"] == text_params and len(doc["mesh_report"]["ranks"]) == 4 and
                  all(r["params_bytes"] > 0 and "communication" in r for r in doc["mesh_report"]["ranks"]) and
                  doc["forward_flops"]["per_pass"] > 0)
        except (ValueError, KeyError, AttributeError) as e:
            ok, doc = False, e
        print(f"{'ok  ' if ok else 'FAIL'} loom check --json: params, FLOPs and a report per rank")
        if not ok:
            print(f"     {doc}\n{j.stdout[-1000:]}{j.stderr[-1000:]}")
            failures += 1
        notes = j.stderr.count("note:")
        print(f"{'ok  ' if notes == 1 else 'FAIL'} loom check --mesh tp=2,pp=2 says the wte note once ({notes} notes)")
        failures += notes != 1
    # the progress line: on a terminal (script(1) gives one) once a compile takes a second, and
    # nothing at all when stderr is a pipe
    if (not only or "progress" in only) and shutil.which("script"):
        cmd = [loom, "train", os.path.join(ROOT, "models", "gpt2.loom"), "-D", "n_layer=6", "-D", "d_model=256",
               "-D", "n_head=4", "-D", "vocab=256", "-D", "seq=64", "-D", "batch=2", "--data",
               os.path.join(ROOT, "data", "tinyshakespeare.txt"), "--steps", "1", "--sample", "0", "--eval-batches", "1"]
        # without the object cache (codegen/objcache.h), so that both runs compile
        env = dict(os.environ, LOOM_CPU_CACHE="off")
        piped = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        ok = piped.returncode == 0 and "\033[K" not in piped.stderr and "compiling" not in piped.stderr
        print(f"{'ok  ' if ok else 'FAIL'} no progress line when stderr is not a terminal")
        failures += not ok
        with tempfile.TemporaryDirectory() as tmp:
            typescript = os.path.join(tmp, "tty.txt")
            line = " ".join(shlex.quote(c) for c in cmd) + " > /dev/null"
            t0 = time.time()
            subprocess.run(["script", "-qec", line, typescript], capture_output=True, timeout=300, env=env)
            with open(typescript, errors="replace", newline="") as f:
                seen = f.read()
            compiled = re.search(r"compiled in (\d+) ms", piped.stdout)
            slow = compiled and int(compiled.group(1)) > 1500
            ok = "loom: compiling" in seen and seen.rfind("\r\033[K") > seen.rfind("loom: compiling") if slow else True
            print(f"{'ok  ' if ok else 'FAIL'} on a terminal a compile of over a second shows a progress line"
                  f"{'' if slow else ' (compile under 1.5 s here: not checked)'} ({time.time() - t0:.1f} s)")
            failures += not ok
    print(f"{failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
