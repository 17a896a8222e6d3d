#!/usr/bin/env bash
# Packs programs built here, with the shared libraries they need beyond the C/C++ runtime
# (LLVM, OpenBLAS, cJSON, OpenMPI, ...), into .devpack/ so they can run on a machine that
# has none of them installed (the lent GPU machine: carry `.devpack`, then on that machine
# `source .devpack/unpack.sh` and run .devpack/bin/NAME).
#   tools/devpack.sh build/loom build/test_cuda_driver ...
set -euo pipefail
out=.devpack
rm -rf "$out" && mkdir -p "$out/bin" /tmp/devpack-lib
rm -rf /tmp/devpack-lib/*
for prog in "$@"; do
  cp "$prog" "$out/bin/"
  ldd "$prog" | awk '$3 ~ /^\// {print $3}' | grep -v -E '/(libc|libm|libgcc_s|libstdc\+\+|libpthread|libdl|librt)\.so' |
    while read -r lib; do cp -Ln "$lib" /tmp/devpack-lib/ 2>/dev/null || true; done
done
tar -C /tmp -cf - devpack-lib | xz -T0 -3 > "$out/lib.tar.xz"
cat > "$out/unpack.sh" <<'SH'
d=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p /tmp/devpack && tar -C /tmp/devpack -xJf "$d/lib.tar.xz"
export LD_LIBRARY_PATH=/tmp/devpack/devpack-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
SH
grep -qx '/.devpack/' .git/info/exclude 2>/dev/null || echo '/.devpack/' >> .git/info/exclude
du -sh "$out"
