// Recipe: names, JSON round trip, validation, tensor selection.
#include "compress/recipe.h"

#include <fnmatch.h>

#include <fstream>
#include <memory>
#include <sstream>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/error.h"
#include "base/file.h"
#include "io/gguf.h"

namespace ctrust {

namespace {

struct MethodName {
  Method m;
  const char* name;
};
constexpr MethodName kMethods[] = {
    {Method::RTN, "rtn"},         {Method::GPTQ, "gptq"},           {Method::AWQ, "awq"},
    {Method::SmoothQuant, "smoothquant"}, {Method::LLMInt8, "llm_int8"}, {Method::Magnitude, "magnitude"},
    {Method::Wanda, "wanda"},     {Method::SparseGPT, "sparsegpt"},
};

struct Regex {
  pcre2_code* code = nullptr;
  ~Regex() { if (code) pcre2_code_free(code); }
};

std::unique_ptr<Regex> compile(const std::string& pattern, const char* what) {
  int err = 0;
  PCRE2_SIZE off = 0;
  auto r = std::make_unique<Regex>();
  r->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0, &err, &off, nullptr);
  if (!r->code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    fail("recipe: invalid {} regex '{}' at offset {}: {}", what, pattern, off, reinterpret_cast<char*>(buf));
  }
  return r;
}

bool search(const std::string& pattern, const std::string& s, const char* what) {
  auto re = compile(pattern, what);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(re->code, nullptr);
  int rc = pcre2_match(re->code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, 0, md, nullptr);
  pcre2_match_data_free(md);
  return rc >= 0;
}

bool rule_matches(const TensorRule& t, const std::string& name) {
  if (t.match.rfind("re:", 0) == 0) return search(t.match.substr(3), name, "rule");
  return fnmatch(t.match.c_str(), name.c_str(), 0) == 0;
}

bool per_tensor_method(Method m) {
  return m == Method::RTN || m == Method::GPTQ || m == Method::Magnitude || m == Method::Wanda ||
         m == Method::SparseGPT;
}

nlohmann::json rule_to_json(const TensorRule& t) {
  nlohmann::json j;
  j["match"] = t.match;
  if (t.skip) j["skip"] = *t.skip;
  if (t.method) j["method"] = method_name(*t.method);
  if (t.bits) j["bits"] = *t.bits;
  if (t.group) j["group"] = *t.group;
  if (t.sym) j["sym"] = *t.sym;
  if (t.act_order) j["act_order"] = *t.act_order;
  if (t.minmax) j["grid"] = *t.minmax ? "minmax" : "gptq";
  if (t.type) j["type"] = *t.type;
  if (t.nm) j["sparsity"] = fmt::format("{}:{}", t.nm->first, t.nm->second);
  else if (t.sparsity) j["sparsity"] = *t.sparsity;
  return j;
}

// "N:M" -> {N, M}; nullopt if s is not of that form.
std::optional<std::pair<int, int>> parse_nm(std::string_view s) {
  const size_t c = s.find(':');
  if (c == std::string_view::npos) return std::nullopt;
  try {
    size_t a = 0, b = 0;
    const std::string n(s.substr(0, c)), m(s.substr(c + 1));
    const int N = std::stoi(n, &a), M = std::stoi(m, &b);
    if (a != n.size() || b != m.size() || n.empty() || m.empty()) return std::nullopt;
    return std::make_pair(N, M);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

TensorRule rule_from_json(const nlohmann::json& j, size_t idx) {
  if (!j.is_object()) fail("recipe: rule {} must be a JSON object", idx);
  TensorRule t;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const nlohmann::json& v = it.value();
    try {
      if (k == "match") t.match = v.get<std::string>();
      else if (k == "skip") t.skip = v.get<bool>();
      else if (k == "method") t.method = method_from_name(v.get<std::string>());
      else if (k == "bits") t.bits = v.get<int>();
      else if (k == "group") t.group = v.get<int>();
      else if (k == "sym") t.sym = v.get<bool>();
      else if (k == "act_order") t.act_order = v.get<bool>();
      else if (k == "grid") t.minmax = grid_from_name(v.get<std::string>());
      else if (k == "type") t.type = v.get<std::string>();
      else if (k == "sparsity") {
        if (v.is_string()) {
          auto nm = parse_nm(v.get<std::string>());
          if (!nm) fail("recipe: rule {}: sparsity '{}' is neither a fraction nor N:M", idx, v.get<std::string>());
          t.nm = nm;
        } else {
          t.sparsity = v.get<double>();
        }
      } else fail("recipe: rule {}: unknown key '{}' (valid: match, skip, method, bits, group, sym, act_order, grid, "
                  "type, sparsity)", idx, k);
    } catch (const nlohmann::json::exception&) {
      fail("recipe: rule {}: key '{}' has the wrong type ({})", idx, k, v.type_name());
    }
  }
  if (t.match.empty()) fail("recipe: rule {} has no 'match' (a glob, or re:REGEX)", idx);
  return t;
}

// tensor_types (first matching regex) else the global type.
std::string legacy_type(const Recipe& r, const std::string& name);

}  // namespace

const char* method_name(Method m) {
  for (const auto& e : kMethods)
    if (e.m == m) return e.name;
  return "?";
}

Method method_from_name(std::string_view name) {
  if (name == "int8") return Method::LLMInt8;  // the spelling of --method
  std::string all;
  for (const auto& e : kMethods) {
    if (name == e.name) return e.m;
    all += all.empty() ? "" : ", ";
    all += e.name;
  }
  fail("unknown compression method '{}' (valid: {})", name, all);
}

bool grid_from_name(std::string_view name) {
  if (name == "gptq") return false;
  if (name == "minmax") return true;
  fail("unknown quantization grid '{}' (valid: gptq, minmax)", name);
}

bool awq_qkv_loss_from_name(std::string_view name) {
  if (name == "attention") return true;
  if (name == "qkv") return false;
  fail("unknown AWQ q/k/v loss '{}' (valid: attention, qkv)", name);
}

bool awq_feed_from_name(std::string_view name) {
  if (name == "fp") return true;
  if (name == "quantized") return false;
  fail("unknown AWQ block feeding '{}' (valid: fp, quantized)", name);
}

bool method_needs_calibration(Method m) {
  return m != Method::RTN && m != Method::Magnitude && m != Method::LLMInt8;
}
bool method_is_pruning(Method m) { return m == Method::Magnitude || m == Method::Wanda || m == Method::SparseGPT; }

nlohmann::json recipe_to_json(const Recipe& r) {
  nlohmann::json j;
  j["method"] = method_name(r.method);
  if (method_is_pruning(r.method)) {
    j["sparsity"] = r.prune_m > 0 ? 1.0 - double(r.prune_n) / r.prune_m : r.sparsity;
    j["prune_n"] = r.prune_n;
    j["prune_m"] = r.prune_m;
  }
  if (method_is_pruning(r.method) && r.prune_quant) {  // joint mode: the kept weights' grid
    j["bits"] = r.bits;
    j["sym"] = r.sym;
    j["group"] = r.group;
    j["fp16_scales"] = r.fp16_scales;
    j["grid"] = r.minmax ? "minmax" : "gptq";
  } else if (!method_is_pruning(r.method)) {
    j["bits"] = r.bits;
    j["sym"] = r.sym;
    j["group"] = r.group;
    j["fp16_scales"] = r.fp16_scales;
    j["grid"] = r.minmax ? "minmax" : "gptq";
    if (r.zero_point) j["zero_point"] = true;
    if (!r.type.empty()) j["type"] = r.type;
    if (!r.tensor_types.empty()) {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& [re, t] : r.tensor_types) a.push_back({re, t});
      j["tensor_types"] = a;
    }
    if (r.legacy_ggml_fit) j["legacy_fit"] = "ggml";
    if (!r.imatrix_file.empty()) {
      j["imatrix"] = r.imatrix_file;
      j["imatrix_hash"] = r.imatrix_hash;
    }
  }
  j["damp"] = r.damp;
  j["block"] = r.block;
  j["act_order"] = r.act_order;
  j["static_groups"] = r.static_groups;
  j["awq_grid"] = r.awq_grid;
  j["awq_clip"] = r.awq_clip;
  j["awq_max_shrink"] = r.awq_max_shrink;
  j["awq_search_tokens"] = r.awq_search_tokens;
  j["awq_qkv_loss"] = r.awq_attn_loss ? "attention" : "qkv";
  j["awq_feed"] = r.awq_fp_feed ? "fp" : "quantized";
  j["alpha"] = r.alpha;
  j["threshold"] = r.threshold;
  j["calib_file"] = r.calib_file;
  j["calib_hash"] = r.calib_hash;
  j["calib_clean"] = r.calib_clean;
  j["calib_chat"] = r.calib_chat;
  j["n_samples"] = r.n_samples;
  j["seq_len"] = r.seq_len;
  j["seed"] = r.seed;
  j["skip"] = r.skip;
  j["only"] = r.only;
  if (!r.rules.empty()) {
    nlohmann::json a = nlohmann::json::array();
    for (const TensorRule& t : r.rules) a.push_back(rule_to_json(t));
    j["rules"] = a;
  }
  j["ctrust_version"] = r.ctrust_version;
  return j;
}

