// Byte-level BPE ("gpt2" vocabularies: GPT-2, SmolLM2, Llama 3, Qwen2): the pre-tokenizer regexes that
// llama.cpp chooses by tokenizer.ggml.pre, run with PCRE2, then llama.cpp's llm_tokenizer_bpe_session merge
// loop (lowest merge rank first, leftmost on ties).
//
// llama.cpp runs these regexes with hand-written matchers (gpt2, llama3, qwen2 patterns) or std::regex on a
// text where every non-ASCII code point is collapsed to one byte per Unicode category; both use llama.cpp's
// own Unicode 15.1 tables. PCRE2 gives the same leftmost-first alternation semantics; to make the character
// classes identical too, \s, \S, \p{L}, \p{N} and \p{P} are rewritten into explicit classes: \s is exactly
// llama.cpp's whitespace set (the Unicode White_Space property; PCRE2's own \s also has U+180E), and the
// letters/numbers/punctuation assigned after Unicode 14 (PCRE2 10.42's tables) are added to the property
// classes.
#include <algorithm>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/error.h"
#include "io/tokenizer_impl.h"

namespace ctrust {

namespace {

const char* const kGpt2Re = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const char* const kLlama3Re =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kQwen2Re =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kPoroRe = " ?[^(\\s|.,!?…。，、।۔،)]+";
const char* const kTekkenRe =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^"
    "a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kGpt4oRe =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'["
    "mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|"
    "'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!"
    "\\S)|\\s+";
const char* const kSeedCoderRe =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| "
    "?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// llama.cpp's unicode_set_whitespace.
const char* const kWhitespace =
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}"
    "\\x{3000}";
// Code points llama.cpp's tables (Unicode 15.1) put in a category that PCRE2 10.42 (Unicode 14) leaves
// unassigned.
const char* const kExtraL =
    "\\x{1123F}-\\x{11240}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}\\x{13441}-\\x{13446}"
    "\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{2B739}"
    "\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}";
const char* const kExtraN = "\\x{11F50}-\\x{11F59}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}";
const char* const kExtraP = "\\x{11B00}-\\x{11B09}\\x{11F43}-\\x{11F4F}";

// Rewrites \s, \S, \p{L}, \p{N}, \p{P} (inside or outside brackets) into llama.cpp's character classes.
std::string expand_classes(std::string_view re) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < re.size(); ++i) {
    char c = re[i];
    if (c == '\\' && i + 1 < re.size()) {
      char nx = re[i + 1];
      if (nx == 's') {
        out += in_class ? std::string(kWhitespace) : "[" + std::string(kWhitespace) + "]";
        ++i;
        continue;
      }
      if (nx == 'S' && !in_class) {
        out += "[^" + std::string(kWhitespace) + "]";
        ++i;
        continue;
      }
      if (nx == 'p' && i + 2 < re.size() && re[i + 2] == '{') {
        size_t close = re.find('}', i + 3);
        if (close != std::string_view::npos) {
          std::string_view name = re.substr(i + 3, close - i - 3);
          const char* extra = name == "L" ? kExtraL : name == "N" ? kExtraN : name == "P" ? kExtraP : "";
          std::string cls = "\\p{" + std::string(name) + "}" + extra;
          out += in_class ? cls : "[" + cls + "]";
          i = close;
          continue;
        }
      }
      out += c;
      out += nx;
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
    } else if (c == ']' && in_class) {
      in_class = false;
    }
    out += c;
  }
  return out;
}

