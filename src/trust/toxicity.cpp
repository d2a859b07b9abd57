#include "trust/toxicity.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "trust/data.h"

namespace ctrust {

// ------------------------------------------------------------------ features
namespace {

uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

bool word_char(unsigned char c) { return std::isalnum(c) || c >= 0x80 || c == '\''; }

}  // namespace

std::vector<uint32_t> toxicity_features(std::string_view text, int hash_bits) {
  std::vector<std::string> words;
  std::string cur;
  for (unsigned char c : text) {
    if (word_char(c)) {
      cur += static_cast<char>(c < 0x80 ? std::tolower(c) : c);
    } else {
      if (!cur.empty()) words.push_back(std::move(cur)), cur.clear();
      if (c == '!' || c == '?' || c == '*' || c == '@' || c == '#') words.push_back(std::string(1, static_cast<char>(c)));
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  const uint32_t mask = (1u << hash_bits) - 1;
  std::vector<uint32_t> f;
  for (size_t i = 0; i < words.size(); ++i) {
    f.push_back(static_cast<uint32_t>(fnv1a(words[i], fnv1a("w:"))) & mask);
    if (i + 1 < words.size())
      f.push_back(static_cast<uint32_t>(fnv1a(words[i + 1], fnv1a(" ", fnv1a(words[i], fnv1a("b:"))))) & mask);
    std::string w = "<" + words[i] + ">";
    for (size_t n = 3; n <= 5; ++n)
      for (size_t k = 0; k + n <= w.size(); ++k)
        f.push_back(static_cast<uint32_t>(fnv1a(std::string_view(w).substr(k, n), fnv1a("c:"))) & mask);
  }
  std::sort(f.begin(), f.end());
  f.erase(std::unique(f.begin(), f.end()), f.end());
  return f;
}

namespace {
double sigmoid(double z) { return z >= 0 ? 1 / (1 + std::exp(-z)) : std::exp(z) / (1 + std::exp(z)); }

double predict_features(const ToxicityLR& m, const std::vector<uint32_t>& f) {
  if (f.empty()) return sigmoid(m.bias);
  double v = 1 / std::sqrt(static_cast<double>(f.size()));
  double z = m.bias;
  for (uint32_t id : f) z += m.w[id] * v;
  return sigmoid(z);
}
}  // namespace

double toxicity_lr_predict(const ToxicityLR& m, std::string_view text) {
  if (m.w.size() != (size_t{1} << m.hash_bits)) fail("toxicity model: weights do not match hash_bits");
  return predict_features(m, toxicity_features(text, m.hash_bits));
}

// ------------------------------------------------------------------ agreement measures
namespace {
std::vector<double> ranks(const std::vector<double>& x) {
  std::vector<size_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> r(x.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && x[idx[j + 1]] == x[idx[i]]) ++j;
    double avg = (static_cast<double>(i) + static_cast<double>(j)) / 2 + 1;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}
}  // namespace

double roc_auc(const std::vector<double>& s, const std::vector<int>& y) {
  if (s.size() != y.size()) fail("roc_auc: {} scores for {} labels", s.size(), y.size());
  std::vector<double> r = ranks(s);
  double pos = 0, neg = 0, sum = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (y[i]) { ++pos; sum += r[i]; } else ++neg;
  }
  if (pos == 0 || neg == 0) fail("roc_auc: needs both classes ({} positive, {} negative)", pos, neg);
  return (sum - pos * (pos + 1) / 2) / (pos * neg);
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 2) fail("spearman: needs two equal-length series of 2+ values");
  std::vector<double> ra = ranks(a), rb = ranks(b);
  double n = static_cast<double>(a.size());
  double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / n, mb = std::accumulate(rb.begin(), rb.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    sab += (ra[i] - ma) * (rb[i] - mb);
    saa += (ra[i] - ma) * (ra[i] - ma);
    sbb += (rb[i] - mb) * (rb[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0;
}

// ------------------------------------------------------------------ training
ToxicityLR train_toxicity_lr(const std::vector<std::string>& paths, const ToxicityTrainOptions& opt) {
  if (opt.hash_bits < 10 || opt.hash_bits > 24) fail("toxicity model: hash_bits {} outside 10..24", opt.hash_bits);
  struct Ex { std::vector<uint32_t> f; float y; };
  std::vector<Ex> train, test;
  for (const auto& p : paths) {
    auto recs = load_rtp(p);
    for (size_t i = 0; i < recs.size(); ++i) {
      auto& dst = i % 5 == 4 ? test : train;
      if (recs[i].prompt_toxicity >= 0 && !recs[i].prompt.empty())
        dst.push_back({toxicity_features(recs[i].prompt, opt.hash_bits), static_cast<float>(recs[i].prompt_toxicity)});
      if (recs[i].continuation_toxicity >= 0 && !recs[i].continuation.empty())
        dst.push_back({toxicity_features(recs[i].continuation, opt.hash_bits),
                       static_cast<float>(recs[i].continuation_toxicity)});
    }
  }
  if (train.empty() || test.empty()) fail("toxicity model: no scored texts in the training files");
  ToxicityLR m;
  m.hash_bits = opt.hash_bits;
  m.w.assign(size_t{1} << opt.hash_bits, 0.0f);
  // Adagrad on the cross-entropy with Perspective's probability as a soft target; deterministic shuffles.
  std::vector<float> g2(m.w.size(), 1e-8f);
  float gb2 = 1e-8f;
  std::vector<size_t> order(train.size());
  std::iota(order.begin(), order.end(), 0);
  uint64_t rng = opt.seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int ep = 0; ep < opt.epochs; ++ep) {
    for (size_t i = order.size(); i > 1; --i) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      std::swap(order[i - 1], order[(rng >> 33) % i]);
    }
    for (size_t oi : order) {
      const Ex& e = train[oi];
      double p = predict_features(m, e.f);
      float g = static_cast<float>(p - e.y);
      float v = e.f.empty() ? 0.0f : 1.0f / std::sqrt(static_cast<float>(e.f.size()));
      for (uint32_t id : e.f) {
        float gi = g * v + opt.l2 * m.w[id];
        g2[id] += gi * gi;
        m.w[id] -= opt.learning_rate * gi / std::sqrt(g2[id]);
      }
      gb2 += g * g;
      m.bias -= opt.learning_rate * g / std::sqrt(gb2);
    }
  }
  std::vector<double> pred, truth;
  std::vector<int> label;
  for (const Ex& e : test) {
    pred.push_back(predict_features(m, e.f));
    truth.push_back(e.y);
    label.push_back(e.y > 0.5f);
  }
  m.heldout_auc = roc_auc(pred, label);
  m.heldout_spearman = spearman(pred, truth);
  m.train_texts = static_cast<int>(train.size());
  m.heldout_texts = static_cast<int>(test.size());
  return m;
}

// ------------------------------------------------------------------ file
namespace {
const char kMagic[8] = {'C', 'T', 'T', 'O', 'X', 'L', 'R', '1'};
template <typename T>
void put(std::ofstream& f, T v) { f.write(reinterpret_cast<const char*>(&v), sizeof v); }
template <typename T>
T get(const std::string& b, size_t& off, const std::string& path) {
  if (off + sizeof(T) > b.size()) fail("{}: truncated toxicity model file", path);
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  off += sizeof v;
  return v;
}
}  // namespace

void save_toxicity_lr(const ToxicityLR& m, const std::string& path) {
  std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) fail("{}: cannot write", tmp);
    f.write(kMagic, 8);
    put<int32_t>(f, m.hash_bits);
    put<float>(f, m.bias);
    put<double>(f, m.heldout_auc);
    put<double>(f, m.heldout_spearman);
    put<int32_t>(f, m.train_texts);
    put<int32_t>(f, m.heldout_texts);
    uint32_t nz = 0;
    for (float w : m.w) nz += w != 0;
    put<uint32_t>(f, nz);
    for (uint32_t i = 0; i < m.w.size(); ++i)
      if (m.w[i] != 0) { put<uint32_t>(f, i); put<float>(f, m.w[i]); }
    if (!f) fail("{}: write failed", tmp);
  }
  std::filesystem::rename(tmp, path);
}