Recipe recipe_from_json(const nlohmann::json& j) {
  if (!j.is_object()) fail("recipe: expected a JSON object");
  Recipe r;
  r.calib_clean = j.contains("calib_clean") && j["calib_clean"].is_boolean() && j["calib_clean"].get<bool>();
  // Recipes written before issue 12 have none of these keys: raw calibration text, the old AWQ search.
  r.awq_attn_loss = j.contains("awq_qkv_loss");
  r.awq_fp_feed = j.contains("awq_feed");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const nlohmann::json& v = it.value();
    try {
      if (k == "method") r.method = method_from_name(v.get<std::string>());
      else if (k == "bits") r.bits = v.get<int>();
      else if (k == "sym") r.sym = v.get<bool>();
      else if (k == "group") r.group = v.get<int>();
      else if (k == "fp16_scales") r.fp16_scales = v.get<bool>();
      else if (k == "grid") r.minmax = grid_from_name(v.get<std::string>());
      else if (k == "zero_point") r.zero_point = v.get<bool>();
      else if (k == "type") r.type = v.get<std::string>();
      else if (k == "tensor_types") {
        if (!v.is_array()) fail("recipe: key 'tensor_types' must be an array of [regex, type] pairs");
        for (const auto& e : v) {
          if (!e.is_array() || e.size() != 2) fail("recipe: key 'tensor_types' must be an array of [regex, type] pairs");
          r.tensor_types.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
        }
      } else if (k == "legacy_fit") {
        const std::string f = v.get<std::string>();
        if (f != "ggml" && f != "gptq") fail("recipe: legacy_fit must be 'ggml' or 'gptq', got '{}'", f);
        r.legacy_ggml_fit = f == "ggml";
      } else if (k == "imatrix") r.imatrix_file = v.get<std::string>();
      else if (k == "imatrix_hash") r.imatrix_hash = v.get<std::string>();
      else if (k == "damp") r.damp = v.get<double>();
      else if (k == "block") r.block = v.get<int>();
      else if (k == "act_order") r.act_order = v.get<bool>();
      else if (k == "static_groups") r.static_groups = v.get<bool>();
      else if (k == "awq_grid") r.awq_grid = v.get<int>();
      else if (k == "awq_clip") r.awq_clip = v.get<bool>();
      else if (k == "awq_max_shrink") r.awq_max_shrink = v.get<double>();
      else if (k == "awq_search_tokens") r.awq_search_tokens = v.get<int>();
      else if (k == "awq_qkv_loss") r.awq_attn_loss = awq_qkv_loss_from_name(v.get<std::string>());
      else if (k == "awq_feed") r.awq_fp_feed = awq_feed_from_name(v.get<std::string>());
      else if (k == "alpha") r.alpha = v.get<double>();
      else if (k == "threshold") r.threshold = v.get<double>();
      else if (k == "sparsity") {
        if (v.is_string()) set_sparsity(r, v.get<std::string>());
        else r.sparsity = v.get<double>();
      }
      else if (k == "prune_n") r.prune_n = v.get<int>();
      else if (k == "prune_m") r.prune_m = v.get<int>();
      else if (k == "calib_file") r.calib_file = v.get<std::string>();
      else if (k == "calib_hash") r.calib_hash = v.get<std::string>();
      else if (k == "calib_clean") r.calib_clean = v.get<bool>();
      else if (k == "calib_chat") r.calib_chat = v.get<std::string>();
      else if (k == "n_samples") r.n_samples = v.get<int>();
      else if (k == "seq_len") r.seq_len = v.get<int>();
      else if (k == "seed") r.seed = v.get<uint64_t>();
      else if (k == "skip") r.skip = v.get<std::string>();
      else if (k == "only") r.only = v.get<std::string>();
      else if (k == "rules") {
        if (!v.is_array()) fail("recipe: key 'rules' must be an array of rule objects");
        for (size_t i = 0; i < v.size(); ++i) r.rules.push_back(rule_from_json(v[i], i));
      } else if (k == "ctrust_version") r.ctrust_version = v.get<std::string>();
      else fail("recipe: unknown key '{}'", k);
    } catch (const nlohmann::json::exception&) {
      fail("recipe: key '{}' has the wrong type ({})", k, v.type_name());
    }
  }
  // A pruning recipe with bits quantizes the kept weights (recipe_to_json writes bits only then).
  r.prune_quant = method_is_pruning(r.method) && j.contains("bits");
  return r;
}

