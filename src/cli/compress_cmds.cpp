// ctrust compress
#include <cctype>
#include <chrono>
#include <filesystem>
#include <set>
#include <unistd.h>

#include <fmt/ranges.h>

#include "base/error.h"
#include "base/file.h"
#include "cli/common.h"
#include "report/compress_report.h"
#include "trust/chat.h"

namespace ctrust::cli {
namespace {

using json = nlohmann::json;

struct CompressArgs {
  std::string model, tokenizer, out, method, nm, calib, grid, calib_chat, awq_loss, awq_feed, types_from, imatrix,
      legacy_fit;
  std::vector<std::string> tensor_type;
  Recipe r;
  bool sym = false, asym = false, calib_raw = false;
};

// --tensor-type RE=TYPE rules, then --types-from FILE: every 2-D tensor of FILE stored in a quantized type gets
// that type (exact name); tensors FILE keeps in F32/F16/BF16 are left alone ("none").
void add_type_rules(CompressArgs& a) {
  for (const std::string& tt : a.tensor_type) {
    const size_t eq = tt.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == tt.size())
      fail("--tensor-type '{}': expected REGEX=TYPE such as 'attn_v=q6_k'", tt);
    a.r.tensor_types.emplace_back(tt.substr(0, eq), tt.substr(eq + 1));
  }
  if (!a.types_from.empty()) add_types_from(a.r, a.types_from);
}

void cmd_compress(CompressArgs& a, const Common& c) {
  Recipe& r = a.r;
  add_type_rules(a);
  if (!a.legacy_fit.empty()) {
    if (a.legacy_fit != "ggml" && a.legacy_fit != "gptq") fail("--legacy-fit '{}': expected ggml or gptq", a.legacy_fit);
    r.legacy_ggml_fit = a.legacy_fit == "ggml";
  }
  if (!a.imatrix.empty()) {
    r.imatrix_file = a.imatrix;
    r.imatrix_hash = file_hash(a.imatrix);
  }
  r.method = method_from_name(a.method);
  if (a.sym && a.asym) fail("--sym and --asym exclude each other");
  if (a.sym) r.sym = true;
  if (a.asym) r.sym = false;
  if (!a.grid.empty()) r.minmax = grid_from_name(a.grid);
  if (!a.awq_loss.empty()) r.awq_attn_loss = awq_qkv_loss_from_name(a.awq_loss);
  if (!a.awq_feed.empty()) r.awq_fp_feed = awq_feed_from_name(a.awq_feed);
  if (!a.nm.empty()) {
    int n = 0, m = 0;
    char tail = 0;
    if (std::sscanf(a.nm.c_str(), "%d:%d%c", &n, &m, &tail) != 2 || n < 1 || m < 1)
      fail("--nm '{}': expected N:M such as 2:4", a.nm);
    r.prune_n = n;
    r.prune_m = m;
  }
  if (method_needs_calibration(r.method)) r.calib_file = a.calib.empty() ? default_calibration_file() : a.calib;
  r.calib_clean = !a.calib_raw;
  if (!a.calib_chat.empty() && a.calib_chat != "auto") chat_template_by_name(a.calib_chat);  // unknown: error now
  validate_recipe(r);  // every option problem is reported before the model is even loaded
  check_output_path(a.out);  // an unwritable -o fails now, not after the whole compression

  // Progress on stderr: redrawn on a terminal, a plain line every 10 s otherwise (also with --json: stdout
  // stays clean).
  ProgressLine progress(10);
  const auto t0 = std::chrono::steady_clock::now();
  CompressRunOptions o;
  o.model = a.model;
  o.tokenizer = a.tokenizer;
  o.out = a.out;
  o.calib_chat = a.calib_chat;
  o.imatrix = a.imatrix;
  o.progress = [&](const std::string& msg) {
    progress.show(fmt::format("[{:.0f} s] {}", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), msg));
  };
  const CompressRunResult res = compress_run(r, o);
  progress.finish();
  if (c.json) print_json(compress_report_json(res, a.model, a.out));
  else fmt::print("{}", compress_report_text(res, a.out));
}

}  // namespace

struct ImatrixArgs {
  std::string model, tokenizer, out, calib;
  int n = 32, len = 256;
  uint64_t seed = 0;
  bool calib_raw = false;
};

void cmd_imatrix(const ImatrixArgs& a, const Common& c) {
  check_output_path(a.out);
  ImatrixRunOptions o;
  o.model = a.model;
  o.tokenizer = a.tokenizer;
  o.out = a.out;
  o.calib = a.calib;
  CalibOptions& co = o.calib_opts;
  co.n = a.n;
  co.len = a.len;
  co.seed = a.seed;
  co.clean = !a.calib_raw;
  ProgressLine progress(10);
  o.progress = [&](const std::string& msg) { progress.show(msg); };
  const ImatrixRunResult r = imatrix_run(o);
  progress.finish();
  if (c.json) {
    print_json({{"model", a.model}, {"output", a.out}, {"calib_file", r.calib_file}, {"calib_hash", r.calib_hash},
                {"calib_clean", co.clean}, {"n_samples", co.n}, {"seq_len", co.len}, {"seed", co.seed},
                {"entries", r.entries}, {"seconds", r.seconds}});
    return;
  }
  fmt::print("wrote {} ({} entries, {} x {} calibration tokens of {}) in {:.1f} s\n", a.out, r.entries, co.n,
             co.len, r.calib_file, r.seconds);
}

