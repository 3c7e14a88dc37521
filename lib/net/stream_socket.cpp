// lib/net/stream_socket.cpp - connected stream sockets (TCP, Unix).
#include "fibers/stream_socket.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <stdexcept>

#include "fibers/error.hpp"
#include "net/socket_inline.hpp"

namespace fibers {

using detail::io_dir;
using detail::io_slot;
using detail::last_error;

namespace {
// The raw system calls: libc's read()/send() are pthread cancellation points and, in a
// multi-threaded process, switch asynchronous cancellation on and off around every call -
// measurable on a path that does nothing else (fibers have their own cancellation).
ssize_t sys_read(int fd, void* data, std::size_t size) noexcept {
  return ::syscall(SYS_read, fd, data, size);
}
// MSG_NOSIGNAL: a reset peer is an EPIPE error, never a SIGPIPE.
ssize_t sys_send(int fd, const void* data, std::size_t size) noexcept {
  return ::syscall(SYS_sendto, fd, data, size, MSG_NOSIGNAL, nullptr, 0);
}
// A transfer made of several calls that finds the socket closed after its first call was
// closed while it was in progress, like a call woken from its wait by close().
std::size_t done_or_closed(std::size_t done, std::error_code& ec) noexcept {
  if (done > 0 && ec == std::errc::bad_file_descriptor) ec = make_error_code(errc::closed);
  return done;
}
}  // namespace

stream_socket::stream_socket(int fd) {
  if (fd < 0) throw std::invalid_argument("fibers::stream_socket: invalid fd");
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    throw std::system_error(errno, std::generic_category(), "stream_socket: fcntl(O_NONBLOCK)");
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  endpoint peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    peer = endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  }
  adopt(fd, peer);
}

stream_socket stream_socket::connect(const endpoint& ep, std::error_code& ec, deadline dl) {
  ec.clear();
  stream_socket s;
  int fd = ::socket(ep.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ec = last_error();
    return s;
  }
  // Registered before connect() so the completion edge cannot be missed.
  s.adopt(fd, ep);
  call_limit lim;
  if (s.expired(io_dir::write, dl, lim, ec)) {
    s.close();
    return s;
  }
  if (::connect(fd, ep.data(), ep.size()) == 0) return s;
  // EINTR on a non-blocking connect: the attempt goes on in the background, like EINPROGRESS.
  if (errno != EINPROGRESS && errno != EINTR) {
    ec = last_error();
    s.close();
    return s;
  }
  const io_handle h{fd, s.home_.slot};
  h.slot->writable = false;
  ec = s.wait(h, io_dir::write, dl, lim);
  if (!ec) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) ec.assign(err, std::generic_category());
  }
  if (ec) s.close();
  return s;
}

stream_socket stream_socket::connect(const endpoint& ep, deadline dl) {
  std::error_code ec;
  stream_socket s = connect(ep, ec, dl);
  throw_if_error(ec, "connect " + ep.to_string());
  return s;
}

