// lib/hook/io.cpp - the interposed socket and fd calls: socket, accept(4), connect, the
// read/write/recv/send families, close, dup(2,3), fcntl, ioctl(FIONBIO), setsockopt.
//
// Every call first asks parking_fiber(): on a fiber with the hook on, an fd in blocking mode
// (as the user sees it) is non-blocking underneath, and EAGAIN parks the fiber on the fd. Off
// a fiber the call is libc's - except that an fd the hook made non-blocking must still look
// blocking there: EAGAIN then blocks the thread in poll() and the call is retried.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <climits>
#include <cstdarg>
#include <cstdint>
#include <memory>
#include <new>

#include "hook/hook_internal.hpp"

namespace fibers::hook::detail {
namespace {

bool would_block() noexcept { return errno == EAGAIN || errno == EWOULDBLOCK; }

/// How a hooked call waits when its fd is not ready: parks the fiber, or (plain threads,
/// loops, a fiber with the hook disabled) blocks the thread in poll.
struct blocker {
  bool fiber;
  int fd;
  dir d;
  call c;
  fibers::clock::time_point until;
  fd_info* info;

  /// True: try the call again. False: errno says why it failed.
  bool wait() const noexcept {
    if (!fiber) return block_until_ready(fd, d, until);
    const wait_outcome o = wait_fd(fd, d, until, c);
    if (o == wait_outcome::ready) return true;
    if (o == wait_outcome::unsupported) return block_until_ready(fd, d, until);
    set_wait_errno(o);
    return false;
  }
};

/// Sets up the wait of a call on `fd`: on a fiber, only for an fd the hook manages in blocking
/// mode; elsewhere, only after libc said EAGAIN on such an fd (`first` is that result).
/// Returns false when the call is plain libc.
bool needs_hook(int fd, dir d, call c, bool fiber, blocker& b) noexcept {
  fd_info* info = nullptr;
  if (fiber) {
    info = info_of(fd, true);
    if (classify(fd, info) != fd_kind::hooked) return false;
  } else {
    if (!globally_on()) return false;
    info = info_of(fd, false);
    if (info == nullptr || info->kind.load(std::memory_order_relaxed) != fd_kind::hooked) return false;
  }
  b = blocker{fiber, fd, d, c, timeout_for(info, d), info};
  return true;
}

/// One call that transfers what is ready: read, recv, accept, ... `want` (reads only, 0 for
/// none): the bytes asked for. On a fiber, a read that returns fewer from an fd where that
/// proves it drained (TCP, pipes) lets the next read park at once, without the read that would
/// say EAGAIN, until the reactor reports a new edge (fd_may_be_ready).
template <class Op>
auto io_call(int fd, dir d, call c, Op op, std::size_t want = 0) noexcept -> decltype(op()) {
  const int saved = errno;
  const bool fiber = parking_fiber() != nullptr;
  blocker b{};
  bool wait_first = false;
  if (fiber) {
    if (!needs_hook(fd, d, c, true, b)) return op();
    if (want > 0 && !fibers::detail::fd_may_be_ready(fd, fibers::detail::io_readable)) wait_first = true;
  } else {
    auto r = op();
    if (r >= 0 || !would_block() || !needs_hook(fd, d, c, false, b)) return r;
    wait_first = true;
  }
  for (;;) {
    if (wait_first && !b.wait()) return -1;
    auto r = op();
    if (r >= 0) {
      if (fiber && want > 0 && r > 0 && static_cast<std::size_t>(r) < want && drains_when_short(fd, b.info)) {
        fibers::detail::fd_drained(fd, fibers::detail::io_readable);
      }
      errno = saved;  // other fibers ran while this one was parked
      return r;
    }
    if (!would_block()) return r;
    wait_first = true;
  }
}

/// A call that must move all `len` bytes, as a blocking stream socket or pipe does (write,
/// send, recv with MSG_WAITALL). `op(done)` moves from offset `done`. Returns the bytes moved,
/// or -1 when nothing was; stops early at an error after some bytes (then it returns the
/// count, as libc does) or, for reads, at end of stream.
template <class Op>
ssize_t all_call(int fd, dir d, call c, std::size_t len, Op op) noexcept {
  const int saved = errno;
  const bool fiber = parking_fiber() != nullptr;
  blocker b{};
  std::size_t done = 0;
  bool wait_first = false;
  if (fiber) {
    if (!needs_hook(fd, d, c, true, b)) return op(0);
  } else {
    const ssize_t r = op(0);
    if (r >= 0 && (static_cast<std::size_t>(r) == len || r == 0)) return r;
    if (r < 0 && (!would_block() || !needs_hook(fd, d, c, false, b))) return r;
    if (r > 0 && !needs_hook(fd, d, c, false, b)) return r;  // libc's own short count
    if (r > 0) done = static_cast<std::size_t>(r);
    else wait_first = true;
  }
  for (;;) {
    if (wait_first && !b.wait()) {
      if (done == 0) return -1;
      errno = saved;
      return static_cast<ssize_t>(done);
    }
    const ssize_t r = op(done);
    if (r > 0) {
      done += static_cast<std::size_t>(r);
      wait_first = false;
      if (done < len) continue;
    } else if (r < 0 && would_block()) {
      wait_first = true;
      continue;
    } else if (r < 0 && done == 0) {
      return -1;
    }
    errno = saved;
    return static_cast<ssize_t>(done);  // all moved, end of stream, or an error after some bytes
  }
}

/// The bytes an iovec array holds; false if the kernel would refuse it (EINVAL, EFAULT: a
/// single call reports that) or it holds nothing.
bool iov_total(const iovec* iov, std::size_t cnt, std::size_t& total) noexcept {
  if (iov == nullptr || cnt == 0 || cnt > IOV_MAX) return false;
  total = 0;
  for (std::size_t i = 0; i < cnt; ++i) {
    if (iov[i].iov_len > static_cast<std::size_t>(SSIZE_MAX) - total) return false;
    total += iov[i].iov_len;
  }
  return total > 0;
}

/// An iovec array without its first `skip` bytes (the rest of a partly written writev).
class iov_rest {
 public:
  /// False when no memory for a long array (the call then returns what it moved).
  bool set(const iovec* iov, std::size_t cnt, std::size_t skip) noexcept {
    std::size_t i = 0;
    while (i < cnt && skip >= iov[i].iov_len) skip -= iov[i++].iov_len;
    n_ = cnt - i;
    v_ = inline_;
    if (n_ > std::size(inline_)) {
      if (!heap_) heap_.reset(new (std::nothrow) iovec[cnt]);
      if (!heap_) return false;
      v_ = heap_.get();
    }
    for (std::size_t k = 0; k < n_; ++k) v_[k] = iov[i + k];
    if (n_ > 0) {
      v_[0].iov_base = static_cast<char*>(v_[0].iov_base) + skip;
      v_[0].iov_len -= skip;
    }
    return true;
  }
  iovec* data() noexcept { return v_; }
  std::size_t size() const noexcept { return n_; }

