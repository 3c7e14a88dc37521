// fibers/tls.hpp - TLS on OpenSSL 3: a context (certificates, verification, versions, ALPN,
// sessions) and a stream over any libfibers byte stream, with the socket API.
#pragma once

#include "fibers/detail/config.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "fibers/buffer.hpp"
#include "fibers/clock.hpp"
#include "fibers/endpoint.hpp"

// OpenSSL's types, for native_handle() (no OpenSSL header is needed to use this one).
typedef struct ssl_ctx_st SSL_CTX;  // NOLINT
typedef struct ssl_st SSL;          // NOLINT

namespace fibers::tls {

/// TLS failures that have no errno equivalent (category "tls"). Failures of the transport
/// underneath (timed_out, canceled, connection_reset, ...) keep their own codes.
enum class errc {
  handshake_failed = 1,  ///< the peers could not agree (versions, ciphers, ALPN, an alert)
  verify_failed,         ///< the peer's certificate did not verify (chain, name, dates)
  truncated,             ///< the peer closed the connection without close_notify
  protocol_error,        ///< a malformed or unexpected record after the handshake
  write_failed,          ///< an earlier write failed midway: the stream cannot write any more
  bad_configuration,     ///< a certificate, key, CA or option of a context could not be used
};

/// The category of tls::errc codes; its name() is "tls".
const std::error_category& error_category() noexcept;

/// Makes an error_code of tls::errc (found by ADL).
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// What the throwing forms throw for TLS failures: a std::system_error whose what() gives the
/// operation, the peer and OpenSSL's reason, e.g. "tls handshake with example.test:443:
/// certificate verify failed: self-signed certificate in certificate chain".
class error : public std::system_error {
 public:
  /// `what` is the whole message.
  error(std::error_code ec, std::string what)
      : std::system_error(ec), what_(std::move(what)) {}
  /// The whole message.
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

/// Protocol versions.
enum class version { tls1_0, tls1_1, tls1_2, tls1_3 };

/// How a server asks for client certificates (mutual TLS).
enum class client_auth { none, request, require };

/// Settings of a client context. Verification is on: the server's chain must lead to a
/// trusted CA (the system store unless ca_file/ca_dir are given) and name the host.
struct client_options {
  /// PEM file of trusted CAs; with ca_dir, replaces the system store.
  std::string ca_file{};
  /// Directory of hashed CA certificates (c_rehash); with ca_file, replaces the system store.
  std::string ca_dir{};
  /// Client certificate chain and key (PEM) for servers that ask for one.
  ///@{
  std::string cert_file{};
  std::string key_file{};
  ///@}
  /// Called when the key file is encrypted; returns its password.
  std::function<std::string()> key_password{};
  /// Oldest and newest version offered (TLS 1.2 and 1.3 by default).
  ///@{
  version min_version = version::tls1_2;
  std::optional<version> max_version{};
  ///@}
  /// ALPN protocols offered, most preferred first (e.g. {"h2", "http/1.1"}).
  std::vector<std::string> alpn{};
  /// OpenSSL cipher list (TLS 1.2 and older), TLS 1.3 cipher suites and groups, passed
  /// through as given (empty: OpenSSL's defaults).
  ///@{
  std::string ciphers{};
  std::string ciphersuites{};
  std::string groups{};
  ///@}
  /// Keep sessions per server name and port, and resume them on the next connection.
  bool session_cache = true;
  /// Turns certificate verification OFF: any server, any certificate is accepted. For tests
  /// only; creating such a context prints a warning to stderr.
  bool insecure_skip_verify = false;
};

/// Settings of a server context.
struct server_options {
  /// Certificate chain (leaf first) and private key, PEM. Required.
  ///@{
  std::string cert_file{};
  std::string key_file{};
  ///@}
  /// Called when the key file is encrypted; returns its password.
  std::function<std::string()> key_password{};
  /// Oldest and newest version accepted (TLS 1.2 and 1.3 by default).
  ///@{
  version min_version = version::tls1_2;
  std::optional<version> max_version{};
  ///@}
  /// ALPN protocols accepted, most preferred first. When both sides offer some and none is
  /// common, the handshake fails (no_application_protocol alert), as Go's server does.
  std::vector<std::string> alpn{};
  /// OpenSSL cipher list (TLS 1.2 and older), TLS 1.3 cipher suites and groups, passed
  /// through as given (empty: OpenSSL's defaults).
  ///@{
  std::string ciphers{};
  std::string ciphersuites{};
  std::string groups{};
  ///@}
  /// Client certificates: not asked for, asked for, or required; verified against
  /// client_ca_file / client_ca_dir.
  ///@{
  client_auth client_certificates = client_auth::none;
  std::string client_ca_file{};
  std::string client_ca_dir{};
  ///@}
  /// Session tickets for resumption (keys made per context at start, rotated by OpenSSL).
  bool session_tickets = true;
};

/// Configuration shared by many TLS streams: one per role and set of certificates. Cheap to
/// copy (shared); thread-safe once built; must outlive nothing (streams keep it alive).
///
///     auto ctx = fibers::tls::context::client();             // system CAs, verify on
///     auto s = fibers::tls::connect("example.org", 443, ctx, 5s);
class context {
 public:
  /// An empty context (no role); streams cannot use it.
  context() = default;
  /// A client context. Throws tls::error naming the file and OpenSSL's reason when a CA,
  /// certificate or key cannot be loaded.
  static context client(const client_options& opts = {});
  /// A server context. Throws tls::error as client() does; std::invalid_argument without a
  /// certificate or key.
  static context server(const server_options& opts);

