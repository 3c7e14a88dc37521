// tests/tls_failure_test.cpp - tls::stream when things go wrong: a peer that dies mid-handshake
// or mid-record, deadlines and cancellation, a key update, other transports (a Unix socket,
// TLS over TLS), OpenSSL's error queue, and configuration errors that name their file.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstring>
#include <string>
#include <vector>

#include "fibers/fibers.hpp"
#include "fibers/tls.hpp"
#include "tls_test_util.hpp"

using namespace tls_test;

namespace {

/// The first flight of a TLS client (its ClientHello), made with OpenSSL on memory BIOs.
std::string client_hello() {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  BIO* rb = BIO_new(BIO_s_mem());
  BIO* wb = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rb, wb);
  SSL_set_connect_state(ssl);
  SSL_do_handshake(ssl);  // writes the ClientHello, then wants to read
  char* data = nullptr;
  const long n = BIO_get_mem_data(wb, &data);
  std::string out(data, static_cast<std::size_t>(n));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return out;
}

/// A transport that, once `cut` is set, sends only half of the next write and closes.
struct cutting_stream {
  fibers::tcp_stream s;
  bool* cut;
  std::size_t read_some(mutable_buffer b, std::error_code& ec, fibers::deadline dl) {
    return s.read_some(b, ec, dl);
  }
  std::size_t write_some(const_buffer b, std::error_code& ec, fibers::deadline dl) {
    if (!*cut) return s.write_some(b, ec, dl);
    s.write_all(const_buffer(b.data, b.size / 2), ec, dl);
    s.close();
    ec = std::make_error_code(std::errc::connection_reset);
    return 0;
  }
  void close() { s.close(); }
};

}  // namespace

TEST(Tls, PeerDyingMidHandshakeIsAnErrorNotAHang) {
  pki p;
  const auto hello = client_hello();
  ASSERT_GT(hello.size(), 100u);
  fibers::run([&] {
    auto listener = listen_loopback();
    {  // a client that sends half a ClientHello and closes
      std::error_code server_ec;
      auto server = fibers::spawn([&] {
        tls::stream s(listener.accept(10s), p.server_ctx());
        s.handshake(server_ec, 10s);
      });
      auto raw = fibers::tcp_stream::connect(listener.local_endpoint(), 10s);
      raw.write_all(const_buffer(hello.data(), hello.size() / 2), 10s);
      raw.close();
      server.join();
      EXPECT_TRUE(server_ec == tls::errc::truncated || server_ec == tls::errc::handshake_failed)
          << server_ec.message();
    }
    {  // a server that reads the ClientHello and closes
      auto server = fibers::spawn([&] {
        auto raw = listener.accept(10s);
        char buf[4096];
        raw.read_some(buf, 10s);
      });
      const failure f = client_handshake_failure(listener, p.client_ctx(), "localhost");
      EXPECT_TRUE(f.code == tls::errc::truncated || f.code == tls::errc::handshake_failed) << f.what;
      EXPECT_TRUE(contains(f.what, "tls handshake with localhost:")) << f.what;
      server.join();
    }
  });
}

TEST(Tls, PeerDyingMidRecordIsTruncated) {
  pki p;
  fibers::run([&] {
    auto listener = listen_loopback();
    auto sctx = p.server_ctx();
    bool cut = false;
    auto server = fibers::spawn([&] {
      tls::stream s(cutting_stream{listener.accept(10s), &cut}, sctx);
      s.handshake(10s);
      cut = true;
      const std::string big(1000, 'x');
      std::error_code ec;
      s.write_all(const_buffer(big.data(), big.size()), ec, 10s);
      EXPECT_TRUE(ec);
      s.write_all(const_buffer(big.data(), big.size()), ec, 10s);  // the stream cannot write now
      EXPECT_EQ(ec, tls::errc::write_failed);
    });
    auto c = tls::connect("127.0.0.1", listener.local_endpoint().port(), p.client_ctx(), 10s);
    char buf[1000];
    std::error_code ec;
    c.read_exact(buf, ec, 10s);
    EXPECT_EQ(ec, tls::errc::truncated) << ec.message();
    try {
      c.read_some(buf, 10s);
      ADD_FAILURE() << "read after truncation succeeded";
    } catch (const tls::error& e) {
      EXPECT_TRUE(contains(e.what(), "tls read with 127.0.0.1:")) << e.what();
      EXPECT_TRUE(contains(e.what(), "without close_notify")) << e.what();
    }
    server.join();
  });
}

TEST(Tls, DeadlineDuringTheHandshakeIsTimedOut) {
  pki p;
  fibers::run([&] {
    auto listener = listen_loopback();  // completes TCP handshakes, never answers
    const auto cctx = p.client_ctx();
    tls::stream s(fibers::tcp_stream::connect(listener.local_endpoint(), 10s), cctx, "localhost");
    std::error_code ec;
    s.handshake(ec, 100ms);
    EXPECT_EQ(ec, std::errc::timed_out) << ec.message();
    try {
      tls::connect("127.0.0.1", listener.local_endpoint().port(), cctx, 100ms);
      ADD_FAILURE() << "connect succeeded";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
      EXPECT_TRUE(contains(e.what(), "tls handshake with 127.0.0.1:")) << e.what();
    }
  });
}

