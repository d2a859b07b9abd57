// Calibration text: WikiText clean-up, plain-text windows and chat-formatted samples.
#include "compress/calib.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "base/error.h"
#include "base/file.h"
#include "base/paths.h"
#include "compress/recipe.h"

namespace ctrust {

std::string default_calibration_file() {
  const char* e = std::getenv("CTRUST_SHARED");
  std::string shared = e ? e : source_dir() + "/../shared";
  return shared + "/data/wikitext-2-tokens/wiki.valid.tokens";
}

namespace {

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  for (size_t p; (p = s.find(from, i)) != std::string::npos; i = p + from.size()) {
    out.append(s, i, p - i);
    out.append(to);
  }
  out.append(s, i, std::string::npos);
  s.swap(out);
}

// One line without the sentences that contain "<unk>"; sentences end after " . ", " ! ", " ? ".
std::string drop_unk_sentences(std::string_view line) {
  std::string out;
  size_t start = 0;
  auto flush = [&](size_t end) {
    std::string_view sent = line.substr(start, end - start);
    if (sent.find("<unk>") == std::string_view::npos) out.append(sent);
    start = end;
  };
  for (size_t i = 1; i + 1 < line.size(); ++i)
    if (line[i - 1] == ' ' && (line[i] == '.' || line[i] == '!' || line[i] == '?') && line[i + 1] == ' ')
      flush(i + 2);
  flush(line.size());
  return out;
}

std::string read_text(const std::string& file) { return read_regular_file(file, "calibration text"); }

}  // namespace

std::string clean_calibration_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t nl = text.find('\n', i);
    const bool has_nl = nl != std::string_view::npos;
    if (!has_nl) nl = text.size();
    std::string_view line = text.substr(i, nl - i);
    i = has_nl ? nl + 1 : nl;
    if (line.find("<unk>") != std::string_view::npos) {
      std::string kept = drop_unk_sentences(line);
      if (kept.find_first_not_of(" \r\t") == std::string::npos) continue;  // nothing left: drop the line
      out += kept;
    } else {
      out.append(line);
    }
    if (has_nl) out += '\n';
  }
  replace_all(out, " @-@ ", "-");
  replace_all(out, " @,@ ", ",");
  replace_all(out, " @.@ ", ".");
  return out;
}

std::vector<std::string> calibration_paragraphs(std::string_view text) {
  std::vector<std::string> paras;
  size_t i = 0;
  while (i < text.size()) {
    size_t nl = text.find('\n', i);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(i, nl - i);
    i = nl + 1;
    const size_t a = line.find_first_not_of(" \t\r"), b = line.find_last_not_of(" \t\r");
    if (a == std::string_view::npos) continue;
    line = line.substr(a, b - a + 1);
    if (line.size() >= 2 && line.front() == '=' && line.back() == '=') continue;  // a WikiText heading
    paras.emplace_back(line);
  }
  return paras;
}

Calibration load_calibration(const Tokenizer& tok, const std::string& file, const CalibOptions& o) {
  if (o.n < 1 || o.len < 2)
    fail("{}: calibration needs N >= 1 sequences of L >= 2 tokens, got {} x {}", file, o.n, o.len);
  std::string text = read_text(file);
  if (o.clean) text = clean_calibration_text(text);
  Calibration c;
  c.file = file;
  c.hash = file_hash(file);
  std::mt19937_64 rng(o.seed);
  if (!o.chat) {
    std::vector<int32_t> ids = tok.encode(text, false);
    Recipe tmp;
    tmp.n_samples = o.n;
    tmp.seq_len = o.len;
    validate_calibration_size(tmp, int64_t(ids.size()), file);
    std::uniform_int_distribution<int64_t> start(0, int64_t(ids.size()) - o.len);
    for (int i = 0; i < o.n; ++i) {
      const int64_t s = start(rng);
      c.seqs.emplace_back(ids.begin() + s, ids.begin() + s + o.len);
    }
    return c;
  }
  const std::vector<std::string> paras = calibration_paragraphs(text);
  if (paras.empty()) fail("{}: no paragraphs for chat calibration samples", file);
  std::uniform_int_distribution<size_t> start(0, paras.size() - 1);
  for (int i = 0; i < o.n; ++i) {
    const size_t p0 = start(rng);
    std::vector<std::string> turns;
    std::vector<int32_t> ids;
    for (size_t k = 0; int(ids.size()) < o.len; ++k) {
      if (k == paras.size())
        fail("{}: the whole text rendered as one conversation has {} tokens, fewer than the {} of a calibration "
             "sample",
             file, ids.size(), o.len);
      turns.push_back(paras[(p0 + k) % paras.size()]);
      ids = o.chat(turns);
    }
    ids.resize(o.len);
    c.seqs.push_back(std::move(ids));
  }
  return c;
}

Calibration load_calibration(const Tokenizer& tok, const std::string& file, int n, int len, uint64_t seed) {
  CalibOptions o;
  o.n = n;
  o.len = len;
  o.seed = seed;
  return load_calibration(tok, file, o);
}

}  // namespace ctrust