Recipe recipe_from_file(const std::string& path) {
  const std::string text = read_regular_file(path, "recipe file", kMaxJsonBytes);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false, true);  // comments allowed
  if (j.is_discarded()) fail("{}: not valid JSON", path);
  try {
    return recipe_from_user_json(std::move(j));
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
}

Recipe recipe_from_user_json(nlohmann::json j) {
  // A recipe's missing keys take today's defaults (recipe_from_json reads a *stored* recipe without these keys as
  // one written before they existed).
  if (j.is_object()) {
    if (!j.contains("calib_clean")) j["calib_clean"] = true;
    if (!j.contains("awq_qkv_loss")) j["awq_qkv_loss"] = "attention";
    if (!j.contains("awq_feed")) j["awq_feed"] = "fp";
  }
  return recipe_from_json(j);
}

void set_sparsity(Recipe& r, std::string_view spec) {
  if (auto nm = parse_nm(spec)) {
    r.prune_n = nm->first;
    r.prune_m = nm->second;
    return;
  }
  try {
    size_t used = 0;
    const std::string s(spec);
    const double v = std::stod(s, &used);
    if (used != s.size()) throw std::invalid_argument("trailing");
    r.sparsity = v;
    r.prune_n = r.prune_m = 0;
  } catch (const std::exception&) {
    fail("sparsity '{}': expected a fraction such as 0.5 or N:M such as 2:4", spec);
  }
}

