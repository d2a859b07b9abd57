#include "backend/http.h"

#include <chrono>
#include <exception>
#include <mutex>
#include <random>
#include <thread>

#include <curl/curl.h>

#include "base/error.h"

namespace ctrust {

namespace {

std::once_flag g_curl_init;

size_t write_body(char* ptr, size_t size, size_t nmemb, void* user) {
  auto* s = static_cast<std::string*>(user);
  s->append(ptr, size * nmemb);
  return size * nmemb;
}

bool retryable(const HttpResponse& r) { return r.status == 0 || r.status == 429 || r.status >= 500; }

}  // namespace

HttpClient::HttpClient(HttpOptions opt) : opt_(std::move(opt)) {
  std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

HttpResponse HttpClient::perform(const std::string& url, const std::string* body) const {
  HttpResponse last;
  std::mt19937_64 jitter(std::hash<std::thread::id>{}(std::this_thread::get_id()));
  for (int attempt = 0; attempt <= opt_.retries; attempt++) {
    if (attempt > 0) {
      counters_.retries++;
      const double wait = opt_.backoff_seconds * double(1 << std::min(attempt - 1, 10)) *
                          (1.0 + 0.25 * std::uniform_real_distribution<double>(0, 1)(jitter));
      std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    }
    counters_.requests++;
    HttpResponse r;
    r.attempts = attempt + 1;
    CURL* h = curl_easy_init();
    if (!h) fail("http: curl_easy_init failed");
    struct curl_slist* hdr = nullptr;
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Accept: application/json");
    std::string auth;
    if (!opt_.bearer.empty()) {
      auth = "Authorization: Bearer " + opt_.bearer;
      hdr = curl_slist_append(hdr, auth.c_str());
    }
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, long(opt_.timeout_seconds * 1000));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, long(opt_.connect_timeout * 1000));
    if (body) {
      curl_easy_setopt(h, CURLOPT_POST, 1L);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body->size()));
    }
    const CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    } else {
      r.status = 0;
      r.error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    }
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    last = std::move(r);
    if (!retryable(last)) return last;
  }
  counters_.failures++;
  return last;
}

HttpResponse HttpClient::post_json(const std::string& url, const std::string& body) const {
  return perform(url, &body);
}

HttpResponse HttpClient::get(const std::string& url) const { return perform(url, nullptr); }

void parallel_for(size_t n, int max_inflight, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  const size_t nt = std::min(n, size_t(std::max(1, max_inflight)));
  if (nt == 1) {
    for (size_t i = 0; i < n; i++) fn(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::exception_ptr first;
  std::mutex mu;
  std::vector<std::thread> th;
  th.reserve(nt);
  for (size_t t = 0; t < nt; t++)
    th.emplace_back([&] {
      while (!stop) {
        const size_t i = next++;
        if (i >= n) break;
        try {
          fn(i);
        } catch (...) {
          std::lock_guard<std::mutex> lk(mu);
          if (!first) first = std::current_exception();
          stop = true;
        }
      }
    });
  for (auto& t : th) t.join();
  if (first) std::rethrow_exception(first);
}

std::string url_join(const std::string& base, const std::string& path) {
  std::string b = base;
  while (!b.empty() && b.back() == '/') b.pop_back();
  if (path.empty()) return b;
  return path[0] == '/' ? b + path : b + "/" + path;
}

}  // namespace ctrust
