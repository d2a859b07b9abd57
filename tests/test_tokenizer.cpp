// Tokenizers against llama.cpp: golden ids from scripts/ref/make_token_golden.py (llama-cpp-python) for
// stories260K (SentencePiece BPE, from its GGUF and from llama2.c's tok512.bin) and SmolLM2-135M (byte-level
// BPE, from its GGUF and from a tokenizer.json written from the same vocabulary).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "io/gguf.h"
#include "io/tokenizer.h"
#include "io/tokenizer_impl.h"
#include "test_paths.h"

namespace ctrust {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

uint64_t fnv1a64(std::span<const int32_t> ids) {
  uint64_t h = 14695981039346656037ull;
  for (int32_t id : ids) {
    uint32_t u = static_cast<uint32_t>(id);
    for (int k = 0; k < 4; ++k) {
      h ^= (u >> (8 * k)) & 0xFF;
      h *= 1099511628211ull;
    }
  }
  return h;
}

std::string hex64(uint64_t h) { return fmt::format("{:016x}", h); }

const json& golden(const std::string& name) {
  static std::map<std::string, json> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    it = cache.emplace(name, json::parse(read_file(test::golden_dir() + "/tokens_" + name + ".json"))).first;
  }
  return it->second;
}

std::string show(const std::string& s) {
  std::string o;
  for (unsigned char c : s) o += (c >= 0x20 && c < 0x7f) ? std::string(1, static_cast<char>(c)) : fmt::format("\\x{:02x}", c);
  return o;
}

// Every golden case: ids (no BOS, no special parsing), ids with BOS and special parsing, and both
// detokenizations.
void check_cases(const Tokenizer& tok, const json& g, bool check_decode = true) {
  ASSERT_EQ(tok.n_vocab(), g["n_vocab"].get<int>());
  ASSERT_EQ(tok.bos(), g["bos"].get<int>());
  ASSERT_EQ(tok.eos(), g["eos"].get<int>());
  for (const json& c : g["cases"]) {
    const std::string text = unhex(c["input"]["hex"].get<std::string>());
    SCOPED_TRACE("input: \"" + show(text) + "\"");
    auto ids = tok.encode(text, false, false);
    EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>());
    auto ids2 = tok.encode(text, true, true);
    EXPECT_EQ(ids2, c["ids_bos_special"].get<std::vector<int32_t>>());
    if (!check_decode) continue;
    auto gold_ids = c["ids"].get<std::vector<int32_t>>();
    auto gold_ids2 = c["ids_bos_special"].get<std::vector<int32_t>>();
    EXPECT_EQ(show(tok.decode(gold_ids)), show(unhex(c["decode"]["hex"].get<std::string>())));
    EXPECT_EQ(show(tok.detokenize(gold_ids2, true, true)),
              show(unhex(c["detok_bos_special"]["hex"].get<std::string>())));
    // Round trip wherever llama.cpp's own round trip is exact.
    if (unhex(c["decode"]["hex"].get<std::string>()) == text) {
      EXPECT_EQ(show(tok.decode(ids)), show(text));
    }
  }
}

