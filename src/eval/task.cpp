#include "eval/task.h"

#include <bzlib.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "base/error.h"
#include "base/file.h"
#include "base/split.h"
#include "base/paths.h"
#include "eval/metrics.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ctrust {

const char* scoring_name(Scoring s) {
  switch (s) {
    case Scoring::MultipleChoice: return "multiple_choice";
    case Scoring::Partial: return "partial";
    case Scoring::Loglikelihood: return "loglikelihood";
    case Scoring::Perplexity: return "perplexity";
  }
  return "?";
}

static std::string project_root() { return source_dir(); }

std::string shared_data_dir() {
  const char* e = std::getenv("CTRUST_SHARED");
  return e ? e : project_root() + "/../shared";
}

std::vector<std::string> task_dirs() {
  std::vector<std::string> dirs;
  if (const char* e = std::getenv("CTRUST_TASKS")) dirs = split_list(e, ':');
  dirs.push_back(project_root() + "/tasks");
  return dirs;
}

std::vector<std::string> known_tasks() {
  std::vector<std::string> names;
  for (const auto& d : task_dirs()) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(d, ec)) {
      if (e.path().extension() == ".json") names.push_back(e.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

uint64_t max_decompressed_bytes(uint64_t compressed) {
  // Real bzip2 text compresses 3-6x; 64x (at least 64 MiB) leaves room for any real data file and stops a
  // decompression bomb (a 178-byte file expanding to gigabytes) long before memory runs out.
  return std::max<uint64_t>(uint64_t(64) << 20, compressed * 64);
}

std::string read_text_file(const std::string& path) {
  // A regular file (a task whose data is /dev/zero would otherwise read forever), at most 4 GiB.
  std::string raw = read_regular_file(path, "data file", uint64_t(4) << 30);
  if (path.size() < 4 || path.compare(path.size() - 4, 4, ".bz2") != 0) return raw;
  // bzip2: possibly several concatenated streams.
  const uint64_t limit = max_decompressed_bytes(raw.size());
  std::string out;
  size_t pos = 0;
  std::vector<char> buf(1 << 20);
  while (pos < raw.size()) {
    bz_stream s{};
    if (BZ2_bzDecompressInit(&s, 0, 0) != BZ_OK) fail("{}: bzip2 init failed", path);
    s.next_in = raw.data() + pos;
    s.avail_in = unsigned(std::min<size_t>(raw.size() - pos, 1u << 30));
    int rc = BZ_OK;
    while (rc == BZ_OK) {
      s.next_out = buf.data();
      s.avail_out = unsigned(buf.size());
      rc = BZ2_bzDecompress(&s);
      const size_t got = buf.size() - s.avail_out;
      if (out.size() + got > limit) {
        BZ2_bzDecompressEnd(&s);
        fail("{}: decompresses to more than {} bytes, the limit for a {}-byte bzip2 file (64x its size, at "
             "least 64 MiB): not a data file?", path, limit, raw.size());
      }
      out.append(buf.data(), got);
      if (rc == BZ_OK && s.avail_in == 0 && s.avail_out != 0) {
        BZ2_bzDecompressEnd(&s);
        fail("{}: truncated bzip2 data", path);
      }
    }
    const size_t consumed = size_t(s.next_in - (raw.data() + pos));
    BZ2_bzDecompressEnd(&s);
    if (rc != BZ_STREAM_END) fail("{}: corrupt bzip2 data (code {})", path, rc);
    pos += consumed;
  }
  return out;
}

std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& path,
                                                std::vector<int>* lines) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  int line = 1, row_line = 1;
  bool in_quotes = false, field_started = false, was_quoted = false;
  size_t i = 0;
  if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;  // UTF-8 BOM
  auto end_row = [&]() {
    row.push_back(std::move(field));
    field.clear();
    if (!(row.size() == 1 && row[0].empty() && !was_quoted)) {  // skip blank lines
      rows.push_back(std::move(row));
      if (lines) lines->push_back(row_line);
    }
    row.clear();
    field_started = was_quoted = false;
  };
  for (; i < text.size(); i++) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          i++;
        } else {
          in_quotes = false;
        }
      } else {
        if (c == '\n') line++;
        field += c;
      }
      continue;
    }
    if (c == '"') {
      if (field_started) fail("{}:{}: quote inside an unquoted field", path, line);
      in_quotes = was_quoted = field_started = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      field_started = was_quoted = false;
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      continue;
    } else if (c == '\n') {
      end_row();
      line++;
      row_line = line;
    } else {
      if (was_quoted) fail("{}:{}: text after a closing quote", path, line);
      field += c;
      field_started = true;
    }
  }
  if (in_quotes) fail("{}:{}: unterminated quoted field", path, row_line);
  if (field_started || !row.empty()) end_row();
  return rows;
}

