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
      legacy_fit, recipe, sparsity;
  std::vector<std::string> tensor_type;
  Recipe r;
  MixOptions mix;
  std::string mix_levels;
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

// --recipe FILE: the file is the whole recipe; only the options that say where things are (model, output,
// tokenizer, calibration file, threads, --json) may be given beside it.
void load_recipe_file(CompressArgs& a, const CLI::App& app) {
  static const char* kWith[] = {"--model", "--output", "--tokenizer", "--recipe", "--calib", "--threads", "--json",
                                "--help"};
  for (const CLI::Option* o : app.get_options()) {
    if (o->count() == 0) continue;
    bool ok = false;
    for (const char* w : kWith) ok = ok || o->check_lname(std::string(w).substr(2));
    if (!ok)
      fail("--recipe {}: option {} cannot be combined with a recipe file (put it in the file)", a.recipe,
           o->get_name());
  }
  const std::string calib = a.calib;
  a.r = recipe_from_file(a.recipe);
  a.method = method_name(a.r.method);
  a.calib = calib.empty() ? a.r.calib_file : calib;
  a.calib_raw = !a.r.calib_clean;
  a.calib_chat = a.r.calib_chat;
  a.r.calib_hash.clear();
  a.r.ctrust_version = CTRUST_VERSION;
  if (!a.r.imatrix_file.empty()) a.imatrix = a.r.imatrix_file;
}

