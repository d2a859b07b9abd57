// Test helper: a one-thread HTTP server on a loopback port. Each request (headers + Content-Length body) is
// read with a bounded loop and a 5 s receive timeout, passed whole to `respond`, whose return value is sent back
// as the complete HTTP response; the connection is then closed. Used to stand in for the Perspective API.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace ctrust::test {

struct LoopbackHttpServer {
  int fd = -1, port = 0;
  std::atomic<int> served{0};
  std::thread th;

  // max_requests < 0: serve until destroyed.
  explicit LoopbackHttpServer(std::function<std::string(const std::string& request)> respond, int max_requests = -1) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    ::listen(fd, 8);
    th = std::thread([this, respond = std::move(respond), max_requests] {
      for (int i = 0; max_requests < 0 || i < max_requests; ++i) {
        int c = ::accept(fd, nullptr, nullptr);
        if (c < 0) return;
        timeval tv{5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        std::string req;
        char buf[4096];
        size_t need = std::string::npos;
        for (int k = 0; k < 1000; ++k) {  // bounded read loop
          ssize_t n = ::recv(c, buf, sizeof buf, 0);
          if (n <= 0) break;
          req.append(buf, static_cast<size_t>(n));
          size_t h = req.find("\r\n\r\n");
          if (h != std::string::npos && need == std::string::npos) {
            size_t cl = req.find("Content-Length: ");
            need = h + 4 + (cl == std::string::npos ? 0 : std::stoul(req.substr(cl + 16)));
          }
          if (need != std::string::npos && req.size() >= need) break;
        }
        const std::string reply = respond(req);
        ::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
        ::close(c);
        ++served;
      }
    });
  }
  ~LoopbackHttpServer() {
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
    if (th.joinable()) th.join();
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port) + "/v1alpha1/comments:analyze"; }
};

// A 200 response carrying a JSON body.
inline std::string http_json_reply(const std::string& body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

}  // namespace ctrust::test
