#!/usr/bin/env bash
# opencl_gemm_forward.sh LOOM [SEQ...] — GPT-2 small forward (batch 1, logits only, `loom init
# --seed 1`) through `loom run --target opencl --stats` with LOOM_OCL_GEMM=auto (generated
# kernels or CLBlast, chosen per GEMM shape by timing: runtime/opencl/gemm_opencl.c) and with
# LOOM_OCL_GEMM=clblast, one after the other; then --target cpu for scale. Prints each run's
# --stats lines and the per-shape choices (LOOM_OCL_GEMM_VERBOSE=1). Default SEQ: 64 256.
# LOOM_STATS_RUNS (default 3) forwards after the first; the median is reported.
set -euo pipefail
loom=${1:?usage: opencl_gemm_forward.sh LOOM [SEQ...]}
shift
seqs=("$@")
[ $# -eq 0 ] && seqs=(64 256)
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/loom_ocl_fwd_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export LOOM_STATS_RUNS=${LOOM_STATS_RUNS:-3}
for T in "${seqs[@]}"; do
    defs=(-D batch=1 -D seq="$T" -D n_layer=12)
    "$loom" init "$repo/models/gpt2.loom" --seed 1 -o "$tmp/w.safetensors" "${defs[@]}" > /dev/null
    python3 -c "
import sys; sys.path.insert(0, '$repo/tests/models'); import harness, numpy as np
harness.write_safetensors('$tmp/in.safetensors', {'tokens': np.random.default_rng(1).integers(0, 50257, (1, $T)).astype(np.int32)})"
    for mode in auto clblast cpu; do
        echo "== GPT-2 small forward, batch 1, seq $T: ${mode/cpu/--target cpu}"
        target=opencl
        [ "$mode" = cpu ] && target=cpu
        LOOM_OCL_GEMM=${mode/cpu/auto} LOOM_OCL_GEMM_VERBOSE=1 "$loom" run "$repo/models/gpt2.loom" "${defs[@]}" \
            --weights "$tmp/w.safetensors" --inputs "$tmp/in.safetensors" --outputs "$tmp/o.safetensors" \
            --target "$target" --stats 2>&1 | grep -v '^wrote' | sed 's/g\([0-9]\)([^)]*)/g\1/g'
    done
done
