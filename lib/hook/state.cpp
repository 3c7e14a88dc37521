// lib/hook/state.cpp - the hook's per-fd state, whether a call parks, the wait helpers, the
// counters, and fibers/hook.hpp.
#include <fcntl.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "hook/hook_internal.hpp"
#include "runtime/fiber_state.hpp"

namespace fibers::hook::detail {

constinit real_table real;

void resolve_all() noexcept {
#define FIBERS_HOOK_RESOLVE(name, type) (void)real.name.get();
  FIBERS_HOOK_REAL_LIST(FIBERS_HOOK_RESOLVE)
#undef FIBERS_HOOK_RESOLVE
}

namespace {

// 0: not read yet, 1: on, 2: off (FIBERS_HOOK=off|0|false, or a forked child).
std::atomic<int> hook_state{0};

// A child forked from a fiber has the parent's I/O thread in its thread-locals but no such
// thread, and shares the parent's epoll instance: a close() there must not deregister the
// parent's fds, and nothing there can park. The child's calls are libc.
void in_forked_child() noexcept { hook_state.store(2, std::memory_order_relaxed); }

__attribute__((constructor(101))) void hook_init() noexcept {
  resolve_all();
  (void)globally_on();
  ::pthread_atfork(nullptr, nullptr, in_forked_child);
}

std::atomic<std::uint64_t> parks[static_cast<std::size_t>(call::count_)];

// fd -> fd_info: 1024 chunks of 1024 entries (fds up to 1,048,575, Debian's default hard
// RLIMIT_NOFILE), each chunk allocated on first use and kept for the life of the process.
constexpr int chunk_bits = 10;
constexpr std::size_t chunk_size = std::size_t{1} << chunk_bits;
constexpr std::size_t chunk_count = 1024;
std::atomic<fd_info*> chunks[chunk_count];

}  // namespace

bool globally_on() noexcept {
  int s = hook_state.load(std::memory_order_relaxed);
  if (s == 0) [[unlikely]] {
    const char* v = std::getenv("FIBERS_HOOK");
    const bool off = v != nullptr && (std::strcmp(v, "off") == 0 || std::strcmp(v, "0") == 0 ||
                                      std::strcmp(v, "false") == 0);
    s = off ? 2 : 1;
    hook_state.store(s, std::memory_order_relaxed);
  }
  return s == 1;
}

fiber_state* parking_fiber() noexcept {
  if (!globally_on()) return nullptr;
  fiber_state* st = fibers::detail::running_fiber_state();
  if (st == nullptr || st->hook_off != 0) return nullptr;
  return st;
}

fd_info* info_of(int fd, bool create) noexcept {
  if (fd < 0) return nullptr;
  const auto u = static_cast<std::size_t>(fd);
  const std::size_t c = u >> chunk_bits;
  if (c >= chunk_count) return nullptr;
  fd_info* chunk = chunks[c].load(std::memory_order_acquire);
  if (chunk == nullptr) {
    if (!create) return nullptr;
    auto* fresh = new (std::nothrow) fd_info[chunk_size];
    if (fresh == nullptr) return nullptr;
    if (!chunks[c].compare_exchange_strong(chunk, fresh, std::memory_order_acq_rel)) {
      delete[] fresh;
    } else {
      chunk = fresh;
    }
  }
  return &chunk[u & (chunk_size - 1)];
}

void forget(int fd) noexcept {
  fibers::detail::fd_created(fd);  // any registration kept for the old file is stale now
  fd_info* i = info_of(fd, false);
  if (i == nullptr) return;
  i->kind.store(fd_kind::unknown, std::memory_order_relaxed);
  i->drains.store(drain_kind::unknown, std::memory_order_relaxed);
  i->rcv_timeout_ns.store(0, std::memory_order_relaxed);
  i->snd_timeout_ns.store(0, std::memory_order_relaxed);
  i->no_nowait.store(0, std::memory_order_relaxed);
}

void copy_info(int from, int to) noexcept {
  fibers::detail::fd_created(to);
  fd_info* f = info_of(from, false);
  if (f == nullptr) {
    forget(to);
    return;
  }
  fd_info* t = info_of(to, true);
  if (t == nullptr) return;
  t->kind.store(f->kind.load(std::memory_order_relaxed), std::memory_order_relaxed);
  t->drains.store(f->drains.load(std::memory_order_relaxed), std::memory_order_relaxed);
  t->rcv_timeout_ns.store(f->rcv_timeout_ns.load(std::memory_order_relaxed), std::memory_order_relaxed);
  t->snd_timeout_ns.store(f->snd_timeout_ns.load(std::memory_order_relaxed), std::memory_order_relaxed);
  t->no_nowait.store(f->no_nowait.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

/// A file system whose files live in memory (or are made up on each read): a read never waits
/// for a device, and most of them cannot say so to RWF_NOWAIT. Their files stay libc's.
static bool in_memory_fs(int fd) noexcept {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) return false;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case PROC_SUPER_MAGIC: case SYSFS_MAGIC: case TMPFS_MAGIC: case RAMFS_MAGIC:
    case DEBUGFS_MAGIC: case TRACEFS_MAGIC: case SECURITYFS_MAGIC: case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC: case BPF_FS_MAGIC: case HUGETLBFS_MAGIC:
      return true;
    default:
      return false;
  }
}

fd_kind classify(int fd, fd_info* info) noexcept {
  if (info == nullptr) return fd_kind::passthrough;
  fd_kind k = info->kind.load(std::memory_order_relaxed);
  if (k != fd_kind::unknown) [[likely]] return k;
  const int saved = errno;
  // stdin/stdout/stderr are usually shared with other processes (a terminal, the parent's
  // pipe): O_NONBLOCK on them would change those processes' view too. Left to libc.
  if (fd <= 2) {
    k = fd_kind::passthrough;
  } else {
    const int flags = real.fcntl.get()(fd, F_GETFL);
    struct stat st {};
    if (flags < 0) {
      errno = saved;
      return fd_kind::passthrough;  // EBADF & co: the call itself reports it; nothing recorded
    }
    const bool stat_ok = ::fstat(fd, &st) == 0;
    if (stat_ok && S_ISREG(st.st_mode)) {
      // O_NONBLOCK means nothing to a regular file: not looked at.
      k = in_memory_fs(fd) ? fd_kind::passthrough : fd_kind::file;
    } else if ((flags & O_NONBLOCK) != 0) {
      k = fd_kind::user_nonblock;
    } else if (!stat_ok || S_ISBLK(st.st_mode) || S_ISDIR(st.st_mode)) {
      k = fd_kind::passthrough;  // never "not ready" for epoll (regular files cannot even be added)
    } else if (real.fcntl.get()(fd, F_SETFL, flags | O_NONBLOCK) == 0) {
      k = fd_kind::hooked;
    } else {
      k = fd_kind::passthrough;
    }
  }
  errno = saved;
  fd_kind expected = fd_kind::unknown;
  if (!info->kind.compare_exchange_strong(expected, k, std::memory_order_relaxed)) return expected;
  return k;
}

bool drains_when_short(int fd, fd_info* info) noexcept {
  if (info == nullptr) return false;
  drain_kind d = info->drains.load(std::memory_order_relaxed);
  if (d == drain_kind::unknown) [[unlikely]] {
    const int saved = errno;
    struct stat st {};
    bool yes = false;
    if (::fstat(fd, &st) == 0) {
      if (S_ISFIFO(st.st_mode)) {
        const int fl = real.fcntl.get()(fd, F_GETFL);
        yes = fl >= 0 && (fl & O_DIRECT) == 0;  // O_DIRECT: a packet pipe, one write per read
      } else if (S_ISSOCK(st.st_mode)) {
        // TCP only: an SCTP socket is SOCK_STREAM too but reads one message at a time.
        int type = 0, domain = 0, protocol = 0;
        socklen_t len = sizeof type;
        yes = ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
        len = sizeof domain;
        yes = yes && ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
              (domain == AF_INET || domain == AF_INET6);
        len = sizeof protocol;
        yes = yes && ::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 && protocol == IPPROTO_TCP;
      }
    }
    errno = saved;
    d = yes ? drain_kind::yes : drain_kind::no;
    info->drains.store(d, std::memory_order_relaxed);
  }
  return d == drain_kind::yes;
}

void count_park(call c) noexcept {
  auto& p = parks[static_cast<std::size_t>(c)];
  p.fetch_add(1, std::memory_order_relaxed);
}

fibers::clock::time_point timeout_for(const fd_info* info, dir d) noexcept {
  if (info == nullptr) return fibers::clock::time_point::max();
  const std::int64_t ns = (d == dir::read ? info->rcv_timeout_ns : info->snd_timeout_ns).load(std::memory_order_relaxed);
  if (ns <= 0) return fibers::clock::time_point::max();
  return fibers::clock::now() + std::chrono::nanoseconds(ns);
}

wait_outcome wait_fd(int fd, dir d, fibers::clock::time_point until, call c) noexcept {
  const fibers::detail::fd_interest in{fd, d == dir::read ? fibers::detail::io_readable : fibers::detail::io_writable};
  int err = 0;
  count_park(c);
  switch (fibers::detail::wait_fds(&in, 1, until, name(c), &err)) {
    case fibers::detail::fd_wait_result::ready: return wait_outcome::ready;
    case fibers::detail::fd_wait_result::timeout:
      return until != fibers::clock::time_point::max() && fibers::clock::now() >= until
                 ? wait_outcome::timed_out
                 : wait_outcome::deadline;
    case fibers::detail::fd_wait_result::closed: return wait_outcome::closed;
    case fibers::detail::fd_wait_result::canceled: return wait_outcome::canceled;
    case fibers::detail::fd_wait_result::unsupported: break;
  }
  return wait_outcome::unsupported;
}

bool block_until_ready(int fd, dir d, fibers::clock::time_point until) noexcept {
  pollfd p{fd, static_cast<short>(d == dir::read ? POLLIN : POLLOUT), 0};
  for (;;) {
    int ms = -1;
    if (until != fibers::clock::time_point::max()) {
      const auto left = until - fibers::clock::now();
      if (left <= fibers::clock::duration::zero()) {
        errno = EAGAIN;
        return false;
      }
      // Rounded up: poll's millisecond timeout must not end the wait early.
      ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
    }
    const int r = real.poll.get()(&p, 1, ms);
    if (r > 0) return true;
    if (r < 0) return false;  // EINTR: a signal, as a blocking call would report it
  }
}

void set_wait_errno(wait_outcome o) noexcept {
  switch (o) {
    case wait_outcome::timed_out: errno = EAGAIN; break;  // SO_RCVTIMEO/SO_SNDTIMEO expiry
    case wait_outcome::deadline: errno = ETIMEDOUT; break;  // the fiber's inherited deadline
    case wait_outcome::canceled: errno = ECANCELED; break;
    case wait_outcome::closed: errno = EBADF; break;
    default: errno = EIO; break;
  }
}

}  // namespace fibers::hook::detail

namespace fibers::hook {

const char* name(call c) noexcept {
  static constexpr const char* names[] = {"accept", "connect", "read", "write", "readv",
                                          "writev", "recv", "recvfrom", "recvmsg", "send",
                                          "sendto", "sendmsg", "poll", "select", "sleep",
                                          "getaddrinfo", "gethostbyname", "getnameinfo",
                                          "epoll_wait"};
  static_assert(std::size(names) == static_cast<std::size_t>(call::count_));
  const auto i = static_cast<std::size_t>(c);
  return i < std::size(names) ? names[i] : "?";
}

call_stats stats() noexcept {
  call_stats s;
  for (std::size_t i = 0; i < s.parked.size(); ++i) s.parked[i] = detail::parks[i].load(std::memory_order_relaxed);
  return s;
}

bool active() noexcept { return detail::globally_on(); }

bool enabled() noexcept { return detail::parking_fiber() != nullptr; }

void disable() noexcept {
  if (auto* st = fibers::detail::running_fiber_state()) ++st->hook_off;
}

void enable() noexcept {
  auto* st = fibers::detail::running_fiber_state();
  if (st != nullptr && st->hook_off > 0) --st->hook_off;
}

}  // namespace fibers::hook
