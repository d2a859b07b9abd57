// What the pipeline reads from a stored run beyond its record (store/store.h holds the records only): a run
// selector that is an id, and the compute mode a run was made in.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace ctrust {

// A run selector that is a run id ("12"): the id; otherwise (a name, or digits too long for an id) nullopt.
std::optional<int64_t> run_id_of(const std::string& selector);

// The compute mode a run was made in: settings "compute" ("native"), absent = "f32" (every run made before the
// native mode existed, and every f32 run since: their settings are unchanged so that they resume).
std::string run_compute_mode(const nlohmann::json& settings);

}  // namespace ctrust
