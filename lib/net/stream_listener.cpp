// lib/net/stream_listener.cpp - listening sockets and accept.
#include "fibers/stream_listener.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fibers/error.hpp"
#include "net/socket_inline.hpp"

namespace fibers {

using detail::io_dir;
using detail::io_slot;
using detail::last_error;

stream_listener stream_listener::bind(const endpoint& ep, std::error_code& ec,
                                      const listen_options& opts) {
  ec.clear();
  stream_listener l;
  int fd = ::socket(ep.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ec = last_error();
    return l;
  }
  auto fail = [&] {
    ec = last_error();
    ::close(fd);
    return stream_listener{};
  };
  const int one = 1;
  const bool ip = ep.family() == AF_INET || ep.family() == AF_INET6;
  if (ip && opts.reuse_address && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) return fail();
  if (ip && opts.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) return fail();
  if (ep.family() == AF_INET6) {
    const int v6only = opts.v6_only ? 1 : 0;
    if (::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) != 0) return fail();
  }
  if (::bind(fd, ep.data(), ep.size()) != 0) return fail();
  if (::listen(fd, opts.backlog) != 0) return fail();
  l.adopt(fd, endpoint{});
  return l;
}

stream_listener stream_listener::bind(const endpoint& ep, const listen_options& opts) {
  std::error_code ec;
  stream_listener l = bind(ep, ec, opts);
  throw_if_error(ec, "listen " + ep.to_string());
  return l;
}

namespace {

// One accepted connection, or -1 with ec set. Errors that concern only the aborted connection
// are retried; resource errors (EMFILE, ENFILE, ENOBUFS) are returned with the readiness bit
// left set, so the queued connection is taken by the next accept() once fds are free.
// `wait` parks until the listener is readable again (std::error_code on failure).
template <class Wait>
int accept_one(int lfd, io_slot* slot, endpoint* peer, std::error_code& ec, Wait&& wait) {
  for (;;) {
    if (slot->readable) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      int fd = ::accept4(lfd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        if (peer != nullptr) *peer = endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
        return fd;
      }
      switch (errno) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case EPERM:  // a firewall rule rejected this one connection
          continue;
        case EAGAIN:
          slot->readable = false;
          break;
        default:
          ec = last_error();
          return -1;
      }
    }
    if ((ec = wait())) return -1;
  }
}

}  // namespace

int stream_listener::accept_fd(std::error_code& ec, deadline dl) {
  return accept_into(nullptr, ec, dl);
}

int stream_listener::accept_into(endpoint* peer, std::error_code& ec, deadline dl) {
  ec.clear();
  const io_handle h = handle_for("accept", ec);
  if (h.fd < 0) return -1;
  call_limit lim;
  if (expired(io_dir::read, dl, lim, ec)) return -1;
  return accept_one(h.fd, h.slot, peer, ec, [&] { return wait(h, io_dir::read, dl, lim); });
}

stream_socket stream_listener::accept(std::error_code& ec, deadline dl) {
  stream_socket s;
  endpoint peer;
  int fd = accept_into(&peer, ec, dl);
  if (fd < 0) return s;
  s.adopt(fd, peer);
  return s;
}

stream_socket stream_listener::accept(deadline dl) {
  std::error_code ec;
  stream_socket s = accept(ec, dl);
  if (ec) {
    std::string where = is_open() ? local_endpoint().to_string() : std::string("(closed)");
    throw_if_error(ec, "accept on " + where);
  }
  return s;
}

}  // namespace fibers
