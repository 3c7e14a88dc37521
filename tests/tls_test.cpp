// tests/tls_test.cpp - tls::context and tls::stream over loopback TCP with a PKI made here:
// echo, verification, versions, mutual TLS, ALPN, SNI, session resumption and a thousand
// connections on one I/O thread. Failures and transports: tls_failure_test.cpp; interop with
// the openssl command-line tool: tls_interop_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "fibers/fibers.hpp"
#include "fibers/tls.hpp"
#include "heartbeat_fiber.hpp"
#include "tls_test_util.hpp"

using namespace tls_test;

namespace {

/// Writes `data` in write_some-sized pieces of random length (1 byte .. 1 MiB).
void send_in_random_pieces(tls::stream& s, const std::vector<char>& data, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::size_t done = 0;
  while (done < data.size()) {
    const std::size_t n = std::min<std::size_t>(data.size() - done, 1 + rng() % (1 << 20));
    s.write_all(const_buffer(data.data() + done, n), 60s);
    done += n;
  }
}

/// Reads data.size() bytes with reads of random size (1 byte .. 100,000) and compares them.
void receive_in_random_pieces(tls::stream& s, const std::vector<char>& expect, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<char> got(expect.size());
  std::size_t done = 0;
  while (done < got.size()) {
    const std::size_t want = std::min<std::size_t>(got.size() - done, 1 + rng() % 100000);
    const std::size_t n = s.read_some(mutable_buffer(got.data() + done, want), 60s);
    ASSERT_GT(n, 0u) << "early close_notify after " << done << " of " << got.size();
    done += n;
  }
  EXPECT_TRUE(got == expect) << "bytes differ";
}

/// Sizes for one bidirectional run: 10 MB one way, a random size up to 10 MB the other.
struct sizes {
  std::size_t up, down;
};
sizes pick_sizes(std::uint32_t seed) {
  std::mt19937 rng(seed);
  return {10 * 1000 * 1000, 1 + rng() % (10 * 1000 * 1000)};
}

}  // namespace

TEST(Tls, EchoRoundTripOverLoopback) {
  pki p;
  fibers::run([&] {
    auto listener = listen_loopback();
    const auto port = listener.local_endpoint().port();
    auto sctx = p.server_ctx();
    auto server = fibers::spawn([&] {
      tls::stream s(listener.accept(), sctx);
      echo(s);
    });
    auto s = tls::connect("127.0.0.1", port, p.client_ctx(), 10s);
    EXPECT_EQ(s.version(), "TLSv1.3");
    EXPECT_FALSE(s.cipher().empty());
    s.write_all("hello tls");
    char buf[9];
    s.read_exact(buf);
    EXPECT_EQ(std::string(buf, 9), "hello tls");
    s.shutdown();
    EXPECT_EQ(s.read_some(buf), 0u);
    server.join();
  });
}

TEST(Tls, ConnectByNameSendsSniAndVerifiesTheName) {
  pki p;
  fibers::run([&] {
    auto listener = listen_loopback();
    auto sctx = p.server_ctx();
    std::string asked;
    auto server = fibers::spawn([&] {
      tls::stream s(listener.accept(10s), sctx);
      s.handshake(10s);
      asked = s.server_name();
      echo(s);
    });
    // "localhost" through fibers::dns (the hosts file); only 127.0.0.1 listens.
    auto c = tls::connect("localhost", listener.local_endpoint().port(), p.client_ctx(), 10s);
    EXPECT_EQ(c.server_name(), "localhost");
    c.shutdown(5s);
    server.join();
    EXPECT_EQ(asked, "localhost");
  });
}

