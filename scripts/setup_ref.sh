#!/usr/bin/env bash
# Installs the independent references used only to regenerate the golden files in tests/golden/ and to run
# the llama.cpp side of the benchmarks (scripts/ref/*.py). CI and the tests do not need them.
# llama-cpp-python is built from source by pip (about 10 minutes on 2 cores).
set -euo pipefail
py=${PYTHON:-python3}
# Toxicity classifiers' oracle (scripts/ref/toxicity_ref.py oracle): the original alt-profanity-check package
# (its pinned dependency list is older than this Python; scikit-learn and joblib are what it needs).
if ! "$py" -c 'import profanity_check, sklearn, numpy' 2>/dev/null; then
  "$py" -m pip install --quiet scikit-learn joblib numpy
  "$py" -m pip install --quiet --no-deps "alt-profanity-check==1.9.1"
fi
# scripts/ref/dt_oracle_b.py runs DecodingTrust's own scoring code, which needs pandas and joblib.
if ! "$py" -c 'import pandas, joblib' 2>/dev/null; then
  echo "[setup_ref] pip install pandas joblib (DecodingTrust's scoring code)"
  "$py" -m pip install --quiet pandas joblib
fi
# DecodingTrust's scoring code (scripts/ref/dt_oracle.py) needs numpy, pandas and fairlearn.
if ! "$py" -c 'import numpy, pandas, fairlearn' 2>/dev/null; then
  echo "[setup_ref] pip install numpy pandas fairlearn (DecodingTrust oracle)"
  "$py" -m pip install --quiet numpy pandas "fairlearn==0.15.0"
fi
if "$py" -c 'import llama_cpp, gguf, numpy' 2>/dev/null; then
  echo "[setup_ref] llama-cpp-python, gguf and numpy are installed"
else
  echo "[setup_ref] pip install llama-cpp-python==0.3.36 gguf==0.19.0 numpy (builds llama.cpp from source)"
  # (no AMX on an AMX CPU: scripts/llama_cpp_cpu.cmake)
  CMAKE_ARGS="-DCMAKE_PROJECT_llama.cpp_INCLUDE_BEFORE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/llama_cpp_cpu.cmake ${CMAKE_ARGS:-}" \
    "$py" -m pip install --quiet "llama-cpp-python==0.3.36" "gguf==0.19.0" numpy
fi
# llama.cpp's own tools (llama-bench, llama-batched-bench, llama-perplexity, llama-quantize, llama-imatrix) from
# the same llama.cpp, for bench/vs_llamacpp.sh and bench/scale_projection.sh (idempotent; ~30 min on 2 cores the
# first time). CTRUST_SKIP_LLAMACPP_TOOLS=1 skips it.
if [[ "${CTRUST_SKIP_LLAMACPP_TOOLS:-0}" != 1 ]]; then
  LLAMA_CPP_PYTHON_VERSION=0.3.36 PYTHON="$py" bash "$(dirname "${BASH_SOURCE[0]}")/build_llamacpp.sh"
fi
