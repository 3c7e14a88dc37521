// lib/net/udp_socket.cpp - datagram sockets.
#include "fibers/udp_socket.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "fibers/error.hpp"
#include "net/socket_inline.hpp"

namespace fibers {

using detail::io_dir;
using detail::io_slot;
using detail::last_error;

namespace {
// "recv_from on 127.0.0.1:5000: Connection refused"
[[noreturn]] void throw_receive_error(const udp_socket& u, const std::error_code& ec,
                                      const char* op) {
  std::string what = op;
  what += " on ";
  what += u.is_open() ? u.local_endpoint().to_string() : std::string("(closed)");
  throw_error(ec, what);
}
}  // namespace

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

udp_socket::receive_result udp_socket::receive(mutable_buffer buf, std::error_code& ec,
                                               deadline dl, const char* op) {
  ec.clear();
  const io_handle h = handle_for(op, ec);
  if (h.fd < 0) return {};
  call_limit lim;
  if (expired(io_dir::read, dl, lim, ec)) return {};
  io_slot* slot = h.slot;
  for (;;) {
    if (slot->readable) {
      sockaddr_storage ss{};
      iovec iov{buf.data, buf.size};
      msghdr msg{};
      msg.msg_name = &ss;
      msg.msg_namelen = sizeof ss;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      // MSG_TRUNC: return the datagram's real length even when it does not fit (Linux, for
      // UDP and Unix datagrams); msg_flags gets MSG_TRUNC when it did not fit.
      // A short datagram says nothing about the queue: only EAGAIN clears the readiness bit.
      ssize_t n = ::recvmsg(h.fd, &msg, MSG_TRUNC);
      if (n >= 0) {
        receive_result r;
        r.datagram_size = static_cast<std::size_t>(n);
        r.size = std::min(r.datagram_size, buf.size);
        r.truncated = (msg.msg_flags & MSG_TRUNC) != 0 || r.datagram_size > buf.size;
        r.from = endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), msg.msg_namelen);
        return r;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN) {
        ec = last_error();
        return {};
      }
      slot->readable = false;
    }
    if ((ec = wait(h, io_dir::read, dl, lim))) return {};
  }
}

udp_socket::receive_result udp_socket::receive_from(mutable_buffer buf, std::error_code& ec,
                                                    deadline dl) {
  return receive(buf, ec, dl, "receive_from");
}

udp_socket::receive_result udp_socket::receive_from(mutable_buffer buf, deadline dl) {
  std::error_code ec;
  receive_result r = receive(buf, ec, dl, "receive_from");
  if (ec) throw_receive_error(*this, ec, "receive_from");
  return r;
}

std::size_t udp_socket::recv_from(mutable_buffer buf, endpoint& from, std::error_code& ec,
                                  deadline dl) {
  receive_result r = receive(buf, ec, dl, "recv_from");
  if (!ec) from = r.from;
  return r.size;
}

std::size_t udp_socket::recv_from(mutable_buffer buf, endpoint& from, deadline dl) {
  std::error_code ec;
  std::size_t n = recv_from(buf, from, ec, dl);
  if (ec) throw_receive_error(*this, ec, "recv_from");
  return n;
}

}  // namespace fibers