TEST(Tls, BothDirectionsAtOnceUpTo10MBWithAReaderAndAWriterOnEachSide) {
  pki p;
  const std::uint32_t seed = 20261205;
  const sizes n = pick_sizes(seed);
  const auto up = fibers_test::pattern(n.up, 1), down = fibers_test::pattern(n.down, 2);
  fibers::run([&] {
    auto listener = listen_loopback();
    auto sctx = p.server_ctx();
    auto server = fibers::spawn([&] {
      tls::stream s(listener.accept(10s), sctx);
      auto reader = fibers::spawn([&] { receive_in_random_pieces(s, up, seed + 1); });
      send_in_random_pieces(s, down, seed + 2);
      reader.join();
      s.shutdown(5s);
    });
    auto c = tls::connect("127.0.0.1", listener.local_endpoint().port(), p.client_ctx(), 10s);
    auto reader = fibers::spawn([&] {
      receive_in_random_pieces(c, down, seed + 3);
      char x;
      EXPECT_EQ(c.read_some(mutable_buffer(&x, 1), 10s), 0u);  // the server's close_notify
    });
    send_in_random_pieces(c, up, seed + 4);
    reader.join();
    server.join();
  });
  std::cout << "[ tls ] " << n.up << " bytes up, " << n.down << " down at once\n";
}

TEST(Tls, ReaderAndWriterOnDifferentIoThreads) {
  pki p;
  const std::uint32_t seed = 77;
  const sizes n = pick_sizes(seed);
  const auto up = fibers_test::pattern(n.up, 3), down = fibers_test::pattern(n.down, 4);
  fibers::runtime rt(2);
  rt.run([&] {
    auto listener = listen_loopback();
    auto sctx = p.server_ctx();
    auto server = fibers::spawn([&] {
      tls::stream s(listener.accept(10s), sctx);
      auto reader = rt.spawn_on(1, [&] { receive_in_random_pieces(s, up, seed + 1); });
      send_in_random_pieces(s, down, seed + 2);
      reader.join();
    });
    auto c = tls::connect("127.0.0.1", listener.local_endpoint().port(), p.client_ctx(), 10s);
    // The client's writer on thread 1, its reader here on thread 0 (the socket's home).
    auto writer = rt.spawn_on(1, [&] { send_in_random_pieces(c, up, seed + 3); });
    receive_in_random_pieces(c, down, seed + 4);
    writer.join();
    server.join();
  });
}

TEST(Tls, WrongHostNameIsRefusedWithTheReason) {
  pki p;
  fibers::run([&] {
    auto listener = listen_loopback();
    std::error_code server_ec;
    auto server = spawn_failing_server(listener, p.server_ctx(), server_ec);
    const failure f = client_handshake_failure(listener, p.client_ctx(), "wrong.example");
    EXPECT_EQ(f.code, tls::errc::verify_failed);
    EXPECT_TRUE(contains(f.what, "tls handshake with wrong.example:")) << f.what;
    EXPECT_TRUE(contains(f.what, "hostname mismatch")) << f.what;
    server.join();
    EXPECT_EQ(server_ec, tls::errc::handshake_failed) << server_ec.message();
  });
}

TEST(Tls, UntrustedCaIsRefusedAndInsecureSkipVerifyAcceptsIt) {
  pki p;
  fibers_test::test_ca other(p.dir.file(""), "other CA");
  const auto leaf = other.issue("other-localhost");
  const auto sctx = tls::context::server({.cert_file = leaf.first, .key_file = leaf.second});
  fibers::run([&] {
    auto listener = listen_loopback();
    std::error_code server_ec;
    auto server = spawn_failing_server(listener, sctx, server_ec);
    const failure f = client_handshake_failure(listener, p.client_ctx(), "localhost");
    EXPECT_EQ(f.code, tls::errc::verify_failed);
    EXPECT_TRUE(contains(f.what, "tls handshake with localhost:")) << f.what;
    EXPECT_TRUE(contains(f.what, "unable to get local issuer certificate")) << f.what;
    server.join();
    EXPECT_TRUE(server_ec) << "the server's handshake succeeded";

    auto echo_server = fibers::spawn([&] {
      tls::stream s(listener.accept(10s), sctx);
      echo(s);
    });
    auto insecure = tls::context::client({.insecure_skip_verify = true});
    tls::stream c(fibers::tcp_stream::connect(listener.local_endpoint(), 10s), insecure);
    c.write_all("still encrypted", 10s);
    char buf[15];
    c.read_exact(buf, 10s);
    EXPECT_EQ(std::string(buf, 15), "still encrypted");
    EXPECT_EQ(c.peer_subject(), "/CN=localhost");
    c.shutdown(5s);
    echo_server.join();
  });
}