  /// Servers: picks the context (its certificate) for the name a client asked for (SNI).
  /// `pick` returns the context to use, or nullptr to keep this one; it runs during the
  /// handshake on the accepting fiber's thread, must not wait, and the returned context must
  /// stay alive as long as streams of this context may handshake.
  void set_sni_callback(std::function<const context*(std::string_view server_name)> pick);

  /// True for a client context.
  bool is_client() const noexcept;
  /// True unless default-constructed.
  explicit operator bool() const noexcept { return impl_ != nullptr; }
  /// OpenSSL's SSL_CTX, for settings this API does not cover (change it before use).
  SSL_CTX* native_handle() const noexcept;

  struct impl;

 private:
  explicit context(std::shared_ptr<impl> i) noexcept : impl_(std::move(i)) {}
  std::shared_ptr<impl> impl_;
  friend class stream;
};

namespace detail {
/// What a TLS stream reads and writes through: any libfibers byte stream (tcp_stream,
/// unix_stream, another tls::stream).
struct transport {
  virtual ~transport() = default;
  virtual std::size_t read_some(mutable_buffer b, std::error_code& ec, deadline dl) = 0;
  virtual std::size_t write_some(const_buffer b, std::error_code& ec, deadline dl) = 0;
  virtual void close() noexcept = 0;
  /// "127.0.0.1:443", or "" when the transport has no peer address.
  virtual std::string peer() const = 0;
};

template <class T>
struct transport_of final : transport {
  explicit transport_of(T&& t) : s(std::move(t)) {}
  std::size_t read_some(mutable_buffer b, std::error_code& ec, deadline dl) override {
    return s.read_some(b, ec, dl);
  }
  std::size_t write_some(const_buffer b, std::error_code& ec, deadline dl) override {
    return s.write_some(b, ec, dl);
  }
  void close() noexcept override { s.close(); }
  std::string peer() const override {
    if constexpr (requires { s.peer_endpoint().to_string(); }) {
      try {
        return s.peer_endpoint().to_string();
      } catch (...) {
        return {};
      }
    } else {
      return {};
    }
  }
  T s;
};
}  // namespace detail

/// A libfibers byte stream a TLS stream can run over.
template <class T>
concept byte_stream = requires(T& t, mutable_buffer mb, const_buffer cb, std::error_code& ec,
                               deadline dl) {
  { t.read_some(mb, ec, dl) } -> std::convertible_to<std::size_t>;
  { t.write_some(cb, ec, dl) } -> std::convertible_to<std::size_t>;
  t.close();
};

/// A TLS connection over a byte stream, with the same calls as tcp_stream: every call that can
/// wait parks only the calling fiber, takes a deadline (covering the whole call; the
/// transport's own timeout applies when none is given; the fiber's inherited deadline always
/// does) and is a cancellation point; each exists in a throwing form (tls::error for TLS
/// failures, std::system_error / fibers::canceled for the transport's) and an error_code form.
///
/// The handshake runs on the first read or write unless handshake() is called first. One
/// fiber may read while another writes, on the same or different I/O threads; two readers (or
/// two writers) at once get fibers::errc::busy. A read that times out or is canceled can be
/// retried. A write whose records could not all be sent (a transport error, or a timeout or
/// cancellation while sending) may have left part of a record on the wire, so every later
/// write fails with tls::errc::write_failed (as in Go's crypto/tls); reads go on.
///
/// OpenSSL's per-thread error queue: the stream never parks inside an OpenSSL call (TLS bytes
/// go through buffers that it fills and drains outside OpenSSL, with the transport's own
/// read_some/write_some), and it clears the queue before and reads it right after every call,
/// so no error survives into another fiber's call on the same thread.
///
///     auto ctx = fibers::tls::context::server({.cert_file = "cert.pem", .key_file = "key.pem"});
///     fibers::tls::stream s(listener.accept(), ctx);
///     char buf[4096];
///     std::size_t n = s.read_some(buf);  // handshakes first
class stream {
 public:
  /// A stream with nothing under it.
  stream() noexcept;
  /// A TLS stream over `t` (moved in) with the role of `ctx`. A client verifies that the
  /// server's certificate names `server_name` (a DNS name or an IP literal; also sent as SNI
  /// when it is a name); a client of a verifying context without one is std::invalid_argument.
  template <byte_stream T>
  stream(T&& t, const context& ctx, std::string_view server_name = {})
      : stream(std::make_unique<detail::transport_of<std::remove_cvref_t<T>>>(std::move(t)), ctx,
               server_name) {}
  /// The same over a type-erased transport (what the template above builds).
  stream(std::unique_ptr<detail::transport> t, const context& ctx, std::string_view server_name);
  /// Moves the stream; the moved-from one is closed.
  stream(stream&&) noexcept;
  /// Closes this stream (as the destructor does), then takes the other's.
  stream& operator=(stream&&) noexcept;
  /// Closes the transport (no close_notify: call shutdown() for that).
  ~stream();