struct ByteMap {
  std::string to_utf8[256];
  int16_t from_cp[324];  // code point (< 324) -> byte, or -1
  ByteMap() {
    std::fill(std::begin(from_cp), std::end(from_cp), int16_t(-1));
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      uint32_t cp = self ? b : 256 + n++;
      append_utf8(to_utf8[b], cp);
      from_cp[cp] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

struct BpeSymbol {
  int prev, next;
  const char* text;
  uint32_t n;
  int32_t sid;  // id of the text among the merge strings, -1 if in none
};
struct BpeBigram {
  int left, right;
  int32_t rank;
  uint32_t size;
};
struct BpeCmp {
  bool operator()(const BpeBigram& l, const BpeBigram& r) const {
    return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
  }
};
// The working memory of bpe_word: one per encode call, reused by its words (caller-owned, nothing per thread).
struct BpeScratch {
  std::string word;
  std::vector<BpeSymbol> sym;
  std::vector<BpeBigram> heap;
};

}  // namespace

size_t utf8_len(uint8_t lead) {
  static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lookup[lead >> 4];
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp <= 0x7F) {
    out.push_back(static_cast<char>(cp));
  } else if (cp <= 0x7FF) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp <= 0xFFFF) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string llama_text_from_utf8(std::string_view s) {
  // Fast path: plain ASCII is unchanged.
  size_t i = 0;
  while (i < s.size() && !(static_cast<uint8_t>(s[i]) & 0x80)) ++i;
  if (i == s.size()) return std::string(s);
  std::string out(s.substr(0, i));
  out.reserve(s.size() + 16);
  auto cont = [&](size_t k) { return k < s.size() && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80; };
  while (i < s.size()) {
    uint8_t b0 = static_cast<uint8_t>(s[i]);
    uint32_t cp;
    if (!(b0 & 0x80)) {
      out.push_back(static_cast<char>(b0));
      ++i;
      continue;
    } else if (!(b0 & 0x40)) {
      cp = 0xFFFD, i += 1;
    } else if (!(b0 & 0x20)) {
      if (cont(i + 1)) {
        cp = ((b0 & 0x1Fu) << 6) | (static_cast<uint8_t>(s[i + 1]) & 0x3Fu);
        i += 2;
      } else {
        cp = 0xFFFD, i += 1;
      }
    } else if (!(b0 & 0x10)) {
      if (cont(i + 1) && cont(i + 2)) {
        cp = ((b0 & 0x0Fu) << 12) | ((static_cast<uint8_t>(s[i + 1]) & 0x3Fu) << 6) |
             (static_cast<uint8_t>(s[i + 2]) & 0x3Fu);
        i += 3;
      } else {
        cp = 0xFFFD, i += 1;
      }
    } else if (!(b0 & 0x08)) {
      if (cont(i + 1) && cont(i + 2) && cont(i + 3)) {
        cp = ((b0 & 0x07u) << 18) | ((static_cast<uint8_t>(s[i + 1]) & 0x3Fu) << 12) |
             ((static_cast<uint8_t>(s[i + 2]) & 0x3Fu) << 6) | (static_cast<uint8_t>(s[i + 3]) & 0x3Fu);
        i += 4;
      } else {
        cp = 0xFFFD, i += 1;
      }
    } else {
      cp = 0xFFFD, i += 1;
    }
    if (cp > 0x10FFFF) cp = 0xFFFD;
    append_utf8(out, cp);
  }
  return out;
}

const std::string& gpt2_byte_to_utf8(uint8_t b) { return byte_map().to_utf8[b]; }

int gpt2_utf8_to_byte(std::string_view ch) {
  uint32_t cp;
  if (ch.size() == 1 && !(static_cast<uint8_t>(ch[0]) & 0x80)) {
    cp = static_cast<uint8_t>(ch[0]);
  } else if (ch.size() == 2 && (static_cast<uint8_t>(ch[0]) & 0xE0) == 0xC0) {
    cp = ((static_cast<uint8_t>(ch[0]) & 0x1Fu) << 6) | (static_cast<uint8_t>(ch[1]) & 0x3Fu);
    if (cp < 0x80) return -1;
  } else {
    return -1;
  }
  return cp < 324 ? byte_map().from_cp[cp] : -1;
}

PreTokInfo pre_tokenizer_info(std::string_view pre) {
  PreTokInfo p;
  auto is = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (pre == n) return true;
    return false;
  };
  const std::vector<std::string> kDefault = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2Re, "\\p{N}+", "[0-9][0-9][0-9]"};
  if (pre.empty() || pre == "default") {
    p.regexes = kDefault;
  } else if (is({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                 "jina-v5-nano"})) {
    p.regexes = {kLlama3Re};
    p.ignore_merges = true;
    p.add_bos = true;
  } else if (is({"dbrx", "smaug-bpe"})) {
    p.regexes = {kLlama3Re};
  } else if (is({"falcon"})) {
    p.regexes = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2Re, "[0-9][0-9][0-9]"};
  } else if (is({"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
                 "mellum", "modern-bert", "mpt", "olmo", "jais", "exaone4"})) {
    p.regexes = {kGpt2Re};
  } else if (is({"trillion", "granite-docling"})) {
    p.regexes = {kGpt2Re};
    p.clean_spaces = false;
  } else if (is({"starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"})) {
    p.regexes = {"\\p{N}", kGpt2Re};
  } else if (is({"smollm", "command-r"})) {
    p.regexes = {"\\p{N}", kGpt2Re};
    p.clean_spaces = false;
  } else if (is({"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open", "grok-2"})) {
    p.regexes = {kQwen2Re};
    p.clean_spaces = false;
  } else if (is({"stablelm2", "megrez"})) {
    p.regexes = {kQwen2Re};
  } else if (is({"poro-chat"})) {
    p.regexes = {kPoroRe};
    p.clean_spaces = false;
  } else if (is({"bloom", "gpt3-finnish"})) {
    p.regexes = {kPoroRe};
  } else if (is({"viking"})) {
    p.regexes = {kPoroRe, "\\p{N}"};
    p.clean_spaces = false;
  } else if (is({"tekken"})) {
    p.regexes = {kTekkenRe};
    p.clean_spaces = false;
    p.ignore_merges = true;
    p.add_bos = true;
  } else if (is({"gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"})) {
    p.regexes = {kGpt4oRe};
    p.clean_spaces = false;
  } else if (is({"seed-coder"})) {
    p.regexes = {kSeedCoderRe};
    p.clean_spaces = false;
  } else {
    // llama.cpp refuses unknown names; ctrust falls back to its "default" pre-tokenizer.
    p.regexes = kDefault;
    p.known = false;
  }
  return p;
}

