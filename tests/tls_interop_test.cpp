// tests/tls_interop_test.cpp - our client against `openssl s_server` and `openssl s_client`
// against our server (skipped only when /usr/bin/openssl is missing).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fibers/fibers.hpp"
#include "fibers/tls.hpp"
#include "tls_test_util.hpp"

extern char** environ;

using namespace tls_test;

namespace {

constexpr const char* kOpenssl = "/usr/bin/openssl";

/// A child process (posix_spawn), stdin and stdout redirected to files; killed if still
/// running when destroyed.
class child {
 public:
  child(std::vector<std::string> args, const std::string& in_file, const std::string& out_file) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, in_file.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn " + args[0]);
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  /// Waits (parking the fiber between looks) until the child exits; its exit status, or -1.
  int wait_exit(std::chrono::milliseconds limit) {
    const auto until = fibers::clock::now() + limit;
    while (fibers::clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      fibers::this_fiber::sleep_for(10ms);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
};

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST(Tls, OurClientAgainstOpensslSServer) {
  if (::access(kOpenssl, X_OK) != 0) GTEST_SKIP() << kOpenssl << " is missing (apt-get install openssl)";
  pki p;
  fibers::run([&] {
    const auto port = fibers_test::closed_port();
    write_file(p.dir.file("empty"), "");
    child server({kOpenssl, "s_server", "-accept", "127.0.0.1:" + std::to_string(port), "-cert",
                  p.leaf.first, "-key", p.leaf.second, "-www"},
                 p.dir.file("empty"), p.dir.file("s_server.out"));
    const auto ep = fibers::endpoint::loopback_v4(port);
    bool up = false;
    for (int i = 0; i < 500 && !up; ++i) {  // until it listens (a probe it logs as an error)
      std::error_code ec;
      fibers::tcp_stream::connect(ep, ec, 1s);
      up = !ec;
      if (!up) fibers::this_fiber::sleep_for(10ms);
    }
    ASSERT_TRUE(up) << "openssl s_server did not listen: " << read_file(p.dir.file("s_server.out"));
    auto c = tls::connect("127.0.0.1", port, p.client_ctx(), 10s);
    EXPECT_EQ(c.version(), "TLSv1.3");
    c.write_all("GET / HTTP/1.0\r\n\r\n", 10s);
    std::string page;
    char buf[4096];
    std::error_code ec;
    while (std::size_t n = c.read_some(buf, ec, 10s)) page.append(buf, n);
    EXPECT_TRUE(!ec || ec == tls::errc::truncated) << ec.message();
    EXPECT_EQ(page.rfind("HTTP/1.0 200 ok", 0), 0u) << page.substr(0, 200);
  });
}

TEST(Tls, OpensslSClientAgainstOurServer) {
  if (::access(kOpenssl, X_OK) != 0) GTEST_SKIP() << kOpenssl << " is missing (apt-get install openssl)";
  pki p;
  fibers::run([&] {
    auto listener = listen_loopback();
    const auto sctx = p.server_ctx({.alpn = {"x-test"}});
    std::string seen, version;
    auto server = fibers::spawn([&] {
      tls::stream s(listener.accept(20s), sctx);
      char buf[256];
      while (seen.find('\n') == std::string::npos) {
        const std::size_t n = s.read_some(buf, 20s);
        if (n == 0) break;
        seen.append(buf, n);
      }
      version = s.version();
      std::string reply = seen;
      std::transform(reply.begin(), reply.end(), reply.begin(), [](char c) { return static_cast<char>(std::toupper(c)); });
      s.write_all(const_buffer(reply.data(), reply.size()), 10s);
      s.shutdown(5s);
    });
    write_file(p.dir.file("in"), "hello from s_client\n");
    child client({kOpenssl, "s_client", "-connect", "127.0.0.1:" + std::to_string(listener.local_endpoint().port()),
                  "-servername", "localhost", "-verify_hostname", "localhost", "-CAfile",
                  p.ca.ca_file(), "-verify_return_error", "-alpn", "x-test", "-quiet"},
                 p.dir.file("in"), p.dir.file("out"));
    server.join();
    EXPECT_EQ(client.wait_exit(20s), 0) << read_file(p.dir.file("out"));
    EXPECT_EQ(seen, "hello from s_client\n");
    EXPECT_EQ(version, "TLSv1.3");
    EXPECT_TRUE(contains(read_file(p.dir.file("out")), "HELLO FROM S_CLIENT")) << read_file(p.dir.file("out"));
  });
}
