#!/usr/bin/env bash
# device_run.sh — the whole GPU suite of issue 16 in one call on the lent GPU machine (driver,
# CUDA 13 libraries and PyTorch there; no LLVM, OpenBLAS, MPI or C compiler guaranteed).
#
#   here:   tools/devpack.sh build          builds and packs everything below into .devpack/
#   there:  device run, carry [".devpack"], command: bash tests/gpu/device_run.sh
#
# Stages, in order of importance, each under its own timeout; one line each in $OUT/summary.txt:
#   devices     `loom devices` lists a CUDA device (its name printed: the H200)
#   driver      test_cuda_driver: the driver through dlopen, modules, launches
#   ops         test_cuda_ops: the op suite against the reference interpreter
#   models      tests/gpu/test_cuda_models.py: tiny GPT-2, LLaMA, BERT, GPT-2 small (seq 64)
#               against --target cpu
#   jobs        tests/gpu/test_cuda_jobs.py: 50 training steps against the CPU's loss curve,
#               greedy `loom generate --target cuda` = the CPU's tokens, the executable of `loom
#               build --target cuda` (built here by devpack) = `loom run --target cuda`
#   nccl        test_nccl at one rank against the single backend, and its hang scenario (the
#               watchdog's timeout message)
#   sanitizer   compute-sanitizer memcheck and racecheck over one forward and one training step
#   opencl      NVIDIA's OpenCL platform: the op suite, the models, the jobs (opencl exe);
#               LOOM_DEVICE_RUN_OPENCL=Portable runs this stage on PoCL (a dry run of it here)
#   bench       GPT-2 small (124M), batch 16, seq 1024: loom's forward (bench_cuda) and training
#               step (`loom train --target cuda`, fp32) next to PyTorch eager and torch.compile
#               (bf16 and fp32), the device-to-device copy bandwidth, and OpenCL / CUDA forward
# A stage PASSes (exit 0), FAILs, TIMEOUTs, or is SKIPped (it printed "skipped: why", or what it
# needs is absent). The whole run keeps within $LOOM_DEVICE_BUDGET_S (default 540 s): a stage
# that would start later is skipped, so the logs always come back. Without a GPU (here) every
# stage says "skipped" and the script exits 0; with one, it exits 1 if any stage failed.
#
# Files in $OUT (at most 8 come back): summary.txt, suite.log (every stage's output, in order),
# bench.txt (the benchmark's lines), sanitizer.txt. Without $OUT: /tmp/loom-device-run.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
OUT=${OUT:-/tmp/loom-device-run}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt LOG=$OUT/suite.log BENCH=$OUT/bench.txt SAN=$OUT/sanitizer.txt
: >"$SUMMARY"; : >"$LOG"; : >"$BENCH"; : >"$SAN"
BUDGET=${LOOM_DEVICE_BUDGET_S:-540}
T0=$(date +%s)
export PYTHONUNBUFFERED=1
failed=0

if [ -f .devpack/unpack.sh ]; then
  source .devpack/unpack.sh
  B=$LOOM_DEVPACK_BIN
else
  echo "device_run: no .devpack (run tools/devpack.sh BUILD here first); using ${LOOM_BUILD:-build}/" | tee -a "$LOG"
  B=$here/${LOOM_BUILD:-build}
fi
LOOM=$B/loom

# The libraries loom opens with dlopen, from the toolkit or PyTorch's wheels (nvidia-cublas,
# nvidia-nccl-cu13): the machine has them, the pack does not carry them.
pylib() { env -u LD_LIBRARY_PATH python3 -c "import $1, os; print(os.path.join(list($1.__path__)[0], 'lib'))" 2>/dev/null; }
if [ -z "${LOOM_LIBCUBLASLT:-}" ]; then
  f=$(ls "$(pylib nvidia.cublas)"/libcublasLt.so.* /usr/local/cuda/lib64/libcublasLt.so.* 2>/dev/null | head -1)
  [ -n "$f" ] && export LOOM_LIBCUBLASLT=$f
fi
if [ -z "${LOOM_LIBNCCL:-}" ]; then
  f=$(ls "$(pylib nvidia.nccl)"/libnccl.so.2 /usr/local/cuda/lib64/libnccl.so.2 2>/dev/null | head -1)
  [ -n "$f" ] && export LOOM_LIBNCCL=$f
fi
{
  echo "device_run: $(date -u +%FT%TZ) on $(hostname); budget ${BUDGET} s"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "no nvidia-smi"
  echo "cuBLASLt: ${LOOM_LIBCUBLASLT:-none found}; NCCL: ${LOOM_LIBNCCL:-none found}"
} 2>&1 | tee -a "$LOG"

HAVE_CUDA=0
"$LOOM" devices 2>&1 | grep -q "cuda: device 0" && HAVE_CUDA=1
export B LOOM HAVE_CUDA SAN BENCH