struct PreTokenizer {
  std::vector<pcre2_code*> codes;
  ~PreTokenizer() {
    for (pcre2_code* c : codes) pcre2_code_free(c);
  }
};

void PreTokenizerDeleter::operator()(PreTokenizer* p) const { delete p; }

std::unique_ptr<PreTokenizer, PreTokenizerDeleter> make_pre_tokenizer(const std::vector<std::string>& regexes) {
  std::unique_ptr<PreTokenizer, PreTokenizerDeleter> pt(new PreTokenizer);
  for (const std::string& re : regexes) {
    std::string expanded = expand_classes(re);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(expanded.data()), expanded.size(),
                                     PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("tokenizer: bad pre-tokenizer regex '{}' at offset {}: {}", re, err_off,
           reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
    pt->codes.push_back(code);
  }
  return pt;
}

void pre_tokenize(const PreTokenizer& pt, std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& out) {
  out.clear();
  if (text.empty()) return;
  if (text.size() >= UINT32_MAX) fail("tokenizer: text too long ({} bytes)", text.size());
  // UTF-16 surrogates (which llama.cpp's decoder lets through) are not valid UTF-8 for PCRE2: match on a
  // copy where each is replaced by U+E000 (same length; both are "other" for every pattern).
  std::string shadow;
  std::string_view subject = text;
  for (size_t i = 0; i + 2 < text.size(); ++i) {
    if (static_cast<uint8_t>(text[i]) == 0xED && static_cast<uint8_t>(text[i + 1]) >= 0xA0) {
      if (shadow.empty()) shadow.assign(text);
      shadow[i] = static_cast<char>(0xEE);
      shadow[i + 1] = static_cast<char>(0x80);
      shadow[i + 2] = static_cast<char>(0x80);
    }
  }
  if (!shadow.empty()) subject = shadow;

  std::vector<std::pair<uint32_t, uint32_t>> cur{{0u, static_cast<uint32_t>(text.size())}};
  for (pcre2_code* code : pt.codes) {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
    if (!md) fail("tokenizer: out of memory");
    out.clear();
    for (auto [b, e] : cur) {
      auto subj = reinterpret_cast<PCRE2_SPTR>(subject.data() + b);
      const size_t len = e - b;
      size_t pos = 0, prev = 0;
      while (pos < len) {
        int rc = pcre2_match(code, subj, len, pos, PCRE2_NO_UTF_CHECK, md, nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
          pcre2_match_data_free(md);
          fail("tokenizer: pre-tokenizer regex failed (PCRE2 error {})", rc);
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {  // empty match (none of the patterns produce one): step over one character
          pos = ms + utf8_len(static_cast<uint8_t>(subject[b + ms]));
          continue;
        }
        if (ms > prev) out.emplace_back(b + prev, b + ms);
        out.emplace_back(b + ms, b + me);
        prev = pos = me;
      }
      if (prev < len) out.emplace_back(b + prev, e);
    }
    pcre2_match_data_free(md);
    cur.swap(out);
  }
  out.swap(cur);
}

void build_bpe(TokenizerImpl& t) {
  t.pre = pre_tokenizer_info(t.d.pre);
  t.pretok = make_pre_tokenizer(t.pre.regexes);
  auto intern = [&](const std::string& s) {
    auto [it, inserted] = t.merges.sym_ids.try_emplace(s, static_cast<int32_t>(t.merges.sym_ids.size()));
    return it->second;
  };
  t.merges.sym_ids.reserve(t.d.merges.size() * 2);
  t.merges.rank.reserve(t.d.merges.size());
  for (size_t i = 0; i < t.d.merges.size(); ++i) {
    const std::string& m = t.d.merges[i];
    size_t pos = m.find(' ', 1);
    if (pos == std::string::npos) continue;  // llama.cpp files it under ("", ""), which never matches
    uint64_t key = (static_cast<uint64_t>(intern(m.substr(0, pos))) << 32) |
                   static_cast<uint32_t>(intern(m.substr(pos + 1)));
    t.merges.rank.try_emplace(key, static_cast<int32_t>(i));  // the first occurrence wins
  }
}

namespace {

// llm_tokenizer_bpe_session::tokenize for one pre-token.
void bpe_word(const TokenizerImpl& t, std::string_view raw_word, std::vector<int32_t>& out, BpeScratch& scratch) {
  std::string& word = scratch.word;
  std::vector<BpeSymbol>& sym = scratch.sym;
  std::vector<BpeBigram>& heap = scratch.heap;
  const BpeMerges& merges = t.merges;
  const ByteMap& bm = byte_map();
  word.clear();
  for (char c : raw_word) word += bm.to_utf8[static_cast<uint8_t>(c)];
  if (t.pre.ignore_merges) {
    int32_t id = t.find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  auto sid_of = [&](const char* p, size_t n) {
    auto it = merges.sym_ids.find(std::string_view(p, n));
    return it == merges.sym_ids.end() ? -1 : it->second;
  };
  sym.clear();
  for (size_t off = 0; off < word.size();) {
    uint32_t n = static_cast<uint32_t>(std::min(utf8_len(static_cast<uint8_t>(word[off])), word.size() - off));
    int index = static_cast<int>(sym.size());
    sym.push_back({index - 1, off + n == word.size() ? -1 : index + 1, word.data() + off, n,
                   sid_of(word.data() + off, n)});
    off += n;
  }
  // A binary heap through push_heap/pop_heap, as std::priority_queue (llama.cpp) keeps it. (The order of
  // equal entries does not matter: two live bigrams never share rank and left symbol.)
  heap.clear();
  auto add = [&](int left, int right) {
    if (left == -1 || right == -1) return;
    int32_t l = sym[left].sid, r = sym[right].sid;
    if (l < 0 || r < 0) return;
    auto it = merges.rank.find((static_cast<uint64_t>(l) << 32) | static_cast<uint32_t>(r));
    if (it == merges.rank.end()) return;
    heap.push_back({left, right, it->second, sym[left].n + sym[right].n});
    std::push_heap(heap.begin(), heap.end(), BpeCmp{});
  };
  for (int i = 1; i < static_cast<int>(sym.size()); ++i) add(i - 1, i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), BpeCmp{});
    BpeBigram bg = heap.back();
    heap.pop_back();
    BpeSymbol& l = sym[bg.left];
    BpeSymbol& r = sym[bg.right];
    if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size) continue;  // outdated
    l.n += r.n;
    r.n = 0;
    l.sid = sid_of(l.text, l.n);
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = bg.left;
    add(l.prev, bg.left);
    add(bg.left, l.next);
  }
  for (const BpeSymbol& s : sym) {
    if (s.n == 0) continue;
    std::string_view str(s.text, s.n);
    int32_t id = t.find(str);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (char c : str) {  // llama.cpp looks each byte up as a one-character token
      int32_t bt = t.find(std::string_view(&c, 1));
      if (bt >= 0) out.push_back(bt);
    }
  }
}

}  // namespace

void TokenizerImpl::encode_bpe(std::string_view raw, std::vector<int32_t>& out) const {
  const std::string text = llama_text_from_utf8(raw);
  std::vector<std::pair<uint32_t, uint32_t>> words;
  pre_tokenize(*pretok, text, words);
  // Long texts repeat words: remember each word's tokens (they depend on the word alone).
  const bool use_cache = words.size() > 256;
  std::unordered_map<std::string_view, std::pair<size_t, size_t>> cache;  // word -> [begin, end) in out
  BpeScratch scratch;
  for (auto [b, e] : words) {
    std::string_view w(text.data() + b, e - b);
    if (use_cache) {
      auto it = cache.find(w);
      if (it != cache.end()) {
        for (size_t k = it->second.first; k < it->second.second; ++k) {
          const int32_t id = out[k];
          out.push_back(id);
        }
        continue;
      }
    }
    const size_t begin = out.size();
    bpe_word(*this, w, out, scratch);
    if (use_cache) cache.emplace(w, std::make_pair(begin, out.size()));
  }
}

}  // namespace ctrust
