// fibers/stream_listener.hpp - a listening TCP or Unix-domain socket that accepts connections.
#pragma once

#include "fibers/detail/config.hpp"

#include <system_error>

#include "fibers/clock.hpp"
#include "fibers/endpoint.hpp"
#include "fibers/stream_socket.hpp"
#include "fibers/detail/socket_base.hpp"

namespace fibers {

/// Options for stream_listener::bind.
struct listen_options {
  /// listen() backlog.
  int backlog = 1024;
  /// SO_REUSEADDR (IP only): rebind a port in TIME_WAIT at once.
  bool reuse_address = true;
  /// SO_REUSEPORT (IP only): several listeners (e.g. one per I/O thread) share the port.
  bool reuse_port = false;
  /// IPV6_V6ONLY for an IPv6 listener.
  bool v6_only = false;
};

/// A listening socket. accept() parks the calling fiber until a connection arrives.
///
///     auto l = fibers::tcp_listener::bind(fibers::endpoint::parse("0.0.0.0:8080"));
///     for (;;) {
///       fibers::spawn([s = l.accept()]() mutable { serve(s); }).detach();
///     }
///
/// accept() failures that concern only one connection (the peer aborted) are retried inside;
/// a full fd table (EMFILE/ENFILE) is returned as an error and loses no queued connection.
class stream_listener : public detail::socket_base {
 public:
  /// A closed listener.
  stream_listener() noexcept = default;
  /// Binds and listens on `ep` (IP, or a Unix path that must not exist yet). Port 0 picks a
  /// free port: read it back with local_endpoint().
  static stream_listener bind(const endpoint& ep, const listen_options& opts = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  static stream_listener bind(const endpoint& ep, std::error_code& ec,
                              const listen_options& opts = {});

  /// Waits for and returns the next connection (std::errc::timed_out at the deadline).
  stream_socket accept(deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  stream_socket accept(std::error_code& ec, deadline dl = {});
  /// Waits for the next connection and returns its raw non-blocking fd without registering
  /// it, so it can be handed to another I/O thread (wrap it with stream_socket(fd) there).
  int accept_fd(std::error_code& ec, deadline dl = {});

 private:
  int accept_into(endpoint* peer, std::error_code& ec, deadline dl);
};

/// A TCP listener.
using tcp_listener = stream_listener;
/// A Unix-domain listener.
using unix_listener = stream_listener;

}  // namespace fibers