 private:
  iovec inline_[16];
  std::unique_ptr<iovec[]> heap_;
  iovec* v_ = inline_;
  std::size_t n_ = 0;
};

/// MSG_WAITALL fills the buffer on stream sockets only (a datagram socket returns one datagram).
bool is_stream(int fd) noexcept {
  const int saved = errno;
  int type = 0;
  socklen_t len = sizeof type;
  const bool stream = ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
  errno = saved;
  return stream;
}

ssize_t do_read(int fd, void* buf, size_t n) noexcept {
  if (ssize_t r; file_call(fd, dir::read, buf, n, -1, call::read, r)) return r;
  return io_call(fd, dir::read, call::read, [&] { return real.read.get()(fd, buf, n); }, n);
}

// A 64-bit off_t: pread and pread64 (pwrite, pwrite64) are one function.
static_assert(sizeof(off_t) == 8, "pread64 is interposed as pread");

ssize_t do_pread(int fd, void* buf, size_t n, off_t off) noexcept {
  if (ssize_t r; off >= 0 && file_call(fd, dir::read, buf, n, off, call::read, r)) return r;
  return real.pread.get()(fd, buf, n, off);  // not a regular file: libc's (ESPIPE on a socket)
}

ssize_t do_pwrite(int fd, const void* buf, size_t n, off_t off) noexcept {
  if (ssize_t r; off >= 0 && file_call(fd, dir::write, const_cast<void*>(buf), n, off, call::write, r)) return r;
  return real.pwrite.get()(fd, buf, n, off);
}

ssize_t do_recv(int fd, void* buf, size_t n, int flags, sockaddr* from, socklen_t* fromlen, call c) noexcept {
  auto* p = static_cast<char*>(buf);
  auto once = [&](std::size_t done) {
    return real.recvfrom.get()(fd, p + done, n - done, flags, from, fromlen);
  };
  if ((flags & MSG_DONTWAIT) != 0) return once(0);
  if ((flags & MSG_WAITALL) != 0 && n > 0 && is_stream(fd)) return all_call(fd, dir::read, c, n, once);
  // A short MSG_PEEK (or OOB, TRUNC, ERRQUEUE) read proves nothing drained.
  return io_call(fd, dir::read, c, [&] { return once(0); }, flags == 0 ? n : 0);
}

ssize_t do_send(int fd, const void* buf, size_t n, int flags, const sockaddr* to, socklen_t tolen, call c) noexcept {
  const auto* p = static_cast<const char*>(buf);
  auto once = [&](std::size_t done) {
    return real.sendto.get()(fd, p + done, n - done, flags, to, tolen);
  };
  if ((flags & MSG_DONTWAIT) != 0) return once(0);
  if (n == 0) return io_call(fd, dir::write, c, [&] { return once(0); });
  return all_call(fd, dir::write, c, n, once);
}

int do_accept(int fd, sockaddr* addr, socklen_t* len, int flags, call c) noexcept {
  const bool fiber = parking_fiber() != nullptr;
  // On a fiber the new socket is made non-blocking at once (no fcntl later) and recorded.
  const int extra = fiber ? SOCK_NONBLOCK : 0;
  const int r = io_call(fd, dir::read, c, [&] { return real.accept4.get()(fd, addr, len, flags | extra); });
  if (r >= 0) {
    forget(r);
    if (fiber) {
      if (fd_info* i = info_of(r, true)) {
        i->kind.store((flags & SOCK_NONBLOCK) != 0 ? fd_kind::user_nonblock : fd_kind::hooked,
                      std::memory_order_relaxed);
        if (const fd_info* l = info_of(fd, false); l != nullptr && l->drains.load(std::memory_order_relaxed) == drain_kind::yes) {
          i->drains.store(drain_kind::yes, std::memory_order_relaxed);  // a TCP listener's connection
        }
      } else if ((flags & SOCK_NONBLOCK) == 0) {
        const int fl = real.fcntl.get()(r, F_GETFL);
        real.fcntl.get()(r, F_SETFL, fl & ~O_NONBLOCK);  // no room to record it: leave it blocking
      }
    }
  }
  return r;
}

std::int64_t timeval_ns(const void* v, socklen_t len) noexcept {
  if (v == nullptr || len < static_cast<socklen_t>(sizeof(timeval))) return 0;
  const auto* tv = static_cast<const timeval*>(v);
  return static_cast<std::int64_t>(tv->tv_sec) * 1'000'000'000 + static_cast<std::int64_t>(tv->tv_usec) * 1000;
}

/// fcntl(F_SETFL) and ioctl(FIONBIO) on an fd the hook manages: the user's O_NONBLOCK is
/// recorded, the fd itself stays non-blocking. False: not managed, let libc do it.
bool managed(int fd, fd_info*& info) noexcept {
  if (!globally_on()) return false;
  info = info_of(fd, false);
  if (info == nullptr) return false;
  const fd_kind k = info->kind.load(std::memory_order_relaxed);
  return k == fd_kind::hooked || k == fd_kind::user_nonblock;
}

int do_fcntl(int fd, int cmd, void* arg, int (*real_fcntl)(int, int, ...)) noexcept {
  const int iarg = static_cast<int>(reinterpret_cast<std::intptr_t>(arg));
  fd_info* info = nullptr;
  switch (cmd) {
    case F_GETFL: {
      const int r = real_fcntl(fd, cmd);
      if (r >= 0 && managed(fd, info) && info->kind.load(std::memory_order_relaxed) == fd_kind::hooked) {
        return r & ~O_NONBLOCK;
      }
      return r;
    }
    case F_SETFL: {
      if (!managed(fd, info)) return real_fcntl(fd, cmd, iarg);
      const int r = real_fcntl(fd, cmd, iarg | O_NONBLOCK);
      info->drains.store(drain_kind::unknown, std::memory_order_relaxed);  // O_DIRECT may have changed
      if (r == 0) {
        info->kind.store((iarg & O_NONBLOCK) != 0 ? fd_kind::user_nonblock : fd_kind::hooked,
                         std::memory_order_relaxed);
      }
      return r;
    }
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
      const int r = real_fcntl(fd, cmd, iarg);
      if (r >= 0) copy_info(fd, r);
      return r;
    }
    default: return real_fcntl(fd, cmd, arg);
  }
}

}  // namespace
}  // namespace fibers::hook::detail

