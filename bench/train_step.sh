#!/usr/bin/env bash
# train_step.sh [BUILD] [MODEL...] — CPU training step time of `loom train` (issue 4).
#
# Models (default: demo gpt2s):
#   demo   GPT-2 4 layers × d_model 128, 4 heads, vocab 256, seq 128, batch 16 (tools/demo.sh's)
#   gpt2s  GPT-2 small (124M parameters), batch 4, seq 64
# For each: `loom train models/gpt2.loom ... --data data/tinyshakespeare.txt --steps N --stats`
# (byte tokens; AdamW; no evaluation); reports
#   - ms/step: median over steps 2..N of loom's own per-step wall time (step 1 is warm-up),
#   - tokens/s = batch × seq / median step,
#   - CPU s/step: user + sys CPU time of the whole process (both threads, compile included)
#     over N: robust to other load on the machine, unlike the wall times,
#   - GEMM share of the gradient program's time and its attention share (`--stats`: per step
#     kind, summed over all steps), and the update program's time per step.
# Threads: LOOM_NUM_THREADS and OPENBLAS_NUM_THREADS (default 2). N: LOOM_BENCH_STEPS
# (default 10). BUILD: a Release build directory (default /tmp/build-bench; configured and built
# here). The load average is printed: figures taken under load are only comparable as ratios.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-/tmp/build-bench}"
shift || true
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(demo gpt2s)
steps="${LOOM_BENCH_STEPS:-10}"
export LOOM_NUM_THREADS="${LOOM_NUM_THREADS:-2}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" --target loom -j2 >/dev/null
loom="$build/loom"
work="$(mktemp -d /tmp/loom-train-step.XXXXXX)"
trap 'rm -rf "$work"' EXIT

echo "loom train step, CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores," \
     "threads: loom $LOOM_NUM_THREADS, OpenBLAS $OPENBLAS_NUM_THREADS; $steps steps; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %10s %10s %12s %8s %10s %12s\n' model "ms/step" "tok/s" "CPU s/step" "GEMM %" "attn %" "update ms"
for m in "${models[@]}"; do
  case "$m" in
    demo)  defs=(-D n_layer=4 -D d_model=128 -D n_head=4 -D vocab=256 -D seq=128 -D batch=16) ;;
    gpt2s) defs=(-D seq=64 -D batch=4) ;;
    *) echo "train_step.sh: unknown model '$m' (demo, gpt2s)" >&2; exit 1 ;;
  esac
  log="$work/$m.log"
  # process CPU time (user + sys of loom and its threads) through python's resource module
  python3 - "$log" "$loom" train "$here/models/gpt2.loom" "${defs[@]}" --data "$here/data/tinyshakespeare.txt" \
      --steps "$steps" --lr 1e-3 --seed 1 --stats <<'PY'
import resource, subprocess, sys
log, cmd = sys.argv[1], sys.argv[2:]
with open(log, "w") as f:
    rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(log, "a") as f:
    f.write(f"cpu_seconds {ru.ru_utime + ru.ru_stime:.3f}\n")
sys.exit(rc)
PY
  python3 - "$log" "$m" "$steps" <<'PY'
import re, statistics, sys
log, name, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(log, errors="replace").read()
ms = [float(x) for x in re.findall(r"^step \d+/\d+ \|.*\| ([0-9.]+) ms \|", text, re.M)]
cpu = float(re.search(r"^cpu_seconds ([0-9.]+)", text, re.M).group(1))
g = re.search(r"^stats gradients: .*time (\d+) ms: kernels (\d+), gemm (\d+) \((\d+)%\), attention (\d+)", text, re.M)
u = re.search(r"^stats update: .*time (\d+) ms:", text, re.M)
if len(ms) < 2 or not g or not u:
    sys.exit(f"train_step.sh: unexpected output of loom train for {name}:\n{text[-2000:]}")
tokens = {"demo": 16 * 128, "gpt2s": 4 * 64}[name]
med = statistics.median(ms[1:])
gt = float(g.group(1))
print(f"{name:<6} {med:10.1f} {tokens / (med / 1e3):10.0f} {cpu / len(ms):12.2f} {g.group(4):>8} "
      f"{100 * float(g.group(5)) / gt if gt else 0:10.0f} {float(u.group(1)) / len(ms):12.1f}")
PY
done
