// Where the project's source tree is (set at build time; CTRUST_SOURCE_DIR in the environment overrides it).
// Only src/base/paths.cpp sees the build-time path, so every other object file is the same in any checkout.
#pragma once
#include <string>

namespace ctrust {
std::string source_dir();  // $CTRUST_SOURCE_DIR, else the folder the project was built from
}
