// A model's configuration as JSON: the "config" of `ctrust info --json` and Model.config of the Python module.
#pragma once
#include <nlohmann/json.hpp>

#include "io/model_file.h"

namespace ctrust {
nlohmann::json model_config_json(const ModelConfig& g);
}  // namespace ctrust
