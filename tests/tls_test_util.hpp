// tests/tls_test_util.hpp - what the TLS tests share: a PKI made per test, a loopback
// listener, an echoing server stream, and helpers that capture a failing handshake.
#pragma once

#include <gtest/gtest.h>
#include <openssl/err.h>

#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "fibers/fibers.hpp"
#include "fibers/tls.hpp"
#include "test_util.hpp"
#include "tls_certs.hpp"

namespace tls_test {

using namespace std::chrono_literals;
namespace tls = fibers::tls;
using fibers::const_buffer;
using fibers::mutable_buffer;

/// A CA and a "localhost" leaf (DNS localhost, IP 127.0.0.1), ECDSA P-256.
struct pki {
  fibers_test::temp_dir dir;
  fibers_test::test_ca ca{dir.file("")};
  std::pair<std::string, std::string> leaf = ca.issue("localhost");
  tls::context server_ctx(tls::server_options o = {}) const {
    o.cert_file = leaf.first;
    o.key_file = leaf.second;
    return tls::context::server(o);
  }
  tls::context client_ctx(tls::client_options o = {}) const {
    if (o.ca_file.empty()) o.ca_file = ca.ca_file();
    return tls::context::client(o);
  }
};

inline fibers::tcp_listener listen_loopback() {
  return fibers::tcp_listener::bind(fibers::endpoint::loopback_v4(0));
}

/// Echoes until the peer's close_notify (or an error), then sends close_notify.
inline void echo(tls::stream& s) {
  std::vector<char> buf(64 * 1024);
  std::error_code ec;
  for (;;) {
    const std::size_t n = s.read_some(buf, ec, 20s);
    if (ec || n == 0) break;
    s.write_all(const_buffer(buf.data(), n), ec, 20s);
    if (ec) return;
  }
  if (!ec) s.shutdown(ec, 5s);
}

/// The handshake error of a server stream over the next connection of `l` (for tests whose
/// client is expected to fail).
inline fibers::fiber spawn_failing_server(fibers::tcp_listener& l, const tls::context& ctx,
                                   std::error_code& out) {
  return fibers::spawn([&l, ctx, &out] {
    tls::stream s(l.accept(10s), ctx);
    s.handshake(out, 10s);
    if (!out) {
      char c;
      s.read_some(mutable_buffer(&c, 1), out, 10s);  // TLS 1.3: the client fails after us
    }
  });
}

/// What the throwing handshake of a client for `name` against the next accept of `l` threw.
struct failure {
  std::error_code code;
  std::string what;
};
inline failure client_handshake_failure(fibers::tcp_listener& l, const tls::context& ctx,
                                 const std::string& name) {
  failure f;
  try {
    tls::stream s(fibers::tcp_stream::connect(l.local_endpoint(), 10s), ctx, name);
    s.handshake(10s);
    char c;
    s.read_some(mutable_buffer(&c, 1), 10s);
    ADD_FAILURE() << "handshake with " << name << " succeeded";
  } catch (const tls::error& e) {
    f = {e.code(), e.what()};
  } catch (const std::system_error& e) {
    ADD_FAILURE() << "not a tls::error: " << e.what();
    f = {e.code(), e.what()};
  }
  EXPECT_EQ(ERR_peek_error(), 0u) << "OpenSSL error queue left non-empty";
  return f;
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}


}  // namespace tls_test