using namespace fibers::hook::detail;
using fibers::hook::call;

extern "C" {

int socket(int domain, int type, int protocol) noexcept {
  if (parking_fiber() == nullptr) {
    const int fd = real.socket.get()(domain, type, protocol);
    if (fd >= 0) forget(fd);
    return fd;
  }
  const int fd = real.socket.get()(domain, type | SOCK_NONBLOCK, protocol);
  if (fd < 0) return fd;
  forget(fd);
  const bool user_nb = (type & SOCK_NONBLOCK) != 0;
  if (fd_info* i = info_of(fd, true)) {
    i->kind.store(user_nb ? fd_kind::user_nonblock : fd_kind::hooked, std::memory_order_relaxed);
    if ((type & 0xf) == SOCK_STREAM && (domain == AF_INET || domain == AF_INET6) &&
        (protocol == 0 || protocol == IPPROTO_TCP)) {  // TCP (not SCTP: one message per read)
      i->drains.store(drain_kind::yes, std::memory_order_relaxed);
    }
  } else if (!user_nb) {
    const int fl = real.fcntl.get()(fd, F_GETFL);
    real.fcntl.get()(fd, F_SETFL, fl & ~O_NONBLOCK);
  }
  return fd;
}

int accept(int fd, sockaddr* addr, socklen_t* len) { return do_accept(fd, addr, len, 0, call::accept); }

int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  return do_accept(fd, addr, len, flags, call::accept);
}