std::string render_template(const std::string& tmpl, const json& doc, const std::string& where) {
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t open = tmpl.find("{{", pos);
    if (open == std::string::npos) {
      out.append(tmpl, pos, std::string::npos);
      return out;
    }
    out.append(tmpl, pos, open - pos);
    size_t close = tmpl.find("}}", open + 2);
    if (close == std::string::npos) fail("{}: template has '{{{{' without '}}}}': {}", where, tmpl);
    std::string name = tmpl.substr(open + 2, close - open - 2);
    while (!name.empty() && name.front() == ' ') name.erase(name.begin());
    while (!name.empty() && name.back() == ' ') name.pop_back();
    bool strip = false;  // the one filter: {{field|strip}} trims surrounding whitespace
    if (size_t bar = name.find('|'); bar != std::string::npos) {
      std::string filter = name.substr(bar + 1);
      name = name.substr(0, bar);
      if (filter != "strip") fail("{}: unknown template filter '{}' (known: strip)", where, filter);
      strip = true;
    }
    auto it = doc.find(name);
    if (it == doc.end()) {
      std::string fields;
      for (auto f = doc.begin(); f != doc.end(); ++f) fields += (fields.empty() ? "" : ", ") + f.key();
      fail("{}: template field '{}' is not in the data (fields: {})", where, name, fields);
    }
    if (it->is_string()) {
      std::string v = it->get<std::string>();
      if (strip) {
        const char* ws = " \t\r\n";
        size_t b = v.find_first_not_of(ws), e = v.find_last_not_of(ws);
        v = b == std::string::npos ? std::string() : v.substr(b, e - b + 1);
      }
      out += v;
    } else if (it->is_number() || it->is_boolean()) out += it->dump();
    else fail("{}: template field '{}' is not text (it is {})", where, name, it->type_name());
    pos = close + 2;
  }
}

// ---------------------------------------------------------------------------------------------------
// Declarations

void check_task_name(const std::string& name, const std::string& where) {
  auto ok = [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '.' || c == '+' || c == '-'; };
  if (name.empty() || name.size() > 200 || name[0] == '.' || !std::all_of(name.begin(), name.end(), ok))
    fail("{}: task name {} is not allowed (1-200 of A-Z a-z 0-9 _ . + -, not starting with '.')", where,
         json(name).dump());
}

static std::string get_str(const json& j, const char* key, const std::string& path, const std::string& def,
                           bool required = false) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) fail("{}: missing \"{}\"", path, key);
    return def;
  }
  if (!it->is_string()) fail("{}: \"{}\" must be a string", path, key);
  return it->get<std::string>();
}

