// fibers/udp_socket.hpp - a UDP socket: datagrams to and from any peer.
#pragma once

#include <cstddef>
#include <system_error>

#include "fibers/buffer.hpp"
#include "fibers/clock.hpp"
#include "fibers/endpoint.hpp"
#include "fibers/detail/socket_base.hpp"

namespace fibers {

/// A UDP socket. recv_from parks the calling fiber until a datagram arrives; send_to parks
/// only if the send buffer is full. Both take deadlines and are cancellation points.
///
///     auto u = fibers::udp_socket::bind(fibers::endpoint::parse("127.0.0.1:0"));
///     u.send_to("ping", peer);
///     fibers::endpoint from;
///     std::size_t n = u.recv_from(buf, from, 1s);
class udp_socket : public detail::socket_base {
 public:
  /// A closed socket.
  udp_socket() noexcept = default;
  /// Binds to `ep` (port 0 picks a free port).
  static udp_socket bind(const endpoint& ep);
  static udp_socket bind(const endpoint& ep, std::error_code& ec);

  /// Sends one datagram; returns its size.
  std::size_t send_to(const_buffer buf, const endpoint& to, deadline dl = {});
  std::size_t send_to(const_buffer buf, const endpoint& to, std::error_code& ec,
                      deadline dl = {});
  /// Receives one datagram into buf (truncated if larger); returns its size, sets `from`.
  std::size_t recv_from(mutable_buffer buf, endpoint& from, deadline dl = {});
  std::size_t recv_from(mutable_buffer buf, endpoint& from, std::error_code& ec,
                        deadline dl = {});
};

}  // namespace fibers
