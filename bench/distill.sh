#!/usr/bin/env bash
# Distillation against CE alone (docs/compression.md, "Distillation"): a 4-layer GPT-2 teacher
# (d_model 128, byte vocabulary, seq 64) trained on tiny Shakespeare, then a 2-layer student of
# the same width trained the same number of steps twice from the same init and data order: on CE
# alone, and distilled (--teacher, alpha A, temperature T). Prints each run's final validation
# loss (the student's CE on the validation split).
# Usage: bench/distill.sh [BUILD_DIR] [TEACHER_STEPS] [STUDENT_STEPS] [ALPHA] [T]
set -euo pipefail
build=${1:-build}
tsteps=${2:-600}
ssteps=${3:-300}
alpha=${4:-0.5}
temp=${5:-2}
loom="$build/loom"
out=$(mktemp -d /tmp/loom-distill.XXXXXX)
trap 'rm -rf "$out"' EXIT
common=(-D d_model=128 -D n_head=4 -D vocab=256 -D seq=64 -D batch=16 --data data/tinyshakespeare.txt
        --lr 3e-3 --min-lr 3e-4 --warmup 20 --eval-batches 16 --sample 0 --seed 1337)
val() { grep '^val step' "$1" | tail -1 | sed 's/.*val loss \([0-9.]*\).*/\1/'; }

"$loom" train models/gpt2.loom -D n_layer=4 "${common[@]}" --steps "$tsteps" --eval-every "$tsteps" \
  --checkpoint "$out/teacher" > "$out/teacher.log"
tw=$(ls "$out"/teacher/state-*.safetensors)
echo "teacher: 4 layers, $tsteps steps: val loss $(val "$out/teacher.log")"
"$loom" train models/gpt2.loom -D n_layer=2 "${common[@]}" --steps "$ssteps" --eval-every "$ssteps" > "$out/ce.log"
echo "student: 2 layers, $ssteps steps, CE alone: val loss $(val "$out/ce.log")"
"$loom" train models/gpt2.loom -D n_layer=2 "${common[@]}" --steps "$ssteps" --eval-every "$ssteps" \
  --teacher models/gpt2.loom --teacher-define n_layer=4 --teacher-weights "$tw" \
  --distill-alpha "$alpha" --distill-temperature "$temp" > "$out/kd.log"
echo "student: 2 layers, $ssteps steps, distilled (alpha $alpha, T $temp): val loss $(val "$out/kd.log")"
