#!/usr/bin/env bash
# Compiles every CUDA kernel source embedded in native/cuda/kernels/*.cc (the R"CUDA( ... )CUDA" strings, each
# after device_common.h's, exactly as the addon hands them to NVRTC) with nvcc for sm_90, so a syntax or type
# error shows up on a machine without a GPU. Skips, successfully, where nvcc is not installed.
# Usage: native/cuda/kernels/check-sources.sh [arch, default sm_90]
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
arch=${1:-sm_90}
nvcc=${NVCC:-$(command -v nvcc || true)}
if [[ -z "$nvcc" ]]; then
  echo "check-sources: nvcc not found, nothing checked"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The lines strictly between a line ending in R"CUDA( and the next line starting with )CUDA".
extract() { awk '/^\)CUDA"/ { inside = 0 } inside { print } /R"CUDA\($/ { inside = 1 }' "$1"; }

# device_common.h's source as the addon builds it: part of it is a macro's expansion (common/half_bits.h)
printf '#include <cstdio>\n#include "cuda/kernels/device_common.h"\nint main() { std::fputs(ft::cuda::kernels::kDeviceCommon, stdout); }\n' \
  > "$tmp/print_common.cc"
"${CXX:-g++}" -std=c++17 -I"$dir/../.." -o "$tmp/print_common" "$tmp/print_common.cc"
"$tmp/print_common" > "$tmp/common.cu"
failed=0
checked=0
for cc in "$dir"/*.cc; do
  name=$(basename "$cc" .cc)
  body=$(extract "$cc")
  [[ -z "$body" ]] && continue
  { cat "$tmp/common.cu"; printf '%s\n' "$body"; } > "$tmp/$name.cu"
  if "$nvcc" -arch="$arch" -std=c++17 --cubin -Werror all-warnings -o "$tmp/$name.cubin" "$tmp/$name.cu"; then
    kernels=$(grep -oE 'extern "C" __global__ (__launch_bounds__\([^)]*\) )?void [a-z_0-9]+' "$tmp/$name.cu" |
      awk '{print $NF}' | tr '\n' ' ')
    echo "ok   $name: $kernels"
    checked=$((checked + 1))
  else
    cp "$tmp/$name.cu" "${TMPDIR:-/tmp}/check-sources-$name.cu"
    echo "FAIL $name (the compiled source: ${TMPDIR:-/tmp}/check-sources-$name.cu)"
    failed=1
  fi
done
echo "check-sources: $checked module(s) compiled for $arch"
exit $failed