void register_compress_commands(CLI::App& app) {
  {
    static ImatrixArgs a;
    static Common o;
    auto* c = app.add_subcommand("imatrix",
                                 "Write an importance matrix (llama.cpp's GGUF imatrix format, for llama-quantize "
                                 "--imatrix and ctrust compress --imatrix) from the calibration text");
    c->add_option("-m,--model", a.model, "Model")->required();
    c->add_option("--tokenizer", a.tokenizer, "llama2.c tokenizer .bin");
    c->add_option("-o,--output", a.out, "Output imatrix file (.gguf)")->required();
    c->add_option("--calib", a.calib, "Calibration text (default as compress, cleaned; see --calib-raw)");
    c->add_flag("--calib-raw", a.calib_raw, "Use the calibration text as it is (no WikiText clean-up)");
    c->add_option("--nsamples", a.n, "Calibration sequences");
    c->add_option("--seqlen", a.len, "Tokens per calibration sequence");
    c->add_option("--seed", a.seed, "Calibration sampling seed");
    add_common(c, o);
    c->callback([] { apply_threads(o); cmd_imatrix(a, o); });
  }
  static CompressArgs a;
  static Common o;
  Recipe& r = a.r;
  auto* c = app.add_subcommand("compress", "Quantize or prune a model and write it as GGUF with its recipe");
  c->add_option("-m,--model", a.model, "Model to compress")->required();
  c->add_option("--tokenizer", a.tokenizer, "llama2.c tokenizer .bin");
  c->add_option("-o,--output", a.out, "Output GGUF file")->required();
  c->add_option("--method", a.method, "rtn|gptq|awq|smoothquant|llm_int8 (or int8)|magnitude|sparsegpt|wanda")->required();
  c->add_option("--bits", r.bits, "Bits per weight (2-8)");
  c->add_option("--group-size", r.group, "Input columns per scale (0 = one scale per output channel)");
  c->add_flag("--sym", a.sym, "Symmetric grid");
  c->add_flag("--asym", a.asym, "Asymmetric grid (with a zero point; default)");
  c->add_option("--grid", a.grid,
                "Asymmetric grid: gptq (default: integer zero point, 0 on the grid, as the GPTQ/AWQ reference code) "
                "or minmax (each group's [min, max], as ggml's Q4_1)");
  c->add_option("--awq-qkv-loss", a.awq_loss,
                "AWQ q/k/v scale search: attention (default: the attention module's output, as llm-awq) or qkv "
                "(the q, k, v outputs; ctrust before issue 12)");
  c->add_option("--awq-feed", a.awq_feed,
                "AWQ: feed each block the fp (default, as llm-awq) or the quantized outputs of the block before");
  c->add_option("--sparsity", r.sparsity, "Unstructured target sparsity in [0,1)");
  c->add_option("--nm", a.nm, "Semi-structured N:M pruning, e.g. 2:4");
  c->add_option("--calib", a.calib,
                "Calibration text (default ../shared/data/wikitext-2-tokens/wiki.valid.tokens; sentences with <unk> "
                "dropped and @-@ @,@ @.@ undone, see --calib-raw)");
  c->add_flag("--calib-raw", a.calib_raw, "Use the calibration text as it is (no WikiText clean-up)");
  c->add_flag("--calib-chat{auto}", a.calib_chat,
              "Calibration samples as chat conversations (paragraphs as alternating user/assistant turns) in the "
              "model's chat template; --calib-chat=NAME picks a template (chatml, llama3, ...)");
  c->add_option("--nsamples", r.n_samples, "Calibration sequences");
  c->add_option("--seqlen", r.seq_len, "Tokens per calibration sequence");
  c->add_option("--seed", r.seed, "Calibration sampling seed");
  c->add_option("--damp", r.damp, "GPTQ/SparseGPT dampening, fraction of the mean Hessian diagonal");
  c->add_flag("--act-order", r.act_order, "GPTQ: quantize columns by descending Hessian diagonal");
  c->add_flag("--static-groups", r.static_groups, "GPTQ: group scales from the original weights");
  c->add_option("--alpha", r.alpha, "SmoothQuant migration strength");
  c->add_option("--threshold", r.threshold, "LLM.int8() outlier threshold");
  c->add_option("--type", r.type,
                "Output type of every selected tensor (rtn/gptq/awq): q2_k|q3_k|q4_k|q5_k|q6_k (llama.cpp K-quant "
                "super-blocks, the quantizer works in that grid) or q4_0|q4_1|q5_0|q5_1|q8_0 (sets bits/sym/group 32)");
  c->add_option("--tensor-type", a.tensor_type,
                "REGEX=TYPE: output type of the tensors the regex matches (first match wins; TYPE none = leave alone; "
                "a rule naming token_embd/output selects it, stored with ggml's own quantizer); repeatable");
  c->add_option("--types-from", a.types_from,
                "GGUF file (e.g. llama-quantize's Q4_K_M output): store every tensor in the type it has there");
  c->add_option("--imatrix", a.imatrix,
                "imatrix file (llama.cpp GGUF format, `ctrust imatrix`): weight the K-quant fits as llama-quantize "
                "--imatrix does");
  c->add_option("--legacy-fit", a.legacy_fit,
                "Output types q4_0/q5_0/q8_0: gptq (default: the GPTQ reference grid) or ggml (the scale ggml's own "
                "quantizer picks, imatrix-weighted with --imatrix; the quantizer rounds on it)");
  c->add_option("--skip", r.skip, "Regex of tensor names to leave alone");
  c->add_option("--only", r.only, "Regex of tensor names to compress (others left alone)");
  add_common(c, o);
  c->callback([] { apply_threads(o); cmd_compress(a, o); });
}

}  // namespace ctrust::cli
