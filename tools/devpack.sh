#!/usr/bin/env bash
# devpack.sh — packs programs built here, with the shared libraries they need beyond the C/C++
# runtime (LLVM, OpenBLAS, CLBlast, the OpenCL ICD loader, cJSON, OpenMPI, ...), into .devpack/
# (in .gitignore) so they run on a machine that has none of them (the lent GPU machine: no LLVM,
# no compiler, no package registry). There: `source .devpack/unpack.sh`, then run
# $LOOM_DEVPACK_BIN/NAME. Programs and libraries are one xz archive (-9: its 64 MiB window
# holds both tiny executables, which share their statically linked code): about 51 MB, so the
# pack and the working tree (~7 MB) fit the device tool's 64 MiB; the size is printed.
#
#   tools/devpack.sh BUILD      everything tests/gpu/device_run.sh runs: builds (in BUILD, a
#                               configured build folder) loom, test_cuda_driver, test_cuda_ops,
#                               test_nccl, test_opencl_ops and bench_cuda, and builds here with
#                               `loom build` the tiny GPT-2 executables of tests/gpu/test_cuda_jobs.py
#                               for cuda and opencl (tiny_gpt2_cuda, tiny_gpt2_opencl: the GPU
#                               machine cannot link them); then carry [".devpack"] and run
#                               `bash tests/gpu/device_run.sh` there
#   tools/devpack.sh PROG...    just these programs
#
# The CUDA driver, cuBLASLt and NCCL are not packed: loom opens them with dlopen, and the GPU
# machine has them (device_run.sh finds cuBLASLt and NCCL in PyTorch's wheels).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=$here/.devpack stage=/tmp/devpack-stage
bin=$stage/devpack/bin lib=$stage/devpack/lib
progs=("$@")
[ ${#progs[@]} -gt 0 ] || { echo "usage: tools/devpack.sh BUILD | PROG..." >&2; exit 2; }
rm -rf "$out" "$stage" && mkdir -p "$out" "$bin" "$lib"
if [ ${#progs[@]} -eq 1 ] && [ -d "${progs[0]}" ]; then
  build=$(cd "${progs[0]}" && pwd)
  [ -f "$build/CMakeCache.txt" ] || { echo "devpack: $build is not a configured build folder" >&2; exit 2; }
  targets=(loom test_cuda_driver test_cuda_ops test_nccl test_opencl_ops bench_cuda)
  cmake --build "$build" --target "${targets[@]}" -j2 >/dev/null
  progs=()
  for t in "${targets[@]}"; do progs+=("$build/$t"); done
  for target in cuda opencl; do
    python3 "$here/tests/gpu/test_cuda_jobs.py" "$build/loom" --build-exe "$bin/tiny_gpt2_$target" "$target"
    progs+=("$bin/tiny_gpt2_$target")
  done
fi
for prog in "${progs[@]}"; do
  [ -x "$prog" ] || { echo "devpack: $prog is not a program" >&2; exit 2; }
  [ "$(dirname "$(readlink -f "$prog")")" = "$bin" ] || cp "$prog" "$bin/"
  ldd "$prog" | awk '$3 ~ /^\// {print $3}' | grep -v -E '/(libc|libm|libgcc_s|libstdc\+\+|libpthread|libdl|librt)\.so' |
    while read -r l; do cp -Ln "$l" "$lib/" 2>/dev/null || true; done
done
ls "$bin"
tar -C "$stage" -cf - devpack | xz -T0 -9 >"$out/pack.tar.xz"
rm -rf "$stage"
cat >"$out/unpack.sh" <<'SH'
# sourced: unpacks programs and libraries once (a stamp per pack) under /tmp/devpack, puts the
# libraries on LD_LIBRARY_PATH and names the programs' folder LOOM_DEVPACK_BIN
d=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stamp=$(cksum <"$d/pack.tar.xz" | cut -d' ' -f1)
if [ "$(cat /tmp/devpack/stamp 2>/dev/null)" != "$stamp" ]; then
  rm -rf /tmp/devpack && mkdir -p /tmp && tar -C /tmp -xJf "$d/pack.tar.xz" && echo "$stamp" >/tmp/devpack/stamp
fi
export LD_LIBRARY_PATH=/tmp/devpack/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} LOOM_DEVPACK_BIN=/tmp/devpack/bin
SH
pack=$(du -m "$out/pack.tar.xz" | cut -f1) tree=$(git -C "$here" ls-files -z | (cd "$here" && xargs -0 du -cm 2>/dev/null) | tail -1 | cut -f1)
echo "devpack: $out/pack.tar.xz ${pack} MiB + the working tree ~${tree} MiB (the device tool carries 64 MiB)"
[ $((pack + tree)) -le 64 ] || echo "devpack: WARNING: more than 64 MiB would travel" >&2