TEST(Tls, ExpiredCertificateIsRefused) {
  pki p;
  const auto old = p.ca.issue("expired", {.not_before_days = -30, .not_after_days = -1});
  const auto sctx = tls::context::server({.cert_file = old.first, .key_file = old.second});
  fibers::run([&] {
    auto listener = listen_loopback();
    std::error_code server_ec;
    auto server = spawn_failing_server(listener, sctx, server_ec);
    const failure f = client_handshake_failure(listener, p.client_ctx(), "localhost");
    EXPECT_EQ(f.code, tls::errc::verify_failed);
    EXPECT_TRUE(contains(f.what, "certificate has expired")) << f.what;
    server.join();
  });
}

TEST(Tls, Tls11OnlyPeerIsRefused) {
  pki p;
  const auto sctx = p.server_ctx({.min_version = tls::version::tls1_0,
                                  .max_version = tls::version::tls1_1,
                                  .ciphers = "DEFAULT@SECLEVEL=0"});
  fibers::run([&] {
    auto listener = listen_loopback();
    std::error_code server_ec;
    auto server = spawn_failing_server(listener, sctx, server_ec);
    const failure f = client_handshake_failure(listener, p.client_ctx(), "localhost");
    EXPECT_EQ(f.code, tls::errc::handshake_failed);
    EXPECT_TRUE(contains(f.what, "tls handshake with localhost:")) << f.what;
    // The server refuses: the client offers 1.2 and 1.3 only (OpenSSL's server decides from
    // the client's supported_versions and sends a protocol_version alert).
    EXPECT_TRUE(contains(f.what, "protocol version")) << f.what;
    server.join();
    EXPECT_TRUE(server_ec);
    std::cout << "[ tls ] client: " << f.what << "\n[ tls ] server: " << server_ec.message() << "\n";
  });
}

TEST(Tls, MutualTlsRequiresAClientCertificate) {
  pki p;
  const auto client_leaf = p.ca.issue("client", {.common_name = "client", .dns_names = {}, .ips = {}});
  const auto sctx = p.server_ctx({.client_certificates = tls::client_auth::require,
                                  .client_ca_file = p.ca.ca_file()});
  fibers::run([&] {
    auto listener = listen_loopback();
    {  // without a certificate: the server refuses; the client learns it at its first read
      std::error_code server_ec;
      auto server = spawn_failing_server(listener, sctx, server_ec);
      const failure f = client_handshake_failure(listener, p.client_ctx(), "localhost");
      EXPECT_EQ(f.code.category(), tls::error_category()) << f.what;
      EXPECT_TRUE(contains(f.what, "certificate required")) << f.what;
      server.join();
      EXPECT_EQ(server_ec, tls::errc::handshake_failed);
    }
    {  // with one
      std::string subject;
      auto server = fibers::spawn([&] {
        tls::stream s(listener.accept(10s), sctx);
        s.handshake(10s);
        subject = s.peer_subject();
        echo(s);
      });
      auto cctx = p.client_ctx({.cert_file = client_leaf.first, .key_file = client_leaf.second});
      auto c = tls::connect("127.0.0.1", listener.local_endpoint().port(), cctx, 10s);
      c.write_all("mtls", 10s);
      char buf[4];
      c.read_exact(buf, 10s);
      c.shutdown(5s);
      server.join();
      EXPECT_EQ(subject, "/CN=client");
    }
  });
}