int connect(int fd, const sockaddr* addr, socklen_t len) {
  const int saved = errno;
  const bool fiber = parking_fiber() != nullptr;
  blocker b{};
  if (fiber) {
    if (!needs_hook(fd, dir::write, call::connect, true, b)) return real.connect.get()(fd, addr, len);
  }
  const int r = real.connect.get()(fd, addr, len);
  if (r == 0 || errno != EINPROGRESS) return r;
  if (!fiber && !needs_hook(fd, dir::write, call::connect, false, b)) return r;
  if (!b.wait()) {
    if (errno == EAGAIN) errno = EINPROGRESS;  // SO_SNDTIMEO expired: what Linux reports
    return -1;
  }
  int err = 0;
  socklen_t elen = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) return -1;
  if (err != 0) {
    errno = err;
    return -1;
  }
  errno = saved;
  return 0;
}

ssize_t read(int fd, void* buf, size_t n) { return do_read(fd, buf, n); }

ssize_t write(int fd, const void* buf, size_t n) {
  if (ssize_t r; file_call(fd, dir::write, const_cast<void*>(buf), n, -1, call::write, r)) return r;
  const auto* p = static_cast<const char*>(buf);
  auto once = [&](std::size_t done) { return real.write.get()(fd, p + done, n - done); };
  if (n == 0) return once(0);
  return all_call(fd, dir::write, call::write, n, once);
}

// The symbol names are given explicitly: with _FILE_OFFSET_BITS=64 the headers rename pread
// to pread64, and both must be defined.
ssize_t hook_pread(int, void*, size_t, off_t) __asm__("pread");
ssize_t hook_pread64(int, void*, size_t, off_t) __asm__("pread64");
ssize_t hook_pwrite(int, const void*, size_t, off_t) __asm__("pwrite");
ssize_t hook_pwrite64(int, const void*, size_t, off_t) __asm__("pwrite64");
ssize_t hook_pread(int fd, void* buf, size_t n, off_t off) { return do_pread(fd, buf, n, off); }
ssize_t hook_pread64(int fd, void* buf, size_t n, off_t off) { return do_pread(fd, buf, n, off); }
ssize_t hook_pwrite(int fd, const void* buf, size_t n, off_t off) { return do_pwrite(fd, buf, n, off); }
ssize_t hook_pwrite64(int fd, const void* buf, size_t n, off_t off) { return do_pwrite(fd, buf, n, off); }