bool recipe_needs_calibration(const Recipe& r) {
  if (method_needs_calibration(r.method)) return true;
  for (const TensorRule& t : r.rules)
    if (t.method && method_needs_calibration(*t.method)) return true;
  return false;
}

Recipe recipe_for_tensor(const Recipe& r, const std::string& name) {
  Recipe e = r;
  e.type = legacy_type(r, name);
  e.tensor_types.clear();
  e.rules.clear();
  for (const TensorRule& t : r.rules) {
    if (!rule_matches(t, name)) continue;
    if (t.method) e.method = *t.method;
    if (t.bits) e.bits = *t.bits;
    if (t.group) e.group = *t.group;
    if (t.sym) e.sym = *t.sym;
    if (t.act_order) e.act_order = *t.act_order;
    if (t.minmax) e.minmax = *t.minmax;
    if (t.type) e.type = *t.type == "none" ? std::string() : *t.type;
    else if (t.bits || t.group || t.sym || t.minmax) e.type.clear();  // a plain grid for this tensor
    if (t.bits && method_is_pruning(e.method)) e.prune_quant = true;
    if (t.nm) {
      e.prune_n = t.nm->first;
      e.prune_m = t.nm->second;
    } else if (t.sparsity) {
      e.sparsity = *t.sparsity;
      e.prune_n = e.prune_m = 0;
    }
  }
  if (method_is_pruning(e.method)) e.type.clear();
  if (e.type.empty()) {  // the K-quant/legacy fit options apply to typed tensors only
    e.imatrix_file.clear();
    e.imatrix_hash.clear();
    e.legacy_ggml_fit = false;
  }
  return e;
}

