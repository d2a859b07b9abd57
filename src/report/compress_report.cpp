#include "report/compress_report.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "io/ctrust_types.h"

namespace ctrust {

using json = nlohmann::json;

json compress_report_json(const CompressRunResult& r, const std::string& input, const std::string& output) {
  const CompressReport& rep = r.report;
  const CompressSizes& sz = r.sizes;
  json tensors = json::array();
  for (const TensorReport& t : rep.tensors)
    tensors.push_back({{"name", t.name}, {"out", t.out}, {"in", t.in}, {"error", t.error},
                       {"rel_error", t.rel_error}, {"rtn_error", t.rtn_error}, {"sparsity", t.sparsity},
                       {"awq_alpha", t.awq_alpha}, {"stored", ggml_type_name(t.stored)}});
  return {{"input", input}, {"output", output}, {"recipe", recipe_to_json(rep.recipe)},
          {"seconds", r.seconds}, {"compress_seconds", rep.seconds}, {"tensors", tensors},
          {"sizes", {{"file_bytes", sz.file}, {"input_file_bytes", sz.input_file},
                     {"compressed_tensors_stored_bytes", sz.stored}, {"compressed_tensors_f32_bytes", sz.f32},
                     {"memory_bytes_f32_mode", sz.mem_f32}, {"memory_bytes_native_mode", sz.mem_native}}}};
}

std::string compress_report_text(const CompressRunResult& res, const std::string& output) {
  const CompressReport& rep = res.report;
  const CompressSizes& sz = res.sizes;
  double err = 0, rtn = 0, zeros = 0, total = 0;
  int n_err = 0, n_rtn = 0;
  for (const TensorReport& t : rep.tensors) {
    if (t.rel_error >= 0) { err += t.rel_error; ++n_err; }
    if (t.rtn_error >= 0 && t.error >= 0 && t.rel_error > 0) { rtn += t.rel_error * t.rtn_error / t.error; ++n_rtn; }
    zeros += t.sparsity * double(t.out) * t.in;
    total += double(t.out) * t.in;
  }
  // Pruning methods set weights to zero on purpose (sparsity); quantizers only round some weights to the grid's
  // zero, which is reported as such.
  const bool pruning = method_is_pruning(rep.recipe.method);
  std::string o = fmt::format("{:<36} {:>6} {:>6} {:>12} {:>12} {:>9} {:>6}\n", "tensor", "out", "in", "rel.error",
                              "RTN rel.err", pruning ? "sparsity" : "zeros", "type");
  for (const TensorReport& t : rep.tensors)
    o += fmt::format("{:<36} {:>6} {:>6} {:>12.6f} {:>12} {:>8.2f}% {:>6}\n", t.name, t.out, t.in, t.rel_error,
                     t.rtn_error >= 0 && t.error > 0 ? fmt::format("{:.6f}", t.rel_error * t.rtn_error / t.error) : "-",
                     100 * t.sparsity, ggml_type_name(t.stored));
  o += fmt::format("\n{} tensors compressed with {}", rep.tensors.size(), method_name(rep.recipe.method));
  if (n_err) o += fmt::format("; mean relative output error {:.6f}", err / n_err);
  if (n_rtn) o += fmt::format(" (RTN on the same inputs {:.6f})", rtn / n_rtn);
  if (total > 0 && zeros > 0) {
    if (pruning) o += fmt::format("; sparsity {:.2f}% (weights pruned)", 100 * zeros / total);
    else o += fmt::format("; {:.2f}% of the weights rounded to zero (quantization, not pruning)", 100 * zeros / total);
  }
  constexpr double MB = 1e6;
  o += fmt::format("\nfile {:.1f} MB (input {:.1f} MB); compressed tensors stored in {:.1f} MB ({:.1f} MB as f32); "
                   "weights in memory when loaded: {:.1f} MB (f32 compute mode), {:.1f} MB (native)",
                   sz.file / MB, sz.input_file / MB, sz.stored / MB, sz.f32 / MB, sz.mem_f32 / MB, sz.mem_native / MB);
  o += fmt::format("\nrecipe {}\nwrote {} in {:.1f} s\n", recipe_to_string(rep.recipe), output, res.seconds);
  return o;
}

json mix_report_json(const MixRunResult& m, const MixOptions& o) {
  const MixPlan& p = m.plan;
  const SensitivityTable& t = p.table;
  json map = json::array(), front = json::array();
  for (size_t u = 0; u < t.units.size(); ++u) map.push_back({{"unit", t.units[u]}, {"level", t.levels[p.choice.pick[u]]}});
  for (const MixChoice& f : p.frontier)
    front.push_back({{"bytes", p.fixed.bytes + f.bytes},
                     {"bpw", 8.0 * double(p.fixed.bytes + f.bytes) / double(p.fixed.elements)}, {"predicted", f.cost}});
  return {{"target_bpw", o.target_bpw}, {"objective", o.objective}, {"unit", t.unit}, {"budget_bytes", p.budget},
          {"fixed_bytes", p.fixed.bytes}, {"planned_tensor_bytes", p.total_bytes()},
          {"file_tensor_bytes", m.written.bytes}, {"elements", m.written.elements},
          {"bpw", 8.0 * double(m.written.bytes) / double(m.written.elements)},
          {"predicted_kl", p.predicted_kl}, {"predicted_flips", p.predicted_flips},
          {"measured_calib_kl", m.check.kl}, {"measured_calib_kl_se", m.check.kl_se},
          {"measured_calib_flips", m.check.flips}, {"calib_tokens", m.check.tokens}, {"table_reused", p.table_reused},
          {"map", map}, {"frontier", front}, {"table", t.to_json()}};
}

std::string mix_report_text(const MixRunResult& m, const MixOptions& o) {
  const json mj = mix_report_json(m, o);
  std::string s = fmt::format("mixed precision (objective {}, unit {}):\n", o.objective, m.plan.table.unit);
  const SensitivityTable& t = m.plan.table;
  for (size_t k = 0; k < t.levels.size(); ++k) {  // the units of each level, in the forward pass's order
    std::vector<std::string> units;
    for (size_t u = 0; u < t.units.size(); ++u)
      if (m.plan.choice.pick[u] == int(k)) units.push_back(t.units[u]);
    if (!units.empty())
      s += fmt::format("  {} ({} unit{}): {}\n", t.levels[k], units.size(), units.size() == 1 ? "" : "s",
                       fmt::join(units, " "));
  }
  s += fmt::format("  tensor bytes {} (planned {}, budget {}): {:.4f} bits per weight (target {})\n",
                   mj["file_tensor_bytes"].get<uint64_t>(), mj["planned_tensor_bytes"].get<uint64_t>(), m.plan.budget,
                   mj["bpw"].get<double>(), o.target_bpw);
  s += fmt::format("  calibration KL: predicted (sum of units) {:.5f}, measured {:.5f} +- {:.5f}; flips predicted "
                   "{:.4f}, measured {:.4f} ({} tokens{})\n",
                   m.plan.predicted_kl, m.check.kl, m.check.kl_se, m.plan.predicted_flips, m.check.flips,
                   m.check.tokens, m.plan.table_reused ? ", table reused" : "");
  return s;
}

nlohmann::json imatrix_report_json(const ImatrixRunResult& r, const ImatrixRunOptions& o) {
  const CalibOptions& co = o.calib_opts;
  return {{"model", o.model}, {"output", o.out}, {"calib_file", r.calib_file}, {"calib_hash", r.calib_hash},
          {"calib_clean", co.clean}, {"n_samples", co.n}, {"seq_len", co.len}, {"seed", co.seed},
          {"entries", r.entries}, {"seconds", r.seconds}};
}

std::string imatrix_report_text(const ImatrixRunResult& r, const ImatrixRunOptions& o) {
  return fmt::format("wrote {} ({} entries, {} x {} calibration tokens of {}) in {:.1f} s\n", o.out, r.entries,
                     o.calib_opts.n, o.calib_opts.len, r.calib_file, r.seconds);
}

nlohmann::json convert_report_json(const ConvertRunResult& r) {
  return {{"input", r.input}, {"output", r.output}, {"type", r.type}, {"seconds", r.seconds}};
}

std::string convert_report_text(const ConvertRunResult& r) {
  return fmt::format("wrote {} ({}) in {:.1f} s\n", r.output, r.type, r.seconds);
}

nlohmann::json export_hf_report_json(const ExportHfRunResult& x) {
  nlohmann::json j = x.r.to_json();
  j["input"] = x.input;
  j["seconds"] = x.seconds;
  return j;
}

std::string export_hf_report_text(const ExportHfRunResult& x) {
  const HfExportResult& r = x.r;
  return fmt::format("wrote {} ({} {}, {}-bit, group {}{}{}; {} quantized Linears, {} other tensors, model.safetensors "
                     "{:.1f} MB) in {:.1f} s\nlargest |exported weight - ctrust's weight|: {:.3g}\ntokenizer: {}\n",
                     r.dir, r.hf_class, r.format, r.bits, r.group, r.sym ? ", sym" : "", r.desc_act ? ", desc_act" : "",
                     r.n_quantized, r.n_plain, r.safetensors_bytes / 1e6, x.seconds, r.max_dev, r.tokenizer_note);
}

}  // namespace ctrust