TaskSpec parse_task_spec(const json& j, const std::string& path) {
  if (!j.is_object()) fail("{}: a task declaration must be a JSON object", path);
  static const char* allowed[] = {"name", "description", "source", "format", "data", "fewshot_data",
                                  "file_suffix", "fewshot_suffix", "scoring", "preamble", "prompt",
                                  "choices", "target", "gold", "gold_labels", "true_field",
                                  "target_delimiter", "fewshot_delimiter", "num_fewshot", "split_fields",
                                  "n_ctx"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (std::find_if(std::begin(allowed), std::end(allowed), [&](const char* a) { return it.key() == a; }) ==
        std::end(allowed))
      fail("{}: unknown key \"{}\"", path, it.key());
  }
  TaskSpec s;
  s.decl_path = path;
  s.raw = j;
  s.name = get_str(j, "name", path, fs::path(path).stem().string());
  check_task_name(s.name, path);
  s.description = get_str(j, "description", path, "");
  s.source = get_str(j, "source", path, "");
  s.format = get_str(j, "format", path, "", true);
  static const char* formats[] = {"jsonl", "csv", "csv_folder", "hellaswag", "text"};
  if (std::find_if(std::begin(formats), std::end(formats), [&](const char* f) { return s.format == f; }) ==
      std::end(formats))
    fail("{}: unknown format \"{}\" (jsonl, csv, csv_folder, hellaswag, text)", path, s.format);
  s.data = get_str(j, "data", path, "", true);
  s.fewshot_data = get_str(j, "fewshot_data", path, "");
  s.file_suffix = get_str(j, "file_suffix", path, ".csv");
  s.fewshot_suffix = get_str(j, "fewshot_suffix", path, ".csv");
  const std::string sc = get_str(j, "scoring", path, "multiple_choice");
  if (sc == "multiple_choice") s.scoring = Scoring::MultipleChoice;
  else if (sc == "partial") s.scoring = Scoring::Partial;
  else if (sc == "loglikelihood") s.scoring = Scoring::Loglikelihood;
  else if (sc == "perplexity") s.scoring = Scoring::Perplexity;
  else fail("{}: unknown scoring \"{}\" (multiple_choice, partial, loglikelihood, perplexity)", path, sc);
  s.preamble = get_str(j, "preamble", path, "");
  s.prompt = get_str(j, "prompt", path, "");
  s.target = get_str(j, "target", path, "");
  s.target_delimiter = get_str(j, "target_delimiter", path, " ");
  s.fewshot_delimiter = get_str(j, "fewshot_delimiter", path, "\n\n");
  s.true_field = get_str(j, "true_field", path, "");
  if (auto it = j.find("choices"); it != j.end()) {
    if (it->is_string()) s.choices = json::array({*it});
    else if (it->is_array() && !it->empty() && std::all_of(it->begin(), it->end(), [](auto& c) {
               return c.is_string(); }))
      s.choices = *it;
    else fail("{}: \"choices\" must be a template string or a non-empty array of them", path);
  }
  if (auto it = j.find("gold"); it != j.end()) {
    if (!it->is_string() && !it->is_number_integer()) fail("{}: \"gold\" must be a field name or an index", path);
    s.gold = *it;
  } else {
    s.gold = 0;
  }
  if (auto it = j.find("gold_labels"); it != j.end()) {
    if (!it->is_array()) fail("{}: \"gold_labels\" must be an array of strings", path);
    for (auto& g : *it) {
      if (!g.is_string()) fail("{}: \"gold_labels\" must be an array of strings", path);
      s.gold_labels.push_back(g.get<std::string>());
    }
  }
  if (auto it = j.find("num_fewshot"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 1000)
      fail("{}: \"num_fewshot\" must be an integer in [0, 1000]", path);
    s.num_fewshot = it->get<int>();
  }
  if (auto it = j.find("n_ctx"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > (1 << 20))
      fail("{}: \"n_ctx\" must be a non-negative integer", path);
    s.n_ctx = it->get<int>();
  }
  if (auto it = j.find("split_fields"); it != j.end()) {
    if (!it->is_object()) fail("{}: \"split_fields\" must be an object {{\"column\": \"separator\"}}", path);
    for (auto f = it->begin(); f != it->end(); ++f)
      if (!f->is_string() || f->get<std::string>().empty())
        fail("{}: split_fields[\"{}\"] must be a non-empty separator string", path, f.key());
    s.split_fields = *it;
  }
  const bool needs_choices = s.scoring == Scoring::MultipleChoice || s.scoring == Scoring::Partial;
  if (needs_choices && s.choices.is_null()) fail("{}: scoring {} needs \"choices\"", path, sc);
  if (s.scoring != Scoring::Perplexity && s.format == "text")
    fail("{}: format \"text\" is only for scoring \"perplexity\"", path);
  if (s.scoring == Scoring::Perplexity && s.format != "text")
    fail("{}: scoring \"perplexity\" needs format \"text\"", path);
  if ((s.scoring == Scoring::Partial || s.scoring == Scoring::Loglikelihood) && s.target.empty())
    fail("{}: scoring {} needs \"target\"", path, sc);
  if (s.scoring != Scoring::Partial && s.scoring != Scoring::Perplexity && s.prompt.empty())
    fail("{}: missing \"prompt\"", path);
  return s;
}