ssize_t readv(int fd, const iovec* iov, int cnt) {
  std::size_t total = 0;
  if (cnt < 0 || !iov_total(iov, static_cast<std::size_t>(cnt), total)) total = 0;
  return io_call(fd, dir::read, call::readv, [&] { return real.readv.get()(fd, iov, cnt); }, total);
}

// writev and sendmsg move every byte on a blocking fd, as write does: a blocking stream
// socket or pipe returns a short count only after a signal or SO_SNDTIMEO, so callers may
// rely on it. A datagram goes whole or not at all, so the loop never runs for one.
ssize_t writev(int fd, const iovec* iov, int cnt) {
  std::size_t total = 0;
  if (cnt < 0 || !iov_total(iov, static_cast<std::size_t>(cnt), total)) {
    return io_call(fd, dir::write, call::writev, [&] { return real.writev.get()(fd, iov, cnt); });
  }
  iov_rest rest;
  auto once = [&](std::size_t done) -> ssize_t {
    if (done == 0) return real.writev.get()(fd, iov, cnt);
    if (!rest.set(iov, static_cast<std::size_t>(cnt), done)) {
      errno = ENOMEM;
      return -1;
    }
    return real.writev.get()(fd, rest.data(), static_cast<int>(rest.size()));
  };
  return all_call(fd, dir::write, call::writev, total, once);
}

ssize_t recv(int fd, void* buf, size_t n, int flags) {
  return do_recv(fd, buf, n, flags, nullptr, nullptr, call::recv);
}

ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* from, socklen_t* fromlen) {
  return do_recv(fd, buf, n, flags, from, fromlen, call::recvfrom);
}

ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  if ((flags & MSG_DONTWAIT) != 0) return real.recvmsg.get()(fd, msg, flags);
  return io_call(fd, dir::read, call::recvmsg, [&] { return real.recvmsg.get()(fd, msg, flags); });
}

ssize_t send(int fd, const void* buf, size_t n, int flags) {
  return do_send(fd, buf, n, flags, nullptr, 0, call::send);
}

ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* to, socklen_t tolen) {
  return do_send(fd, buf, n, flags, to, tolen, call::sendto);
}

ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  if ((flags & MSG_DONTWAIT) != 0) return real.sendmsg.get()(fd, msg, flags);
  std::size_t total = 0;
  if (msg == nullptr || !iov_total(msg->msg_iov, msg->msg_iovlen, total)) {
    return io_call(fd, dir::write, call::sendmsg, [&] { return real.sendmsg.get()(fd, msg, flags); });
  }
  iov_rest rest;
  auto once = [&](std::size_t done) -> ssize_t {
    if (done == 0) return real.sendmsg.get()(fd, msg, flags);
    if (!rest.set(msg->msg_iov, msg->msg_iovlen, done)) {
      errno = ENOMEM;
      return -1;
    }
    msghdr m = *msg;
    m.msg_iov = rest.data();
    m.msg_iovlen = rest.size();
    m.msg_control = nullptr;  // ancillary data (SCM_RIGHTS...) went with the first bytes
    m.msg_controllen = 0;
    return real.sendmsg.get()(fd, &m, flags);
  };
  return all_call(fd, dir::write, call::sendmsg, total, once);
}

// _FORTIFY_SOURCE variants (Debian builds its libraries with it): checked, then the same.
[[noreturn]] void __chk_fail();

ssize_t __read_chk(int fd, void* buf, size_t n, size_t buflen) {
  if (n > buflen) __chk_fail();
  return do_read(fd, buf, n);
}