// The whole WikiText-2 test file in one call with BOS, as llama.cpp's perplexity tool tokenizes it.
void check_wikitext(const Tokenizer& tok, const json& g) {
  const json& w = g["wikitext"];
  const std::string path = test::shared_dir() + "/" + w["file"].get<std::string>();
  if (!fs::exists(path)) GTEST_SKIP() << "missing " << path;
  const std::string text = read_file(path);
  ASSERT_EQ(text.size(), w["bytes"].get<size_t>());
  auto t0 = std::chrono::steady_clock::now();
  auto ids = tok.encode(text, w["add_bos"].get<bool>(), w["parse_special"].get<bool>());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ info ] %s: %zu bytes -> %zu tokens in %.3f s\n", g["model"].get<std::string>().c_str(),
              text.size(), ids.size(), secs);
  const size_t chunk = w["chunk_tokens"].get<size_t>();
  const auto& chunks = w["chunk_fnv1a64"];
  for (size_t i = 0; i < chunks.size(); ++i) {
    size_t b = i * chunk;
    if (b >= ids.size()) {
      ADD_FAILURE() << "only " << ids.size() << " tokens, golden has chunk " << i;
      break;
    }
    size_t n = std::min(chunk, ids.size() - b);
    ASSERT_EQ(hex64(fnv1a64(std::span(ids).subspan(b, n))), chunks[i].get<std::string>())
        << "first mismatch in tokens [" << b << ", " << b + chunk << ")";
  }
  ASSERT_EQ(ids.size(), w["count"].get<size_t>());
  EXPECT_EQ(hex64(fnv1a64(ids)), w["fnv1a64"].get<std::string>());
  auto first = w["first"].get<std::vector<int32_t>>();
  auto last = w["last"].get<std::vector<int32_t>>();
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + first.size()), first);
  EXPECT_EQ(std::vector<int32_t>(ids.end() - last.size(), ids.end()), last);
}

Tokenizer stories_llama2c() { return Tokenizer(tokenizer_from_llama2c(test::stories_tok())); }
Tokenizer stories_gguf() { return Tokenizer(tokenizer_from_gguf(read_gguf(test::stories_gguf()))); }

const Tokenizer& smollm() {
  static Tokenizer tok = Tokenizer(tokenizer_from_gguf(read_gguf(test::smollm_q4_1())));
  return tok;
}
#define REQUIRE_SMOLLM()                                                                   \
  if (!fs::exists(test::smollm_q4_1())) GTEST_SKIP() << "missing " << test::smollm_q4_1()

// ---------------------------------------------------------------------------------------------------------
// stories260K (SentencePiece BPE with byte fallback)

TEST(TokenizerStories, Llama2cMatchesLlamaCpp) { check_cases(stories_llama2c(), golden("stories260K")); }

TEST(TokenizerStories, GgufMatchesLlamaCpp) { check_cases(stories_gguf(), golden("stories260K")); }

TEST(TokenizerStories, Llama2cVocabularyEqualsGguf) {
  Tokenizer a = stories_llama2c(), b = stories_gguf();
  EXPECT_EQ(a.fingerprint(), b.fingerprint());
  EXPECT_EQ(a.data().tokens, b.data().tokens);
  EXPECT_EQ(a.data().scores, b.data().scores);
  EXPECT_EQ(a.data().token_types, b.data().token_types);
  EXPECT_EQ(a.data().bos_id, 1);
  EXPECT_EQ(a.data().eos_id, 2);
  EXPECT_TRUE(a.adds_bos());
  EXPECT_TRUE(b.adds_bos());
}

TEST(TokenizerStories, WikitextMatchesLlamaCpp) { check_wikitext(stories_llama2c(), golden("stories260K")); }

TEST(TokenizerStories, PiecesAndBytes) {
  Tokenizer tok = stories_llama2c();
  EXPECT_EQ(tok.piece(1), "<s>");             // control tokens show their text
  EXPECT_EQ(tok.piece(3 + 0x0A), "\n");       // <0x0A>
  EXPECT_EQ(tok.data().tokens[259], "\xe2\x96\x81t");
  EXPECT_EQ(tok.piece(259), " t");            // U+2581 -> space
  std::vector<int32_t> ids = {1, 259, 2};
  EXPECT_EQ(tok.decode(ids), " t");           // BOS/EOS render as nothing; space kept after BOS
  EXPECT_EQ(tok.detokenize(ids, true, true), " t</s>");
  EXPECT_THROW(tok.piece(512), Error);
  std::vector<int32_t> bad = {5, 600};
  EXPECT_THROW(tok.decode(bad), Error);
}

// ---------------------------------------------------------------------------------------------------------
// SmolLM2 (byte-level BPE, pre-tokenizer "smollm")