std::size_t stream_socket::read_some(mutable_buffer buf, std::error_code& ec, deadline dl) {
  ec.clear();
  const io_handle h = handle_for("read", ec);
  if (h.fd < 0 || buf.size == 0) return 0;
  call_limit lim;
  if (expired(io_dir::read, dl, lim, ec)) return 0;
  if (detail::ring_sockets()) return ring_io(h, io_dir::read, ring_kind::recv, buf.data, buf.size, dl, lim, ec);
  io_slot* slot = h.slot;
  for (;;) {
    if (slot->readable) {
      ssize_t n = sys_read(h.fd, buf.data, buf.size);
      if (n > 0) {
        // A short read drained the socket: the next read parks without a syscall, and data
        // that arrives later raises a new edge (a FIN already reported does not: see hup).
        if (static_cast<std::size_t>(n) < buf.size && !slot->hup) slot->readable = false;
        return static_cast<std::size_t>(n);
      }
      if (n == 0) return 0;
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

std::size_t stream_socket::read_some(mutable_buffer buf, deadline dl) {
  std::error_code ec;
  std::size_t n = read_some(buf, ec, dl);
  if (ec) throw_error(ec, describe("read"));  // the description is built only on error
  return n;
}

std::size_t stream_socket::read_exact(mutable_buffer buf, std::error_code& ec, deadline dl) {
  ec.clear();
  const deadline whole = whole_call(dl);
  auto* p = static_cast<std::byte*>(buf.data);
  std::size_t done = 0;
  while (done < buf.size) {
    std::size_t n = read_some(mutable_buffer(p + done, buf.size - done), ec, whole);
    if (ec) return done_or_closed(done, ec);
    if (n == 0) {
      ec = make_error_code(errc::end_of_stream);
      return done;
    }
    done += n;
  }
  return done;
}

void stream_socket::read_exact(mutable_buffer buf, deadline dl) {
  std::error_code ec;
  read_exact(buf, ec, dl);
  if (ec) throw_error(ec, describe("read"));  // the description is built only on error
}

std::size_t stream_socket::write_some(const_buffer buf, std::error_code& ec, deadline dl) {
  ec.clear();
  const io_handle h = handle_for("write", ec);
  if (h.fd < 0 || buf.size == 0) return 0;
  call_limit lim;
  if (expired(io_dir::write, dl, lim, ec)) return 0;
  if (detail::ring_sockets()) {
    return ring_io(h, io_dir::write, ring_kind::send, const_cast<void*>(buf.data), buf.size, dl, lim, ec);
  }
  io_slot* slot = h.slot;
  for (;;) {
    if (slot->writable) {
      ssize_t n = sys_send(h.fd, buf.data, buf.size);
      if (n >= 0) {
        if (static_cast<std::size_t>(n) < buf.size && !slot->hup) slot->writable = false;  // full
        return static_cast<std::size_t>(n);
      }
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

std::size_t stream_socket::write_some(const_buffer buf, deadline dl) {
  std::error_code ec;
  std::size_t n = write_some(buf, ec, dl);
  if (ec) throw_error(ec, describe("write"));  // the description is built only on error
  return n;
}

std::size_t stream_socket::write_all(const_buffer buf, std::error_code& ec, deadline dl) {
  ec.clear();
  const deadline whole = whole_call(dl);
  const auto* p = static_cast<const std::byte*>(buf.data);
  std::size_t done = 0;
  while (done < buf.size) {
    done += write_some(const_buffer(p + done, buf.size - done), ec, whole);
    if (ec) return done_or_closed(done, ec);
  }
  return done;
}

void stream_socket::write_all(const_buffer buf, deadline dl) {
  std::error_code ec;
  write_all(buf, ec, dl);
  if (ec) throw_error(ec, describe("write"));  // the description is built only on error
}

void stream_socket::shutdown(shutdown_type how, std::error_code& ec) {
  ec.clear();
  const int fd = native_handle();
  if (fd < 0) ec = std::make_error_code(std::errc::bad_file_descriptor);
  else if (::shutdown(fd, static_cast<int>(how)) != 0) ec = last_error();
}

void stream_socket::shutdown(shutdown_type how) {
  std::error_code ec;
  shutdown(how, ec);
  if (ec) throw_error(ec, describe("shutdown"));  // the description is built only on error
}

namespace {
void set_flag(int fd, int level, int name, bool on, const std::string& what) {
  int v = on ? 1 : 0;
  if (fd < 0) throw std::system_error(EBADF, std::generic_category(), what);
  if (::setsockopt(fd, level, name, &v, sizeof v) != 0) {
    throw std::system_error(errno, std::generic_category(), what);
  }
}
}  // namespace

void stream_socket::set_nodelay(bool on) { set_flag(native_handle(), IPPROTO_TCP, TCP_NODELAY, on, describe("set_nodelay")); }

void stream_socket::set_keepalive(bool on) { set_flag(native_handle(), SOL_SOCKET, SO_KEEPALIVE, on, describe("set_keepalive")); }

endpoint stream_socket::peer_endpoint() const {
  if (!is_open()) throw std::system_error(EBADF, std::generic_category(), "peer_endpoint");
  return peer_;
}

}  // namespace fibers
