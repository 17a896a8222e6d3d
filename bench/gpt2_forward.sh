#!/usr/bin/env bash
# gpt2_forward.sh [BUILD] [CONFIG...] — GPT-2 small forward on the CPU against OpenBLAS alone.
#
# For each configuration BxT (default: 1x1024 1x64 8x64; batch B, sequence T):
#   - `loom build models/gpt2.loom -D batch=B -D seq=T -o EXE` (the same plan, kernels and
#     runtime as `loom run --target cpu`), then `EXE --repeat N` on random tokens and targets
#     (logits and the loss): one warm-up forward, N timed ones; the median is reported;
#   - bench_gemm_peer BxT (bench/gemm_peer.c): exactly the forward's GEMMs through cblas_sgemm
#     (attention as QKᵀ and PV GEMMs), run just before and just after loom; its median;
#   - forward FLOPs from ir/cost.c (`loom check`), GFLOP/s = FLOPs / loom's median;
#   - ratio = loom's median / the peer's median (goal ≤ 1.3: everything that is not GEMM costs
#     under 30%).
# Threads: LOOM_NUM_THREADS and OPENBLAS_NUM_THREADS (default 2, this project's machines).
# BUILD: a Release build directory (default /tmp/build-bench; configured and built here).
# Weights: `loom init --seed 1` into $LOOM_BENCH_DIR (default /tmp/loom-bench), kept between runs.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-/tmp/build-bench}"
shift || true
configs=("$@")
[ ${#configs[@]} -eq 0 ] && configs=(1x1024 1x64 8x64)
work="${LOOM_BENCH_DIR:-/tmp/loom-bench}"
reps="${LOOM_BENCH_REPS:-5}"
export LOOM_NUM_THREADS="${LOOM_NUM_THREADS:-2}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"
mkdir -p "$work"

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" --target loom bench_gemm_peer -j2 >/dev/null
loom="$build/loom"
peer="$build/bench_gemm_peer"
model="$here/models/gpt2.loom"

[ -f "$work/gpt2.safetensors" ] || "$loom" init "$model" --seed 1 -o "$work/gpt2.safetensors" >/dev/null

echo "GPT-2 small forward, CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores," \
     "threads: loom $LOOM_NUM_THREADS, OpenBLAS $OPENBLAS_NUM_THREADS; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %12s %10s %12s %14s %8s  %s\n' config "loom ms" GFLOP/s "peer ms" "(before/after)" ratio "loom profile, ms: kernels/gemm/attention"
for cfg in "${configs[@]}"; do
  b="${cfg%x*}" t="${cfg#*x}"
  defs=(-D "batch=$b" -D "seq=$t")
  inputs="$work/tokens_${b}x${t}.safetensors"
  python3 - "$inputs" "$b" "$t" <<'EOF'
import json, struct, sys, random
path, b, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(b * 100000 + t)
stream = [rng.randrange(50257) for _ in range(b * (t + 1))]
tok = [stream[i * (t + 1) + j] for i in range(b) for j in range(t)]
tgt = [stream[i * (t + 1) + j + 1] for i in range(b) for j in range(t)]
data = struct.pack(f"<{b * t}i", *tok) + struct.pack(f"<{b * t}i", *tgt)
n = 4 * b * t
head = json.dumps({"tokens": {"dtype": "I32", "shape": [b, t], "data_offsets": [0, n]},
                   "targets": {"dtype": "I32", "shape": [b, t], "data_offsets": [n, 2 * n]}}).encode()
head += b" " * (-len(head) % 8)
open(path, "wb").write(struct.pack("<Q", len(head)) + head + data)
EOF
  flops=$("$loom" check "$model" "${defs[@]}" | sed -n 's/^forward FLOPs: \([0-9.e+]*\) per pass.*/\1/p')
  exe="$work/gpt2_${b}x${t}"
  "$loom" build "$model" "${defs[@]}" -o "$exe" >/dev/null
  peer_before=$("$peer" "$cfg" | sed -n 's/.* \([0-9.]*\) median.*/\1/p')
  stats=$("$exe" --weights "$work/gpt2.safetensors" --inputs "$inputs" --outputs "$work/out.safetensors" --repeat "$reps")
  peer_after=$("$peer" "$cfg" | sed -n 's/.* \([0-9.]*\) median.*/\1/p')
  line=$(grep 'median of' <<<"$stats")
  median=$(sed -n 's/.*(first), \([0-9.]*\) ms (median.*/\1/p' <<<"$line")
  prof=$(sed -n 's/.*profiled: kernels \([0-9.]*\), gemm \([0-9.]*\), attention \([0-9.]*\).*/\1\/\2\/\3/p' <<<"$line")
  python3 - "$cfg" "$median" "$flops" "$peer_before" "$peer_after" "$prof" <<'EOF'
import sys
cfg, med, flops, pb, pa, prof = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
peer = (pb + pa) / 2
print(f"{cfg:<8} {med:12.1f} {flops / med * 1e-6:10.1f} {peer:12.1f} {f'{pb:.0f}/{pa:.0f}':>14} {med / peer:8.2f}  {prof}")
EOF
done