TEST(TokenizerSmolLM2, GgufMatchesLlamaCpp) {
  REQUIRE_SMOLLM();
  EXPECT_EQ(smollm().data().model, "gpt2");
  EXPECT_EQ(smollm().data().pre, "smollm");
  EXPECT_FALSE(smollm().adds_bos());
  EXPECT_FALSE(smollm().data().chat_template.empty());
  check_cases(smollm(), golden("smollm2"));
}

TEST(TokenizerSmolLM2, WikitextMatchesLlamaCpp) {
  REQUIRE_SMOLLM();
  check_wikitext(smollm(), golden("smollm2"));
}

// ---------------------------------------------------------------------------------------------------------
// Qwen2.5-Coder 0.5B and 1.5B (byte-level BPE, pre-tokenizer "qwen2": single digits, no BOS); optional files.

const Tokenizer& qwen(const std::string& size) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(size);
  if (it == cache.end())
    it = cache.emplace(size, Tokenizer(tokenizer_from_gguf(read_gguf(test::qwen_q4_k_m(size))))).first;
  return it->second;
}

void check_qwen_tokenizer(const std::string& size) {
  const Tokenizer& t = qwen(size);
  EXPECT_EQ(t.data().model, "gpt2");
  EXPECT_EQ(t.data().pre, "qwen2");
  EXPECT_FALSE(t.adds_bos());
  EXPECT_EQ(t.n_vocab(), 151936);
  check_cases(t, golden("qwen" + size));
}

TEST(TokenizerQwen2, Qwen05GgufMatchesLlamaCpp) {
  CTRUST_REQUIRE_QWEN("0.5b");
  check_qwen_tokenizer("0.5b");
}
TEST(TokenizerQwen2, Qwen05WikitextMatchesLlamaCpp) {
  CTRUST_REQUIRE_QWEN("0.5b");
  check_wikitext(qwen("0.5b"), golden("qwen0.5b"));
}
TEST(TokenizerQwen2, Qwen15GgufMatchesLlamaCpp) {
  CTRUST_REQUIRE_QWEN("1.5b");
  check_qwen_tokenizer("1.5b");
}
TEST(TokenizerQwen2, Qwen15WikitextMatchesLlamaCpp) {
  CTRUST_REQUIRE_QWEN("1.5b");
  check_wikitext(qwen("1.5b"), golden("qwen1.5b"));
}

// ---------------------------------------------------------------------------------------------------------
// Gemma-3-270M (SentencePiece BPE with byte fallback, 262,144 pieces, no space prefix, BOS); optional file.

const Tokenizer& gemma3() {
  static Tokenizer t(tokenizer_from_gguf(read_gguf(test::gemma3_q4_k_m())));
  return t;
}

TEST(TokenizerGemma3, GgufMatchesLlamaCpp) {
  CTRUST_REQUIRE_GEMMA3();
  const Tokenizer& t = gemma3();
  EXPECT_EQ(t.data().model, "llama");
  EXPECT_FALSE(t.data().add_space_prefix);
  EXPECT_TRUE(t.adds_bos());
  EXPECT_EQ(t.n_vocab(), 262144);
  EXPECT_EQ(t.data().bos_id, 2);
  EXPECT_EQ(t.data().eos_id, 1);
  check_cases(t, golden("gemma3-270m"));
}
TEST(TokenizerGemma3, WikitextMatchesLlamaCpp) {
  CTRUST_REQUIRE_GEMMA3();
  check_wikitext(gemma3(), golden("gemma3-270m"));
}