TEST(Tls, CancelDuringAReadThenTheStreamStillReads) {
  pki p;
  fibers::run([&] {
    auto listener = listen_loopback();
    auto sctx = p.server_ctx();
    fibers::channel<int> go(1);
    auto server = fibers::spawn([&] {
      tls::stream s(listener.accept(10s), sctx);
      s.handshake(10s);
      go.recv();
      s.write_all("after", 10s);
      echo(s);
    });
    auto c = tls::connect("127.0.0.1", listener.local_endpoint().port(), p.client_ctx(), 10s);
    bool canceled = false;
    auto reader = fibers::spawn([&] {
      char buf[16];
      try {
        c.read_some(buf, 10s);
        ADD_FAILURE() << "read returned";
      } catch (const fibers::canceled&) {
        canceled = true;
      }
    });
    fibers::this_fiber::sleep_for(20ms);  // the reader is parked in the transport's read
    reader.cancel();
    reader.join();
    EXPECT_TRUE(canceled);
    go.send(1);
    char buf[5];
    c.read_exact(buf, 10s);
    EXPECT_EQ(std::string(buf, 5), "after");
    c.write_all("more", 10s);
    char more[4];
    c.read_exact(more, 10s);
    EXPECT_EQ(std::string(more, 4), "more");
    c.shutdown(5s);
    server.join();
  });
}

TEST(Tls, AReaderWaitingForAnotherFibersHandshakeKeepsItsDeadlineAndCancellation) {
  pki p;
  fibers::run([&] {
    auto listener = listen_loopback();
    auto sctx = p.server_ctx();
    fibers::channel<int> go(1);
    auto server = fibers::spawn([&] {
      tls::stream s(listener.accept(10s), sctx);
      go.recv();  // the client's handshake waits for this
      echo(s);
    });
    tls::stream c(fibers::tcp_stream::connect(listener.local_endpoint(), 10s), p.client_ctx(), "localhost");
    auto writer = fibers::spawn([&] { c.write_all("late", 10s); });  // runs the handshake
    fibers::this_fiber::sleep_for(10ms);
    char buf[4];
    std::error_code ec;
    c.read_some(buf, ec, 50ms);  // waits for the writer's handshake, not past its own deadline
    EXPECT_EQ(ec, std::errc::timed_out) << ec.message();
    auto reader = fibers::spawn([&] {
      std::error_code rec;
      c.read_some(buf, rec, 10s);  // the error_code form reports the cancellation
      EXPECT_EQ(rec, fibers::errc::canceled) << rec.message();
    });
    fibers::this_fiber::sleep_for(10ms);
    reader.cancel();
    reader.join();
    go.send(1);
    writer.join();
    c.read_exact(buf, 10s);
    EXPECT_EQ(std::string(buf, 4), "late");
    c.shutdown(5s);
    server.join();
  });
}

TEST(Tls, APeersKeyUpdateMidStreamKeepsBothDirectionsWorking) {
  pki p;
  fibers::run([&] {
    auto listener = listen_loopback();
    auto sctx = p.server_ctx();
    auto server = fibers::spawn([&] {
      tls::stream s(listener.accept(10s), sctx);
      s.handshake(10s);
      // TLS 1.3: new keys for our direction, and the client asked to update its own (OpenSSL
      // sends the answer before the client's next records).
      ASSERT_EQ(SSL_key_update(s.native_handle(), SSL_KEY_UPDATE_REQUESTED), 1);
      s.write_all("k1", 10s);
      echo(s);
    });
    auto c = tls::connect("127.0.0.1", listener.local_endpoint().port(), p.client_ctx(), 10s);
    char buf[2];
    c.read_exact(buf, 10s);
    EXPECT_EQ(std::string(buf, 2), "k1");
    const auto data = fibers_test::pattern(200000, 5);
    auto writer = fibers::spawn([&] { c.write_all(data, 10s); });
    std::vector<char> got(data.size());
    c.read_exact(got, 10s);  // the server reads the answer, then our records under new keys
    writer.join();
    EXPECT_TRUE(got == data);
    c.shutdown(5s);
    server.join();
  });
}

TEST(Tls, OverAUnixSocket) {
  pki p;
  fibers::run([&] {
    auto listener = fibers::unix_listener::bind(fibers::endpoint::unix_path(p.dir.file("tls.sock")));
    auto sctx = p.server_ctx();
    auto server = fibers::spawn([&] {
      tls::stream s(listener.accept(10s), sctx);
      echo(s);
    });
    tls::stream c(fibers::unix_stream::connect(listener.local_endpoint(), 10s), p.client_ctx(), "localhost");
    c.write_all("over unix", 10s);
    char buf[9];
    c.read_exact(buf, 10s);
    EXPECT_EQ(std::string(buf, 9), "over unix");
    EXPECT_EQ(c.version(), "TLSv1.3");
    c.shutdown(5s);
    EXPECT_EQ(c.read_some(buf, 10s), 0u);
    server.join();
  });
}