# stage NAME TIMEOUT_S CMD...: runs CMD, its output into suite.log, its verdict into summary.txt
stage() {
  local name=$1 limit=$2
  shift 2
  local now=$(($(date +%s) - T0))
  if [ $((now + 10)) -gt "$BUDGET" ]; then
    printf '%-10s %-7s %4ss  skipped: the budget of %s s is spent (%s s in)\n' "$name" SKIP 0 "$BUDGET" "$now" |
      tee -a "$SUMMARY"
    return
  fi
  [ $((now + limit)) -gt "$BUDGET" ] && limit=$((BUDGET - now))
  local out t1 rc verdict why
  out=$(mktemp)
  t1=$(date +%s)
  echo "==== $name: $*" >>"$LOG"
  timeout --kill-after=10 "$limit" "$@" >"$out" 2>&1
  rc=$?
  cat "$out" >>"$LOG"
  why=$(grep -m1 -E "^skipped|: skipped" "$out")
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    verdict=TIMEOUT why="after $limit s"; failed=1
  elif [ $rc -ne 0 ]; then
    verdict=FAIL why=$(grep -m1 -E "FAIL|error|Error" "$out" | cut -c1-160); failed=1
  elif [ -n "$why" ]; then
    verdict=SKIP
  else
    verdict=PASS why=$(tail -1 "$out" | cut -c1-160)
  fi
  printf '%-10s %-7s %4ss  %s\n' "$name" "$verdict" "$(($(date +%s) - t1))" "$why" | tee -a "$SUMMARY"
  rm -f "$out"
}
# The stages written as functions run as `bash -c NAME` (timeout runs programs, not functions).
# skip NAME WHY: a stage that cannot run here
skip() { printf '%-10s %-7s %4ss  skipped: %s\n' "$1" SKIP 0 "$2" | tee -a "$SUMMARY"; }

# ---- correctness on the GPU ---------------------------------------------------------------
devices() {
  "$LOOM" devices
  grep -q "cuda: device 0" <("$LOOM" devices) || { echo "skipped: no CUDA device"; return 0; }
  "$LOOM" devices | grep -q -i "H200" || echo "note: not an H200"
}
export -f devices
stage devices 30 bash -c devices
stage driver 90 "$B/test_cuda_driver"
stage ops 150 "$B/test_cuda_ops"
stage models 200 python3 tests/gpu/test_cuda_models.py "$LOOM"
stage jobs 200 env LOOM_TEST_EXE="$B/tiny_gpt2_cuda" python3 tests/gpu/test_cuda_jobs.py "$LOOM" cuda

# ---- NCCL at one rank ---------------------------------------------------------------------
stage nccl 60 "$B/test_nccl"
if [ $HAVE_CUDA = 1 ] && [ -n "${LOOM_LIBNCCL:-}" ]; then
  stage nccl_hang 30 bash tests/collectives/run_fail.sh 15 "did not complete within 2.0 s" -- "$B/test_nccl" --scenario=hang
else
  skip nccl_hang "no CUDA device or no libnccl.so.2"
fi

# ---- compute-sanitizer: one forward, one training step -----------------------------------
sanitize() {
  [ $HAVE_CUDA = 1 ] || { echo "skipped: no CUDA device"; return 0; }
  command -v compute-sanitizer >/dev/null || { echo "skipped: no compute-sanitizer"; return 0; }
  local tmp cfg bad=0
  tmp=$(mktemp -d)
  cfg=(-D vocab=64 -D ctx=32 -D d_model=32 -D n_layer=2 -D n_head=4 -D batch=2 -D seq=16)
  "$LOOM" init models/gpt2.loom "${cfg[@]}" -o "$tmp/w" >/dev/null
  python3 - "$tmp/in" <<'PY'
import sys; sys.path.insert(0, "tests/models"); import harness, numpy as np
r = np.random.default_rng(1)
harness.write_safetensors(sys.argv[1], {k: r.integers(0, 64, (2, 16)).astype(np.int32) for k in ("tokens", "targets")})
PY
  head -c 3000 data/tinyshakespeare.txt >"$tmp/text.txt"
  for tool in memcheck racecheck; do
    for job in run train; do
      if [ $job = run ]; then
        args=(run models/gpt2.loom "${cfg[@]}" --weights "$tmp/w" --inputs "$tmp/in" --outputs "$tmp/o" --target cuda)
      else
        args=(train models/gpt2.loom "${cfg[@]}" -D vocab=256 --data "$tmp/text.txt" --steps 1 --sample 0
              --eval-batches 1 --target cuda)
      fi
      compute-sanitizer --tool $tool --error-exitcode 3 "$LOOM" "${args[@]}" >"$tmp/log" 2>&1
      local rc=$?
      {
        echo "== $tool, loom $job: exit $rc"
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Invalid|Race|error" "$tmp/log" | head -20
      } | tee -a "$SAN"
      grep -q -E "(ERROR|RACECHECK) SUMMARY: 0 " "$tmp/log" && [ $rc -eq 0 ] || bad=1
    done
  done
  rm -rf "$tmp"
  [ $bad = 0 ] && echo "compute-sanitizer: memcheck and racecheck clean over a forward and a training step"
  return $bad
}
export -f sanitize
stage sanitizer 180 bash -c sanitize

