// fibers/stream_socket.hpp - a connected TCP or Unix-domain stream socket.
#pragma once

#include "fibers/detail/config.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <system_error>
#include <vector>

#include "fibers/buffer.hpp"
#include "fibers/clock.hpp"
#include "fibers/endpoint.hpp"
#include "fibers/detail/socket_base.hpp"

namespace fibers {

namespace dns {
struct options;
}

/// A connected stream socket (TCP over IPv4/IPv6, or Unix-domain). Every call that can wait
/// parks only the calling fiber, takes a deadline (default: the socket's timeout, see
/// set_timeout; the fiber's inherited deadline also applies) and is a cancellation point.
/// Each exists twice: throwing std::system_error whose what() names the operation and peer
/// ("connect 127.0.0.1:9: Connection refused"), and with a trailing std::error_code& that never
/// throws for I/O errors.
///
/// The error_code forms throw only std::logic_error, for misuse: a call that can wait made
/// outside a fiber of a libfibers I/O thread.
///
/// One fiber may read while another writes, on the same or on different I/O threads (a socket
/// handed to a fiber of another I/O thread works there); two fibers of one thread reading (or
/// writing) the same socket at once get errc::busy. close() from any thread wakes every fiber
/// blocked on the socket with errc::closed; set_read_deadline / set_write_deadline (Go-style,
/// see socket_base) change the limit of calls in progress.
///
///     auto s = fibers::tcp_stream::connect(fibers::endpoint::parse("127.0.0.1:7"), 2s);
///     s.write_all("hello");
///     char buf[5];
///     s.read_exact(buf);
class stream_socket : public detail::socket_base {
 public:
  /// A closed socket.
  stream_socket() noexcept = default;
  /// Adopts a connected stream-socket fd (made non-blocking, registered with this thread's
  /// reactor). Throws std::logic_error outside a runtime thread.
  explicit stream_socket(int fd);

  /// Connects to `ep` (IP or Unix path). Fails with std::errc::timed_out at the deadline.
  static stream_socket connect(const endpoint& ep, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  static stream_socket connect(const endpoint& ep, std::error_code& ec, deadline dl = {});

  /// Resolves `host` (fibers::dns::resolve, A and AAAA) and connects to one of its addresses
  /// with Happy Eyeballs v2 (RFC 8305): attempts interleave the families, IPv6 first; each
  /// starts 250 ms after the previous one or at once when the previous one fails; the first
  /// connection wins and the other attempts are canceled and closed. `dl` (and the fiber's
  /// inherited deadline) covers the lookup and all attempts: std::errc::timed_out when it
  /// passes. A cancellation point. When every address fails, the error is the first failure,
  /// and what() names the host and that address: "connect db.test:5432 (127.0.0.1:5432):
  /// Connection refused"; a lookup failure: "connect nosuch.test:80: resolve nosuch.test: no
  /// such host". Fiber only (std::logic_error elsewhere).
  static stream_socket connect(std::string_view host, std::uint16_t port, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  static stream_socket connect(std::string_view host, std::uint16_t port, std::error_code& ec, deadline dl = {});
  /// connect(host, port) with "host:port" or "[v6]:port" (a port number or service name);
  /// a missing or bad port is std::errc::invalid_argument.
  static stream_socket connect(std::string_view host_and_port, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  static stream_socket connect(std::string_view host_and_port, std::error_code& ec, deadline dl = {});
  /// connect(host, port) resolving with `opts` (servers, families, backend; see dns::options).
  static stream_socket connect(std::string_view host, std::uint16_t port, const dns::options& opts,
                               deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  static stream_socket connect(std::string_view host, std::uint16_t port, const dns::options& opts,
                               std::error_code& ec, deadline dl = {});

  /// Connects to one of `eps` (the addresses of one host, e.g. a cached dns::resolve_answer)
  /// with Happy Eyeballs v2 as connect(host, port) does, without a lookup. `dl` covers all
  /// attempts. An empty list is std::errc::invalid_argument. When every address fails, the
  /// error is the first failure and what() names its address ("connect 127.0.0.1:5432:
  /// Connection refused"). A cancellation point; fiber only.
  static stream_socket connect(const std::vector<endpoint>& eps, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  static stream_socket connect(const std::vector<endpoint>& eps, std::error_code& ec, deadline dl = {});

  /// Reads at least one byte (up to buf.size); returns 0 at end of stream.
  std::size_t read_some(mutable_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t read_some(mutable_buffer buf, std::error_code& ec, deadline dl = {});

  /// Reads exactly buf.size bytes; end of stream first is errc::end_of_stream. The deadline
  /// covers the whole transfer. On error, returns the bytes read so far (ec form).
  void read_exact(mutable_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t read_exact(mutable_buffer buf, std::error_code& ec, deadline dl = {});

  /// Writes some bytes (at least one); returns how many.
  std::size_t write_some(const_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t write_some(const_buffer buf, std::error_code& ec, deadline dl = {});

  /// Writes all of buf; the deadline covers the whole transfer. A peer that reset the
  /// connection gives std::errc::broken_pipe / connection_reset (never SIGPIPE).
  void write_all(const_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t write_all(const_buffer buf, std::error_code& ec, deadline dl = {});

  /// Which directions shutdown() closes.
  enum class shutdown_type { read = SHUT_RD, write = SHUT_WR, both = SHUT_RDWR };
  /// Half- or full-closes the connection (the fd stays open until close()).
  void shutdown(shutdown_type how = shutdown_type::both);
  /// As above, but a failure is stored in `ec` instead of thrown.
  void shutdown(shutdown_type how, std::error_code& ec);

  /// TCP_NODELAY (TCP only).
  void set_nodelay(bool on);
  /// SO_KEEPALIVE.
  void set_keepalive(bool on);
  /// The peer's address (cached from connect/accept).
  endpoint peer_endpoint() const;

 private:
  friend class stream_listener;
};

/// A TCP connection (stream_socket over IPv4 or IPv6).
using tcp_stream = stream_socket;
/// A Unix-domain stream connection.
using unix_stream = stream_socket;

}  // namespace fibers