TaskSpec load_task_spec(const std::string& name_or_path) {
  std::string path;
  if (name_or_path.find('/') != std::string::npos ||
      (name_or_path.size() > 5 && name_or_path.compare(name_or_path.size() - 5, 5, ".json") == 0)) {
    path = name_or_path;
    if (!fs::exists(path)) fail("{}: task declaration not found", path);
  } else {
    for (const auto& d : task_dirs()) {
      fs::path p = fs::path(d) / (name_or_path + ".json");
      if (fs::exists(p)) {
        path = p.string();
        break;
      }
    }
    if (path.empty()) {
      std::string known;
      for (const auto& n : known_tasks()) known += (known.empty() ? "" : ", ") + n;
      fail("unknown task '{}'; known tasks: {}", name_or_path, known.empty() ? "(none found)" : known);
    }
  }
  const std::string text = read_regular_file(path, "task declaration", kMaxJsonBytes);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  return parse_task_spec(j, path);
}

std::string resolve_data_path(const TaskSpec& spec, const std::string& declared) {
  if (declared.empty()) return declared;
  fs::path p(declared);
  if (p.is_absolute()) return declared;
  if (declared.rfind("./", 0) == 0 || declared.rfind("../", 0) == 0)
    return (fs::path(spec.decl_path).parent_path() / p).lexically_normal().string();
  return (fs::path(shared_data_dir()) / p).lexically_normal().string();
}

// ---------------------------------------------------------------------------------------------------
// Documents

namespace {

struct Doc {
  json f;         // fields
  std::string at;  // "file:line"
};

void require_exists(const TaskSpec& spec, const std::string& path) {
  std::error_code ec;  // a path the file system refuses (too long) is "not found", not a filesystem_error
  if (!fs::exists(path, ec))
    fail("{}: data of task '{}' not found ({}); data comes from: {}", path, spec.name, spec.decl_path,
         spec.source.empty() ? "(no source declared)" : spec.source);
}

std::vector<Doc> read_jsonl(const std::string& path) {
  std::string text = read_text_file(path);
  std::vector<Doc> docs;
  size_t pos = 0;
  int line = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    line++;
    std::string_view l(text.data() + pos, end - pos);
    pos = end + 1;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (l.find_first_not_of(" \t") == std::string_view::npos) continue;
    Doc d;
    d.at = fmt::format("{}:{}", path, line);
    try {
      d.f = json::parse(l);
    } catch (const json::exception& e) {
      fail("{}: not valid JSON: {}", d.at, e.what());
    }
    if (!d.f.is_object()) fail("{}: expected a JSON object", d.at);
    docs.push_back(std::move(d));
  }
  return docs;
}

std::vector<std::string> split_on(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    size_t e = s.find(sep, pos);
    std::string part = s.substr(pos, e == std::string::npos ? std::string::npos : e - pos);
    while (!part.empty() && (part.front() == ' ')) part.erase(part.begin());
    while (!part.empty() && (part.back() == ' ')) part.pop_back();
    if (!part.empty()) out.push_back(part);
    if (e == std::string::npos) break;
    pos = e + sep.size();
  }
  return out;
}

std::vector<Doc> read_csv(const std::string& path, const json& split_fields) {
  std::vector<int> lines;
  auto rows = parse_csv(read_text_file(path), path, &lines);
  if (rows.empty()) fail("{}: empty CSV (expected a header row)", path);
  const auto& header = rows[0];
  for (auto f = split_fields.begin(); f != split_fields.end(); ++f)
    if (std::find(header.begin(), header.end(), f.key()) == header.end())
      fail("{}:{}: split_fields column \"{}\" is not in the header", path, lines[0], f.key());
  std::vector<Doc> docs;
  for (size_t r = 1; r < rows.size(); r++) {
    Doc d;
    d.at = fmt::format("{}:{}", path, lines[r]);
    if (rows[r].size() != header.size())
      fail("{}: {} fields, the header has {}", d.at, rows[r].size(), header.size());
    d.f = json::object();
    for (size_t c = 0; c < header.size(); c++) {
      auto sep = split_fields.find(header[c]);
      if (sep != split_fields.end()) d.f[header[c]] = split_on(rows[r][c], sep->get<std::string>());
      else d.f[header[c]] = rows[r][c];
    }
    docs.push_back(std::move(d));
  }
  return docs;
}

