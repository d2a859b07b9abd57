#!/usr/bin/env bash
# Builds llama.cpp's own command-line tools (llama-bench, llama-batched-bench, llama-perplexity, llama-quantize,
# llama-imatrix) from the llama.cpp sources vendored in the llama-cpp-python source distribution, the same
# version scripts/setup_ref.sh installs, so the Python reference and the C++ tools are one llama.cpp.
# Output: ~/.cache/ctrust/llamacpp/bin/ (static binaries) and ~/.cache/ctrust/llamacpp/VERSION.
# Idempotent: does nothing when every tool is already built. About 15-25 minutes on 2 cores.
# Used by bench/vs_llamacpp.sh and bench/scale_projection.sh; the tests do not need it.
set -euo pipefail
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
root=${CTRUST_LLAMACPP:-$HOME/.cache/ctrust/llamacpp}
jobs=${JOBS:-2}
tools=(llama-bench llama-batched-bench llama-perplexity llama-quantize llama-imatrix)
py=${PYTHON:-python3}

# CPU features: -march=native, except on a CPU with AMX (scripts/llama_cpp_cpu.cmake says why); the choice is
# recorded in VERSION, and tools built with another one are built again.
cpu=native
grep -qw amx_int8 /proc/cpuinfo 2>/dev/null && [[ ${LLAMACPP_AMX:-0} != 1 ]] && cpu=no-amx
missing=0
for t in "${tools[@]}"; do [[ -x "$root/bin/$t" ]] || missing=1; done
# tools built with other CPU flags (e.g. before the AMX rule above) are built again
grep -qxF "cpu: $cpu" "$root/VERSION" 2>/dev/null || missing=1
if [[ $missing == 0 ]]; then
  echo "[build_llamacpp] llama.cpp tools already built in $root/bin ($(head -1 "$root/VERSION" 2>/dev/null))"
  exit 0
fi

mkdir -p "$root/src" "$root/bin"
sdist="$root/src/llama_cpp_python-$version.tar.gz"
if [[ ! -f "$sdist" ]]; then
  echo "[build_llamacpp] pip download llama-cpp-python==$version (source distribution)"
  "$py" -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$root/src"
fi
srcdir="$root/src/llama_cpp_python-$version/vendor/llama.cpp"
if [[ ! -f "$srcdir/CMakeLists.txt" ]]; then
  tar -xzf "$sdist" -C "$root/src"
fi
[[ -f "$srcdir/CMakeLists.txt" ]] || { echo "ctrust: error: no vendor/llama.cpp in $sdist" >&2; exit 1; }

build="$root/build-$version"
echo "[build_llamacpp] configuring $srcdir -> $build (cpu: $cpu)"
# Static libraries so the binaries do not depend on the build folder; no network code (CURL/OpenSSL), no
# server/tests/examples; the CPU features as chosen above.
cmake -S "$srcdir" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON -DGGML_NATIVE=ON \
  "-DCMAKE_PROJECT_llama.cpp_INCLUDE_BEFORE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/llama_cpp_cpu.cmake" >"$build.configure.log" 2>&1 \
  || { tail -20 "$build.configure.log" >&2; echo "ctrust: error: configuring llama.cpp failed (see $build.configure.log)" >&2; exit 1; }
echo "[build_llamacpp] building ${tools[*]} with -j$jobs (progress in $build.log)"
nice -n 10 cmake --build "$build" -j"$jobs" --target "${tools[@]}" >"$build.log" 2>&1 \
  || { tail -20 "$build.log" >&2; echo "ctrust: error: building llama.cpp failed (see $build.log)" >&2; exit 1; }
for t in "${tools[@]}"; do cp "$build/bin/$t" "$root/bin/$t"; done
# The sdist carries no git metadata: record the package version, the llama.cpp commit its CHANGELOG names for
# this version, and ggml's version.
ggml_ver=$(sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)).*/\2/p' "$srcdir/ggml/CMakeLists.txt" | paste -sd.)
commit=$(awk -v v="## [$version]" '$0 == v {on = 1; next} /^## \[/ {on = 0} on && /llama.cpp@/ {
  sub(/.*llama.cpp@/, ""); print; exit }' "$root/src/llama_cpp_python-$version/CHANGELOG.md" 2>/dev/null || true)
{
  echo "llama.cpp ${commit:-(commit unknown)} vendored in llama-cpp-python $version (ggml $ggml_ver)"
  echo "built $(date -u +%Y-%m-%dT%H:%MZ) with $(cmake --version | head -1), $(${CXX:-c++} --version | head -1)"
  echo "cpu: $cpu"
} >"$root/VERSION"
echo "[build_llamacpp] done: $root/bin ($(head -1 "$root/VERSION"))"
