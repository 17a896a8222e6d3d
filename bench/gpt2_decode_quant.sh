#!/bin/sh
# gpt2_decode_quant.sh — decode tokens/s of GPT-2 small (random weights, KV cache, prompt of 16
# tokens) on the CPU with f32, int8 and int4 (group 32) weights (loom quantize), each against its
# memory-bandwidth floor: the bytes a decode step must read (the weights file: every weight once,
# the tied LM head included) over the streaming bandwidth measured by bench_gpt2_decode_floor
# (OpenBLAS sgemv over GPT-2 small's f32 weights once; built with cmake --build BUILD --target
# bench_gpt2_decode_floor) — or, without it, the f32 run's own rate.
#
#   bench/gpt2_decode_quant.sh [LOOM] [THREADS] [NEW_TOKENS]
set -eu
LOOM=${1:-build/loom}
THREADS=${2:-2}
NEW=${3:-24}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${TMPDIR:-/tmp}/loom-gpt2-decode
mkdir -p "$WORK"
W="$WORK/gpt2-random.safetensors"
[ -f "$W" ] || "$LOOM" init "$ROOT/models/gpt2.loom" -o "$W" --seed 1 >/dev/null
[ -f "$WORK/gpt2-int8.safetensors" ] || "$LOOM" quantize "$W" --format int8 -o "$WORK/gpt2-int8.safetensors" >/dev/null
[ -f "$WORK/gpt2-int4.safetensors" ] || "$LOOM" quantize "$W" --format int4 --group 32 -o "$WORK/gpt2-int4.safetensors" >/dev/null
FLOOR="$(dirname "$LOOM")/bench_gpt2_decode_floor"
echo "gpt2_decode_quant: GPT-2 small, random weights, $THREADS threads, $NEW new tokens; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
f32_bytes=$(stat -c %s "$W")
gbs=""
if [ -x "$FLOOR" ]; then
    fm=$(OPENBLAS_NUM_THREADS=$THREADS "$FLOOR" 3 | sed -n 's/.*best \([0-9.]*\) ms.*/\1/p')
    gbs=$(python3 -c "print(round($f32_bytes / ($fm * 1e-3) / 1e9, 2))")
    echo "streaming bandwidth (sgemv over the f32 weights once: $fm ms): $gbs GB/s"
fi
PROMPT=$(python3 -c "print(' '.join(['hello'] * 16))")
printf "%6s %10s %14s %14s %10s\n" weights "MB/token" "decode tok/s" "floor tok/s" "of floor"
for f in random int8 int4; do
    file="$WORK/gpt2-$f.safetensors"
    bytes=$(stat -c %s "$file")
    out=$(LOOM_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS "$LOOM" generate "$ROOT/models/gpt2.loom" \
        --weights "$file" --vocab "$ROOT/data/gpt2" --prompt "$PROMPT" --max-tokens "$NEW" --temperature 0 \
        --ignore-eos 2>&1 >/dev/null)
    dec=$(echo "$out" | sed -n 's/.*decode .*: \([0-9.]*\) tok\/s/\1/p')
    [ -n "$gbs" ] || gbs=$(python3 -c "print($f32_bytes * $dec / 1e9)")
    fl=$(python3 -c "print(round($gbs * 1e9 / $bytes, 1))")
    name=$([ "$f" = random ] && echo f32 || echo "$f")
    printf "%6s %10.1f %14.2f %14.1f %9.0f%%\n" "$name" "$(python3 -c "print($bytes / 1e6)")" "$dec" "$fl" \
        "$(python3 -c "print(100 * $dec / $fl)")"
done
