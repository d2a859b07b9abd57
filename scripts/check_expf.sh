#!/usr/bin/env bash
# The vector expf (src/ops/vexp.cpp) against the C library's expf for every one of the 2^32 floats, with each ISA
# this CPU runs (AVX2, AVX-512): bit-identical or exit status 1. About a minute per ISA on one core; the result is
# recorded in docs/correctness.md ("The vector expf"). Usage: bash scripts/check_expf.sh [BUILD_DIR=build]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
ninja -C "$build" check_expf_all >/dev/null
echo "glibc $(ldd --version | head -1 | awk '{print $NF}'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
time "$build/check_expf_all" avx2,avx512