ToxicityLR load_toxicity_lr(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open toxicity model file", path);
  std::string b((std::istreambuf_iterator<char>(f)), {});
  if (b.size() < 8 || std::memcmp(b.data(), kMagic, 8) != 0) fail("{}: not a ctrust toxicity model (bad magic)", path);
  size_t off = 8;
  ToxicityLR m;
  m.hash_bits = get<int32_t>(b, off, path);
  if (m.hash_bits < 10 || m.hash_bits > 24) fail("{}: hash_bits {} outside 10..24", path, m.hash_bits);
  m.bias = get<float>(b, off, path);
  m.heldout_auc = get<double>(b, off, path);
  m.heldout_spearman = get<double>(b, off, path);
  m.train_texts = get<int32_t>(b, off, path);
  m.heldout_texts = get<int32_t>(b, off, path);
  uint32_t nz = get<uint32_t>(b, off, path);
  m.w.assign(size_t{1} << m.hash_bits, 0.0f);
  if (nz > m.w.size()) fail("{}: {} weights for {} buckets", path, nz, m.w.size());
  for (uint32_t k = 0; k < nz; ++k) {
    uint32_t i = get<uint32_t>(b, off, path);
    float v = get<float>(b, off, path);
    if (i >= m.w.size()) fail("{}: weight index {} out of range", path, i);
    m.w[i] = v;
  }
  if (off != b.size()) fail("{}: {} trailing bytes", path, b.size() - off);
  return m;
}

ToxicityLR load_or_train_toxicity_lr(const std::string& cache_path, const std::vector<std::string>& paths) {
  if (std::filesystem::exists(cache_path)) return load_toxicity_lr(cache_path);
  ToxicityLR m = train_toxicity_lr(paths);
  save_toxicity_lr(m, cache_path);
  return m;
}

