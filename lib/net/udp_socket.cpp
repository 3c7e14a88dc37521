// lib/net/udp_socket.cpp - datagram sockets.
#include "fibers/udp_socket.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include "fibers/error.hpp"
#include "net/socket_inline.hpp"

namespace fibers {

using detail::io_dir;
using detail::io_slot;
using detail::last_error;

udp_socket udp_socket::bind(const endpoint& ep, std::error_code& ec) {
  ec.clear();
  udp_socket u;
  int fd = ::socket(ep.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ec = last_error();
    return u;
  }
  if (::bind(fd, ep.data(), ep.size()) != 0) {
    ec = last_error();
    ::close(fd);
    return u;
  }
  u.adopt(fd, endpoint{});
  return u;
}

udp_socket udp_socket::bind(const endpoint& ep) {
  std::error_code ec;
  udp_socket u = bind(ep, ec);
  throw_if_error(ec, "bind udp " + ep.to_string());
  return u;
}

std::size_t udp_socket::send_to(const_buffer buf, const endpoint& to, std::error_code& ec,
                                deadline dl) {
  ec.clear();
  const io_handle h = handle_for("send_to", ec);
  if (h.fd < 0) return 0;
  call_limit lim;
  if (expired(io_dir::write, dl, lim, ec)) return 0;
  io_slot* slot = h.slot;
  for (;;) {
    if (slot->writable) {
      ssize_t n = ::sendto(h.fd, buf.data, buf.size, MSG_NOSIGNAL, to.data(), to.size());
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno == EINTR) continue;
      if (errno != EAGAIN) {
        ec = last_error();
        return 0;
      }
      slot->writable = false;
    }
    if ((ec = wait(h, io_dir::write, dl, lim))) return 0;
  }
}

std::size_t udp_socket::send_to(const_buffer buf, const endpoint& to, deadline dl) {
  std::error_code ec;
  std::size_t n = send_to(buf, to, ec, dl);
  throw_if_error(ec, "send_to " + to.to_string());
  return n;
}

std::size_t udp_socket::recv_from(mutable_buffer buf, endpoint& from, std::error_code& ec,
                                  deadline dl) {
  ec.clear();
  const io_handle h = handle_for("recv_from", ec);
  if (h.fd < 0) return 0;
  call_limit lim;
  if (expired(io_dir::read, dl, lim, ec)) return 0;
  io_slot* slot = h.slot;
  for (;;) {
    if (slot->readable) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      // A short datagram says nothing about the queue: only EAGAIN clears the readiness bit.
      ssize_t n = ::recvfrom(h.fd, buf.data, buf.size, 0, reinterpret_cast<sockaddr*>(&ss), &len);
      if (n >= 0) {
        from = endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
        return static_cast<std::size_t>(n);
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN) {
        ec = last_error();
        return 0;
      }
      slot->readable = false;
    }
    if ((ec = wait(h, io_dir::read, dl, lim))) return 0;
  }
}

std::size_t udp_socket::recv_from(mutable_buffer buf, endpoint& from, deadline dl) {
  std::error_code ec;
  std::size_t n = recv_from(buf, from, ec, dl);
  throw_if_error(ec, "recv_from on " + (is_open() ? local_endpoint().to_string() : std::string("(closed)")));
  return n;
}

}  // namespace fibers
