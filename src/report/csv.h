// CSV output of the report tables: a field quoted (RFC 4180) when it holds a comma, a quote or a line break.
#pragma once
#include <string>

namespace ctrust {

inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char ch : s) o += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return o + "\"";
}

}  // namespace ctrust