void cmd_compress(CompressArgs& a, const Common& c, const CLI::App& app) {
  Recipe& r = a.r;
  if (!a.recipe.empty()) {
    load_recipe_file(a, app);
  } else {
    if (a.method.empty()) fail("compress: --method (or --recipe FILE) is required");
    r.method = method_from_name(a.method);
    if (!a.sparsity.empty()) set_sparsity(r, a.sparsity);
    // --bits on a pruning method: quantize the kept weights (SparseGPT's joint mode; RTN after magnitude/Wanda).
    if (method_is_pruning(r.method) && app.get_option("--bits")->count() > 0) r.prune_quant = true;
  }
  add_type_rules(a);
  const bool mixed = a.mix.target_bpw != 0;
  if (mixed) {
    if (!a.mix_levels.empty()) a.mix.levels = split_list(a.mix_levels);
    // Tensors outside the blocks: Q8_0 unless a rule says otherwise (rules are tried in order).
    r.tensor_types.emplace_back("^token_embd\\.weight$", "q8_0");
    r.tensor_types.emplace_back("^output\\.weight$", "q8_0");
  }
  if (!a.legacy_fit.empty()) {
    if (a.legacy_fit != "ggml" && a.legacy_fit != "gptq") fail("--legacy-fit '{}': expected ggml or gptq", a.legacy_fit);
    r.legacy_ggml_fit = a.legacy_fit == "ggml";
  }
  if (!a.imatrix.empty()) {
    r.imatrix_file = a.imatrix;
    r.imatrix_hash = file_hash(a.imatrix);
  }
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
  if (recipe_needs_calibration(r)) r.calib_file = a.calib.empty() ? default_calibration_file() : a.calib;
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
  // Ctrl-C (also when started in the background, where the shell set SIGINT to ignored) stops at the next tensor or
  // block: nothing has been written then, and the same command compresses from the start.
  catch_interrupt("\nctrust: stopping after the current tensor (Ctrl-C again stops at once)\n");
  const auto stop_if_interrupted = [&] {
    if (interrupted())
      throw Interrupted(fmt::format("interrupted: nothing was written to {}; the same command starts again", a.out));
  };
  o.progress = [&](const std::string& msg) {
    stop_if_interrupted();
    progress.show(fmt::format("[{:.0f} s] {}", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), msg));
  };
  if (mixed) {
    o.mix = a.mix;
    o.mix.seed = r.seed;
    o.mix.calib_file = a.calib;
    o.mix.calib_clean = r.calib_clean;
    o.mix.progress = [&](int done, int total) {
      stop_if_interrupted();
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      progress.show(fmt::format("sensitivity {}/{} (unit x level), {:.2f}/s, ETA {:.0f} s", done, total, done / el,
                                el / done * (total - done)));
    };
  }
  const CompressRunResult res = compress_run(r, o);
  progress.finish();
  if (c.json) {
    json j = compress_report_json(res, a.model, a.out);
    j["mixed"] = mixed ? mix_report_json(res.mix, a.mix) : json();
    print_json(j);
    return;
  }
  fmt::print("{}", compress_report_text(res, a.out));
  if (mixed) fmt::print("{}", mix_report_text(res.mix, a.mix));
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
  if (c.json) print_json(imatrix_report_json(r, o));
  else fmt::print("{}", imatrix_report_text(r, o));
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
  c->add_option("--method", a.method, "rtn|gptq|awq|smoothquant|llm_int8 (or int8)|magnitude|sparsegpt|wanda");
  c->add_option("--recipe", a.recipe,
                "Recipe file (JSON: the keys of a written recipe, plus per-tensor \"rules\"; docs/compression.md, "
                "\"Recipe files\"); replaces --method and the other recipe options");
  c->add_option("--bits", r.bits,
                "Bits per weight (2-8); with a pruning method: also quantize the kept weights (SparseGPT: jointly)");
  c->add_option("--group-size", r.group, "Input columns per scale (0 = one scale per output channel)");
  c->add_flag("--sym", a.sym, "Symmetric grid");
  c->add_flag("--asym", a.asym, "Asymmetric grid (with a zero point; default)");
  c->add_option("--grid", a.grid,
                "Asymmetric grid: gptq (default: integer zero point, 0 on the grid, as the GPTQ/AWQ reference code) "
                "or minmax (each group's [min, max], as ggml's Q4_1)");
  c->add_flag("--zero-point", r.zero_point,
              "Asymmetric fp16 grids as (q - z) * scale with an integer zero point (the form GPTQ/AWQ checkpoints "
              "store, so export-hf reproduces the weights exactly) instead of ggml's affine q * d + m");
  c->add_option("--awq-qkv-loss", a.awq_loss,
                "AWQ q/k/v scale search: attention (default: the attention module's output, as llm-awq) or qkv "
                "(the q, k, v outputs; ctrust before issue 12)");
  c->add_option("--awq-feed", a.awq_feed,
                "AWQ: feed each block the fp (default, as llm-awq) or the quantized outputs of the block before");
  c->add_option("--sparsity", a.sparsity, "Unstructured target sparsity in [0,1), or N:M such as 2:4");
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
                "Output types q4_0/q4_1/q5_0/q5_1/q8_0: gptq (default: the GPTQ reference grid) or ggml (the scale, "
                "and minimum for q4_1/q5_1, that ggml's own quantizer picks, imatrix-weighted with --imatrix; the "
                "quantizer rounds on it)");
  c->add_option("--target-bpw", a.mix.target_bpw,
                "KL-guided mixed precision: choose each block's (--mix-unit) type (--mix-levels) so that the file's tensors take at "
                "most this many bits per weight (llama.cpp's BPW) with the least predicted KL (--objective)");
  c->add_option("--objective", a.mix.objective, "--target-bpw: kl (default: mean token KL) or flips (top-1 changes)");
  c->add_option("--mix-levels", a.mix_levels,
                "--target-bpw: candidate types, comma-separated (default q2_k,q3_k,q4_k,q5_k,q6_k,q8_0; a K type "
                "falls back as llama-quantize for inputs not a multiple of 256)");
  c->add_option("--mix-unit", a.mix.unit,
                "--target-bpw: what one choice covers: block (default: a block's seven Linears share a type) or tensor "
                "(each block Linear its own type; 7x the sensitivity measurements)")
      ->check(CLI::IsMember({"block", "tensor"}));
  c->add_option("--sens-nsamples", a.mix.n_samples, "--target-bpw: sensitivity sequences (default 4)");
  c->add_option("--sens-seqlen", a.mix.seq_len, "--target-bpw: tokens per sensitivity sequence (default 256)");
  c->add_option("--sens-table", a.mix.table_path,
                "--target-bpw: JSON file of the sensitivity table: reused if it exists (same options; --mix-levels may be a "
                "subset of its levels, e.g. one level for a uniform file), else measured and written");
  c->add_option("--skip", r.skip, "Regex of tensor names to leave alone");
  c->add_option("--only", r.only, "Regex of tensor names to compress (others left alone)");
  add_common(c, o);
  c->callback([c] { apply_threads(o); cmd_compress(a, o, *c); });
}

}  // namespace ctrust::cli