std::vector<Doc> read_hellaswag(const std::string& path) {
  std::string text = read_text_file(path);
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string l = text.substr(pos, end - pos);
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(std::move(l));
    pos = end + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.size() % 6 != 0)
    fail("{}:{}: {} lines, not a multiple of 6 (context, gold, 4 endings per item)", path, lines.size(),
         lines.size());
  std::vector<Doc> docs;
  for (size_t i = 0; i < lines.size(); i += 6) {
    Doc d;
    d.at = fmt::format("{}:{}", path, i + 1);
    const std::string& g = lines[i + 1];
    if (g.size() != 1 || g[0] < '0' || g[0] > '3')
      fail("{}:{}: gold label must be 0..3, got '{}'", path, i + 2, g);
    d.f = json{{"ctx", lines[i]}, {"label", g[0] - '0'},
               {"endings", json::array({lines[i + 2], lines[i + 3], lines[i + 4], lines[i + 5]})}};
    docs.push_back(std::move(d));
  }
  return docs;
}

std::vector<Doc> read_docs(const TaskSpec& spec, const std::string& path) {
  require_exists(spec, path);
  std::vector<Doc> docs;
  if (spec.format == "jsonl") docs = read_jsonl(path);
  else if (spec.format == "csv" || spec.format == "csv_folder") docs = read_csv(path, spec.split_fields);
  else if (spec.format == "hellaswag") docs = read_hellaswag(path);
  else fail("{}: format {} has no documents", spec.decl_path, spec.format);
  // An empty file would make a stored run of 0 items that looks like a success.
  if (docs.empty()) fail("{}: no documents in the data of task '{}' (empty file?)", path, spec.name);
  return docs;
}

std::vector<std::string> expand_choices(const TaskSpec& spec, const Doc& d) {
  std::vector<std::string> out;
  for (const auto& c : spec.choices) {
    const std::string t = c.get<std::string>();
    if (t.size() > 4 && t.rfind("{{", 0) == 0 && t.compare(t.size() - 2, 2, "}}") == 0 &&
        t.find("{{", 2) == std::string::npos) {
      std::string name = t.substr(2, t.size() - 4);
      while (!name.empty() && name.front() == ' ') name.erase(name.begin());
      while (!name.empty() && name.back() == ' ') name.pop_back();
      auto it = d.f.find(name);
      if (it != d.f.end() && it->is_array()) {
        for (const auto& e : *it) {
          if (!e.is_string()) fail("{}: choice list '{}' must hold strings", d.at, name);
          out.push_back(e.get<std::string>());
        }
        continue;
      }
    }
    out.push_back(render_template(t, d.f, d.at));
  }
  if (out.empty()) fail("{}: no choices", d.at);
  return out;
}

int gold_of(const TaskSpec& spec, const Doc& d, size_t n_choices) {
  int64_t g = 0;
  if (spec.gold.is_number_integer()) {
    g = spec.gold.get<int64_t>();
  } else {
    const std::string field = spec.gold.get<std::string>();
    auto it = d.f.find(field);
    if (it == d.f.end()) fail("{}: gold field '{}' is missing", d.at, field);
    if (it->is_number_integer()) {
      g = it->get<int64_t>();
    } else if (it->is_string()) {
      const std::string v = it->get<std::string>();
      auto lab = std::find(spec.gold_labels.begin(), spec.gold_labels.end(), v);
      if (lab != spec.gold_labels.end()) {
        g = lab - spec.gold_labels.begin();
      } else {
        char* end = nullptr;
        g = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0') fail("{}: gold '{}' is neither an index nor a known label", d.at, v);
      }
    } else {
      fail("{}: gold field '{}' must be an integer or a string", d.at, field);
    }
  }
  if (g < 0 || g >= int64_t(n_choices)) fail("{}: gold {} out of range (0..{})", d.at, g, n_choices - 1);
  return int(g);
}

