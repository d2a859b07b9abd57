#include "pipeline/run_select.h"

#include <algorithm>
#include <charconv>

namespace ctrust {

std::optional<int64_t> run_id_of(const std::string& sel) {
  if (sel.empty() || !std::all_of(sel.begin(), sel.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  int64_t id = 0;
  auto [end, ec] = std::from_chars(sel.data(), sel.data() + sel.size(), id);
  if (ec != std::errc() || end != sel.data() + sel.size()) return std::nullopt;
  return id;
}

std::string run_compute_mode(const nlohmann::json& settings) {
  return settings.is_object() && settings.contains("compute") && settings["compute"].is_string()
             ? settings["compute"].get<std::string>()
             : std::string("f32");
}

}  // namespace ctrust
