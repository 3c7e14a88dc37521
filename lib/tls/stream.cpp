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
#include <openssl/x509v3.h>
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
#include "tls/tls_impl.hpp"

namespace fibers::tls {

namespace {
constexpr std::size_t in_capacity = 64 * 1024;  // > one record (16 KiB + overhead), read in bulk
constexpr std::size_t max_write = 64 * 1024;    // per write_some: four full records
}  // namespace

struct stream::impl {
  std::unique_ptr<detail::transport> t;
  std::shared_ptr<context::impl> ctx;
  SSL* ssl = nullptr;
  std::string name;         // the server name given (client) or asked for (server, after SNI)
  std::string session_key;  // client session cache key, "name:port"
  std::string peer;         // for messages: "name:port" or the transport's peer address

  std::mutex mu;  // OpenSSL calls, in_pos/in_end/in_eof, out, detail, write_error
  std::unique_ptr<char[]> in{new char[in_capacity]};
  std::size_t in_pos = 0, in_end = 0;
  bool in_eof = false;
  std::vector<char> out;
  std::string detail;          // OpenSSL's reason for the last TLS failure
  std::error_code failure;     // the tls::errc of that failure
  std::error_code write_error; // sticky after a write failed midway

  fibers::mutex flush_mu;
  std::vector<char> sending;
  fibers::mutex handshake_mu;
  std::atomic<bool> handshaken{false};
  std::atomic<bool> reading{false}, writing{false};

  ~impl() {
    if (ssl != nullptr) SSL_free(ssl);  // frees the BIO too
    if (t) t->close();
  }

  struct result {
    int ret;
    int err;
    bool made_records;  // the call appended records to `out`...
    bool first;         // ...and `out` was empty before it (nobody else is due to send them)
  };
  // One OpenSSL call: the error queue is clean before, read and cleared after. `ok` tells a
  // return value that is not a failure (SSL_shutdown's 0: "sent, the peer's not yet seen").
  template <class F>
  result call(F&& f, int ok_from = 1) {
    std::lock_guard lk(mu);
    const std::size_t before = out.size();
    ERR_clear_error();
    const int r = f();
    const int e = r >= ok_from ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
    if (e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL) record_failure(e);
    ERR_clear_error();
    return {r, e, out.size() > before, before == 0};
  }

  void record_failure(int e) {
    const unsigned long code = ERR_peek_error();
    const int reason = ERR_GET_REASON(code);
    if (code == 0 && e == SSL_ERROR_SYSCALL) {
      failure = make_error_code(errc::truncated);
      detail = "peer closed the connection without close_notify";
      return;
    }
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      if (!session_key.empty()) ctx->drop_session(session_key);
      failure = make_error_code(errc::verify_failed);
      const long v = SSL_get_verify_result(ssl);
      detail = std::string("certificate verify failed: ") + X509_verify_cert_error_string(v);
      return;
    }
    if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      failure = make_error_code(errc::truncated);
      detail = "peer closed the connection without close_notify";
      return;
    }
    // A connection that failed (not merely cut short) is not to be resumed (RFC 5246 7.2.2).
    if (!session_key.empty()) ctx->drop_session(session_key);
    failure = make_error_code(handshaken.load(std::memory_order_relaxed) ? errc::protocol_error
                                                                          : errc::handshake_failed);
    std::string reasons = detail::drain_error_queue();
    detail = failure.message() + (reasons.empty() ? "" : ": " + reasons);
  }

  std::error_code take_failure() {
    std::lock_guard lk(mu);
    return failure ? failure : make_error_code(errc::protocol_error);
  }

  // Reads more TLS bytes from the transport into `in` (the reader, or the handshaker).
  std::error_code fill(deadline dl) {
    std::size_t start;
    {
      std::lock_guard lk(mu);
      if (in_pos == in_end) {
        in_pos = in_end = 0;
      } else if (in_pos > 0) {
        std::memmove(in.get(), in.get() + in_pos, in_end - in_pos);
        in_end -= in_pos;
        in_pos = 0;
      }
      start = in_end;
    }
    std::error_code ec;
    const std::size_t n = t->read_some(mutable_buffer(in.get() + start, in_capacity - start), ec, dl);
    if (ec) return ec;
    std::lock_guard lk(mu);
    in_end += n;
    if (n == 0) in_eof = true;
    return {};
  }

  // Takes a fibers::mutex within `dl`, as an error code (its lock() throws).
  static std::error_code lock_within(fibers::mutex& m, deadline dl) {
    try {
      if (m.lock_until(dl)) return {};
      return std::make_error_code(std::errc::timed_out);
    } catch (const fibers::canceled&) {
      return make_error_code(fibers::errc::canceled);
    } catch (const std::system_error& e) {
      return e.code();  // the fiber's inherited deadline
    }
  }

  // Sends what OpenSSL has written so far, in order. `wait`: take the send lock even if
  // another fiber holds it (writers, the handshake); otherwise (readers) leave the records to
  // the fiber that holds it. A reader must not wait behind a writer stuck on a full
  // transport: with both ends doing that, neither would read again.
  //
  // Nothing is stranded: whoever appends records either flushes or finds the lock taken, and
  // every holder looks at `out` again after unlocking (under mu, so it sees any append that
  // came before a failed try_lock).
  std::error_code flush(deadline dl, bool wait = true) {
    for (;;) {
      if (wait) {
        if (std::error_code ec = lock_within(flush_mu, dl)) {
          std::lock_guard lk(mu);
          // Our records are numbered but may never leave: the stream cannot write any more
          // (the holder sends what it took; write_error stops it before ours).
          if (!write_error) write_error = ec;
          return ec;
        }
      } else if (!flush_mu.try_lock()) {
        return {};
      }
      std::error_code ec = send_pending(dl);
      flush_mu.unlock();
      if (ec) return ec;
      std::lock_guard lk(mu);
      if (out.empty() || write_error) return write_error;
      wait = false;  // appended after our last look by someone whose try_lock failed
    }
  }

  // Under flush_mu: sends `out` until it is empty.
  std::error_code send_pending(deadline dl) {
    for (;;) {
      {
        std::lock_guard lk(mu);
        if (write_error) return write_error;
        if (out.empty()) return {};
        sending.swap(out);
      }
      std::error_code ec;
      std::size_t done = 0;
      while (done < sending.size()) {
        done += t->write_some(const_buffer(sending.data() + done, sending.size() - done), ec, dl);
        if (ec) {
          std::lock_guard lk(mu);
          // OpenSSL has numbered these records: without them (or with part of one sent)
          // nothing more can be written on this stream.
          if (!write_error) write_error = ec;
          sending.clear();
          return ec;
        }
      }
      sending.clear();
    }
  }

  void handshake(std::error_code& ec, deadline dl) {
    ec.clear();
    if (handshaken.load(std::memory_order_acquire)) return;
    if ((ec = lock_within(handshake_mu, dl))) return;
    std::lock_guard hl(handshake_mu, std::adopt_lock);
    if (handshaken.load(std::memory_order_acquire)) return;
    for (;;) {
      const result r = call([&] { return SSL_do_handshake(ssl); });
      if (r.ret == 1) handshaken.store(true, std::memory_order_release);
      if (r.made_records) {
        // Also after a failure: the alert that tells the peer why. A TLS failure is the
        // better report than a failure to send its alert.
        std::error_code fe = flush(dl);
        if (fe && r.err != SSL_ERROR_SSL && r.err != SSL_ERROR_SYSCALL) {
          ec = fe;
          return;
        }
      }
      if (r.ret == 1) return;
      if (r.err == SSL_ERROR_WANT_READ) {
        if ((ec = fill(dl))) return;
        continue;
      }
      ec = take_failure();
      return;
    }
  }
};

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

