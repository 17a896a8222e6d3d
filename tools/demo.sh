#!/usr/bin/env bash
# `make demo`: train a small GPT-2 (4 layers, d_model 128, byte-level vocab 256, seq 128,
# batch 16) on tiny Shakespeare on the CPU for a few minutes, print the validation loss as it
# falls (target: below 2.2 within 5 minutes) and a generated sample; then check every model.
# Usage: tools/demo.sh [BUILD_DIR]   (LOOM_NUM_THREADS: threads, default all CPUs)
set -euo pipefail
build=${1:-build}
loom="$build/loom"
out=$(mktemp -d /tmp/loom-demo.XXXXXX)
trap 'rm -rf "$out"' EXIT

echo "== loom train: GPT-2 4x128 on data/tinyshakespeare.txt (byte-level)"
start=$(date +%s.%N)
"$loom" train models/gpt2.loom -D n_layer=4 -D d_model=128 -D n_head=4 -D vocab=256 -D seq=128 -D batch=16 \
  --data data/tinyshakespeare.txt --steps "${DEMO_STEPS:-500}" --lr 3e-3 --min-lr 3e-4 --warmup 20 \
  --eval-every 50 --eval-batches 8 --seed 1337 \
  --sample 400 --temperature 0.8 --top-k 40 --log "$out/train.csv" | tee "$out/train.log"
end=$(date +%s.%N)
val=$(grep '^val step' "$out/train.log" | tail -1 | sed 's/.*val loss \([0-9.]*\).*/\1/')
secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%d", b - a }')
echo "== final validation loss $val after $secs s in all (compile, training, evaluation, sample)"
# the first evaluation below 2.2, with the time since training began (after compiling) it reports
awk -F'|' '/^val step/ { split($2, v, " "); if (v[3] < 2.2) { print "== validation loss below 2.2 first at " $1 "(" v[3] ") after" $3; found = 1; exit } }
           END { if (!found) print "== validation loss did not fall below 2.2" }' "$out/train.log"

echo "== loom check every model"
for m in models/*.loom; do
  "$loom" check "$m" > "$out/check.txt"
  head -1 "$out/check.txt"
done
