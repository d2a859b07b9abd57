// ctrust info | tokenize | generate | perplexity | convert | export-hf
#include "base/error.h"
#include "base/file.h"
#include "cli/common.h"
#include "io/export_hf.h"
#include "io/model_file.h"
#include "model/model.h"
#include "pipeline/generate_run.h"
#include "pipeline/perplexity_run.h"
#include "report/compress_report.h"
#include "report/eval_text.h"
#include "report/model_info.h"
#include "trust/chat.h"

namespace ctrust::cli {
namespace {

using json = nlohmann::json;

struct ModelArgs {
  std::string model;
  std::string tokenizer;
  std::string compute = "f32";
  void add(CLI::App* c, bool positional = false) {
    if (positional)
      c->add_option("model", model, "Model: GGUF file, Hugging Face folder, or llama2.c .bin")->required();
    else
      c->add_option("-m,--model", model, "Model: GGUF file, Hugging Face folder, or llama2.c .bin")->required();
    c->add_option("--tokenizer", tokenizer, "llama2.c tokenizer .bin (default: tokenizer.bin beside the model)");
  }
  LoadOptions opts() const { return LoadOptions{tokenizer, compute_mode_from_name(compute)}; }
};

void cmd_info(const ModelArgs& a, const Common& c) {
  LoadOptions lo = a.opts();
  lo.compute = ComputeMode::Native;  // nothing is computed: no need to dequantize the weights
  LoadedModel m = load_model(a.model, lo);
  { Tokenizer check(m.tok); }  // a tokenizer that cannot be built fails here, as it would when the model runs
  if (c.json) {
    print_json(model_info_json(m));
    return;
  }
  fmt::print("{}", model_info_text(m));
}

void cmd_tokenize(const ModelArgs& a, const Common& c, const std::string& text, bool no_bos, bool special) {
  LoadOptions lo = a.opts();
  lo.compute = ComputeMode::Native;  // only the tokenizer is used
  LoadedModel m = load_model(a.model, lo);
  Tokenizer tok(m.tok);
  std::vector<int32_t> ids = tok.encode(text, !no_bos, special);
  if (c.json) print_json(tokens_json(tok, ids));
  else fmt::print("{}", tokens_text(tok, ids));
}

struct GenArgs {
  std::string prompt;
  int n = 128;
  float temp = 0.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool chat = false;
  std::string chat_template;  // name; "" = detected from the model's tokenizer.chat_template
};

void cmd_generate(const ModelArgs& a, const Common& c, const GenArgs& g) {
  if (!g.chat_template.empty()) chat_template_by_name(g.chat_template);  // unknown name: error before loading
  auto model = open_model(a.model, a.opts());
  GenerateRunOptions o;
  o.prompt = g.prompt;
  o.chat = g.chat;
  o.chat_template = g.chat_template;
  o.gen.max_tokens = g.n;
  o.gen.temperature = g.temp;
  o.gen.top_p = g.top_p;
  o.gen.seed = g.seed;
  if (c.json) {
    print_json(generate_run(*model, a.model, o).to_json());
    return;
  }
  const GenerateRunResult r = generate_run(*model, a.model, o, [](const std::string& s) {
    fmt::print("{}", s);
    std::fflush(stdout);
  });
  // A newline after the text: the statistics on stderr start on their own line even when stdout and stderr go to
  // the same pipe.
  fmt::print("\n");
  std::fflush(stdout);
  fmt::print(stderr, "[{} tokens in {:.2f} s, {:.1f} tokens/s, {} threads]\n", r.tokens.size(), r.seconds,
             r.tokens_per_s(), r.threads);
}

void cmd_perplexity(const ModelArgs& a, const Common& c, const std::string& file, int ctx, int chunks) {
  auto model = open_model(a.model, a.opts());
  ProgressLine progress(10);  // redrawn on a terminal, a plain line every 10 s otherwise
  const PerplexityRunResult r =
      perplexity_run(*model, a.model, file, ctx, chunks, [&](int done, int total, double ppl, double s) {
        progress.show(fmt::format("[{}/{}] ppl {:.4f}{}", done, total, ppl, rate_eta(done, total - done, s, "chunks")),
                      done == total);
      });
  progress.finish();
  if (c.json) {
    print_json(r.to_json());
    return;
  }
  fmt::print("{}", perplexity_text(r));
  fmt::print(stderr, "[{:.1f} s, {:.1f} tokens/s]\n", r.seconds, r.tokens_per_s());
}

void cmd_convert(const ModelArgs& a, const Common& c, const std::string& out, const std::string& type) {
  const ConvertRunResult r = convert_run(a.model, a.opts(), out, type);
  if (c.json) print_json(convert_report_json(r));
  else fmt::print("{}", convert_report_text(r));
}

void cmd_export_hf(const std::string& model, const Common& c, const std::string& out, const std::string& format,
                   const std::string& tokenizer_from) {
  HfExportOptions o;
  o.format = hf_quant_format_from_name(format);  // unknown format: error before loading
  o.tokenizer_from = tokenizer_from;
  const ExportHfRunResult r = export_hf_run(model, out, o);
  if (c.json) print_json(export_hf_report_json(r));
  else fmt::print("{}", export_hf_report_text(r));
}

}  // namespace

void register_model_commands(CLI::App& app) {
  {
    auto* c = app.add_subcommand("info", "Show a model's configuration, tensors, tokenizer and metadata");
    static ModelArgs a_v;
    auto* a = &a_v;
    static Common o_v;
    auto* o = &o_v;
    a->add(c, true);
    add_common(c, *o);
    c->callback([=] { apply_threads(*o); cmd_info(*a, *o); });
  }
  {
    auto* c = app.add_subcommand("tokenize", "Print the token ids of a text");
    static ModelArgs a_v;
    auto* a = &a_v;
    static Common o_v;
    auto* o = &o_v;
    static std::string text_v;
    auto* text = &text_v;
    static bool no_bos_v{false};
    auto* no_bos = &no_bos_v;
    static bool special_v{false};
    auto* special = &special_v;
    a->add(c);
    c->add_option("text", *text, "Text to tokenize")->required();
    c->add_flag("--no-bos", *no_bos, "Do not add BOS");
    c->add_flag("--special", *special, "Parse special-token text such as <|im_start|>");
    add_common(c, *o);
    c->callback([=] { apply_threads(*o); cmd_tokenize(*a, *o, *text, *no_bos, *special); });
  }
  {
    auto* c = app.add_subcommand("generate", "Generate text (greedy, or temperature/top-p sampling with a seed)");
    static ModelArgs a_v;
    auto* a = &a_v;
    static Common o_v;
    auto* o = &o_v;
    static GenArgs g_v;
    auto* g = &g_v;
    a->add(c);
    c->add_option("-p,--prompt", g->prompt, "Prompt (empty: start from BOS)");
    c->add_option("-n,--n-predict", g->n, "Tokens to generate")->check(CLI::Range(0, 1 << 20));
    c->add_option("--temp", g->temp, "Temperature (0 = greedy)")->check(CLI::Range(0.0, 100.0));
    c->add_option("--top-p", g->top_p, "Nucleus sampling mass")->check(CLI::Range(0.0, 1.0));
    c->add_option("--seed", g->seed, "Sampling seed");
    c->add_flag("--chat", g->chat, "Send the prompt as a user turn in the model's chat template");
    c->add_option("--chat-template", g->chat_template,
                  "With --chat: chatml, llama2, vicuna, zephyr, gemma, llama3 or raw (default: from the model)");
    add_compute(c, a->compute, "native");
    add_common(c, *o);
    c->callback([=] { apply_threads(*o); cmd_generate(*a, *o, *g); });
  }
  {
    auto* c = app.add_subcommand("perplexity", "Perplexity of a text file (llama.cpp's protocol)");
    static ModelArgs a_v;
    auto* a = &a_v;
    static Common o_v;
    auto* o = &o_v;
    static std::string file_v;
    auto* file = &file_v;
    static int ctx_v{512};
    auto* ctx = &ctx_v;
    static int chunks_v{-1};
    auto* chunks = &chunks_v;
    a->add(c);
    c->add_option("-f,--file", *file, "Text file")->required();
    c->add_option("--ctx", *ctx, "Tokens per chunk")->check(CLI::Range(2, 1 << 20));
    c->add_option("--chunks", *chunks, "At most this many chunks (default: all)")->check(CLI::Range(1, 1 << 30));
    add_compute(c, a->compute, "f32");
    add_common(c, *o);
    c->callback([=] { apply_threads(*o); cmd_perplexity(*a, *o, *file, *ctx, *chunks); });
  }
  {
    auto* c = app.add_subcommand("convert", "Write a model as GGUF (f32, f16, bf16, q8_0, q4_0, q4_1, or keep types)");
    static ModelArgs a_v;
    auto* a = &a_v;
    static Common o_v;
    auto* o = &o_v;
    static std::string out_v;
    auto* out = &out_v;
    static std::string type_v{"keep"};
    auto* type = &type_v;
    a->add(c);
    c->add_option("-o,--output", *out, "Output GGUF file")->required();
    c->add_option("--type", *type, "Tensor type for weight matrices, or 'keep'");
    add_common(c, *o);
    c->callback([=] { apply_threads(*o); cmd_convert(*a, *o, *out, *type); });
  }
  {
    auto* c = app.add_subcommand("export-hf",
                                 "Write a compressed GGUF model as a Hugging Face folder (GPTQ or AWQ safetensors + "
                                 "config.json with quantization_config) that Transformers / AutoGPTQ / AutoAWQ load");
    static std::string model_v, out_v, format_v{"gptq"}, tok_v;
    static Common o_v;
    auto* o = &o_v;
    c->add_option("-m,--model", model_v, "Compressed GGUF file (ctrust compress --method gptq|awq|rtn)")->required();
    c->add_option("-o,--output", out_v, "Output folder")->required();
    c->add_option("--format", format_v, "gptq (AutoGPTQ: qweight/qzeros/scales/g_idx) or awq (AutoAWQ GEMM)");
    c->add_option("--tokenizer-from", tok_v,
                  "Hugging Face folder whose tokenizer files are copied (default: tokenizer.json written from the "
                  "GGUF vocabulary where its pre-tokenizer is known)");
    add_common(c, *o);
    c->callback([=] { apply_threads(*o); cmd_export_hf(model_v, *o, out_v, format_v, tok_v); });
  }
}

}  // namespace ctrust::cli