ssize_t hook_pread_chk(int, void*, size_t, off_t, size_t) __asm__("__pread_chk");
ssize_t hook_pread64_chk(int, void*, size_t, off_t, size_t) __asm__("__pread64_chk");
ssize_t hook_pread_chk(int fd, void* buf, size_t n, off_t off, size_t buflen) {
  if (n > buflen) __chk_fail();
  return do_pread(fd, buf, n, off);
}
ssize_t hook_pread64_chk(int fd, void* buf, size_t n, off_t off, size_t buflen) {
  if (n > buflen) __chk_fail();
  return do_pread(fd, buf, n, off);
}

ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buflen, int flags) {
  if (n > buflen) __chk_fail();
  return do_recv(fd, buf, n, flags, nullptr, nullptr, call::recv);
}

ssize_t __recvfrom_chk(int fd, void* buf, size_t n, size_t buflen, int flags, sockaddr* from, socklen_t* fromlen) {
  if (n > buflen) __chk_fail();
  return do_recv(fd, buf, n, flags, from, fromlen, call::recvfrom);
}

int close(int fd) {
  if (globally_on()) {
    fibers::detail::fd_closed(fd);  // fibers blocked on fd wake with EBADF; deregistered
    forget(fd);
  }
  return real.close.get()(fd);
}

// fd-creating calls: a new number forgets what the hook knew about an old file with it.
int pipe(int fds[2]) noexcept {
  const int r = real.pipe.get()(fds);
  if (r == 0 && globally_on()) {
    forget(fds[0]);
    forget(fds[1]);
  }
  return r;
}

int pipe2(int fds[2], int flags) noexcept {
  const int r = real.pipe2.get()(fds, flags);
  if (r == 0 && globally_on()) {
    forget(fds[0]);
    forget(fds[1]);
  }
  return r;
}

int socketpair(int domain, int type, int protocol, int fds[2]) noexcept {
  const int r = real.socketpair.get()(domain, type, protocol, fds);
  if (r == 0 && globally_on()) {
    forget(fds[0]);
    forget(fds[1]);
  }
  return r;
}

int eventfd(unsigned count, int flags) noexcept {
  const int r = real.eventfd.get()(count, flags);
  if (r >= 0 && globally_on()) forget(r);
  return r;
}

int dup(int fd) noexcept {
  const int r = real.dup.get()(fd);
  if (r >= 0) copy_info(fd, r);
  return r;
}

int dup2(int fd, int to) noexcept {
  if (fd != to && globally_on()) fibers::detail::fd_closed(to);  // to is closed by dup2
  const int r = real.dup2.get()(fd, to);
  if (r >= 0 && fd != to) copy_info(fd, r);
  return r;
}

int dup3(int fd, int to, int flags) noexcept {
  if (fd != to && globally_on()) fibers::detail::fd_closed(to);
  const int r = real.dup3.get()(fd, to, flags);
  if (r >= 0) copy_info(fd, r);
  return r;
}

// Defined under their assembler names: with _FILE_OFFSET_BITS=64 the headers rename fcntl
// to fcntl64, and programs built either way must find both here.
int fibers_hook_fcntl(int fd, int cmd, ...) __asm__("fcntl");
int fibers_hook_fcntl64(int fd, int cmd, ...) __asm__("fcntl64");

int fibers_hook_fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);  // every command's argument is an int or a pointer (glibc reads it the same way)
  va_end(ap);
  return do_fcntl(fd, cmd, arg, real.fcntl.get());
}

int fibers_hook_fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return do_fcntl(fd, cmd, arg, real.fcntl64.get());
}

int ioctl(int fd, unsigned long request, ...) noexcept {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  fd_info* info = nullptr;
  if (request == FIONBIO && arg != nullptr && managed(fd, info)) {
    int one = 1;
    const int r = real.ioctl.get()(fd, FIONBIO, &one);
    if (r == 0) {
      info->kind.store(*static_cast<const int*>(arg) != 0 ? fd_kind::user_nonblock : fd_kind::hooked,
                       std::memory_order_relaxed);
    }
    return r;
  }
  return real.ioctl.get()(fd, request, arg);
}

int setsockopt(int fd, int level, int name, const void* val, socklen_t len) noexcept {
  const int r = real.setsockopt.get()(fd, level, name, val, len);
  if (r == 0 && level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
    if (fd_info* i = info_of(fd, true)) {
      (name == SO_RCVTIMEO ? i->rcv_timeout_ns : i->snd_timeout_ns).store(timeval_ns(val, len), std::memory_order_relaxed);
    }
  }
  return r;
}

}  // extern "C"
