// fibers/udp_socket.hpp - a UDP socket: datagrams to and from any peer.
#pragma once

#include "fibers/detail/config.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <system_error>

#include "fibers/buffer.hpp"
#include "fibers/clock.hpp"
#include "fibers/endpoint.hpp"
#include "fibers/detail/socket_base.hpp"

namespace fibers {

/// A UDP socket. receive_from/recv_from park the calling fiber until a datagram arrives;
/// send_to parks only if the send buffer is full. All take deadlines and are cancellation points.
///
///     auto u = fibers::udp_socket::bind(fibers::endpoint::parse("127.0.0.1:0"));
///     u.send_to("ping", peer);
///     char buf[1500];
///     auto got = u.receive_from(buf, 1s);  // got.size bytes from got.from
///     if (got.truncated) { /* the datagram had got.datagram_size bytes: buf was too small */ }
class udp_socket : public detail::socket_base {
 public:
  /// One datagram as receive_from stored it.
  struct receive_result {
    /// Bytes stored in the buffer: min(datagram_size, buffer size).
    std::size_t size = 0;
    /// The datagram's real length, including bytes that did not fit.
    std::size_t datagram_size = 0;
    /// The datagram was longer than the buffer; its last datagram_size - size bytes are lost.
    bool truncated = false;
    /// The sender.
    endpoint from;
  };

  /// A closed socket.
  udp_socket() noexcept = default;
  /// Binds to `ep` (port 0 picks a free port).
  static udp_socket bind(const endpoint& ep);
  /// As above, but a failure is stored in `ec` instead of thrown.
  static udp_socket bind(const endpoint& ep, std::error_code& ec);

  /// Sends one datagram; returns its size.
  std::size_t send_to(const_buffer buf, const endpoint& to, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t send_to(const_buffer buf, const endpoint& to, std::error_code& ec,
                      deadline dl = {});
  /// Resolves `host` (fibers::dns::resolve, only the socket's own address family) and sends
  /// one datagram to its first address. `dl` covers the lookup and the send. Errors name the
  /// host: "send_to nosuch.test:53: resolve nosuch.test: no such host".
  std::size_t send_to(const_buffer buf, std::string_view host, std::uint16_t port, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t send_to(const_buffer buf, std::string_view host, std::uint16_t port, std::error_code& ec,
                      deadline dl = {});
  /// Receives one datagram into buf, waiting until one arrives, `dl` passes
  /// (std::errc::timed_out) or the fiber is canceled (errc::canceled). A datagram longer than
  /// buf is cut to it and the rest of it is dropped (the next call gets the next datagram):
  /// the result says so (truncated, datagram_size). The error_code form returns {} on error.
  receive_result receive_from(mutable_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  receive_result receive_from(mutable_buffer buf, std::error_code& ec, deadline dl = {});
  /// receive_from, reduced to the bytes stored: returns them and sets `from`. A datagram longer
  /// than buf is silently truncated to it; use receive_from to detect that.
  std::size_t recv_from(mutable_buffer buf, endpoint& from, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t recv_from(mutable_buffer buf, endpoint& from, std::error_code& ec,
                        deadline dl = {});

 private:
  // Both receive forms; `op` names the call in errors.
  receive_result receive(mutable_buffer buf, std::error_code& ec, deadline dl, const char* op);
};

}  // namespace fibers
