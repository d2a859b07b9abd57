// Toxicity scorers: the built-in hashed n-gram logistic regression (trained on the RealToxicityPrompts
// Perspective scores, evaluated on held-out records) and the Perspective-compatible HTTP client against a
// fake server on 127.0.0.1 started by the test.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "fake_http.h"
#include "test_paths.h"
#include "trust/toxicity.h"

using namespace ctrust;

namespace {

std::vector<std::string> rtp_files() {
  std::string d = test::shared_dir() + "/data/decodingtrust/toxicity/user_prompts/";
  return {d + "toxic.jsonl", d + "nontoxic.jsonl"};
}

const ToxicityLR& trained() {
  static ToxicityLR m = train_toxicity_lr(rtp_files());
  return m;
}

}  // namespace

TEST(TrustToxicity, AucAndSpearmanByHand) {
  // scores 0.1 0.4 0.35 0.8, labels 0 0 1 1: pairs (pos>neg): 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3 of 4
  EXPECT_NEAR(roc_auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}), 0.75, 1e-12);
  EXPECT_NEAR(roc_auc({0.5, 0.5}, {0, 1}), 0.5, 1e-12);  // tie = 1/2
  EXPECT_NEAR(spearman({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0, 1e-12);
  EXPECT_NEAR(spearman({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0, 1e-12);
  // ranks a: 1 2 3, b: 1 3 2 -> 1 - 6*2/(3*8) = 0.5
  EXPECT_NEAR(spearman({1, 2, 3}, {1, 3, 2}), 0.5, 1e-12);
  EXPECT_THROW(roc_auc({0.1, 0.2}, {1, 1}), Error);
}

TEST(TrustToxicity, BuiltInScorerAgreesWithPerspectiveOnHeldOut) {
  const ToxicityLR& m = trained();
  std::printf("ctrust-lr: %d train texts, %d held-out texts, held-out AUC %.4f, Spearman %.4f\n", m.train_texts,
              m.heldout_texts, m.heldout_auc, m.heldout_spearman);
  EXPECT_GT(m.heldout_texts, 900);
  EXPECT_GT(m.heldout_auc, 0.85);
  EXPECT_GT(m.heldout_spearman, 0.6);
  double toxic = toxicity_lr_predict(m, "you stupid fucking idiot, shut up");
  double clean = toxicity_lr_predict(m, "the weather is nice and we went for a walk in the park");
  EXPECT_GT(toxic, 0.5);
  EXPECT_LT(clean, 0.3);
  // Deterministic: training twice gives the same model.
  ToxicityLR again = train_toxicity_lr(rtp_files());
  EXPECT_EQ(again.bias, m.bias);
  EXPECT_EQ(again.w, m.w);
}

TEST(TrustToxicity, ModelFileRoundTripAndBadFiles) {
  std::string path = test::scratch_dir() + "/toxicity_lr.bin";
  std::remove(path.c_str());
  save_toxicity_lr(trained(), path);
  ToxicityLR back = load_toxicity_lr(path);
  EXPECT_EQ(back.w, trained().w);
  EXPECT_EQ(back.heldout_auc, trained().heldout_auc);
  ToxicityScorer s = make_lr_scorer(back);
  EXPECT_NE(s.name.find("ctrust-lr"), std::string::npos);
  auto v = s.score({"", "hello friend"});
  EXPECT_EQ(v[0], 0.0);
  EXPECT_NEAR(v[1], toxicity_lr_predict(trained(), "hello friend"), 1e-12);
  // load_or_train uses the cache when present.
  EXPECT_EQ(load_or_train_toxicity_lr(path, {"/nonexistent.jsonl"}).bias, trained().bias);
  // Truncated and foreign files are errors naming the file.
  std::string bytes;
  {
    std::ifstream f(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  std::string cut = test::scratch_dir() + "/toxicity_cut.bin";
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() - 3);
  try {
    load_toxicity_lr(cut);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(cut + ": truncated"), std::string::npos) << e.what();
  }
  std::string junk = test::scratch_dir() + "/toxicity_junk.bin";
  std::ofstream(junk, std::ios::binary) << "GGUF....";
  EXPECT_THROW(load_toxicity_lr(junk), Error);
}

namespace {

// A fake Perspective server: toxicity = 0.9 if the text holds "idiot" else 0.1; a wrong key gets HTTP 400.
// `texts` collects the texts it was asked about (written by the server thread, read after it has served).
struct FakePerspective {
  std::vector<std::string> texts;
  test::LoopbackHttpServer http;
  explicit FakePerspective(int max_requests)
      : http([this](const std::string& req) { return reply(req); }, max_requests) {}
  std::string reply(const std::string& req) {
    if (req.find("POST /v1alpha1/comments:analyze?key=test%20key ") != 0)
      return "HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbad api key";
    auto body = nlohmann::json::parse(req.substr(req.find("\r\n\r\n") + 4));
    std::string text = body["comment"]["text"];
    texts.push_back(text);
    bool has_attr = body["requestedAttributes"].contains("TOXICITY");
    double v = has_attr && text.find("idiot") != std::string::npos ? 0.9 : 0.1;
    return test::http_json_reply(
        nlohmann::json{{"attributeScores", {{"TOXICITY", {{"summaryScore", {{"value", v}, {"type", "PROBABILITY"}}}}}}},
                       {"languages", {"en"}}}.dump());
  }
};

}  // namespace

TEST(TrustToxicity, PerspectiveHttpClientAgainstLocalFakeServer) {
  FakePerspective server(3);
  std::string endpoint = server.http.endpoint();
  ToxicityScorer s = make_perspective_scorer(endpoint, "test key", 5);
  EXPECT_EQ(s.name, "perspective-http " + endpoint);
  auto v = s.score({"you idiot", "", "a \"quoted\" ünïcode text"});  // the empty text is not sent
  ASSERT_EQ(v.size(), 3u);
  EXPECT_DOUBLE_EQ(v[0], 0.9);
  EXPECT_DOUBLE_EQ(v[1], 0.0);
  EXPECT_DOUBLE_EQ(v[2], 0.1);
  try {
    perspective_request(endpoint, "wrong", "x", 5);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("HTTP status 400"), std::string::npos) << e.what();
  }
  EXPECT_EQ(server.http.served.load(), 3);
  ASSERT_EQ(server.texts.size(), 2u);
  EXPECT_EQ(server.texts[1], "a \"quoted\" ünïcode text");
}

TEST(TrustToxicity, PerspectiveHttpErrors) {
  EXPECT_THROW(make_perspective_scorer("https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze", "k"), Error);
  EXPECT_THROW(make_perspective_scorer("ftp://x", "k"), Error);
  // Nothing listens on this port (bound then closed).
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(fd);
  EXPECT_THROW(perspective_request("http://127.0.0.1:" + std::to_string(port) + "/x", "k", "t", 2), Error);
}
