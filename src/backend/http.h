// A small HTTP client over libcurl (Debian libcurl4-openssl-dev): JSON POST/GET with a timeout, retries with
// exponential backoff on connection errors, 429 and 5xx, and a pool of worker threads that keeps at most N
// requests in flight. HTTPS works as libcurl does it (system CA store), so a remote vLLM endpoint behind TLS is
// reachable; loopback servers are plain HTTP.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ctrust {

struct HttpOptions {
  double timeout_seconds = 600;    // whole request (a long generation on a busy server takes minutes)
  double connect_timeout = 10;
  int retries = 4;                 // further attempts after a retryable failure (429, 5xx, connection)
  double backoff_seconds = 0.5;    // first wait; doubles each retry (0.5, 1, 2, 4 s), plus up to 25% jitter
  std::string bearer;              // Authorization: Bearer <bearer> when not empty
};

struct HttpResponse {
  long status = 0;                 // 0: no HTTP answer (connection error, timeout)
  std::string body;
  std::string error;               // libcurl's message when status == 0
  int attempts = 0;
};

// Counters of a client (for benchmarks and the run's settings): requests sent, retries, failures.
struct HttpCounters {
  std::atomic<int64_t> requests{0}, retries{0}, failures{0};
};

class HttpClient {
 public:
  explicit HttpClient(HttpOptions opt = {});
  // One request, retried on connection errors, 429 and 5xx (up to opt.retries more times). The last response
  // is returned whatever its status (the caller turns it into an error message); never throws for HTTP errors.
  HttpResponse post_json(const std::string& url, const std::string& body) const;
  HttpResponse get(const std::string& url) const;
  const HttpOptions& options() const { return opt_; }
  HttpCounters& counters() const { return counters_; }

 private:
  HttpResponse perform(const std::string& url, const std::string* body) const;
  HttpOptions opt_;
  mutable HttpCounters counters_;
};

// Runs fn(i) for i in [0, n) on at most max_inflight threads at once (each one request in flight); the first
// exception thrown by any fn stops the others from starting new work and is rethrown here.
void parallel_for(size_t n, int max_inflight, const std::function<void(size_t)>& fn);

// "http://host:port/v1" + "/completions": joins without doubling or dropping the slash.
std::string url_join(const std::string& base, const std::string& path);

}  // namespace ctrust
