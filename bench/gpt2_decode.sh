#!/bin/sh
# gpt2_decode.sh — decode tokens/s of GPT-2 small (random weights) with the KV cache, at prompt
# lengths 16, 256 and 1000 (each "hello" word is one GPT-2 token), on the CPU.
#
#   bench/gpt2_decode.sh [LOOM] [THREADS] [NEW_TOKENS] [ROUNDS]
#     LOOM        the loom binary (default: build/loom); bench_gpt2_decode_floor next to it (cmake
#                 --build BUILD --target bench_gpt2_decode_floor) is run too when present: the
#                 OpenBLAS-alone floor of a decode step (sgemv over every weight once)
#     THREADS     LOOM_NUM_THREADS and OPENBLAS_NUM_THREADS (default 2)
#     NEW_TOKENS  tokens generated per run (default 24: 1000 + 24 fits the context of 1024)
#     ROUNDS      rounds (default 3); each round runs the floor and every prompt length once, so
#                 that a shared machine's changing load hits all of them alike; the best of the
#                 rounds is reported
#
# Prints the load average, the floor and one line per prompt length: prefill and decode tok/s
# and decode ms per token (best of ROUNDS). With a cache, every decode step reads all weights
# once and attends over the cache rows written so far (the CPU's attention skips the keys its
# mask makes -inf at the end), so decode cost grows a little with the prompt length.
set -eu
LOOM=${1:-build/loom}
THREADS=${2:-2}
NEW=${3:-24}
ROUNDS=${4:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${TMPDIR:-/tmp}/loom-gpt2-decode
mkdir -p "$WORK"
W="$WORK/gpt2-random.safetensors"
[ -f "$W" ] || "$LOOM" init "$ROOT/models/gpt2.loom" -o "$W" --seed 1 >/dev/null
FLOOR="$(dirname "$LOOM")/bench_gpt2_decode_floor"
echo "gpt2_decode: GPT-2 small, random weights, $THREADS threads, $NEW new tokens, best of $ROUNDS rounds; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
best() { python3 -c "import sys; print(max(float(x) for x in sys.argv[1:] if x))" "$@"; }
floor_ms=""
pre16="" pre256="" pre1000="" dec16="" dec256="" dec1000=""
r=0
while [ $r -lt "$ROUNDS" ]; do
    if [ -x "$FLOOR" ]; then
        f=$(OPENBLAS_NUM_THREADS=$THREADS "$FLOOR" 3 | sed -n 's/.*best \([0-9.]*\) ms.*/\1/p')
        floor_ms="$floor_ms $f"
    fi
    for T in 16 256 1000; do
        PROMPT=$(python3 -c "print(' '.join(['hello'] * $T))")
        out=$(LOOM_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS "$LOOM" generate "$ROOT/models/gpt2.loom" \
            --weights "$W" --vocab "$ROOT/data/gpt2" --prompt "$PROMPT" --max-tokens "$NEW" --temperature 0 \
            --ignore-eos 2>&1 >/dev/null)
        pre=$(echo "$out" | sed -n 's/.*prefill .*: \([0-9.]*\) tok\/s/\1/p')
        dec=$(echo "$out" | sed -n 's/.*decode .*: \([0-9.]*\) tok\/s/\1/p')
        eval "pre$T=\"\$pre$T $pre\"; dec$T=\"\$dec$T $dec\""
    done
    r=$((r + 1))
done
if [ -n "$floor_ms" ]; then
    fm=$(python3 -c "import sys; print(min(float(x) for x in sys.argv[1:]))" $floor_ms)
    echo "floor (OpenBLAS sgemv over all weights once, best of rounds): $fm ms = $(python3 -c "print(round(1000 / $fm, 1))") tok/s"
fi
printf "%8s %14s %14s %12s\n" prompt "prefill tok/s" "decode tok/s" "ms/token"
for T in 16 256 1000; do
    eval "p=\$pre$T; d=\$dec$T"
    bp=$(best $p)
    bd=$(best $d)
    printf "%8d %14.1f %14.2f %12.1f\n" "$T" "$bp" "$bd" "$(python3 -c "print(1000 / $bd)")"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