std::string recipe_to_string(const Recipe& r) { return recipe_to_json(r).dump(); }

Recipe recipe_from_string(std::string_view s) {
  nlohmann::json j = nlohmann::json::parse(s, nullptr, false);
  if (j.is_discarded()) fail("recipe: not valid JSON");
  return recipe_from_json(j);
}

void validate_recipe(const Recipe& r) {
  const bool prune = method_is_pruning(r.method);
  if (!prune && r.method != Method::SmoothQuant && r.method != Method::LLMInt8) {
    if (r.bits < 2 || r.bits > 8) fail("recipe: bits must be 2..8, got {}", r.bits);
    if (r.group < 0) fail("recipe: group size must be >= 0 (0 = per output channel), got {}", r.group);
    if (r.minmax && r.sym) fail("recipe: the minmax grid is asymmetric; it cannot be combined with --sym");
    if (r.minmax && r.zero_point) fail("recipe: the minmax grid has no integer zero point; --zero-point needs --grid gptq");
    if (r.zero_point && (!r.type.empty() || !r.tensor_types.empty()))
      fail("recipe: --zero-point sets the bits/group grid's form; llama.cpp output types (--type, --tensor-type) have "
           "their own");
  }
  if (r.minmax && r.method != Method::RTN && r.method != Method::GPTQ && r.method != Method::AWQ)
    fail("recipe: --grid applies to rtn, gptq and awq only, not {}", method_name(r.method));
  if (prune) {
    if (r.prune_m > 0 || r.prune_n != 0) {
      if (r.prune_m <= 0 || r.prune_n < 1) fail("recipe: invalid N:M pattern {}:{}", r.prune_n, r.prune_m);
      if (r.prune_n > r.prune_m) fail("recipe: N:M needs N <= M, got {}:{}", r.prune_n, r.prune_m);
    } else if (!(r.sparsity >= 0.0 && r.sparsity < 1.0)) {
      fail("recipe: sparsity must be in [0, 1), got {}", r.sparsity);
    }
  }
  if (!(r.damp >= 0.0)) fail("recipe: dampening must be >= 0, got {}", r.damp);
  if (r.block < 1) fail("recipe: block size must be >= 1, got {}", r.block);
  if (r.awq_search_tokens < 0) fail("recipe: AWQ search tokens must be >= 0, got {}", r.awq_search_tokens);
  if (r.awq_grid < 1) fail("recipe: AWQ grid must have >= 1 point, got {}", r.awq_grid);
  if (!(r.awq_max_shrink >= 0.0 && r.awq_max_shrink < 1.0))
    fail("recipe: AWQ max shrink must be in [0, 1), got {}", r.awq_max_shrink);
  if (!(r.alpha >= 0.0 && r.alpha <= 1.0)) fail("recipe: SmoothQuant alpha must be in [0, 1], got {}", r.alpha);
  if (!(r.threshold > 0.0)) fail("recipe: LLM.int8() threshold must be > 0, got {}", r.threshold);
  const bool quantizer = r.method == Method::RTN || r.method == Method::GPTQ || r.method == Method::AWQ;
  if ((!r.type.empty() || !r.tensor_types.empty() || !r.imatrix_file.empty() || r.legacy_ggml_fit) && !quantizer)
    fail("recipe: --type, --types-from, --imatrix and --legacy-fit apply to rtn, gptq and awq only, not {}", method_name(r.method));
  if (!r.type.empty()) check_output_type(r.type, "--type");
  for (const auto& [re, t] : r.tensor_types) {
    compile(re, "tensor type");
    if (t != "none") check_output_type(t, "tensor type");
  }
  if (!r.imatrix_file.empty() && r.type.empty() && r.tensor_types.empty())
    fail("recipe: --imatrix weights the K-quant fit; it needs --type q2_k..q6_k or --types-from");
  if ((!r.type.empty() || !r.tensor_types.empty()) && (r.act_order || r.static_groups))
    fail("recipe: --type/--types-from cannot be combined with --act-order or --static-groups");
  if (method_needs_calibration(r.method)) {
    if (r.n_samples < 1) fail("recipe: number of calibration sequences must be >= 1, got {}", r.n_samples);
    if (r.seq_len < 2) fail("recipe: calibration sequence length must be >= 2, got {}", r.seq_len);
  }
  if (!r.skip.empty()) compile(r.skip, "--skip");
  if (!r.only.empty()) compile(r.only, "--only");
  if (r.prune_quant) {
    if (!prune) fail("recipe: quantizing the kept weights applies to the pruning methods only");
    if (r.bits < 2 || r.bits > 8) fail("recipe: bits must be 2..8, got {}", r.bits);
    if (r.group < 0) fail("recipe: group size must be >= 0 (0 = per output channel), got {}", r.group);
    if (r.minmax) fail("recipe: pruning + quantization needs 0 on the grid: --grid minmax is not allowed");
    if (r.act_order || r.static_groups) fail("recipe: pruning + quantization has no act-order / static groups");
  }
  const bool global_per_tensor = per_tensor_method(r.method);
  for (size_t i = 0; i < r.rules.size(); ++i) {
    const TensorRule& t = r.rules[i];
    if (t.match.empty()) fail("recipe: rule {} has no 'match'", i);
    if (t.match.rfind("re:", 0) == 0) compile(t.match.substr(3), "rule");
    if (t.method) {
      if (!per_tensor_method(*t.method))
        fail("recipe: rule {} ('{}'): method {} works on whole blocks and cannot be set per tensor (per-tensor "
             "methods: rtn, gptq, magnitude, wanda, sparsegpt)", i, t.match, method_name(*t.method));
      if (!global_per_tensor)
        fail("recipe: rule {} ('{}') sets a method, but the recipe's method {} works on whole blocks", i, t.match,
             method_name(r.method));
    }
    if (t.bits && (*t.bits < 2 || *t.bits > 8)) fail("recipe: rule {} ('{}'): bits must be 2..8, got {}", i, t.match, *t.bits);
    if (t.group && *t.group < 0) fail("recipe: rule {} ('{}'): group size must be >= 0, got {}", i, t.match, *t.group);
    if (t.type && *t.type != "none") check_output_type(*t.type, fmt::format("recipe: rule {} ('{}')", i, t.match).c_str());
    if (t.sparsity && !(*t.sparsity >= 0.0 && *t.sparsity < 1.0))
      fail("recipe: rule {} ('{}'): sparsity must be in [0, 1), got {}", i, t.match, *t.sparsity);
    if (t.nm && (t.nm->second <= 0 || t.nm->first < 1 || t.nm->first > t.nm->second))
      fail("recipe: rule {} ('{}'): invalid N:M pattern {}:{}", i, t.match, t.nm->first, t.nm->second);
  }
}