// The example text of a few-shot document: what the model would see with its correct answer.
std::string fewshot_text(const TaskSpec& spec, const Doc& d) {
  switch (spec.scoring) {
    case Scoring::MultipleChoice: {
      auto ch = expand_choices(spec, d);
      return render_template(spec.prompt, d.f, d.at) + spec.target_delimiter + ch[size_t(gold_of(spec, d, ch.size()))];
    }
    case Scoring::Partial: {
      auto ch = expand_choices(spec, d);
      return ch[size_t(gold_of(spec, d, ch.size()))] + spec.target_delimiter + render_template(spec.target, d.f, d.at);
    }
    case Scoring::Loglikelihood:
      return render_template(spec.prompt, d.f, d.at) + spec.target_delimiter + render_template(spec.target, d.f, d.at);
    case Scoring::Perplexity: break;
  }
  return {};
}

struct Limit {
  int n = 0;
  LimitMode mode = LimitMode::Stratified;
  uint64_t seed = 0;
};

// The document indices a limit keeps (ascending).
std::vector<size_t> chosen_docs(const TaskSpec& spec, const std::string& subtask, const std::vector<Doc>& docs,
                                const json& extra, const Limit& limit) {
  std::vector<size_t> idx;
  if (limit.n <= 0 || size_t(limit.n) >= docs.size() || limit.mode == LimitMode::First) {
    const size_t n = limit.n > 0 ? std::min(docs.size(), size_t(limit.n)) : docs.size();
    for (size_t i = 0; i < n; i++) idx.push_back(i);
    return idx;
  }
  // Strata: the gold answer's index for choice tasks, one stratum otherwise.
  std::vector<std::string> strata(docs.size());
  if (spec.scoring == Scoring::MultipleChoice || spec.scoring == Scoring::Partial)
    for (size_t i = 0; i < docs.size(); i++) {
      json f = docs[i].f;
      for (auto e = extra.begin(); e != extra.end(); ++e) f[e.key()] = *e;
      const Doc dd{f, docs[i].at};
      strata[i] = std::to_string(gold_of(spec, dd, expand_choices(spec, dd).size()));
    }
  uint64_t h = 1469598103934665603ull;  // FNV-1a of the subtask's name: independent samples per subtask
  for (unsigned char ch : subtask) h = (h ^ ch) * 1099511628211ull;
  return stratified_sample(strata, size_t(limit.n), limit.seed ^ h);
}

void build_items(const TaskSpec& spec, const std::string& subtask, const std::vector<Doc>& docs,
                 const std::vector<Doc>* shots, const json& extra, const Limit& limit, std::vector<TaskItem>& out) {
  if (shots && spec.num_fewshot > int(shots->size()))
    fail("{}: num_fewshot {} but the few-shot data has only {} examples", spec.decl_path, spec.num_fewshot,
         shots->size());
  if (!shots && spec.num_fewshot >= int(docs.size()) && spec.num_fewshot > 0)
    fail("{}: num_fewshot {} needs more than {} documents", spec.decl_path, spec.num_fewshot, docs.size());
  // Few-shot block: the first num_fewshot documents of the few-shot source (lm-eval's "first_n"
  // sampler); from the evaluated data itself, the current document is skipped.
  std::string fixed_block;
  if (shots) {
    for (int k = 0; k < spec.num_fewshot; k++) fixed_block += fewshot_text(spec, (*shots)[size_t(k)]) + spec.fewshot_delimiter;
  }
  for (const size_t i : chosen_docs(spec, subtask, docs, extra, limit)) {
    const Doc& d = docs[i];
    json f = d.f;
    for (auto e = extra.begin(); e != extra.end(); ++e) f[e.key()] = *e;
    Doc dd{f, d.at};
    std::string prefix = render_template(spec.preamble, dd.f, spec.decl_path);
    if (shots) {
      prefix += fixed_block;
    } else if (spec.num_fewshot > 0) {
      int taken = 0;
      for (size_t k = 0; k < docs.size() && taken < spec.num_fewshot; k++) {
        if (k == i) continue;
        prefix += fewshot_text(spec, docs[k]) + spec.fewshot_delimiter;
        taken++;
      }
    }
    TaskItem it;
    it.task = subtask;
    it.id = std::to_string(i);
    it.scoring = spec.scoring;
    switch (spec.scoring) {
      case Scoring::MultipleChoice: {
        it.choice_texts = expand_choices(spec, dd);
        it.contexts = {prefix + render_template(spec.prompt, dd.f, dd.at)};
        for (const auto& c : it.choice_texts) it.continuations.push_back(spec.target_delimiter + c);
        it.gold = gold_of(spec, dd, it.choice_texts.size());
        break;
      }
      case Scoring::Partial: {
        auto opts = expand_choices(spec, dd);
        const std::string tgt = render_template(spec.target, dd.f, dd.at);
        for (const auto& o : opts) {
          it.contexts.push_back(prefix + o);
          it.continuations.push_back(spec.target_delimiter + tgt);
          it.choice_texts.push_back(tgt);
        }
        it.gold = gold_of(spec, dd, opts.size());
        break;
      }
      case Scoring::Loglikelihood: {
        const std::string tgt = render_template(spec.target, dd.f, dd.at);
        it.contexts = {prefix + render_template(spec.prompt, dd.f, dd.at)};
        it.continuations = {spec.target_delimiter + tgt};
        it.choice_texts = {tgt};
        it.gold = 0;
        break;
      }
      case Scoring::Perplexity: break;
    }
    if ((spec.scoring == Scoring::MultipleChoice || spec.scoring == Scoring::Partial) && it.continuations.size() < 2)
      fail("{}: {} choice(s); {} scoring needs at least 2", dd.at, it.continuations.size(), scoring_name(spec.scoring));
    if (!spec.true_field.empty()) {
      auto tf = dd.f.find(spec.true_field);
      if (tf == dd.f.end() || !tf->is_array()) fail("{}: true_field '{}' is not a list", dd.at, spec.true_field);
      it.n_true = int(tf->size());
      if (it.n_true < 1 || it.n_true > int(it.continuations.size()) || it.gold >= it.n_true)
        fail("{}: true_field '{}' has {} entries for {} choices with gold {}", dd.at, spec.true_field, it.n_true,
             it.continuations.size(), it.gold);
    }
    out.push_back(std::move(it));
  }
}

