// "a,b,,c" -> {"a", "b", "c"}: a separated list with its empty items dropped (option values such as --tasks and
// --perspectives, the Python module's "a,b,c" arguments, CTRUST_TASKS's ':'-separated folders).
#pragma once
#include <string>
#include <vector>

namespace ctrust {

inline std::vector<std::string> split_list(const std::string& s, char sep = ',') {
  std::vector<std::string> out;
  size_t p = 0;
  while (p <= s.size()) {
    size_t q = s.find(sep, p);
    if (q == std::string::npos) q = s.size();
    if (q > p) out.push_back(s.substr(p, q - p));
    p = q + 1;
  }
  return out;
}

}  // namespace ctrust
