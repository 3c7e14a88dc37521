// lib/hook/hook_internal.hpp - what the interposed calls share: whether a call may park, the
// per-fd state the hook keeps (whose O_NONBLOCK is it, SO_RCVTIMEO/SO_SNDTIMEO), the parked
// call counters, and the wait helpers.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "fibers/clock.hpp"
#include "fibers/dns.hpp"
#include "fibers/hook.hpp"
#include "hook/real.hpp"
#include "runtime/fd_wait.hpp"

namespace fibers::detail {
struct fiber_state;
}

namespace fibers::hook::detail {

using fibers::detail::fiber_state;

/// False when FIBERS_HOOK=off (read once): every interposed call is then exactly libc.
bool globally_on() noexcept;

/// The running fiber if this call should park it: the hook is on, the caller is a libfibers
/// fiber (not a plain thread, not an I/O thread's scheduler loop) and has not disabled the
/// hook. nullptr: behave as libc.
fiber_state* parking_fiber() noexcept;

/// What the hook knows about an fd.
enum class fd_kind : std::uint8_t {
  unknown = 0,    // not looked at yet (or closed since)
  hooked = 1,     // the hook set O_NONBLOCK; the user sees a blocking fd
  user_nonblock = 2,  // the user's own O_NONBLOCK: EAGAIN goes back to the user, never parked
  passthrough = 3,    // block device, directory, stdio, an fd fcntl cannot read: always libc
  file = 4,           // regular file: read/write/pread/pwrite on a fiber go through file_call
};

/// Whether a short read proves the fd drained (fd_wait's fd_drained): a TCP stream or a pipe
/// (not a packet pipe, not SCTP). Not a datagram socket (one datagram per read), nor a Unix stream
/// socket (a read stops early at a message carrying credentials or fds).
enum class drain_kind : std::uint8_t { unknown = 0, yes = 1, no = 2 };

struct fd_info {
  std::atomic<fd_kind> kind{fd_kind::unknown};
  std::atomic<drain_kind> drains{drain_kind::unknown};
  std::atomic<std::int64_t> rcv_timeout_ns{0};  // SO_RCVTIMEO; 0 = none
  std::atomic<std::int64_t> snd_timeout_ns{0};  // SO_SNDTIMEO; 0 = none
  /// Regular files: bit 1 << dir, set once RWF_NOWAIT was refused (EOPNOTSUPP) for that
  /// direction (ext4 takes it for reads, not for buffered writes): such calls go straight to
  /// the file backend.
  std::atomic<std::uint8_t> no_nowait{0};
};

/// The state of `fd`, or nullptr (fd out of range, or `create` false and never recorded, or no
/// memory). Lock-free lookup in a two-level table.
fd_info* info_of(int fd, bool create) noexcept;

/// Forgets everything about `fd` (closed, or a new fd with that number from libc).
void forget(int fd) noexcept;

/// Copies what is known about `from` to `to` (dup: the same open file description).
void copy_info(int from, int to) noexcept;

/// The kind of `fd` as seen from a fiber: looks at an unknown fd (F_GETFL, fstat) and, for a
/// pollable fd in blocking mode, sets O_NONBLOCK and records it as hooked.
fd_kind classify(int fd, fd_info* info) noexcept;

/// Whether a short read on `fd` proves it drained (looked up once per fd: fstat, getsockopt).
bool drains_when_short(int fd, fd_info* info) noexcept;

/// Counts one park of `c`.
void count_park(call c) noexcept;

enum class dir : std::uint8_t { read, write };

/// read/write/pread/pwrite (`off` -1: at the fd's position) of `n` bytes on a regular file,
/// from a fiber with the hook on: what the page cache has at once, the rest through the file
/// backend while only the fiber waits (lib/hook/file.cpp). False when `fd` is not a regular
/// file or the caller not a parking fiber (the call is then libc's); true with `result` (and
/// errno) as the libc call would set them. A canceled fiber's call fails with ECANCELED, one
/// past its inherited deadline with ETIMEDOUT, unless the backend had already done it.
bool file_call(int fd, dir d, void* buf, std::size_t n, off_t off, call c, ssize_t& result) noexcept;

/// Outcome of waiting for one fd on the fiber path.
enum class wait_outcome { ready, timed_out, deadline, canceled, closed, unsupported };

/// Parks the fiber until `fd` is ready for `d` or `until` (the call's own timeout) passes;
/// `deadline` means the fiber's inherited deadline passed first.
wait_outcome wait_fd(int fd, dir d, fibers::clock::time_point until, call c) noexcept;

/// Blocks the thread (plain-thread path of a hooked fd) until `fd` is ready for `d` or the
/// timeout passes: false with errno set (EAGAIN on timeout, EINTR on a signal).
bool block_until_ready(int fd, dir d, fibers::clock::time_point until) noexcept;

/// now + the fd's SO_RCVTIMEO/SO_SNDTIMEO, or time_point::max().
fibers::clock::time_point timeout_for(const fd_info* info, dir d) noexcept;

/// Sets errno from a failed wait (EAGAIN, ETIMEDOUT, ECANCELED, EBADF).
void set_wait_errno(wait_outcome o) noexcept;

/// What poll, select and epoll_wait return when their park timed out: 0 with errno restored
/// to `saved` when the call's own timeout (`until`) has passed, otherwise -1 with ETIMEDOUT
/// (the fiber's inherited deadline ended the wait first).
inline int poll_timeout_result(fibers::clock::time_point until, int saved) noexcept {
  if (until != fibers::clock::time_point::max() && fibers::clock::now() >= until) {
    errno = saved;
    return 0;
  }
  errno = ETIMEDOUT;
  return -1;
}

/// True for an IPv4 or IPv6 address literal (a scoped one too): glibc answers it without a
/// lookup.
bool is_address_literal(const char* node) noexcept;

/// The options of a lookup the hook sends through fibers::dns (hook::set_dns_options) for
/// `families`. Throws std::bad_alloc.
fibers::dns::options dns_options(fibers::dns::family families);

}  // namespace fibers::hook::detail
