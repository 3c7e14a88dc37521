// tests/test_util.hpp - small helpers shared by the libfibers test files.
#pragma once

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fibers/fibers.hpp"

namespace fibers_test {

using namespace std::chrono_literals;

/// Milliseconds since `start` on the runtime clock (for "did not return early" checks).
inline std::chrono::milliseconds ms_since(fibers::clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(fibers::clock::now() - start);
}

/// Parks for an hour unless canceled (or timed out by an inherited deadline); records how it ended.
inline void sleep_an_hour(std::string& how) {
  try {
    fibers::this_fiber::sleep_for(1h);
    how = "slept";
  } catch (const fibers::canceled&) {
    how = "canceled";
    throw;
  } catch (const std::system_error& e) {
    how = e.code() == std::errc::timed_out ? "timed_out" : e.what();
    throw;
  }
}

/// How many epoll sets of this process hold `fd` (the "tfd:" lines of each epoll fd's
/// /proc/self/fdinfo entry): which reactors have it registered.
inline int epoll_sets_holding(int fd) {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[256] = {};
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    if (::readlink(link.c_str(), target, sizeof target - 1) <= 0) continue;
    if (std::string(target) != "anon_inode:[eventpoll]") continue;
    std::ifstream info(std::string("/proc/self/fdinfo/") + e->d_name);
    for (std::string word; info >> word;) {
      int tfd = -1;
      if (word == "tfd:" && info >> tfd && tfd == fd) ++n;
    }
  }
  ::closedir(d);
  return n;
}

/// A deterministic byte pattern, different for each `seed`, so misplaced bytes are caught.
inline std::vector<char> pattern(std::size_t n, std::uint32_t seed = 1) {
  std::vector<char> v(n);
  std::uint32_t x = seed * 2654435761u + 12345u;
  for (auto& c : v) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return v;
}

/// A fresh directory from mkdtemp, removed with everything in it on destruction.
class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fibers-test-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = p;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// Sets the RLIMIT_NOFILE soft limit for the scope and restores the old one afterwards.
class nofile_limit {
 public:
  nofile_limit() { ::getrlimit(RLIMIT_NOFILE, &saved_); }
  nofile_limit(const nofile_limit&) = delete;
  nofile_limit& operator=(const nofile_limit&) = delete;
  ~nofile_limit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  /// Sets the soft limit (capped at the hard limit); returns false if setrlimit failed.
  bool set_soft(rlim_t soft) {
    rlimit r = saved_;
    r.rlim_cur = std::min(soft, saved_.rlim_max);
    return ::setrlimit(RLIMIT_NOFILE, &r) == 0;
  }
  /// Raises the soft limit to the hard limit.
  bool raise_to_hard() { return set_soft(saved_.rlim_max); }
  void restore() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

 private:
  rlimit saved_{};
};

/// Spawns a fiber that accepts one connection on `l` and echoes everything it reads until
/// the peer shuts down its write side, then closes. Join it when done.
inline fibers::fiber spawn_echo_once(fibers::stream_listener& l) {
  return fibers::spawn("echo-server", [&l] {
    auto s = l.accept(10s);
    std::vector<char> buf(64 * 1024);
    for (;;) {
      std::size_t n = s.read_some(buf);
      if (n == 0) break;
      s.write_all(fibers::const_buffer(buf.data(), n));
    }
    s.shutdown(fibers::stream_socket::shutdown_type::write);
  });
}

/// A connected pair of stream sockets over loopback TCP (client, accepted server side).
struct tcp_pair {
  fibers::stream_socket client;
  fibers::stream_socket server;
};

/// Connects a client to a fresh listener on `bind_ep` (port 0) and accepts it.
inline tcp_pair make_tcp_pair(const fibers::endpoint& bind_ep = fibers::endpoint::loopback_v4(0)) {
  auto l = fibers::stream_listener::bind(bind_ep);
  tcp_pair p;
  p.client = fibers::stream_socket::connect(l.local_endpoint(), 10s);
  p.server = l.accept(10s);
  return p;
}

/// A port on 127.0.0.1 with nothing listening (bound once, then closed).
inline std::uint16_t closed_port() {
  auto l = fibers::stream_listener::bind(fibers::endpoint::loopback_v4(0));
  std::uint16_t port = l.local_endpoint().port();
  l.close();
  return port;
}

/// Turns a hang into a loud failure: if not destroyed within `limit`, prints `what` and aborts
/// (a spinning or stuck I/O thread cannot be interrupted from inside the runtime).
class hang_guard {
 public:
  hang_guard(std::chrono::seconds limit, const char* what)
      : thread_([this, limit, what] {
          std::unique_lock lk(mu_);
          if (!cv_.wait_for(lk, limit, [this] { return done_; })) {
            std::fprintf(stderr, "HANG: %s (still running after %lld s)\n", what,
                         static_cast<long long>(limit.count()));
            std::abort();
          }
        }) {}
  ~hang_guard() {
    {
      std::lock_guard lk(mu_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

/// Runs `body` in a child process (GoogleTest's death-test machinery), so that a library hang
/// (cut short by a hang_guard) or crash fails this one test and not the whole binary. The
/// child exits 0 only if no assertion in `body` failed; its failures show in the output.
template <class F>
void in_child_process(F body) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        body();
        std::exit(::testing::Test::HasFailure() ? 1 : 0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace fibers_test
