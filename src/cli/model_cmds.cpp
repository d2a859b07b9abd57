// ctrust info | tokenize | generate | perplexity | convert
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
#include "io/config_json.h"
#include "io/model_file.h"
#include "model/model.h"
#include "model/perplexity.h"
#include "trust/chat.h"

namespace ctrust::cli {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

std::string read_text_file(const std::string& path) { return read_regular_file(path, "text file"); }

// A metadata value as JSON (long arrays summarized: tokenizer vocabularies have ~50k entries).
json value_json(const GgufValue& v, bool full) {
  switch (v.type) {
    case GgufType::STRING: return v.s;
    case GgufType::BOOL: return v.u != 0;
    case GgufType::FLOAT32: case GgufType::FLOAT64: return v.f;
    case GgufType::INT8: case GgufType::INT16: case GgufType::INT32: case GgufType::INT64: return v.i;
    case GgufType::ARRAY: {
      if (!full && v.arr.size() > 16) return fmt::format("[array of {} values]", v.arr.size());
      json a = json::array();
      for (const auto& e : v.arr) a.push_back(value_json(e, full));
      return a;
    }
    default: return v.u;
  }
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
  const ModelConfig& g = m.cfg;
  int64_t params = 0;
  uint64_t tensor_bytes = 0;  // what llama.cpp's "model size" counts (BPW = 8 x this / params)
  std::map<std::string, int> types;
  for (const auto& [name, t] : m.tensors) {
    params += t.numel();
    tensor_bytes += ggml_nbytes(t.src_type, t.numel());
    types[ggml_type_name(t.src_type)]++;
  }
  std::string recipe;
  for (const auto& kv : m.meta)
    if (kv.key == "ctrust.recipe") recipe = kv.value.as_str();
  if (c.json) {
    json j;
    j["path"] = m.path;
    j["format"] = m.format;
    j["config"] = model_config_json(g);
    j["tokenizer"] = {{"model", m.tok.model}, {"pre", m.tok.pre}, {"n_tokens", m.tok.tokens.size()},
                      {"bos_id", m.tok.bos_id}, {"eos_id", m.tok.eos_id}, {"add_bos", m.tok.add_bos}};
    j["n_params"] = params;
    j["tensor_bytes"] = tensor_bytes;
    j["bpw"] = params > 0 ? 8.0 * double(tensor_bytes) / double(params) : 0.0;
    j["n_tensors"] = m.tensors.size();
    j["tensor_types"] = types;
    json meta = json::object();
    for (const auto& kv : m.meta) meta[kv.key] = value_json(kv.value, false);
    j["metadata"] = meta;
    j["recipe"] = recipe.empty() ? json(nullptr) : json::parse(recipe, nullptr, false);
    print_json(j);
    return;
  }
  fmt::print("model        {}\nformat       {}\narchitecture {}\n", m.path, m.format, g.arch);
  fmt::print("parameters   {:.2f} M in {} tensors\n", params / 1e6, m.tensors.size());
  std::string tl;
  for (const auto& [k, n] : types) tl += fmt::format("{}{} x{}", tl.empty() ? "" : ", ", k, n);
  fmt::print("tensor types {}\n", tl);
  fmt::print("vocab {}  dim {}  layers {}  heads {}/{} (kv)  head_dim {}  ffn {}  ctx {}\n", g.n_vocab, g.dim,
             g.n_layers, g.n_heads, g.n_kv_heads, g.head_dim, g.hidden_dim, g.n_ctx);
  fmt::print("norm_eps {}  rope theta {} scale {} ({})  qkv_bias {}  tied_output {}\n", g.norm_eps, g.rope_theta,
             g.rope_freq_scale, g.rope == RopeLayout::NeoX ? "neox" : "interleaved", g.qkv_bias, g.tied_output);
  if (g.post_norms || g.qk_norm || g.act != Activation::SiLU || g.embed_scale != 1.0f || g.sliding_window > 0 ||
      g.logit_softcap > 0) {
    int local = 0;
    for (unsigned char x : g.swa_layers) local += x;
    fmt::print("post_norms {}  activation {}  qk_norm {}  embed_scale {}  sliding_window {} ({} local layers, rope "
               "theta {})  softcap {}\n",
               g.post_norms, activation_name(g.act), g.qk_norm, g.embed_scale, g.sliding_window, local,
               g.rope_theta_swa, g.logit_softcap);
  }
  fmt::print("tokenizer    {}{} ({} tokens, bos {}, eos {}, add_bos {})\n", m.tok.model,
             m.tok.pre.empty() ? "" : "/" + m.tok.pre, m.tok.tokens.size(), m.tok.bos_id, m.tok.eos_id,
             m.tok.add_bos);
  if (!recipe.empty()) fmt::print("recipe       {}\n", recipe);
  fmt::print("metadata:\n");
  for (const auto& kv : m.meta) {
    std::string v = value_json(kv.value, false).dump();
    if (v.size() > 100) v = v.substr(0, 97) + "...";
    fmt::print("  {:<44} {}\n", kv.key, v);
  }
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
  std::string text = read_text_file(file);
  auto t0 = clock_type::now();
  std::vector<int32_t> tokens = model->tok.encode(text, true);
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
}

}  // namespace ctrust::cli