  /// Runs the handshake (once; later calls return at once).
  void handshake(deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  void handshake(std::error_code& ec, deadline dl = {});

  /// Reads at least one byte; 0 when the peer closed with close_notify. A peer that closed
  /// without it is tls::errc::truncated.
  std::size_t read_some(mutable_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t read_some(mutable_buffer buf, std::error_code& ec, deadline dl = {});
  /// Reads exactly buf.size bytes (fibers::errc::end_of_stream if the peer closes first).
  void read_exact(mutable_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t read_exact(mutable_buffer buf, std::error_code& ec, deadline dl = {});
  /// Writes some bytes (at least one, at most 64 KiB) and sends their records.
  std::size_t write_some(const_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t write_some(const_buffer buf, std::error_code& ec, deadline dl = {});
  /// Writes all of buf.
  void write_all(const_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t write_all(const_buffer buf, std::error_code& ec, deadline dl = {});
  /// Sends close_notify (the peer's reads then end cleanly); the transport stays open. Does
  /// not wait for the peer's close_notify.
  void shutdown(deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  void shutdown(std::error_code& ec, deadline dl = {});
  /// Closes the transport; fibers blocked on it wake as its close() says.
  void close() noexcept;

  /// The negotiated ALPN protocol ("" when none).
  std::string alpn() const;
  /// "TLSv1.3", "TLSv1.2", ... ("" before the handshake).
  std::string version() const;
  /// The cipher suite's name ("" before the handshake).
  std::string cipher() const;
  /// The peer certificate's subject ("/CN=example.test"), "" when there is none.
  std::string peer_subject() const;
  /// The DNS names and IP addresses in the peer certificate's subjectAltName.
  std::vector<std::string> peer_alt_names() const;
  /// True if the handshake resumed an earlier session (client: from the context's cache).
  bool session_reused() const;
  /// The name the client asked for (SNI), on either side ("" when none).
  std::string server_name() const;
  /// OpenSSL's reason for the last TLS failure of this stream ("" when none), e.g.
  /// "certificate verify failed: self-signed certificate in certificate chain".
  std::string last_error_detail() const;
  /// OpenSSL's SSL object.
  SSL* native_handle() const noexcept;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

/// Connects to `host`:`port` over TCP, verifies the server's certificate for `host` (SNI and
/// hostname check) and completes the handshake, all within `dl`. `host` is an IP literal or
/// a name (resolved with fibers::dns).
stream connect(std::string_view host, std::uint16_t port, const context& ctx, deadline dl = {});
/// As above, but a failure is stored in `ec` instead of thrown.
stream connect(std::string_view host, std::uint16_t port, const context& ctx, std::error_code& ec,
               deadline dl = {});

}  // namespace fibers::tls

/// @cond internal
template <>
struct std::is_error_code_enum<fibers::tls::errc> : std::true_type {};
/// @endcond
