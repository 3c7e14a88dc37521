// lib/tls/stream.cpp - tls::stream: OpenSSL over a libfibers byte stream.
//
// OpenSSL never sees a file descriptor and never waits: its BIO is a pair of buffers. Records
// OpenSSL writes are appended to `out`; records it reads come from `in`. When OpenSSL wants
// more input (SSL_ERROR_WANT_READ) the stream fills `in` with the transport's read_some, and
// after every call it sends what OpenSSL wrote with the transport's write_some - both outside
// OpenSSL, where the fiber may park. So the same code runs over TCP, Unix sockets or another
// TLS stream, OpenSSL's per-thread error queue is read and cleared within one call (no park
// in between, no other fiber can see it), and a fiber parked on the transport holds no
// OpenSSL state.
//
// One reader and one writer may run at once, also on different threads: every OpenSSL call
// and every access to the buffers' shared ends is under `mu` (held only for the call, never
// across a park). Only the reader fills `in` (OpenSSL consumes it only inside SSL_read and the
// handshake, which readers and writers run one at a time under `handshake_mu`); sending is
// serialized by `flush_mu`, whose holder swaps `out` out under `mu`, so records leave in the
// order OpenSSL made them.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "fibers/error.hpp"
#include "fibers/mutex.hpp"
#include "tls/stream_impl.hpp"
#include "tls/tls_impl.hpp"

namespace fibers::tls {

namespace {

// The BIO: OpenSSL's side of `in` and `out` (called only inside OpenSSL calls, under mu).
int bio_write(BIO* b, const char* data, std::size_t len, std::size_t* written) {
  auto* s = static_cast<stream::impl*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  s->out.insert(s->out.end(), data, data + len);
  *written = len;
  return 1;
}

int bio_read(BIO* b, char* data, std::size_t len, std::size_t* readbytes) {
  auto* s = static_cast<stream::impl*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (s->in_pos < s->in_end) {
    const std::size_t n = std::min(len, s->in_end - s->in_pos);
    std::memcpy(data, s->in.get() + s->in_pos, n);
    s->in_pos += n;
    *readbytes = n;
    return 1;
  }
  *readbytes = 0;
  if (!s->in_eof) BIO_set_retry_read(b);  // otherwise: end of stream
  return 0;
}

long bio_ctrl(BIO* b, int cmd, long /*num*/, void* /*ptr*/) {
  auto* s = static_cast<stream::impl*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;  // sent after the call, by the stream
    case BIO_CTRL_PENDING: return static_cast<long>(s->in_end - s->in_pos);
    case BIO_CTRL_WPENDING: return 0;
    case BIO_CTRL_EOF: return s->in_eof && s->in_pos == s->in_end ? 1 : 0;
    default: return 0;
  }
}

BIO_METHOD* bio_method() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "libfibers stream");
    BIO_meth_set_write_ex(bm, bio_write);
    BIO_meth_set_read_ex(bm, bio_read);
    BIO_meth_set_ctrl(bm, bio_ctrl);
    BIO_meth_set_create(bm, [](BIO* b) {
      BIO_set_init(b, 1);
      return 1;
    });
    return bm;
  }();
  return m;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// The port of a transport peer "1.2.3.4:443" / "[::1]:443", or "".
std::string port_of(const std::string& peer) {
  const auto colon = peer.rfind(':');
  const auto bracket = peer.rfind(']');
  if (colon == std::string::npos || (bracket != std::string::npos && bracket > colon)) return {};
  if (bracket == std::string::npos && peer.find(':') != colon) return {};  // bare IPv6
  return peer.substr(colon + 1);
}

// Throws what the throwing forms throw for `ec` from operation `op`.
[[noreturn]] void throw_stream_error(const stream::impl* s, const std::error_code& ec, const char* op) {
  const std::string where = std::string("tls ") + op + " with " + (s ? s->peer : std::string("(none)"));
  if (ec.category() == error_category()) {
    std::string d;
    if (s != nullptr) {
      std::lock_guard lk(const_cast<stream::impl*>(s)->mu);
      d = s->detail;
    }
    throw error(ec, where + ": " + (d.empty() ? ec.message() : d));
  }
  throw_error(ec, where);
}

}  // namespace

