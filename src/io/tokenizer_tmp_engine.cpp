// THROWAWAY (engine helper): minimal Tokenizer + llama2.c tokenizer reader + load_model/LoadedModel::get,
// only so the engine builds before the tok/io helpers' code is merged. Delete after `git merge main`.
#include <cstring>
#include <unordered_map>

#include "base/error.h"
#include "io/model_file.h"
#include "io/tokenizer.h"

namespace ctrust {

struct TokenizerImpl {
  TokenizerData d;
  std::unordered_map<std::string, int32_t> ids;
};

Tokenizer::Tokenizer() : impl_(std::make_unique<TokenizerImpl>()) {}
Tokenizer::Tokenizer(const TokenizerData& data) : impl_(std::make_unique<TokenizerImpl>()) {
  impl_->d = data;
  for (size_t i = 0; i < data.tokens.size(); ++i) impl_->ids.emplace(data.tokens[i], (int32_t)i);
}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

static const std::string kSpace = "\xe2\x96\x81";

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool) const {
  std::vector<int32_t> out;
  if (add_bos && impl_->d.add_bos) out.push_back(impl_->d.bos_id);
  std::string t = impl_->d.add_space_prefix ? " " : "";
  t += text;
  std::string s;
  for (char c : t) s += c == ' ' ? kSpace : std::string(1, c);
  for (size_t i = 0; i < s.size();) {
    size_t len = 1;
    unsigned char c = s[i];
    if (c >= 0xF0) len = 4; else if (c >= 0xE0) len = 3; else if (c >= 0xC0) len = 2;
    auto it = impl_->ids.find(s.substr(i, len));
    if (it != impl_->ids.end()) out.push_back(it->second);
    else
      for (size_t k = 0; k < len && i + k < s.size(); ++k) {
        auto b = impl_->ids.find(fmt::format("<0x{:02X}>", (unsigned char)s[i + k]));
        out.push_back(b == impl_->ids.end() ? impl_->d.unk_id : b->second);
      }
    i += len;
  }
  size_t first = add_bos && impl_->d.add_bos ? 1 : 0;
  for (;;) {
    float best = -1e30f;
    int bi = -1, bid = -1;
    for (size_t i = first; i + 1 < out.size(); ++i) {
      auto it = impl_->ids.find(impl_->d.tokens[out[i]] + impl_->d.tokens[out[i + 1]]);
      if (it != impl_->ids.end() && impl_->d.scores[it->second] > best) {
        best = impl_->d.scores[it->second];
        bi = (int)i;
        bid = it->second;
      }
    }
    if (bi < 0) break;
    out[bi] = bid;
    out.erase(out.begin() + bi + 1);
  }
  return out;
}

std::string Tokenizer::piece(int32_t id) const {
  if (id < 0 || id >= (int32_t)impl_->d.tokens.size()) return "";
  const std::string& p = impl_->d.tokens[id];
  if (!impl_->d.token_types.empty() && impl_->d.token_types[id] == 3) return "";
  if (p.size() == 6 && p.rfind("<0x", 0) == 0 && p[5] == '>') return std::string(1, (char)std::stoi(p.substr(3, 2), nullptr, 16));
  std::string out;
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, 3, kSpace) == 0) { out += ' '; i += 3; } else out += p[i++];
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string s;
  for (int32_t id : ids) s += piece(id);
  return s;
}
int Tokenizer::n_vocab() const { return (int)impl_->d.tokens.size(); }
int32_t Tokenizer::bos() const { return impl_->d.bos_id; }
int32_t Tokenizer::eos() const { return impl_->d.eos_id; }
bool Tokenizer::adds_bos() const { return impl_->d.add_bos; }
const TokenizerData& Tokenizer::data() const { return impl_->d; }
uint64_t Tokenizer::fingerprint() const { return 0; }

TokenizerData tokenizer_from_llama2c(const std::string& path) {
  MappedFile f(path);
  TokenizerData d;
  d.model = "llama";
  d.pre = "default";
  size_t o = 4;
  if (f.size() < 4) fail("{}: too small", path);
  while (o < f.size()) {
    if (o + 8 > f.size()) fail("{}: truncated", path);
    float sc;
    int32_t len;
    std::memcpy(&sc, f.data() + o, 4);
    std::memcpy(&len, f.data() + o + 4, 4);
    o += 8;
    if (len < 0 || o + len > f.size()) fail("{}: bad length", path);
    std::string p((const char*)f.data() + o, len);
    o += len;
    std::string q;
    for (char c : p) q += c == ' ' ? kSpace : std::string(1, c);
    int32_t type = 1;
    if (d.tokens.size() == 0) type = 2;
    else if (d.tokens.size() <= 2) type = 3;
    else if (q.size() == 6 && q.rfind("<0x", 0) == 0) type = 6;
    d.tokens.push_back(q);
    d.scores.push_back(sc);
    d.token_types.push_back(type);
  }
  d.unk_id = 0;
  d.bos_id = 1;
  d.eos_id = 2;
  return d;
}

const Tensor& LoadedModel::get(const std::string& name) const {
  const Tensor* t = find(name);
  if (!t) fail("{}: missing tensor {}", path, name);
  return *t;
}

LoadedModel load_model(const std::string& path, const LoadOptions& opts) {
  return load_llama2c_model(path, opts.tokenizer_path);
}

}  // namespace ctrust