void validate_tensor(const Recipe& r, const std::string& name, int64_t out, int64_t in, int n_dims) {
  const char* m = method_name(r.method);
  if (n_dims != 2) fail("{}: method {} applies to 2-D weight matrices, '{}' has {} dimension(s)", name, m, name, n_dims);
  const bool block_linear = name.rfind("blk.", 0) == 0;
  const bool typed_outside = !block_linear && !tensor_type(r, name).empty();  // RTN with ggml's quantizer
  if (method_needs_calibration(r.method) && !block_linear && !typed_outside)
    fail("{}: method {} needs the inputs of a transformer-block Linear; it does not apply to '{}'", name, m, name);
  if (r.method == Method::LLMInt8 && !block_linear)
    fail("{}: method {} changes how a transformer-block Linear runs at inference; it does not apply to '{}'", name,
         m, name);
  if (method_is_pruning(r.method)) {
    if (r.prune_m > 0 && in % r.prune_m != 0)
      fail("{}: M = {} does not divide the input dimension {}", name, r.prune_m, in);
    if (r.prune_quant && r.group > 0 && in % r.group != 0)
      fail("{}: group size {} does not divide the input dimension {} (use a divisor or 0 = per channel)", name,
           r.group, in);
  } else if (!tensor_type(r, name).empty()) {
    const std::string t = tensor_type(r, name);
    const GgmlType g = ggml_type_from_name(t);
    const int64_t bs = ggml_type_info(uint32_t(g))->block_size;
    if (in % bs != 0)
      fail("{}: type {} needs the input dimension to be a multiple of {}, got {} (llama-quantize falls back to "
           "another type for such tensors: use --types-from with its output, or a tensor type rule)", name, t, bs, in);
  } else if (r.method == Method::RTN || r.method == Method::GPTQ || r.method == Method::AWQ) {
    if (r.group > 0 && in % r.group != 0)
      fail("{}: group size {} does not divide the input dimension {} (use a divisor or 0 = per channel)", name,
           r.group, in);
  }
  if (out < 1 || in < 1) fail("{}: empty tensor", name);
}

