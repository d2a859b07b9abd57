// The report of `ctrust compress`: per tensor the relative output error (and RTN's on the same inputs), sparsity
// or zeros, stored type; totals and sizes. As JSON (`--json`) and as text. Built from pipeline/compress_run.h.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "pipeline/compress_run.h"

namespace ctrust {

nlohmann::json compress_report_json(const CompressRunResult& r, const std::string& input, const std::string& output);
std::string compress_report_text(const CompressRunResult& r, const std::string& output);
// The --target-bpw part: the unit -> level map, the frontier, sizes and bits per weight, predicted and measured
// calibration KL and flips, the sensitivity table. JSON ("mixed") and text.
nlohmann::json mix_report_json(const MixRunResult& m, const MixOptions& o);
std::string mix_report_text(const MixRunResult& m, const MixOptions& o);
// `ctrust imatrix`: the file written, its entries, the calibration sample.
nlohmann::json imatrix_report_json(const ImatrixRunResult& r, const ImatrixRunOptions& o);
std::string imatrix_report_text(const ImatrixRunResult& r, const ImatrixRunOptions& o);
// `ctrust convert`: input, output, type, seconds; "wrote FILE (TYPE) in S s".
nlohmann::json convert_report_json(const ConvertRunResult& r);
std::string convert_report_text(const ConvertRunResult& r);
nlohmann::json export_hf_report_json(const ExportHfRunResult& r);
std::string export_hf_report_text(const ExportHfRunResult& r);

}  // namespace ctrust
