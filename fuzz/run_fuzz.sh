#!/bin/sh
# run_fuzz.sh BINARY NAME SECONDS WORK_DIR [--fresh] [libFuzzer flags...]
#
# Runs the harness BINARY (fuzz/NAME.c) from the repository root: first over every input of its
# checked-in corpus fuzz/corpus/NAME except known-* ones (open findings whose fix belongs to
# code another change owns; docs/fuzzing.md lists them), then SECONDS more of fresh fuzzing
# with fuzz/NAME.dict when there is one. New inputs go to WORK_DIR/corpus (kept between runs
# unless --fresh), crashes to WORK_DIR/artifacts. Exit status: libFuzzer's — 0 when nothing was
# found; nonzero on a crash, sanitizer report, leak, timeout (-timeout, 25 s an input unless
# given), malloc over 2 GiB, RSS over 3 GiB, or a harness's own finding (an abort).
# LOOM_FUZZ_SEED=N fixes libFuzzer's seed (the ctests use 1).
set -eu
bin=$1 name=$2 secs=$3 work=$4
shift 4
if [ "${1:-}" = "--fresh" ]; then
  shift
  rm -rf "$work"
fi
mkdir -p "$work/seed" "$work/corpus" "$work/artifacts"
rm -f "$work/seed"/*
for f in fuzz/corpus/"$name"/*; do
  [ -f "$f" ] || continue
  case $(basename "$f") in known-*) ;; *) cp "$f" "$work/seed/" ;; esac
done
dict=
[ -f "fuzz/$name.dict" ] && dict="-dict=fuzz/$name.dict"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
echo "run_fuzz: $name: corpus fuzz/corpus/$name, then ${secs}s of fuzzing (work dir $work)"
exec "$bin" $dict -max_total_time="$secs" -timeout=25 -malloc_limit_mb=2048 -rss_limit_mb=3072 \
     -print_final_stats=1 ${LOOM_FUZZ_SEED:+-seed=$LOOM_FUZZ_SEED} -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" "$work/seed"
