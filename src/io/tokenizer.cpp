// Tokenizer core: vocabulary tables, special-token partitioning, SentencePiece-style BPE ("llama"),
// detokenization. Follows llama.cpp's llama-vocab.cpp (llm_tokenizer_spm_session, tokenizer_st_partition,
// token_to_piece, detokenize) step by step, so ids are identical. Byte-level BPE is in tokenizer_bpe.cpp,
// the loaders in tokenizer_load.cpp.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <queue>

#include "base/error.h"
#include "io/tokenizer_impl.h"

namespace ctrust {

namespace {

const char* const kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's visible space

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (;;) {
    size_t m = s.find(from, pos);
    if (m == std::string::npos) break;
    out.append(s, pos, m - pos);
    out.append(to);
    pos = m + from.size();
  }
  out.append(s, pos, std::string::npos);
  s.swap(out);
}

uint32_t attr_from_type(int32_t type) {
  switch (type) {
    case 1: return kAttrNormal;
    case 2: return kAttrUnknown;
    case 3: return kAttrControl;
    case 4: return kAttrUserDefined;
    case 5: return kAttrUnused;
    case 6: return kAttrByte;
    default: return 0;  // undefined
  }
}

uint64_t fnv1a(uint64_t h, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

uint64_t fnv1a_str(uint64_t h, std::string_view s) {
  uint64_t n = s.size();
  h = fnv1a(h, &n, sizeof n);
  return fnv1a(h, s.data(), s.size());
}

// The text of a byte token "<0xXX>" as llama.cpp reads it: strtol of characters 3..4.
uint8_t byte_of_token(const std::string& text) {
  std::string hex = text.size() > 3 ? text.substr(3, 2) : std::string();
  return static_cast<uint8_t>(std::strtol(hex.c_str(), nullptr, 16));
}

// llama_decode_text: byte-level BPE token text -> raw bytes.
std::string bpe_decode_text(const std::string& text) {
  std::string cleaned = llama_text_from_utf8(text);
  std::string out;
  for (size_t i = 0; i < cleaned.size();) {
    size_t n = std::min(utf8_len(static_cast<uint8_t>(cleaned[i])), cleaned.size() - i);
    std::string_view ch(cleaned.data() + i, n);
    int b = gpt2_utf8_to_byte(ch);
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
    } else {
      out += "[UNK_BYTE_0x";
      for (char c : ch) out += fmt::format("{:02x}", static_cast<uint8_t>(c));
      out += text + "]";
    }
    i += n;
  }
  return out;
}

// Attribute adjustments llama.cpp makes by token text when loading (llama_vocab::impl::load).
void fix_attributes(TokenizerImpl& t) {
  auto mark_control = [&](int32_t id) {
    if (id >= 0) t.attr[id] |= kAttrControl;
  };
  auto find_first = [&](std::initializer_list<const char*> names) {
    // llama.cpp takes the first hit while iterating its unordered_map; we take the lowest id.
    int32_t best = -1;
    for (const char* n : names) {
      int32_t id = t.find(n);
      if (id >= 0 && (best < 0 || id < best)) best = id;
    }
    return best;
  };
  // FIM tokens (the EOT/EOM candidates are all in the EOG list below).
  mark_control(find_first({"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
                           "▁<PRE>", "<|code_prefix|>", "<|prefix|>"}));
  mark_control(find_first({"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
                           "▁<SUF>", "<|code_suffix|>", "<|suffix|>"}));
  mark_control(find_first({"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
                           "▁<MID>", "<|code_middle|>", "<|middle|>"}));
  mark_control(find_first({"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}));
  mark_control(find_first({"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}));
  mark_control(find_first({"<|file_sep|>"}));
  // End-of-generation tokens.
  for (const char* n : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
                        "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
                        "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
                        "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~["}) {
    mark_control(t.find(n));
  }
  // gpt-oss: always rendered.
  for (const char* n : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}) {
    int32_t id = t.find(n);
    if (id >= 0) t.attr[id] = kAttrUserDefined;
  }
  // o200k_harmony / solar-open: "<|end|>" is not end-of-generation.
  int32_t end_id = t.find("<|end|>");
  bool has_return = t.find("<|return|>") >= 0;
  bool has_call = t.find("<|call|>") >= 0 || t.find("<|calls|>") >= 0;
  bool has_flush = t.find("<|flush|>") >= 0;
  if (end_id >= 0 && has_call && (has_return || has_flush)) t.attr[end_id] = kAttrUserDefined;
  // gemma4 / plamo: "</s>" is a normal token.
  int32_t s_id = t.find("</s>");
  bool has_marker = t.find("<|tool_response>") >= 0 ||
                    (t.d.eos_id >= 0 && t.texts[t.d.eos_id] == "<|plamo:eos|>");
  if (s_id >= 0 && has_marker) t.attr[s_id] = kAttrNormal;
}

std::string make_piece(const TokenizerImpl& t, int32_t id) {
  const std::string& text = t.texts[id];
  uint32_t a = t.attr[id];
  if (a & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return text;
  if (a & kAttrNormal) {
    if (!t.is_bpe) {
      std::string r = text;
      replace_all(r, kSpace, " ");
      return r;
    }
    return bpe_decode_text(text);
  }
  if (a & kAttrByte) return std::string(1, static_cast<char>(byte_of_token(text)));
  return std::string();
}

struct Fragment {
  int32_t token;  // -1: raw text [off, off + len)
  size_t off, len;
};

// tokenizer_st_partition: split the text at every occurrence of a special token, longest tokens first.
std::vector<Fragment> partition(const TokenizerImpl& t, std::string_view raw, bool parse_special) {
  std::vector<Fragment> frags;
  if (raw.empty()) return frags;
  frags.push_back({-1, 0, raw.size()});
  std::vector<Fragment> next;
  for (int32_t id : t.special) {
    if (!parse_special && (t.attr[id] & (kAttrControl | kAttrUnknown))) continue;
    const std::string& text = t.texts[id];
    bool any = false;
    for (const Fragment& f : frags) {
      if (f.token >= 0) continue;
      if (std::string_view(raw.data() + f.off, f.len).find(text) != std::string_view::npos) {
        any = true;
        break;
      }
    }
    if (!any) continue;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t pos = f.off, end = f.off + f.len;
      for (;;) {
        size_t m = std::string_view(raw.data(), end).find(text, pos);
        if (m == std::string_view::npos) break;
        if (m > pos) next.push_back({-1, pos, m - pos});
        next.push_back({id, 0, 0});
        pos = m + text.size();
      }
      if (pos < end) next.push_back({-1, pos, end - pos});
    }
    frags.swap(next);
  }
  return frags;
}

// llm_tokenizer_spm_session.
struct SpmSymbol {
  int prev, next;
  const char* text;
  size_t n;
};
struct SpmBigram {
  int left, right;
  float score;
  size_t size;
};
struct SpmCmp {
  bool operator()(const SpmBigram& l, const SpmBigram& r) const {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  }
};

}  // namespace

void TokenizerImpl::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<SpmSymbol> sym;
  sym.reserve(text.size());
  for (size_t offs = 0; offs < text.size();) {
    size_t n = std::min(utf8_len(static_cast<uint8_t>(text[offs])), text.size() - offs);
    int index = static_cast<int>(sym.size());
    sym.push_back({index - 1, offs + n == text.size() ? -1 : index + 1, text.data() + offs, n});
    offs += n;
  }
  if (sym.empty()) return;

  std::vector<SpmBigram> storage;
  storage.reserve(sym.size());
  std::priority_queue<SpmBigram, std::vector<SpmBigram>, SpmCmp> queue(SpmCmp{}, std::move(storage));
  auto try_add = [&](int left, int right) {
    if (left == -1 || right == -1) return;
    std::string_view s(sym[left].text, sym[left].n + sym[right].n);
    int32_t id = find(s);
    if (id < 0) return;
    queue.push({left, right, d.scores.empty() ? 0.0f : d.scores[id], s.size()});
  };
  for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    SpmBigram b = queue.top();
    queue.pop();
    SpmSymbol& l = sym[b.left];
    SpmSymbol& r = sym[b.right];
    if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // outdated
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }

  // Resegment: every merged symbol is a vocabulary entry (merges are only queued for entries), so llama.cpp's
  // rev_merge recursion never fires; unknown single characters fall back to byte tokens.
  for (int i = 0; i != -1; i = sym[i].next) {
    std::string_view s(sym[i].text, sym[i].n);
    int32_t id = find(s);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (char c : s) {
      int32_t bt = byte_tok[static_cast<uint8_t>(c)];
      if (bt < 0) bt = d.unk_id;  // llama.cpp aborts here; a vocabulary without byte tokens is rare
      if (bt >= 0) out.push_back(bt);
    }
  }
}

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer::Tokenizer(const TokenizerData& data) : impl_(std::make_unique<TokenizerImpl>()) {
  TokenizerImpl& t = *impl_;
  t.d = data;
  const TokenizerData& d = t.d;
  if (d.model == "llama") {
    t.is_bpe = false;
  } else if (d.model == "gpt2") {
    t.is_bpe = true;
  } else {
    fail("tokenizer: unknown tokenizer model '{}' (supported: llama, gpt2)", d.model);
  }
  const size_t n = d.tokens.size();
  if (n == 0) fail("tokenizer: empty vocabulary");
  if (n > static_cast<size_t>(INT32_MAX)) fail("tokenizer: vocabulary too large ({})", n);
  if (!d.scores.empty() && d.scores.size() != n)
    fail("tokenizer: {} scores for {} tokens", d.scores.size(), n);
  if (!d.token_types.empty() && d.token_types.size() != n)
    fail("tokenizer: {} token types for {} tokens", d.token_types.size(), n);
  auto check_id = [&](int32_t id, const char* what) {
    if (id < -1 || id >= static_cast<int64_t>(n)) fail("tokenizer: {} id {} out of range (vocab {})", what, id, n);
  };
  check_id(d.bos_id, "BOS");
  check_id(d.eos_id, "EOS");
  check_id(d.unk_id, "unknown-token");
  check_id(d.pad_id, "padding");
  if (d.add_bos && d.bos_id < 0) fail("tokenizer: add_bos is set but there is no BOS token");
  if (d.add_eos && d.eos_id < 0) fail("tokenizer: add_eos is set but there is no EOS token");

  t.texts.resize(n);
  t.attr.resize(n);
  t.tok2id.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    t.texts[i] = d.tokens[i].empty() ? fmt::format("[EMPTY_{}]", i) : d.tokens[i];
    t.tok2id[t.texts[i]] = static_cast<int32_t>(i);
    t.attr[i] = d.token_types.empty() ? kAttrNormal : attr_from_type(d.token_types[i]);
  }

  if (t.is_bpe) {
    if (d.merges.empty()) fail("tokenizer: byte-level BPE vocabulary without merges");
    build_bpe(t);
  } else {
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const char buf[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
      int32_t id = t.find(buf);
      if (id < 0) id = t.find(std::string(1, static_cast<char>(b)));
      t.byte_tok[b] = id;
    }
  }

  fix_attributes(t);

  for (int32_t id = 0; id < static_cast<int32_t>(n); ++id)
    if (t.attr[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) t.special.push_back(id);
  std::sort(t.special.begin(), t.special.end(), [&](int32_t a, int32_t b) {
    return t.texts[a].size() > t.texts[b].size();
  });

  t.piece_cache.resize(n);
  for (int32_t id = 0; id < static_cast<int32_t>(n); ++id) t.piece_cache[id] = make_piece(t, id);

  uint64_t h = 14695981039346656037ull;
  h = fnv1a_str(h, d.model);
  for (const auto& s : d.tokens) h = fnv1a_str(h, s);
  h = fnv1a_str(h, "merges");
  for (const auto& s : d.merges) h = fnv1a_str(h, s);
  t.fingerprint = h;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  if (!impl_) fail("tokenizer: encode on an empty Tokenizer");
  const TokenizerImpl& t = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  std::vector<Fragment> frags = partition(t, text, parse_special);
  if (add_bos && t.d.add_bos) out.push_back(t.d.bos_id);
  if (!t.is_bpe) {
    bool prev_special = true;  // the first fragment gets the space prefix too
    std::string buf;
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        out.push_back(f.token);
        prev_special = true;
        continue;
      }
      buf.clear();
      if (t.d.add_space_prefix && prev_special) buf.push_back(' ');
      buf.append(text.substr(f.off, f.len));
      replace_all(buf, " ", kSpace);
      t.encode_spm(buf, out);
      prev_special = false;
    }
  } else {
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        out.push_back(f.token);
        continue;
      }
      t.encode_bpe(text.substr(f.off, f.len), out);
    }
  }
  if (add_bos && t.d.add_eos) out.push_back(t.d.eos_id);
  return out;
}