// tokenizer.json written from the GGUF's vocabulary and merges (both merge spellings) must tokenize
// identically to the GGUF.
TEST(TokenizerSmolLM2, TokenizerJsonMatchesGguf) {
  REQUIRE_SMOLLM();
  const TokenizerData& d = smollm().data();
  for (bool array_merges : {false, true}) {
    SCOPED_TRACE(array_merges ? "merges as arrays" : "merges as strings");
    json vocab = json::object();
    json added = json::array();
    for (size_t i = 0; i < d.tokens.size(); ++i) {
      if (d.token_types[i] == 3) {
        added.push_back({{"id", i}, {"content", d.tokens[i]}, {"special", true}, {"single_word", false},
                         {"lstrip", false}, {"rstrip", false}, {"normalized", false}});
      }
      vocab[d.tokens[i]] = i;
    }
    json merges = json::array();
    for (const std::string& m : d.merges) {
      if (array_merges) {
        size_t sp = m.find(' ', 1);
        merges.push_back(json::array({m.substr(0, sp), m.substr(sp + 1)}));
      } else {
        merges.push_back(m);
      }
    }
    json tj = {
        {"version", "1.0"},
        {"added_tokens", added},
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers",
           json::array({{{"type", "Digits"}, {"individual_digits", true}},
                        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                         {"use_regex", true}}})}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model",
         {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"byte_fallback", false},
          {"vocab", vocab}, {"merges", merges}}},
    };
    json cfg = {{"bos_token", d.tokens[d.bos_id]}, {"eos_token", d.tokens[d.eos_id]},
                {"unk_token", d.tokens[d.unk_id]}, {"pad_token", d.tokens[d.pad_id]},
                {"add_bos_token", false}, {"chat_template", d.chat_template}};
    const std::string dir = test::scratch_dir() + "/smollm2-json";
    fs::create_directories(dir);
    write_file(dir + "/tokenizer.json", tj.dump());
    write_file(dir + "/tokenizer_config.json", cfg.dump());
    TokenizerData jd = tokenizer_from_json(dir + "/tokenizer.json");
    EXPECT_EQ(jd.model, "gpt2");
    EXPECT_EQ(jd.pre, "smollm");
    EXPECT_EQ(jd.tokens, d.tokens);
    EXPECT_EQ(jd.token_types, d.token_types);
    EXPECT_EQ(jd.merges, d.merges);
    EXPECT_EQ(jd.bos_id, d.bos_id);
    EXPECT_EQ(jd.eos_id, d.eos_id);
    EXPECT_EQ(jd.chat_template, d.chat_template);
    Tokenizer jt(jd);
    EXPECT_EQ(jt.fingerprint(), smollm().fingerprint());
    check_cases(jt, golden("smollm2"));
    // A slice of WikiText-2 as well.
    const std::string wiki = test::shared_dir() + "/data/wikitext-2-raw/wiki.test.raw";
    if (fs::exists(wiki)) {
      std::string text = read_file(wiki).substr(0, 200000);
      EXPECT_EQ(jt.encode(text, true), smollm().encode(text, true));
    }
  }
}