std::string stream::alpn() const {
  if (!impl_) return {};
  std::lock_guard lk(impl_->mu);
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(impl_->ssl, &p, &len);
  return p != nullptr ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

std::string stream::version() const {
  if (!impl_ || !impl_->handshaken.load(std::memory_order_acquire)) return {};
  std::lock_guard lk(impl_->mu);
  return SSL_get_version(impl_->ssl);
}

std::string stream::cipher() const {
  if (!impl_ || !impl_->handshaken.load(std::memory_order_acquire)) return {};
  std::lock_guard lk(impl_->mu);
  const char* c = SSL_get_cipher_name(impl_->ssl);
  return c != nullptr ? c : "";
}

std::string stream::peer_subject() const {
  if (!impl_) return {};
  std::lock_guard lk(impl_->mu);
  X509* cert = SSL_get0_peer_certificate(impl_->ssl);
  if (cert == nullptr) return {};
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  return buf;
}

std::vector<std::string> stream::peer_alt_names() const {
  std::vector<std::string> names;
  if (!impl_) return names;
  std::lock_guard lk(impl_->mu);
  X509* cert = SSL_get0_peer_certificate(impl_->ssl);
  if (cert == nullptr) return names;
  auto* gens = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (gens == nullptr) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(gens); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens, i);
    if (g->type == GEN_DNS) {
      const ASN1_IA5STRING* s = g->d.dNSName;
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<std::size_t>(ASN1_STRING_length(s)));
    } else if (g->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* s = g->d.iPAddress;
      char text[INET6_ADDRSTRLEN] = {};
      const int len = ASN1_STRING_length(s);
      if (len == 4 || len == 16) {
        ::inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s), text, sizeof text);
        names.emplace_back(text);
      }
    }
  }
  GENERAL_NAMES_free(gens);
  return names;
}

bool stream::session_reused() const {
  if (!impl_) return false;
  std::lock_guard lk(impl_->mu);
  return SSL_session_reused(impl_->ssl) == 1;
}

std::string stream::server_name() const {
  if (!impl_) return {};
  std::lock_guard lk(impl_->mu);
  const char* n = SSL_get_servername(impl_->ssl, TLSEXT_NAMETYPE_host_name);
  return n != nullptr ? n : "";
}

std::string stream::last_error_detail() const {
  if (!impl_) return {};
  std::lock_guard lk(impl_->mu);
  return impl_->detail;
}

SSL* stream::native_handle() const noexcept { return impl_ ? impl_->ssl : nullptr; }

}  // namespace fibers::tls
