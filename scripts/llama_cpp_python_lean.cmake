# Included by llama.cpp's project() call when scripts/setup.sh builds llama-cpp-python (the test server of the remote
# backend): CMAKE_ARGS="-DCMAKE_PROJECT_llama.cpp_INCLUDE_BEFORE=<this file>". llama-cpp-python's CMakeLists.txt
# forces LLAMA_BUILD_COMMON ON, so llama.cpp's `common` library and cpp-httplib (57 of the 140 build steps without
# mtmd) are compiled although the Python package never loads them (it loads libllama, libggml*, and libmtmd only for
# multimodal chat, which -DLLAVA_BUILD=OFF leaves out). Turning it off again here, before llama.cpp reads it, leaves
# 83 steps; the libraries the server loads are built exactly as before. docs/remote.md, "Set-up cost of the test
# server", has the measurements.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama.cpp common library (not used by llama-cpp-python)" FORCE)
# CPU features (no AMX on an AMX CPU: the reason is in that file).
include("${CMAKE_CURRENT_LIST_DIR}/llama_cpp_cpu.cmake")