// A SentencePiece vocabulary exported the way transformers does it (vocab + merges ordered by piece score,
// byte_fallback, Metaspace-style normalizer, no scores) must tokenize like the GGUF it came from.
TEST(TokenizerStories, TokenizerJsonMatchesGguf) {
  Tokenizer g = stories_gguf();
  const TokenizerData& d = g.data();
  auto chars = [](const std::string& s) {
    std::vector<std::string> c;
    for (size_t i = 0; i < s.size();) {
      size_t n = std::min(utf8_len(static_cast<uint8_t>(s[i])), s.size() - i);
      c.push_back(s.substr(i, n));
      i += n;
    }
    return c;
  };
  std::map<std::string, int> ids;
  for (size_t i = 0; i < d.tokens.size(); ++i) ids[d.tokens[i]] = static_cast<int>(i);
  struct M { std::string l, r; float score; };
  std::vector<M> merges;  // transformers' SentencePieceExtractor
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    auto c = chars(d.tokens[i]);
    std::vector<M> local;
    for (size_t k = 1; k < c.size(); ++k) {
      std::string l, r;
      for (size_t q = 0; q < k; ++q) l += c[q];
      for (size_t q = k; q < c.size(); ++q) r += c[q];
      if (ids.count(l) && ids.count(r)) local.push_back({l, r, d.scores[i]});
    }
    std::sort(local.begin(), local.end(), [&](const M& a, const M& b) {
      return std::make_pair(ids[a.l], ids[a.r]) < std::make_pair(ids[b.l], ids[b.r]);
    });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const M& a, const M& b) { return a.score > b.score; });
  json vocab = json::object(), jm = json::array(), added = json::array();
  for (size_t i = 0; i < d.tokens.size(); ++i) vocab[d.tokens[i]] = i;
  for (const M& m : merges) jm.push_back(m.l + " " + m.r);
  for (int i = 0; i < 3; ++i) added.push_back({{"id", i}, {"content", d.tokens[i]}, {"special", true}});
  json tj = {
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}},
                                     {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}})}}},
      {"pre_tokenizer", nullptr},
      {"model",
       {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"fuse_unk", true}, {"vocab", vocab},
        {"merges", jm}}},
  };
  const std::string dir = test::scratch_dir() + "/stories-json";
  fs::create_directories(dir);
  write_file(dir + "/tokenizer.json", tj.dump());
  TokenizerData jd = tokenizer_from_json(dir + "/tokenizer.json");
  EXPECT_EQ(jd.model, "llama");
  EXPECT_EQ(jd.tokens, d.tokens);
  EXPECT_EQ(jd.token_types, d.token_types);
  EXPECT_EQ(jd.unk_id, 0);
  EXPECT_EQ(jd.bos_id, 1);
  EXPECT_EQ(jd.eos_id, 2);
  EXPECT_TRUE(jd.add_bos);
  Tokenizer jt(jd);
  EXPECT_EQ(jt.fingerprint(), g.fingerprint());
  check_cases(jt, golden("stories260K"));
}

// ---------------------------------------------------------------------------------------------------------
// Pre-tokenizer regexes, hand-checked splits

std::vector<std::string> split(const std::string& pre, const std::string& text) {
  PreTokInfo info = pre_tokenizer_info(pre);
  auto pt = make_pre_tokenizer(info.regexes);
  std::string clean = llama_text_from_utf8(text);
  std::vector<std::pair<uint32_t, uint32_t>> r;
  pre_tokenize(*pt, clean, r);
  std::vector<std::string> out;
  for (auto [b, e] : r) out.push_back(clean.substr(b, e - b));
  return out;
}

using Pieces = std::vector<std::string>;

TEST(TokenizerPreTok, Gpt2) {
  EXPECT_EQ(split("gpt-2", "Hello  world's 123!!"),
            (Pieces{"Hello", " ", " world", "'s", " 123", "!!"}));
  EXPECT_EQ(split("gpt-2", "a\t\tb  "), (Pieces{"a", "\t", "\t", "b", "  "}));
  EXPECT_EQ(split("gpt-2", "I'M ok"), (Pieces{"I", "'", "M", " ok"}));  // contractions are lower case only
}

TEST(TokenizerPreTok, SmolLMSplitsDigits) {
  EXPECT_EQ(split("smollm", "in 2024, x1"), (Pieces{"in", " ", "2", "0", "2", "4", ",", " x", "1"}));
}

TEST(TokenizerPreTok, Llama3) {
  EXPECT_EQ(split("llama-bpe", "I'M 12345 ok\n\n  x"),
            (Pieces{"I", "'M", " ", "123", "45", " ok", "\n\n", " ", " x"}));
  EXPECT_EQ(split("llama-bpe", "\thi!?\n"), (Pieces{"\thi", "!?\n"}));
}

TEST(TokenizerPreTok, Qwen2) {
  EXPECT_EQ(split("qwen2", "abc 123"), (Pieces{"abc", " ", "1", "2", "3"}));
}

TEST(TokenizerPreTok, DefaultAndUnknown) {
  EXPECT_EQ(split("default", "a+b=1234"), (Pieces{"a", "+", "b", "=", "123", "4"}));
  EXPECT_FALSE(pre_tokenizer_info("no-such-pre").known);
  EXPECT_EQ(pre_tokenizer_info("no-such-pre").regexes, pre_tokenizer_info("default").regexes);
}

