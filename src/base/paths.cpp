#include "base/paths.h"

#include <cstdlib>

namespace ctrust {
std::string source_dir() {
  const char* e = std::getenv("CTRUST_SOURCE_DIR");
  return e ? e : CTRUST_SOURCE_DIR;
}
}  // namespace ctrust