TEST(Tls, AlpnAgreesOnACommonProtocolAndFailsWithoutOne) {
  pki p;
  const auto sctx = p.server_ctx({.alpn = {"h2", "http/1.1"}});
  fibers::run([&] {
    auto listener = listen_loopback();
    std::string server_alpn;
    auto server = fibers::spawn([&] {
      tls::stream s(listener.accept(10s), sctx);
      s.handshake(10s);
      server_alpn = s.alpn();
      echo(s);
    });
    auto c = tls::connect("127.0.0.1", listener.local_endpoint().port(),
                          p.client_ctx({.alpn = {"spdy/1", "http/1.1"}}), 10s);
    EXPECT_EQ(c.alpn(), "http/1.1");
    c.shutdown(5s);
    server.join();
    EXPECT_EQ(server_alpn, "http/1.1");

    std::error_code server_ec;
    auto refusing = spawn_failing_server(listener, sctx, server_ec);
    const failure f = client_handshake_failure(listener, p.client_ctx({.alpn = {"imap"}}), "localhost");
    EXPECT_EQ(f.code, tls::errc::handshake_failed);
    EXPECT_TRUE(contains(f.what, "no application protocol")) << f.what;
    refusing.join();
    EXPECT_EQ(server_ec, tls::errc::handshake_failed);
  });
}

TEST(Tls, SniCallbackPicksOneOfTwoCertificates) {
  pki p;
  const auto a = p.ca.issue("a", {.common_name = "a.test", .dns_names = {"a.test"}, .ips = {}});
  const auto b = p.ca.issue("b", {.common_name = "b.test", .dns_names = {"b.test"}, .ips = {}});
  auto actx = tls::context::server({.cert_file = a.first, .key_file = a.second});
  const auto bctx = tls::context::server({.cert_file = b.first, .key_file = b.second});
  actx.set_sni_callback([&](std::string_view name) { return name == "b.test" ? &bctx : nullptr; });
  const auto cctx = p.client_ctx();
  fibers::run([&] {
    auto listener = listen_loopback();
    for (const std::string name : {"b.test", "a.test"}) {
      std::string asked;
      auto server = fibers::spawn([&] {
        tls::stream s(listener.accept(10s), actx);
        s.handshake(10s);
        asked = s.server_name();
        echo(s);
      });
      tls::stream c(fibers::tcp_stream::connect(listener.local_endpoint(), 10s), cctx, name);
      c.handshake(10s);  // verifies the certificate names `name`
      const auto alt = c.peer_alt_names();
      EXPECT_EQ(alt, std::vector<std::string>{name});
      EXPECT_EQ(c.peer_subject(), "/CN=" + name);
      c.shutdown(5s);
      server.join();
      EXPECT_EQ(asked, name);
    }
  });
}