TEST(TokenizerPreTok, UnicodeClassesFollowLlamaCpp) {
  // U+180E is not whitespace for llama.cpp (PCRE2's \s says it is); U+11F04 (Kawi, Unicode 15) is a letter.
  EXPECT_EQ(split("gpt-2", "a!\xe1\xa0\x8e"), (Pieces{"a", "!\xe1\xa0\x8e"}));
  EXPECT_EQ(split("gpt-2", "x\xf0\x91\xbc\x84\xf0\x91\xbc\x85y"), (Pieces{"x\xf0\x91\xbc\x84\xf0\x91\xbc\x85y"}));
  // U+11F50 (Kawi digit zero, Unicode 15) is a number: SmolLM2 isolates it like an ASCII digit.
  EXPECT_EQ(split("smollm", " \xf0\x91\xbd\x90"), (Pieces{" ", "\xf0\x91\xbd\x90"}));
  // U+11F43 (Kawi danda) is punctuation for the default pre-tokenizer's first regex.
  EXPECT_EQ(split("default", "a!\xf0\x91\xbd\x83"), (Pieces{"a", "!\xf0\x91\xbd\x83"}));
  // U+2003 EM SPACE is whitespace; only ASCII space joins the following word.
  EXPECT_EQ(split("gpt-2", "a\xe2\x80\x83\xe2\x80\x83" "b"), (Pieces{"a", "\xe2\x80\x83", "\xe2\x80\x83", "b"}));
}

TEST(TokenizerPreTok, InvalidUtf8BecomesReplacementCharacter) {
  EXPECT_EQ(llama_text_from_utf8("a\xff" "b"), "a\xef\xbf\xbd" "b");
  EXPECT_EQ(llama_text_from_utf8("\xc3("), "\xef\xbf\xbd(");
  EXPECT_EQ(llama_text_from_utf8("\xc3\xa9"), "\xc3\xa9");
}

// ---------------------------------------------------------------------------------------------------------
// Hand-built vocabularies: merge order and tie-breaking

TEST(TokenizerSpm, HighestScoreFirstLeftmostOnTies) {
  TokenizerData d;
  d.model = "llama";
  d.tokens = {"<unk>", "<s>", "</s>", "a", "b", "ab", "ba", "aba", "\xe2\x96\x81"};
  d.scores = {0, 0, 0, -10, -10, -1, -1, -2, -10};
  d.token_types = {2, 3, 3, 1, 1, 1, 1, 1, 1};
  d.unk_id = 0, d.bos_id = 1, d.eos_id = 2;
  d.add_space_prefix = false;
  Tokenizer tok(d);
  // "abab": ab(0,1), ba(1,2), ab(2,3) all -1 -> leftmost "ab" first, then "ab" at 2; "abab" is no token.
  EXPECT_EQ(tok.encode("abab", false), (std::vector<int32_t>{5, 5}));
  // "bab": ba(0,1) and ab(1,2) tie -> "ba" (leftmost), then "b".
  EXPECT_EQ(tok.encode("bab", false), (std::vector<int32_t>{6, 4}));
  // Unknown character without byte tokens -> <unk>.
  EXPECT_EQ(tok.encode("ac", false), (std::vector<int32_t>{3, 0}));
  EXPECT_EQ(tok.encode("ab", true), (std::vector<int32_t>{1, 5}));
}

TEST(TokenizerBpe, LowestRankFirst) {
  TokenizerData d;
  d.model = "gpt2";
  d.pre = "gpt-2";
  d.tokens = {"a", "b", "c", "ab", "bc", "abc"};
  d.token_types = {1, 1, 1, 1, 1, 1};
  d.merges = {"b c", "a b", "a bc"};
  d.add_bos = false;
  d.add_space_prefix = false;
  Tokenizer tok(d);
  EXPECT_EQ(tok.encode("abc", false), (std::vector<int32_t>{5}));   // bc first, then a+bc
  EXPECT_EQ(tok.encode("abab", false), (std::vector<int32_t>{3, 3}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{3, 4}), "abbc");
}