ToxicityScorer make_lr_scorer(ToxicityLR model) {
  ToxicityScorer s;
  s.name = fmt::format("ctrust-lr (hashed n-gram logistic regression trained on RealToxicityPrompts Perspective "
                       "scores; held-out AUC {:.3f}, Spearman {:.3f})", model.heldout_auc, model.heldout_spearman);
  auto m = std::make_shared<ToxicityLR>(std::move(model));
  s.score = [m](const std::vector<std::string>& texts) {
    std::vector<double> out;
    out.reserve(texts.size());
    for (const auto& t : texts) out.push_back(t.empty() ? 0.0 : toxicity_lr_predict(*m, t));
    return out;
  };
  return s;
}

// ------------------------------------------------------------------ Perspective API over HTTP
namespace {

struct Url {
  std::string host, port, path;
};

Url parse_url(const std::string& url) {
  if (url.rfind("https://", 0) == 0)
    fail("{}: https is not supported by the built-in HTTP client (use an http:// endpoint, e.g. a local proxy)", url);
  if (url.rfind("http://", 0) != 0) fail("{}: endpoint must start with http://", url);
  std::string rest = url.substr(7);
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  Url u;
  u.path = slash == std::string::npos ? "/" : rest.substr(slash);
  size_t colon = hostport.rfind(':');
  if (colon != std::string::npos) {
    u.host = hostport.substr(0, colon);
    u.port = hostport.substr(colon + 1);
  } else {
    u.host = hostport;
    u.port = "80";
  }
  if (u.host.empty()) fail("{}: no host in endpoint", url);
  return u;
}

std::string url_encode(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') o += static_cast<char>(c);
    else o += fmt::format("%{:02X}", c);
  }
  return o;
}

struct Fd {
  int fd = -1;
  ~Fd() { if (fd >= 0) ::close(fd); }
};

}  // namespace

double perspective_request(const std::string& endpoint, const std::string& key, const std::string& text,
                           int timeout_s) {
  Url u = parse_url(endpoint);
  nlohmann::json body = {{"comment", {{"text", text}}},
                         {"requestedAttributes", {{"TOXICITY", nlohmann::json::object()}}},
                         {"spanAnnotations", false},
                         {"languages", {"en"}}};
  std::string payload = body.dump();
  std::string path = u.path + (u.path.find('?') == std::string::npos ? "?" : "&") + "key=" + url_encode(key);
  std::string req = "POST " + path + " HTTP/1.1\r\nHost: " + u.host + ":" + u.port +
                    "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(payload.size()) +
                    "\r\nConnection: close\r\n\r\n" + payload;
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (int rc = getaddrinfo(u.host.c_str(), u.port.c_str(), &hints, &res); rc != 0)
    fail("{}: cannot resolve host '{}': {}", endpoint, u.host, gai_strerror(rc));
  Fd s;
  for (addrinfo* a = res; a; a = a->ai_next) {
    s.fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (s.fd < 0) continue;
    timeval tv{timeout_s, 0};
    setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(s.fd, a->ai_addr, a->ai_addrlen) == 0) break;
    ::close(s.fd);
    s.fd = -1;
  }
  freeaddrinfo(res);
  if (s.fd < 0) fail("{}: cannot connect to {}:{}", endpoint, u.host, u.port);
  for (size_t sent = 0; sent < req.size();) {
    ssize_t n = ::send(s.fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) fail("{}: send failed", endpoint);
    sent += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[4096];
  const size_t kMax = 1 << 20;
  while (resp.size() < kMax) {
    ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n < 0) fail("{}: no response within {} s", endpoint, timeout_s);
    if (n == 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  size_t hdr_end = resp.find("\r\n\r\n");
  if (resp.rfind("HTTP/", 0) != 0 || hdr_end == std::string::npos) fail("{}: malformed HTTP response", endpoint);
  size_t sp = resp.find(' ');
  int status = std::atoi(resp.c_str() + sp + 1);
  std::string bodytext = resp.substr(hdr_end + 4);
  if (status != 200) fail("{}: HTTP status {}: {}", endpoint, status, bodytext.substr(0, 200));
  try {
    auto j = nlohmann::json::parse(bodytext);
    double v = j.at("attributeScores").at("TOXICITY").at("summaryScore").at("value").get<double>();
    if (!(v >= 0 && v <= 1)) fail("{}: toxicity {} outside [0, 1]", endpoint, v);
    return v;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected response (no attributeScores.TOXICITY.summaryScore.value): {}", endpoint, e.what());
  }
}

ToxicityScorer make_perspective_scorer(const std::string& endpoint, const std::string& key, int timeout_s) {
  parse_url(endpoint);  // validate early
  ToxicityScorer s;
  s.name = "perspective-http " + endpoint;
  s.score = [endpoint, key, timeout_s](const std::vector<std::string>& texts) {
    std::vector<double> out;
    for (const auto& t : texts) out.push_back(t.empty() ? 0.0 : perspective_request(endpoint, key, t, timeout_s));
    return out;
  };
  return s;
}

}  // namespace ctrust
