"""The CPU object cache (codegen/objcache.h): `loom run` of a tiny GPT-2 with LOOM_CPU_CACHE set
to a fresh directory, LOOM_CPU_CACHE_STATS=1 printing what each compile found:
  - cold: every module compiled and written, one file each;
  - warm: every module found, none compiled, the outputs bit for bit those of the cold run;
  - a flipped byte, then a truncated entry, is found corrupt, compiled again and rewritten (the
    next run finds everything), outputs unchanged;
  - a CPU-feature change (LOOM_CPU_FEATURES=-avx512f) finds nothing: new entries beside the old;
  - four processes on an empty cache at once: all succeed with the cold outputs, no temporary
    file is left, and a run after them finds everything;
  - LOOM_CPU_CACHE=off, and a directory that cannot be made: no cache, the run still succeeds.
Usage: test_objcache.py LOOM"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
import numpy as np  # noqa: E402
from harness import REPO, init_weights, read_safetensors, write_safetensors  # noqa: E402

DEFINES = {"vocab": 64, "ctx": 16, "d_model": 32, "n_layer": 6, "n_head": 4, "batch": 2, "seq": 8}
STATS = re.compile(r"cpu object cache (\S+): (\d+) modules, (\d+) found, (\d+) compiled, (\d+) corrupt, (\d+) written")
failed = 0


def check(what, ok, detail=""):
    global failed
    print(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + str(detail) if detail != '' else ''}")
    failed += not ok


def start(loom, tmp, cache, out, env_extra=None):
    env = dict(os.environ, LOOM_CPU_CACHE=cache, LOOM_CPU_CACHE_STATS="1", **(env_extra or {}))
    cmd = [loom, "run", os.path.join(REPO, "models", "gpt2.loom")]
    for k, v in DEFINES.items():
        cmd += ["-D", f"{k}={v}"]
    cmd += ["--weights", os.path.join(tmp, "w.safetensors"), "--inputs", os.path.join(tmp, "in.safetensors"),
            "--outputs", out]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p):
    out, err = p.communicate()
    if p.returncode != 0:
        print(f"FAIL loom run exited {p.returncode}\n{out}{err}")
        sys.exit(1)
    found = [tuple(int(x) for x in m.groups()[1:]) for m in STATS.finditer(err)]
    where = {m.group(1) for m in STATS.finditer(err)}
    # summed over the compiles of the run: modules, found, compiled, corrupt, written
    return tuple(sum(f[i] for f in found) for i in range(5)), where


def run(loom, tmp, cache, out, env_extra=None):
    return finish(start(loom, tmp, cache, out, env_extra))


def same(a, b):
    x, y = read_safetensors(a), read_safetensors(b)
    return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def close(a, b):
    x, y = read_safetensors(a), read_safetensors(b)
    return x.keys() == y.keys() and all(np.allclose(x[k], y[k], rtol=1e-5, atol=1e-5) for k in x)


def entries(cache):
    return sorted(f for f in os.listdir(cache) if f.endswith(".o"))


def main():
    loom = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        init_weights(loom, "gpt2.loom", DEFINES, 1, os.path.join(tmp, "w.safetensors"))
        rng = np.random.default_rng(0)
        write_safetensors(os.path.join(tmp, "in.safetensors"),
                          {"tokens": rng.integers(0, 64, (2, 8)).astype(np.int64)})
        cache = os.path.join(tmp, "cache")
        cold = os.path.join(tmp, "cold.safetensors")
        (n, found, compiled, corrupt, written), _ = run(loom, tmp, cache, cold)
        files = entries(cache)
        check("cold: every module compiled and written, a file each", n > 0 and found == 0 and compiled == n and
              written == n and len(files) == n, f"{n} modules, {compiled} compiled, {written} written, {len(files)} files")

        warm = os.path.join(tmp, "warm.safetensors")
        (n2, found, compiled, corrupt, written), _ = run(loom, tmp, cache, warm)
        check("warm: every module found, none compiled", n2 == n and found == n and compiled == 0 and written == 0,
              f"{found} found, {compiled} compiled")
        check("warm: the outputs bit for bit the cold run's", same(cold, warm))

        def flip(f):  # a byte of the object flipped
            f.seek(os.path.getsize(f.name) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x40]))

        for what, spoil in (("a flipped byte", flip),
                            ("a truncated entry", lambda f: f.truncate(os.path.getsize(f.name) - 100))):
            with open(os.path.join(cache, files[-1]), "r+b") as f:
                spoil(f)
            bad = os.path.join(tmp, "bad.safetensors")
            (_, found, compiled, corrupt, written), _ = run(loom, tmp, cache, bad)
            check(f"{what}: found corrupt, compiled and written again",
                  corrupt == 1 and compiled == 1 and written == 1 and found == n - 1,
                  f"{corrupt} corrupt, {compiled} compiled, {written} written")
            check("... the outputs unchanged", same(cold, bad))
            (_, found, _, corrupt, _), _ = run(loom, tmp, cache, bad)
            check("... and the run after finds every entry", found == n and corrupt == 0, f"{found} of {n}")

        feat = os.path.join(tmp, "feat.safetensors")
        (_, found, compiled, _, written), _ = run(loom, tmp, cache, feat, {"LOOM_CPU_FEATURES": "-avx512f"})
        check("another CPU feature set (-avx512f): nothing found, new entries beside the old",
              found == 0 and compiled == n and len(entries(cache)) == 2 * n, f"{found} found, {len(entries(cache))} files")
        check("... the outputs within 1e-5 of the cold run's", close(cold, feat))

        race = os.path.join(tmp, "race")
        procs = [start(loom, tmp, race, os.path.join(tmp, f"r{i}.safetensors")) for i in range(4)]
        results = [finish(p) for p in procs]
        check("four processes on an empty cache at once: all succeed with the cold outputs",
              all(same(cold, os.path.join(tmp, f"r{i}.safetensors")) for i in range(4)),
              [r[0][2] for r in results])
        left = sorted(os.listdir(race))
        check("... one entry a module, no temporary file left", left == entries(race) and len(left) == n, left[:4])
        (_, found, _, _, _), _ = run(loom, tmp, race, os.path.join(tmp, "r.safetensors"))
        check("... and a run after them finds every entry", found == n, f"{found} of {n}")

        (_, found, compiled, _, written), where = run(loom, tmp, "off", os.path.join(tmp, "off.safetensors"))
        check("LOOM_CPU_CACHE=off: no cache", where == {"off"} and found == 0 and written == 0, where)
        (_, _, _, _, written), where = run(loom, tmp, "/dev/null/cache", os.path.join(tmp, "null.safetensors"))
        check("a cache directory that cannot be made: no cache, the run succeeds", where == {"off"} and written == 0,
              where)
    if failed:
        print(f"{failed} failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
