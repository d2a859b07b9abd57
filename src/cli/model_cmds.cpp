// ctrust info | tokenize | generate | perplexity | convert | export-hf
#include <chrono>
#include <fstream>
#include <cstdlib>
#include <map>
#include <omp.h>
#include <sstream>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "cli/common.h"
#include "io/export.h"
#include "io/export_hf.h"
#include "io/config_json.h"
#include "io/model_file.h"
#include "model/model.h"
#include "model/perplexity.h"
#include "report/model_info.h"
#include "trust/chat.h"

namespace ctrust::cli {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

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
  if (c.json) {
    json pieces = json::array();
    for (int32_t id : ids) pieces.push_back(tok.piece(id));
    print_json({{"ids", ids}, {"pieces", pieces}, {"n_tokens", ids.size()}});
    return;
  }
  for (int32_t id : ids) fmt::print("{:>7} -> '{}'\n", id, tok.piece(id));
  fmt::print("{} tokens\n", ids.size());
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
  const Tokenizer& tok = model->tok;
  GenerateOptions opt;
  opt.max_tokens = g.n;
  opt.temperature = g.temp;
  opt.top_p = g.top_p;
  opt.seed = g.seed;
  std::vector<int32_t> prompt;
  std::string shown = g.prompt;  // what is echoed before the generated text
  std::string template_name;
  if (g.chat || !g.chat_template.empty()) {
    // The prompt as one user turn in the model's chat template (special tokens parsed, BOS unless the template
    // writes it); generation stops at the template's end-of-turn text, which is not printed.
    const ChatTemplate t = g.chat_template.empty() ? detect_chat_template(model->tok.data().chat_template)
                                                   : chat_template_by_name(g.chat_template);
    template_name = t.name;
    const std::string rendered = render_chat(t, {{"user", g.prompt}}, true);
    prompt = tok.encode(rendered, tok.adds_bos() && t.bos_text.empty(), true);
    opt.stop_strings = t.stop_strings;
    shown.clear();
  } else {
    prompt = tok.encode(g.prompt, true);
  }
  if (prompt.empty()) {
    if (tok.bos() < 0) fail("{}: empty prompt and the model has no BOS token to start from", a.model);
    prompt.push_back(tok.bos());
  }
  size_t hold = 0;  // bytes held back: they might be the start of a stop string
  for (const auto& s : opt.stop_strings) hold = std::max(hold, s.size());
  if (!c.json) fmt::print("{}", shown);
  std::fflush(stdout);
  std::string streamed;  // the pieces as printed (the JSON text is decoded from the ids)
  size_t printed = 0;
  auto t0 = clock_type::now();
  std::vector<int32_t> out = generate(*model, prompt, opt, [&](int32_t id) {
    if (!c.json) {
      streamed += tok.piece(id);
      if (streamed.size() > printed + hold) {
        fmt::print("{}", streamed.substr(printed, streamed.size() - hold - printed));
        printed = streamed.size() - hold;
        std::fflush(stdout);
      }
    }
    return true;
  });
  double s = seconds_since(t0);
  std::string text = tok.decode(out);
  for (const auto& stop : opt.stop_strings)
    for (std::string* t : {&text, &streamed}) {
      const size_t p = stop.empty() ? std::string::npos : t->find(stop);
      if (p != std::string::npos) t->erase(p);
    }
  if (c.json) {
    json j = {{"prompt", g.prompt}, {"compute", compute_mode_name(compute_mode(*model))}, {"text", text},
              {"tokens", out}, {"n_tokens", out.size()},
              {"seconds", s}, {"tokens_per_s", out.empty() ? 0.0 : out.size() / s},
              {"threads", omp_get_max_threads()}};
    if (!template_name.empty()) j["chat_template"] = template_name;
    const char* wait = std::getenv("OMP_WAIT_POLICY");
    j["omp_wait_policy"] = wait ? wait : "";
    print_json(j);
  } else {
    // The rest of the text (minus the stop string), then a newline: the statistics on stderr start on their own
    // line even when stdout and stderr go to the same pipe.
    std::string tail = printed < streamed.size() ? streamed.substr(printed) : std::string();
    fmt::print("{}\n", tail);
    std::fflush(stdout);
    fmt::print(stderr, "[{} tokens in {:.2f} s, {:.1f} tokens/s, {} threads]\n", out.size(), s,
               out.empty() ? 0.0 : out.size() / s, omp_get_max_threads());
  }
}

