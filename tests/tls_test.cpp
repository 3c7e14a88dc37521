// tests/tls_test.cpp - tls::context and tls::stream over loopback TCP, with a PKI made here.
#include <gtest/gtest.h>

#include <string>

#include "fibers/fibers.hpp"
#include "fibers/tls.hpp"
#include "test_util.hpp"
#include "tls_certs.hpp"

using namespace std::chrono_literals;
namespace tls = fibers::tls;

namespace {

struct pki {
  fibers_test::temp_dir dir;
  fibers_test::test_ca ca{dir.file("")};
  std::pair<std::string, std::string> leaf = ca.issue("localhost");
  tls::context server_ctx() const {
    return tls::context::server({.cert_file = leaf.first, .key_file = leaf.second});
  }
  tls::context client_ctx() const { return tls::context::client({.ca_file = ca.ca_file()}); }
};

}  // namespace

TEST(Tls, EchoRoundTripOverLoopback) {
  pki p;
  fibers::run([&] {
    auto listener = fibers::tcp_listener::bind(fibers::endpoint::parse("127.0.0.1:0"));
    const auto port = listener.local_endpoint().port();
    auto sctx = p.server_ctx();
    auto server = fibers::spawn([&] {
      tls::stream s(listener.accept(), sctx);
      char buf[4096];
      for (;;) {
        std::size_t n = s.read_some(buf);
        if (n == 0) break;
        s.write_all(fibers::const_buffer(buf, n));
      }
      s.shutdown();
    });
    auto s = tls::connect("127.0.0.1", port, p.client_ctx(), 10s);
    EXPECT_EQ(s.version(), "TLSv1.3");
    s.write_all("hello tls");
    char buf[9];
    s.read_exact(buf);
    EXPECT_EQ(std::string(buf, 9), "hello tls");
    s.shutdown();
    EXPECT_EQ(s.read_some(buf), 0u);
    server.join();
  });
}

TEST(Tls, WrongHostNameIsRefusedWithTheReason) {
  pki p;
  fibers::run([&] {
    auto listener = fibers::tcp_listener::bind(fibers::endpoint::parse("127.0.0.1:0"));
    auto sctx = p.server_ctx();
    auto server = fibers::spawn([&] {
      tls::stream s(listener.accept(), sctx);
      std::error_code ec;
      s.handshake(ec);
      EXPECT_TRUE(ec);
    });
    auto sock = fibers::tcp_stream::connect(listener.local_endpoint(), 5s);
    tls::stream s(std::move(sock), p.client_ctx(), "wrong.example");
    try {
      s.handshake(5s);
      ADD_FAILURE() << "handshake succeeded";
    } catch (const tls::error& e) {
      EXPECT_EQ(e.code(), tls::errc::verify_failed);
      EXPECT_NE(std::string(e.what()).find("tls handshake with wrong.example:"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("hostname mismatch"), std::string::npos) << e.what();
    }
    server.join();
  });
}