# ---- NVIDIA's OpenCL platform -------------------------------------------------------------
opencl_nvidia() {
  if ! grep -qs nvidia /etc/OpenCL/vendors/*.icd 2>/dev/null && ldconfig -p 2>/dev/null | grep -q libnvidia-opencl.so.1; then
    mkdir -p /tmp/icd && cp /etc/OpenCL/vendors/*.icd /tmp/icd/ 2>/dev/null
    echo libnvidia-opencl.so.1 >/tmp/icd/nvidia.icd && export OCL_ICD_VENDORS=/tmp/icd
    echo "added /tmp/icd/nvidia.icd"
  fi
  local P
  P=$("$LOOM" devices | grep -m1 "platform '${LOOM_DEVICE_RUN_OPENCL:-NVIDIA}" | sed 's/^\(opencl:[0-9]*\).*/\1/')
  [ -n "$P" ] || { echo "skipped: no ${LOOM_DEVICE_RUN_OPENCL:-NVIDIA} OpenCL platform"; return 0; }
  local bad=0
  echo "== $P: op suite"; "$B/test_opencl_ops" "$P" 2>&1 | tail -3; [ "${PIPESTATUS[0]}" = 0 ] || bad=1
  echo "== $P: models"; python3 tests/opencl/test_opencl_models.py "$LOOM" "$P" 2>&1 | tail -8
  [ "${PIPESTATUS[0]}" = 0 ] || bad=1
  echo "== $P: jobs"; LOOM_TEST_EXE="$B/tiny_gpt2_opencl" LOOM_OCL_GEMM=generated:3 \
    python3 tests/gpu/test_cuda_jobs.py "$LOOM" "$P" 2>&1 | tail -8
  [ "${PIPESTATUS[0]}" = 0 ] || bad=1
  return $bad
}
export -f opencl_nvidia
stage opencl 200 bash -c opencl_nvidia

# ---- the benchmark: GPT-2 small, batch 16, seq 1024 ---------------------------------------
bench() {
  [ $HAVE_CUDA = 1 ] || { echo "skipped: no CUDA device"; return 0; }
  local tmp
  tmp=$(mktemp -d)
  "$LOOM" init models/gpt2.loom --seed 1 -o "$tmp/g.safetensors" >/dev/null
  {
    echo "== loom forward (bench_cuda, fp32)"
    timeout 90 "$B/bench_cuda" models/gpt2.loom "$tmp/g.safetensors" -D batch=16 -D seq=1024 --runs 5 2>&1 | tail -4
    echo "== loom training step (loom train --target cuda, fp32, 3 steps)"
    timeout 150 "$LOOM" train models/gpt2.loom -D batch=16 -D seq=1024 --data data/tinyshakespeare.txt --steps 3 \
      --sample 0 --eval-batches 0 --target cuda --stats 2>&1 | grep -E "^step|^stats|error" | tail -6
    echo "== PyTorch (bench/torch_gpt2.py)"
    env -u LD_LIBRARY_PATH timeout 150 python3 bench/torch_gpt2.py "$tmp/g.safetensors" --train 16 1024 --dtype bf16 \
      --steps 5 2>&1 | grep -v Warning | tail -4
    env -u LD_LIBRARY_PATH timeout 60 python3 bench/torch_gpt2.py "$tmp/g.safetensors" --train 16 1024 --dtype fp32 \
      --steps 3 --no-compile 2>&1 | grep -v Warning | tail -2
    echo "== OpenCL / CUDA forward (bench/opencl_gpt2.py)"
    P=$("$LOOM" devices | grep -m1 "platform 'NVIDIA" | sed 's/^\(opencl:[0-9]*\).*/\1/')
    [ -n "$P" ] && timeout 90 python3 bench/opencl_gpt2.py "$LOOM" --batch 16 --seq 1024 --runs 3 --targets "cuda,$P" 2>&1 | tail -3
  } 2>&1 | tee "$BENCH"
  rm -rf "$tmp"
}
export -f bench
stage bench 420 bash -c bench

{
  echo "device_run: $(($(date +%s) - T0)) s in all; summary:"
  cat "$SUMMARY"
} | tee -a "$LOG"
exit $failed
