#!/usr/bin/env bash
# device_run.sh — the whole CUDA check in one call on a GPU machine (the `device` tool's
# machine; it has the driver, CUDA 13 libraries and PyTorch, but no LLVM or OpenBLAS).
# Here, first:   tools/devpack.sh BUILD/loom BUILD/bench_cuda BUILD/test_cuda_ops BUILD/test_cuda_driver
# Then there (carry .devpack):   bash tests/gpu/device_run.sh
# Runs: the device listing, the driver test, the op suite vs the interpreter, the models vs
# --target cpu, and GPT-2 small forward timings (batch 1 and 16, seq 1024) next to PyTorch's
# fp32 forward, with loom's logits checked against PyTorch's. Logs go to $OUT (or /tmp).
source .devpack/unpack.sh
B=.devpack/bin
LOG=${OUT:-/tmp}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ -z "${LOOM_LIBCUBLASLT:-}" ]; then
  d=$(env -u LD_LIBRARY_PATH python3 -c "import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], 'lib'))" 2>/dev/null)
  export LOOM_LIBCUBLASLT=$(ls "$d"/libcublasLt.so.* /usr/local/cuda/lib64/libcublasLt.so.* 2>/dev/null | head -1)
fi
echo "cuBLASLt: $LOOM_LIBCUBLASLT"
$B/loom devices
echo "== test_cuda_driver"; timeout 60 $B/test_cuda_driver 2>&1 | tail -4
echo "== test_cuda_ops"; timeout 200 $B/test_cuda_ops > "$LOG/ops.log" 2>&1; echo "rc=$?"
tail -2 "$LOG/ops.log"; grep -E "FAIL|error" "$LOG/ops.log" | head -20
echo "== test_cuda_models"; timeout 200 python3 tests/gpu/test_cuda_models.py $B/loom > "$LOG/models.log" 2>&1; echo "rc=$?"
grep -vE "^    cpu:" "$LOG/models.log" | tail -40
echo "== GPT-2 small"; $B/loom init models/gpt2.loom --seed 1 -o /tmp/g.safetensors > /dev/null
for b in 1 16; do timeout 150 $B/bench_cuda models/gpt2.loom /tmp/g.safetensors -D batch=$b -D seq=1024 --runs 10 2>&1 | tail -3; done
env -u LD_LIBRARY_PATH python3 -c "
import torch; from safetensors.torch import save_file
torch.manual_seed(0); save_file({'tokens': torch.randint(0, 50257, (2, 128), dtype=torch.int32)}, '/tmp/tok.safetensors')"
$B/loom run models/gpt2.loom -D batch=2 -D seq=128 --weights /tmp/g.safetensors --inputs /tmp/tok.safetensors \
  --outputs /tmp/lo.safetensors --target cuda --stats 2>&1 | tail -4
env -u LD_LIBRARY_PATH timeout 150 python3 bench/torch_gpt2.py /tmp/g.safetensors --shapes 1x1024 16x1024 \
  --compare-logits /tmp/lo.safetensors --tokens /tmp/tok.safetensors 2>&1 | tail -5