// ---------------------------------------------------------------------------------------------------------
// Bad input

TEST(TokenizerErrors, Llama2cTruncatedAndBadLengths) {
  const std::string dir = test::scratch_dir();
  std::string good = read_file(test::stories_tok());
  write_file(dir + "/tok_trunc.bin", good.substr(0, good.size() - 3));
  try {
    tokenizer_from_llama2c(dir + "/tok_trunc.bin");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tok_trunc.bin"), std::string::npos) << e.what();
  }
  std::string bad = good;
  int32_t huge = 1 << 30;
  std::memcpy(&bad[4 + 4], &huge, 4);  // first record's length
  write_file(dir + "/tok_badlen.bin", bad);
  EXPECT_THROW(tokenizer_from_llama2c(dir + "/tok_badlen.bin"), Error);
  write_file(dir + "/tok_empty.bin", "");
  EXPECT_THROW(tokenizer_from_llama2c(dir + "/tok_empty.bin"), Error);
  EXPECT_THROW(tokenizer_from_llama2c(dir + "/does-not-exist.bin"), Error);
}

TEST(TokenizerErrors, GgufMissingOrInconsistent) {
  GgufFile f;
  f.path = "x.gguf";
  try {
    tokenizer_from_gguf(f);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "x.gguf: no tokenizer (tokenizer.ggml.tokens missing)");
  }
  f.kv.push_back({"tokenizer.ggml.model", GgufValue::str("bert")});
  f.kv.push_back({"tokenizer.ggml.tokens", GgufValue::str_array({"a", "b", "c"})});
  try {
    tokenizer_from_gguf(f);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'bert'"), std::string::npos) << e.what();
  }
  f.kv[0].value = GgufValue::str("llama");
  f.kv.push_back({"tokenizer.ggml.scores", GgufValue::f32_array({0.f, 1.f})});
  EXPECT_THROW(tokenizer_from_gguf(f), Error);  // 2 scores for 3 tokens
  f.kv.pop_back();
  f.kv.push_back({"tokenizer.ggml.token_type", GgufValue::i32_array({1, 1})});
  EXPECT_THROW(tokenizer_from_gguf(f), Error);
  f.kv.pop_back();
  f.kv[0].value = GgufValue::str("gpt2");
  EXPECT_THROW(tokenizer_from_gguf(f), Error);  // no merges
}

TEST(TokenizerErrors, InconsistentData) {
  TokenizerData d;
  d.model = "wordpiece";
  d.tokens = {"a"};
  EXPECT_THROW(Tokenizer{d}, Error);
  d.model = "llama";
  d.tokens = {};
  EXPECT_THROW(Tokenizer{d}, Error);
  d.tokens = {"a", "b"};
  d.scores = {0.f};
  EXPECT_THROW(Tokenizer{d}, Error);
  d.scores = {};
  d.bos_id = 7;
  EXPECT_THROW(Tokenizer{d}, Error);
}

TEST(TokenizerErrors, JsonProblems) {
  const std::string dir = test::scratch_dir() + "/badjson";
  fs::create_directories(dir);
  write_file(dir + "/tokenizer.json", "{ not json");
  EXPECT_THROW(tokenizer_from_json(dir + "/tokenizer.json"), Error);
  write_file(dir + "/tokenizer.json", R"({"model": {"type": "Unigram", "vocab": []}})");
  try {
    tokenizer_from_json(dir + "/tokenizer.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Unigram"), std::string::npos) << e.what();
  }
  write_file(dir + "/tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})");
  EXPECT_THROW(tokenizer_from_json(dir + "/tokenizer.json"), Error);
  EXPECT_THROW(tokenizer_from_json(dir + "/missing.json"), Error);
}

}  // namespace
}  // namespace ctrust
