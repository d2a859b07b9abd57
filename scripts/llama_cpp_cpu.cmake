# Included before llama.cpp's project() (CMAKE_PROJECT_llama.cpp_INCLUDE_BEFORE) by every llama.cpp build of ctrust:
# scripts/build_llamacpp.sh (the reference tools), scripts/setup.sh (llama-cpp-python's server, through
# llama_cpp_python_lean.cmake) and scripts/setup_ref.sh (the Python reference).
# llama.cpp builds with -march=native (GGML_NATIVE). On a CPU with AMX that also compiles ggml's AMX matrix path,
# and on the KVM guest of 2026-12-03 (Intel Xeon, family 6 model 167) that path crashed every run that multiplies a
# batch of rows by a quantized weight (SIGSEGV in ggml_backend_amx_mul_mat: llama-perplexity -b 128 on SmolLM2
# Q4_1 and on a Q4_K file). So on a CPU with AMX the CPU's other features are named one by one and AMX is left out
# (environment LLAMACPP_AMX=1 keeps -march=native). Elsewhere nothing changes.
if(NOT "$ENV{LLAMACPP_AMX}" STREQUAL "1" AND EXISTS "/proc/cpuinfo")
  file(READ "/proc/cpuinfo" _ctrust_cpuinfo)
  if(_ctrust_cpuinfo MATCHES "[ \t]amx_int8[ \n]")
    set(GGML_NATIVE OFF CACHE BOOL "ctrust: no -march=native on an AMX CPU" FORCE)
    foreach(_pair SSE42:sse4_2 AVX:avx AVX2:avx2 FMA:fma F16C:f16c BMI2:bmi2 AVX_VNNI:avx_vnni AVX512:avx512bw
                  AVX512_VBMI:avx512vbmi AVX512_VNNI:avx512_vnni AVX512_BF16:avx512_bf16)
      string(REPLACE ":" ";" _kv "${_pair}")
      list(GET _kv 0 _opt)
      list(GET _kv 1 _flag)
      if(_ctrust_cpuinfo MATCHES "[ \t]${_flag}[ \n]")
        set(GGML_${_opt} ON CACHE BOOL "ctrust: CPU feature" FORCE)
      else()
        set(GGML_${_opt} OFF CACHE BOOL "ctrust: CPU feature" FORCE)
      endif()
    endforeach()
    foreach(_opt AMX_TILE AMX_INT8 AMX_BF16)
      set(GGML_${_opt} OFF CACHE BOOL "ctrust: ggml's AMX path crashed on this machine" FORCE)
    endforeach()
    message(STATUS "ctrust: this CPU has AMX; llama.cpp is built with its other features and without AMX")
  endif()
endif()
