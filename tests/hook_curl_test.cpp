// tests/hook_curl_test.cpp - an unmodified blocking client library through libfibers-hook:
// libcurl's easy API (Debian's libcurl, OpenSSL flavour) from 200 fibers on ONE I/O thread
// against a local HTTP server written with libfibers, with a heartbeat on the same thread;
// the same 200 transfers on 200 OS threads are the baseline (both times printed).
#include <curl/curl.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "fibers/hook.hpp"
#include "heartbeat_fiber.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::clock;

constexpr int kClients = 200;
const std::string kBody(20000, 'h');

/// A minimal HTTP/1.1 server: reads a request head, answers 200 with kBody, closes.
void serve_http(fibers::stream_socket s) {
  std::string req;
  char buf[4096];
  std::error_code ec;
  while (req.find("\r\n\r\n") == std::string::npos) {
    const std::size_t n = s.read_some(fibers::mutable_buffer(buf, sizeof buf), ec, 10s);
    if (ec || n == 0) return;
    req.append(buf, n);
  }
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                           std::to_string(kBody.size()) + "\r\nConnection: close\r\n\r\n" + kBody;
  s.write_all(fibers::const_buffer(resp.data(), resp.size()), ec, 10s);
}

std::size_t count_bytes(char*, std::size_t size, std::size_t n, void* user) {
  *static_cast<std::size_t*>(user) += size * n;
  return size * n;
}

/// One blocking transfer: true if it got 200 and the whole body.
bool fetch(const std::string& url) {
  CURL* h = curl_easy_init();
  if (h == nullptr) return false;
  std::size_t got = 0;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, count_bytes);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &got);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
  const CURLcode rc = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(h);
  return rc == CURLE_OK && status == 200 && got == kBody.size();
}

class HookCurl : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  static void TearDownTestSuite() { curl_global_cleanup(); }
};

TEST_F(HookCurl, TwoHundredFibersOnOneThreadAgainstTwoHundredThreads) {
  fibers_test::nofile_limit limit;
  limit.raise_to_hard();
  std::atomic<int> fiber_ok{0}, thread_ok{0};
  double fiber_ms = 0, thread_ms = 0;
  std::chrono::milliseconds gap{0};
  long ticks = 0;
  const auto polls0 = fibers::hook::stats()[fibers::hook::call::poll];
  fibers::runtime rt;  // one I/O thread: the server, the heartbeat and every curl fiber
  rt.run([&] {
    auto listener = fibers::stream_listener::bind(fibers::endpoint::loopback_v4(0));
    const std::string url = "http://" + listener.local_endpoint().to_string() + "/hello";
    bool stop = false;
    auto server = fibers::spawn([&] {
      while (!stop) {
        std::error_code ec;
        auto s = listener.accept(ec, 20ms);
        if (ec) continue;
        fibers::spawn([s = std::move(s)]() mutable { serve_http(std::move(s)); }).detach();
      }
    });
    {
      fibers_test::heartbeat hb;
      const auto t0 = clock::now();
      std::vector<fibers::fiber> clients;
      for (int i = 0; i < kClients; ++i) {
        clients.push_back(fibers::spawn({.stack_size = 256 * 1024}, [&] {
          if (fetch(url)) ++fiber_ok;
        }));
      }
      for (auto& c : clients) c.join();
      fiber_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
      hb.stop();
      gap = hb.max_gap();
      ticks = hb.ticks();
    }
    // Baseline: the same transfers on OS threads (the server stays on its fiber).
    const auto t1 = clock::now();
    std::vector<std::thread> threads;
    for (int i = 0; i < kClients; ++i) {
      threads.emplace_back([&] {
        if (fetch(url)) ++thread_ok;
      });
    }
    fibers::blocking([&] {
      for (auto& t : threads) t.join();
    });
    thread_ms = std::chrono::duration<double, std::milli>(clock::now() - t1).count();
    stop = true;
    server.join();
  });
  EXPECT_EQ(fiber_ok, kClients);
  EXPECT_EQ(thread_ok, kClients);
  EXPECT_GT(ticks, 0);
  EXPECT_LT(gap, fibers_test::stall_limit);
  EXPECT_GT(fibers::hook::stats()[fibers::hook::call::poll], polls0);  // curl waits in poll()
  std::printf("[ info ] libcurl, %d transfers of %zu B: 200 fibers on 1 I/O thread %.0f ms "
              "(heartbeat max gap %lld ms), 200 OS threads %.0f ms\n",
              kClients, kBody.size(), fiber_ms, static_cast<long long>(gap.count()), thread_ms);
}

}  // namespace