std::string words(std::string s) {
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

}  // namespace

const char* limit_mode_name(LimitMode m) { return m == LimitMode::First ? "first" : "stratified"; }

TaskData load_task(const TaskSpec& spec, int n, LimitMode mode, uint64_t seed) {
  const Limit limit{n, mode, seed};
  TaskData td;
  td.spec = spec;
  td.data_path = resolve_data_path(spec, spec.data);
  if (spec.format == "text") {
    require_exists(spec, td.data_path);
    td.text = read_text_file(td.data_path);
    if (td.text.find_first_not_of(" \t\r\n") == std::string::npos)
      fail("{}: the text of task '{}' is empty", td.data_path, spec.name);
    return td;
  }
  if (spec.format == "csv_folder") {
    require_exists(spec, td.data_path);
    std::error_code ec;
    if (!fs::is_directory(td.data_path, ec)) fail("{}: format csv_folder needs a folder", td.data_path);
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(td.data_path)) {
      const std::string fn = e.path().filename().string();
      if (fn.size() > spec.file_suffix.size() &&
          fn.compare(fn.size() - spec.file_suffix.size(), spec.file_suffix.size(), spec.file_suffix) == 0)
        files.push_back(fn);
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) fail("{}: no *{} files for task '{}'", td.data_path, spec.file_suffix, spec.name);
    const std::string shots_dir = resolve_data_path(spec, spec.fewshot_data);
    for (const auto& fn : files) {
      const std::string sub = fn.substr(0, fn.size() - spec.file_suffix.size());
      check_task_name(spec.name + "_" + sub, td.data_path + "/" + fn);
      auto docs = read_docs(spec, td.data_path + "/" + fn);
      std::vector<Doc> shots;
      if (spec.num_fewshot > 0 && !shots_dir.empty()) shots = read_docs(spec, shots_dir + "/" + sub + spec.fewshot_suffix);
      json extra = {{"subtask", sub}, {"subtask_words", words(sub)}};
      build_items(spec, spec.name + "_" + sub, docs, shots_dir.empty() ? nullptr : &shots, extra, limit, td.items);
    }
    return td;
  }
  auto docs = read_docs(spec, td.data_path);
  std::vector<Doc> shots;
  const bool sep_shots = !spec.fewshot_data.empty();
  if (sep_shots && spec.num_fewshot > 0) shots = read_docs(spec, resolve_data_path(spec, spec.fewshot_data));
  build_items(spec, spec.name, docs, sep_shots ? &shots : nullptr, json::object(), limit, td.items);
  return td;
}

}  // namespace ctrust