void cmd_perplexity(const ModelArgs& a, const Common& c, const std::string& file, int ctx, int chunks) {
  auto model = open_model(a.model, a.opts());
  std::string text = read_regular_file(file, "text file");
  auto t0 = clock_type::now();
  std::vector<int32_t> tokens = perplexity_tokens(*model, text);
  ProgressLine progress(10);  // redrawn on a terminal, a plain line every 10 s otherwise
  PerplexityResult r = perplexity(*model, tokens, ctx, chunks, [&](int done, int total, double ppl) {
    progress.show(fmt::format("[{}/{}] ppl {:.4f}{}", done, total, ppl,
                              rate_eta(done, total - done, seconds_since(t0), "chunks")), done == total);
  });
  progress.finish();
  double s = seconds_since(t0);
  if (c.json) {
    print_json({{"model", a.model}, {"compute", compute_mode_name(compute_mode(*model))}, {"file", file},
                {"ctx", ctx}, {"n_chunks", r.n_chunks},
                {"n_scored", r.n_scored}, {"ppl", r.ppl}, {"ppl_stderr", r.ppl_stderr}, {"seconds", s},
                {"tokens_per_s", r.n_chunks * double(ctx) / s}});
    return;
  }
  fmt::print("{} tokens, {} chunks of {}, {} tokens scored\n", tokens.size(), r.n_chunks, ctx, r.n_scored);
  fmt::print("PPL = {:.4f} +/- {:.5f}\n", r.ppl, r.ppl_stderr);
  fmt::print(stderr, "[{:.1f} s, {:.1f} tokens/s]\n", s, r.n_chunks * double(ctx) / s);
}

void cmd_convert(const ModelArgs& a, const Common& c, const std::string& out, const std::string& type) {
  SaveOptions opt;
  if (type != "keep") opt.type = ggml_type_from_name(type);  // unknown type: error before loading
  check_output_path(out);
  LoadedModel m = load_model(a.model, a.opts());
  auto t0 = clock_type::now();
  save_gguf(m, out, opt);
  if (c.json)
    print_json({{"input", a.model}, {"output", out}, {"type", type}, {"seconds", seconds_since(t0)}});
  else
    fmt::print("wrote {} ({}) in {:.1f} s\n", out, type, seconds_since(t0));
}


void cmd_export_hf(const std::string& model, const Common& c, const std::string& out, const std::string& format,
                   const std::string& tokenizer_from) {
  HfExportOptions o;
  o.format = hf_quant_format_from_name(format);  // unknown format: error before loading
  o.tokenizer_from = tokenizer_from;
  LoadedModel m = load_gguf_model(model);
  auto t0 = clock_type::now();
  const HfExportResult r = export_hf(m, out, o);
  if (c.json) {
    json j = r.to_json();
    j["input"] = model;
    j["seconds"] = seconds_since(t0);
    print_json(j);
    return;
  }
  fmt::print("wrote {} ({} {}, {}-bit, group {}{}{}; {} quantized Linears, {} other tensors, model.safetensors {:.1f} MB) "
             "in {:.1f} s\n",
             out, r.hf_class, r.format, r.bits, r.group, r.sym ? ", sym" : "", r.desc_act ? ", desc_act" : "",
             r.n_quantized, r.n_plain, r.safetensors_bytes / 1e6, seconds_since(t0));
  fmt::print("largest |exported weight - ctrust's weight|: {:.3g}\n", r.max_dev);
  fmt::print("tokenizer: {}\n", r.tokenizer_note);
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