TEST(Tls, SessionResumptionResumesAndCanBeTurnedOff) {
  pki p;
  const auto sctx = p.server_ctx();
  for (const bool cache : {true, false}) {
    const auto cctx = p.client_ctx({.session_cache = cache});
    fibers::run([&] {
      auto listener = listen_loopback();
      std::vector<bool> server_reused;
      auto server = fibers::spawn([&] {
        for (int i = 0; i < 3; ++i) {
          tls::stream s(listener.accept(10s), sctx);
          s.handshake(10s);
          server_reused.push_back(s.session_reused());
          s.write_all("t", 10s);
          echo(s);
        }
      });
      for (int i = 0; i < 3; ++i) {
        auto c = tls::connect("127.0.0.1", listener.local_endpoint().port(), cctx, 10s);
        char t;
        c.read_exact(mutable_buffer(&t, 1), 10s);  // the TLS 1.3 tickets come before it
        EXPECT_EQ(c.session_reused(), cache && i > 0) << "connection " << i << " cache " << cache;
        // The second connection ends without close_notify (its destructor closes): the
        // ticket it received still resumes the third.
        if (i != 1) c.shutdown(5s);
      }
      server.join();
      EXPECT_EQ(server_reused, (std::vector<bool>{false, cache, cache}));
    });
  }
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr auto kNotStopped = 5000ms;  // 1,000 handshakes take 8.5 s under ASan here, gaps 0.5 s
#else
constexpr auto kNotStopped = 1000ms;  // gaps of 117-128 ms seen here
#endif

TEST(Tls, ThousandConcurrentConnectionsOnOneIoThreadWithTheHeartbeatTicking) {
#if defined(__SANITIZE_THREAD__)
  constexpr int kConns = 250;  // TSan: 1,000 take 26 s here (the cross-thread tests are the point)
#else
  constexpr int kConns = 1000;  // below the listener's backlog (1024)
#endif
  fibers_test::nofile_limit limit;
  limit.raise_to_hard();
  rlimit now{};
  ::getrlimit(RLIMIT_NOFILE, &now);
  ASSERT_GE(now.rlim_cur, 2200u) << "RLIMIT_NOFILE hard limit too low for 1000 connections";
  pki p;
  const auto sctx = p.server_ctx();
  const auto cctx = p.client_ctx({.session_cache = false});
  fibers::runtime rt(1);
  rt.run([&] {
    auto listener = listen_loopback();
    const auto to = listener.local_endpoint();
    int served = 0, echoed = 0;
    fibers_test::heartbeat hb(5ms);
    const auto start = fibers::clock::now();
    auto acceptor = fibers::spawn("acceptor", [&] {
      std::vector<fibers::fiber> conns;
      for (int i = 0; i < kConns; ++i) {
        conns.push_back(fibers::spawn([&served, s = tls::stream(listener.accept(20s), sctx)]() mutable {
          char buf[64];
          std::error_code ec;
          const std::size_t n = s.read_some(buf, ec, 20s);
          if (!ec) s.write_all(const_buffer(buf, n), ec, 20s);
          if (!ec) ++served;
        }));
      }
      for (auto& c : conns) c.join();
    });
    std::vector<fibers::fiber> clients;
    for (int i = 0; i < kConns; ++i) {
      clients.push_back(fibers::spawn([&, i] {
        std::error_code ec;
        tls::stream c(fibers::tcp_stream::connect(to, 20s), cctx, "localhost");
        const std::string msg = "connection " + std::to_string(i);
        c.write_all(const_buffer(msg.data(), msg.size()), ec, 20s);
        std::string got(msg.size(), '\0');
        if (!ec) c.read_exact(mutable_buffer(got.data(), got.size()), ec, 20s);
        if (!ec && got == msg) ++echoed;
        EXPECT_FALSE(ec) << ec.message() << ": " << c.last_error_detail();
      }));
    }
    for (auto& c : clients) c.join();
    acceptor.join();
    const auto took = fibers_test::ms_since(start);
    hb.stop();
    EXPECT_EQ(echoed, kConns);
    EXPECT_EQ(served, kConns);
    // Not a timing bound: up to 256 fibers woken by one poll each run a handshake step
    // (ECDHE, a signature or two verifications, ~0.1-0.5 ms) ahead of the heartbeat. A
    // handshake that blocked the thread on the network would stop it for seconds.
    EXPECT_LT(hb.max_gap(), kNotStopped) << "the I/O thread stopped: heartbeat gap " << hb.max_gap().count() << " ms";
    EXPECT_GT(hb.ticks(), 5) << "the heartbeat barely ran";
    std::cout << "[ tls ] " << kConns << " handshakes + echoes in " << took.count()
              << " ms; heartbeat max gap " << hb.max_gap().count() << " ms (raw "
              << hb.max_raw_gap().count() << " ms) over " << hb.ticks() << " ticks\n";
  });
}