TEST(Tls, OverAnotherTlsStream) {
  pki p;
  const auto inner_leaf = p.ca.issue("inner", {.common_name = "inner.test", .dns_names = {"inner.test"}, .ips = {}});
  const auto inner_sctx = tls::context::server({.cert_file = inner_leaf.first, .key_file = inner_leaf.second});
  fibers::run([&] {
    auto listener = listen_loopback();
    auto sctx = p.server_ctx();
    auto server = fibers::spawn([&] {
      tls::stream outer(listener.accept(10s), sctx);
      outer.handshake(10s);
      tls::stream inner(std::move(outer), inner_sctx);
      echo(inner);
    });
    const auto cctx = p.client_ctx();
    auto outer = tls::connect("127.0.0.1", listener.local_endpoint().port(), cctx, 10s);
    tls::stream inner(std::move(outer), cctx, "inner.test");
    const auto data = fibers_test::pattern(300000, 9);
    auto writer = fibers::spawn([&] { inner.write_all(data, 10s); });
    std::vector<char> got(data.size());
    inner.read_exact(got, 10s);
    writer.join();
    EXPECT_TRUE(got == data);
    EXPECT_EQ(inner.peer_subject(), "/CN=inner.test");
    inner.shutdown(5s);
    char c;
    EXPECT_EQ(inner.read_some(mutable_buffer(&c, 1), 10s), 0u);
    server.join();
  });
}

TEST(Tls, OpenSslErrorQueueDoesNotLeakAcrossFibersOrCalls) {
  pki p;
  fibers_test::test_ca other(p.dir.file(""), "other CA");
  const auto bad_leaf = other.issue("untrusted");
  const auto bad_sctx = tls::context::server({.cert_file = bad_leaf.first, .key_file = bad_leaf.second});
  fibers::run([&] {
    auto good = listen_loopback();
    auto bad = listen_loopback();
    const auto sctx = p.server_ctx();
    const auto cctx = p.client_ctx();
    fibers::channel<int> failed(1);
    auto good_server = fibers::spawn([&] {
      tls::stream s(good.accept(10s), sctx);
      failed.recv();  // the client's handshake is parked until the other one has failed
      echo(s);
    });
    std::error_code bad_server_ec;
    auto bad_server = spawn_failing_server(bad, bad_sctx, bad_server_ec);
    auto ok = fibers::spawn([&] {
      tls::stream c(fibers::tcp_stream::connect(good.local_endpoint(), 10s), cctx, "localhost");
      c.handshake(10s);
      EXPECT_EQ(ERR_peek_error(), 0u);
      ERR_put_error(ERR_LIB_USER, 0, 1, __FILE__, __LINE__);  // stale: must not fail the write
      c.write_all("fine", 10s);
      EXPECT_EQ(ERR_peek_error(), 0u);
      char buf[4];
      c.read_exact(buf, 10s);
      EXPECT_EQ(ERR_peek_error(), 0u);
      c.shutdown(5s);
    });
    const failure f = client_handshake_failure(bad, cctx, "localhost");
    EXPECT_EQ(f.code, tls::errc::verify_failed);
    EXPECT_EQ(ERR_peek_error(), 0u);
    failed.send(1);
    ok.join();
    good_server.join();
    bad_server.join();
    EXPECT_EQ(ERR_peek_error(), 0u);
  });
}

TEST(Tls, BadConfigurationNamesTheFile) {
  pki p;
  const auto other = p.ca.issue("other");
  const std::string missing = p.dir.file("missing.pem");
  auto expect_bad = [](auto make, const std::string& part) {
    try {
      make();
      ADD_FAILURE() << "accepted: " << part;
    } catch (const tls::error& e) {
      EXPECT_EQ(e.code(), tls::errc::bad_configuration);
      EXPECT_TRUE(contains(e.what(), part)) << e.what();
    }
    EXPECT_EQ(ERR_peek_error(), 0u);
  };
  expect_bad([&] { tls::context::server({.cert_file = missing, .key_file = p.leaf.second}); }, missing);
  expect_bad([&] { tls::context::server({.cert_file = p.leaf.first, .key_file = missing}); }, missing);
  expect_bad([&] { tls::context::client({.ca_file = missing}); }, missing);
  // A file that cannot be opened says why in words, not as OpenSSL's "system lib".
  expect_bad([&] { tls::context::server({.cert_file = missing, .key_file = p.leaf.second}); },
             "No such file or directory");
  expect_bad([&] { tls::context::server({.cert_file = p.leaf.first, .key_file = other.second}); },
             other.second);
  expect_bad([&] { tls::context::client({.ciphersuites = "NO_SUCH_SUITE"}); }, "NO_SUCH_SUITE");
  // Contexts that load fine leave nothing in the queue either.
  p.server_ctx();
  tls::context::client();
  EXPECT_EQ(ERR_peek_error(), 0u);
}