stream::stream() noexcept = default;
stream::stream(stream&&) noexcept = default;
stream& stream::operator=(stream&&) noexcept = default;
stream::~stream() = default;

stream::stream(std::unique_ptr<detail::transport> t, const context& ctx, std::string_view server_name) {
  if (!ctx.impl_) throw std::invalid_argument("fibers::tls::stream: the context is empty");
  auto s = std::make_unique<impl>();
  s->ctx = ctx.impl_;
  s->name = std::string(server_name);
  const std::string tpeer = t->peer();
  s->t = std::move(t);
  if (ctx.impl_->client && ctx.impl_->verify && s->name.empty()) {
    throw std::invalid_argument(
        "fibers::tls::stream: a client stream needs the server's name (or IP) to verify its "
        "certificate; pass server_name, or use a context with insecure_skip_verify");
  }
  const std::string port = port_of(tpeer);
  s->peer = s->name.empty() ? (tpeer.empty() ? "peer" : tpeer)
                            : (port.empty() ? s->name : (s->name.find(':') != std::string::npos
                                                            ? "[" + s->name + "]:" + port
                                                            : s->name + ":" + port));
  ERR_clear_error();
  s->ssl = SSL_new(ctx.impl_->ctx);
  if (s->ssl == nullptr) detail::throw_config_error("SSL_new");
  BIO* bio = BIO_new(bio_method());
  if (bio == nullptr) detail::throw_config_error("BIO_new");
  BIO_set_data(bio, s.get());
  SSL_set_bio(s->ssl, bio, bio);
  if (ctx.impl_->client) {
    SSL_set_connect_state(s->ssl);
    if (!s->name.empty()) {
      if (is_ip_literal(s->name)) {
        if (ctx.impl_->verify &&
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), s->name.c_str()) != 1) {
          detail::throw_config_error("verify IP " + s->name);
        }
      } else {
        if (SSL_set_tlsext_host_name(s->ssl, s->name.c_str()) != 1) {
          detail::throw_config_error("server name " + s->name);
        }
        if (ctx.impl_->verify && SSL_set1_host(s->ssl, s->name.c_str()) != 1) {
          detail::throw_config_error("verify host " + s->name);
        }
      }
      if (ctx.impl_->session_cache) {
        s->session_key = s->name + ":" + port;
        SSL_set_app_data(s->ssl, &s->session_key);
        if (SSL_SESSION* cached = ctx.impl_->take_session(s->session_key)) {
          SSL_set_session(s->ssl, cached);
          SSL_SESSION_free(cached);
        }
      }
    }
  } else {
    SSL_set_accept_state(s->ssl);
  }
  impl_ = std::move(s);
}

void stream::handshake(std::error_code& ec, deadline dl) {
  if (!impl_) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return;
  }
  impl_->handshake(ec, dl);
}

void stream::handshake(deadline dl) {
  std::error_code ec;
  handshake(ec, dl);
  if (ec) throw_stream_error(impl_.get(), ec, "handshake");
}

namespace {
// Claims one direction (one reader, one writer at a time).
struct direction_claim {
  std::atomic<bool>& flag;
  bool ok;
  explicit direction_claim(std::atomic<bool>& f) noexcept
      : flag(f), ok(!f.exchange(true, std::memory_order_acquire)) {}
  ~direction_claim() {
    if (ok) flag.store(false, std::memory_order_release);
  }
};
}  // namespace

std::size_t stream::read_some(mutable_buffer buf, std::error_code& ec, deadline dl) {
  ec.clear();
  if (!impl_) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return 0;
  }
  impl& s = *impl_;
  direction_claim claim(s.reading);
  if (!claim.ok) {
    ec = make_error_code(fibers::errc::busy);
    return 0;
  }
  s.handshake(ec, dl);
  if (ec || buf.size == 0) return 0;
  for (;;) {
    std::size_t n = 0;
    const impl::result r = s.call([&] { return SSL_read_ex(s.ssl, buf.data, buf.size, &n); });
    // A read can make records too (an alert; OpenSSL 3.0 sends a KeyUpdate answer with the
    // next write, not from the read): send them, unless a fiber that is sending already
    // will (see flush). Their failure is the writer's to see (sticky), unless this read has
    // nothing else to report.
    if (r.made_records && r.first) {
      std::error_code fe = s.flush(dl, /*wait=*/false);
      if (fe && r.ret != 1) {
        ec = fe;
        return 0;
      }
    }
    if (r.ret == 1) return n;
    if (r.err == SSL_ERROR_ZERO_RETURN) return 0;  // close_notify
    if (r.err == SSL_ERROR_WANT_READ) {
      if ((ec = s.fill(dl))) return 0;
      continue;
    }
    ec = s.take_failure();
    return 0;
  }
}