void validate_calibration_size(const Recipe& r, int64_t n_tokens, const std::string& file) {
  const int64_t need = int64_t(r.n_samples) * r.seq_len;
  if (n_tokens < need)
    fail("{}: calibration text has {} tokens, fewer than N x L = {} x {} = {}", file, n_tokens, r.n_samples,
         r.seq_len, need);
}

namespace {
// The first tensor_types rule matching `name`, or null.
const std::string* type_rule(const Recipe& r, const std::string& name) {
  for (const auto& [re, t] : r.tensor_types)
    if (search(re, name, "tensor type")) return &t;
  return nullptr;
}
std::string legacy_type(const Recipe& r, const std::string& name) {
  const std::string* t = type_rule(r, name);
  if (t) return *t == "none" ? std::string() : *t;
  return r.type;
}
}  // namespace

std::string tensor_type(const Recipe& r, const std::string& name) {
  if (r.rules.empty()) return legacy_type(r, name);
  return recipe_for_tensor(r, name).type;
}

void check_output_type(const std::string& type, const char* what) {
  static const char* kOk[] = {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0"};
  for (const char* k : kOk)
    if (type == k) return;
  fail("{}: unsupported output type '{}' (valid: q2_k, q3_k, q4_k, q5_k, q6_k, q4_0, q4_1, q5_0, q5_1, q8_0)", what,
       type);
}

bool tensor_selected(const Recipe& r, const std::string& name) {
  const std::string* rule = type_rule(r, name);
  bool selected = true;
  if (rule && *rule == "none") selected = false;
  else if (!r.only.empty()) selected = search(r.only, name, "--only");
  else if ((name == "token_embd.weight" || name == "output.weight") && !rule) selected = false;
  if (selected && !r.skip.empty() && search(r.skip, name, "--skip")) selected = false;
  for (const TensorRule& t : r.rules)
    if (t.skip && rule_matches(t, name)) selected = !*t.skip;
  return selected;
}

std::string file_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open file", path);
  uint64_t h = 14695981039346656037ull;
  char buf[1 << 16];
  while (in) {
    in.read(buf, sizeof buf);
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      h ^= uint8_t(buf[i]);
      h *= 1099511628211ull;
    }
  }
  return fmt::format("{:016x}", h);
}

}  // namespace ctrust