std::string Tokenizer::detokenize(std::span<const int32_t> ids, bool remove_special, bool unparse_special) const {
  if (!impl_) fail("tokenizer: decode on an empty Tokenizer");
  const TokenizerImpl& t = *impl_;
  const int32_t n_vocab = static_cast<int32_t>(t.texts.size());
  bool remove_space = t.d.add_space_prefix;
  size_t first = 0, last = ids.size();
  if (remove_special && t.d.add_bos && last > first && ids[first] == t.d.bos_id) {
    remove_space = false;
    ++first;
  }
  if (remove_special && t.d.add_eos && last > first && ids[last - 1] == t.d.eos_id) --last;

  std::string text;
  for (size_t i = first; i < last; ++i) {
    int32_t id = ids[i];
    if (id < 0 || id >= n_vocab) fail("tokenizer: token id {} out of range (vocab {})", id, n_vocab);
    bool strip = remove_space;
    remove_space = false;
    if (!unparse_special && (t.attr[id] & (kAttrUnknown | kAttrControl))) continue;
    std::string_view p = t.piece_cache[id];
    if (strip && !p.empty() && p[0] == ' ') p.remove_prefix(1);
    text.append(p);
  }

  if (t.is_bpe && t.pre.clean_spaces && !text.empty()) {
    // llama.cpp's three clean-up passes, byte for byte.
    std::string& s = text;
    size_t total1 = s.size(), total = 1;
    for (size_t i = 1; i < total1; ++i) {
      char x = s[i];
      if (s[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) total--;
      s[total++] = x;
    }
    size_t total2 = total;
    total = 1;
    for (size_t i = 1; i < total2; ++i) {
      char x = s[i];
      if (x == '\'' && i + 1 < total2 && s[i - 1] == ' ' && s[i + 1] == ' ') {
        total--;
        s[++i] = '\0';
      }
      s[total++] = x;
    }
    size_t total3 = total;
    total = 1;
    for (size_t i = 1; i < total3; ++i) {
      char x = s[i];
      if (s[i - 1] == ' ' && x == '\'' && i + 1 < total3) {
        char x1 = s[i + 1];
        if (x1 == 's' || x1 == 'm') {
          total--;
        } else if (x1 != 't' && x1 != 'd' && i + 2 < total3) {
          char x2 = s[i + 2];
          if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
        }
      }
      s[total++] = x;
    }
    s.resize(total);
  }
  return text;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const { return detokenize(ids, false, false); }

std::string Tokenizer::piece(int32_t id) const {
  if (!impl_) fail("tokenizer: piece on an empty Tokenizer");
  if (id < 0 || id >= n_vocab()) fail("tokenizer: token id {} out of range (vocab {})", id, n_vocab());
  return impl_->piece_cache[id];
}

int Tokenizer::n_vocab() const { return impl_ ? static_cast<int>(impl_->texts.size()) : 0; }
int32_t Tokenizer::bos() const { return impl_ ? impl_->d.bos_id : -1; }
int32_t Tokenizer::eos() const { return impl_ ? impl_->d.eos_id : -1; }
bool Tokenizer::adds_bos() const { return impl_ && impl_->d.add_bos; }
const TokenizerData& Tokenizer::data() const {
  if (!impl_) fail("tokenizer: data() on an empty Tokenizer");
  return impl_->d;
}
uint64_t Tokenizer::fingerprint() const { return impl_ ? impl_->fingerprint : 0; }

}  // namespace ctrust