std::size_t stream::read_some(mutable_buffer buf, deadline dl) {
  std::error_code ec;
  const std::size_t n = read_some(buf, ec, dl);
  if (ec) throw_stream_error(impl_.get(), ec, "read");
  return n;
}

std::size_t stream::read_exact(mutable_buffer buf, std::error_code& ec, deadline dl) {
  ec.clear();
  auto* p = static_cast<char*>(buf.data);
  std::size_t done = 0;
  while (done < buf.size) {
    const std::size_t n = read_some(mutable_buffer(p + done, buf.size - done), ec, dl);
    if (ec) return done;
    if (n == 0) {
      ec = make_error_code(fibers::errc::end_of_stream);
      return done;
    }
    done += n;
  }
  return done;
}

void stream::read_exact(mutable_buffer buf, deadline dl) {
  std::error_code ec;
  read_exact(buf, ec, dl);
  if (ec) throw_stream_error(impl_.get(), ec, "read");
}

std::size_t stream::write_some(const_buffer buf, std::error_code& ec, deadline dl) {
  ec.clear();
  if (!impl_) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return 0;
  }
  impl& s = *impl_;
  direction_claim claim(s.writing);
  if (!claim.ok) {
    ec = make_error_code(fibers::errc::busy);
    return 0;
  }
  s.handshake(ec, dl);
  if (ec || buf.size == 0) return 0;
  {
    std::lock_guard lk(s.mu);
    if (s.write_error) {
      ec = make_error_code(errc::write_failed);
      return 0;
    }
  }
  std::size_t n = 0;
  const std::size_t chunk = std::min(buf.size, max_write);
  const impl::result r = s.call([&] { return SSL_write_ex(s.ssl, buf.data, chunk, &n); });
  std::error_code fe = s.flush(dl);
  if (r.ret != 1) {
    ec = s.take_failure();
    return 0;
  }
  if (fe) {
    ec = fe;  // the bytes are in records, partly sent at most: the stream cannot write now
    return n;
  }
  return n;
}

std::size_t stream::write_some(const_buffer buf, deadline dl) {
  std::error_code ec;
  const std::size_t n = write_some(buf, ec, dl);
  if (ec) throw_stream_error(impl_.get(), ec, "write");
  return n;
}

std::size_t stream::write_all(const_buffer buf, std::error_code& ec, deadline dl) {
  ec.clear();
  const auto* p = static_cast<const char*>(buf.data);
  std::size_t done = 0;
  while (done < buf.size) {
    done += write_some(const_buffer(p + done, buf.size - done), ec, dl);
    if (ec) return done;
  }
  return done;
}

void stream::write_all(const_buffer buf, deadline dl) {
  std::error_code ec;
  write_all(buf, ec, dl);
  if (ec) throw_stream_error(impl_.get(), ec, "write");
}

void stream::shutdown(std::error_code& ec, deadline dl) {
  ec.clear();
  if (!impl_) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return;
  }
  impl& s = *impl_;
  if (!s.handshaken.load(std::memory_order_acquire)) return;  // nothing to close cleanly
  direction_claim claim(s.writing);
  if (!claim.ok) {
    ec = make_error_code(fibers::errc::busy);
    return;
  }
  // 0: close_notify sent, the peer's not seen yet (we do not wait for it): not a failure.
  const impl::result r = s.call([&] { return SSL_shutdown(s.ssl); }, 0);
  std::error_code fe = s.flush(dl);
  if (r.ret < 0 && r.err != SSL_ERROR_WANT_READ) {
    ec = s.take_failure();
    return;
  }
  ec = fe;
}

void stream::shutdown(deadline dl) {
  std::error_code ec;
  shutdown(ec, dl);
  if (ec) throw_stream_error(impl_.get(), ec, "shutdown");
}

void stream::close() noexcept {
  if (impl_ && impl_->t) impl_->t->close();
}

}  // namespace fibers::tls
