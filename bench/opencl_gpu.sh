#!/usr/bin/env bash
# opencl_gpu.sh — the OpenCL suite and GPT-2 small benchmark on the lent GPU machine.
#   here:  bench/opencl_gpu.sh pack BUILD   packs BUILD/loom, test_opencl_ops, test_opencl and
#          their shared libraries (LLVM, OpenBLAS, CLBlast, cJSON, MPI, the ICD loader) into
#          .devpack-ocl/ (in .gitignore; tools/devpack.sh's logic, another folder so that it does
#          not clash with the CUDA pack); then device run with carry [".devpack-ocl"] and the
#          command `bash bench/opencl_gpu.sh run`.
#   there: lists the ICDs (an nvidia.icd is added under OCL_ICD_VENDORS when the driver's
#          libnvidia-opencl.so.1 is installed but not registered), picks the NVIDIA platform,
#          runs the op suite, the tiny models (and forward+backward) and the benchmark at
#          batch 16, seq 1024 next to the CUDA backend. Files land in $OUT.
set -uo pipefail
case "${1:-}" in
pack)
  build=${2:?usage: opencl_gpu.sh pack BUILD}
  out=.devpack-ocl lib=/tmp/devpack-ocl-lib
  rm -rf "$out" "$lib" && mkdir -p "$out/bin" "$lib"
  for prog in "$build/loom" "$build/test_opencl_ops" "$build/test_opencl"; do
    cp "$prog" "$out/bin/"
    ldd "$prog" | awk '$3 ~ /^\// {print $3}' | grep -v -E '/(libc|libm|libgcc_s|libstdc\+\+|libpthread|libdl|librt)\.so' |
      while read -r l; do cp -Ln "$l" "$lib/" 2>/dev/null || true; done
  done
  tar -C /tmp -cf - devpack-ocl-lib | xz -T0 -3 > "$out/lib.tar.xz"
  du -sh "$out"
  ;;
run)
  mkdir -p /tmp/devpack-ocl && tar -C /tmp/devpack-ocl -xJf .devpack-ocl/lib.tar.xz
  export LD_LIBRARY_PATH=/tmp/devpack-ocl/devpack-ocl-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  B=.devpack-ocl/bin OUT=${OUT:-/tmp/ocl-out}
  mkdir -p "$OUT"
  echo "== vendors"; ls -la /etc/OpenCL/vendors; cat /etc/OpenCL/vendors/*.icd; nvidia-smi -L
  if ! grep -qs nvidia /etc/OpenCL/vendors/*.icd && ldconfig -p | grep -q libnvidia-opencl.so.1; then
    mkdir -p /tmp/icd && cp /etc/OpenCL/vendors/*.icd /tmp/icd/ 2>/dev/null
    echo libnvidia-opencl.so.1 > /tmp/icd/nvidia.icd && export OCL_ICD_VENDORS=/tmp/icd
    echo "added /tmp/icd/nvidia.icd"
  fi
  echo "== devices"; $B/loom devices | tee "$OUT/devices.txt"
  P=$($B/loom devices | grep -m1 "platform 'NVIDIA" | sed 's/^\(opencl:[0-9]*\).*/\1/')
  echo "target=$P"; [ -n "$P" ] || exit 3
  export PYTHONUNBUFFERED=1 LOOM_TEST_OPENCL_TARGET=$P
  echo "== ops"; timeout 60 $B/test_opencl_ops "$P" > "$OUT/ops.txt" 2>&1; echo "ops rc=$?"
  grep -E "FAIL|cases|device" "$OUT/ops.txt"
  echo "== models"; timeout 90 python3 tests/opencl/test_opencl_models.py $B/loom "$P" > "$OUT/models.txt" 2>&1
  echo "models rc=$?"; grep -v "grad/" "$OUT/models.txt" | tail -22
  echo "== bench"; timeout 120 python3 bench/opencl_gpt2.py $B/loom --batch 16 --seq 1024 --runs 5 --targets "$P,cuda" 2>&1 |
    tee "$OUT/bench.txt"
  ;;
*) echo "usage: opencl_gpu.sh pack BUILD | run" >&2; exit 2 ;;
esac
