// lib/hook/file.cpp - read, write, pread and pwrite on a regular file from a fiber: through the
// file backend, so a read that waits for the disk parks the fiber, not its I/O thread.
//
// A regular file is always "ready" to poll (epoll refuses it), so there is nothing to park on.
// Instead each call first tries preadv2/pwritev2 with RWF_NOWAIT: data in the page cache (and
// a write the page cache takes at once) is moved on the thread, in one system call, as libc
// would. Only when the kernel says it would have to wait (EAGAIN), or cannot tell for this
// file system (EOPNOTSUPP), does the call go to fibers::detail::run_file_op - the I/O thread's
// io_uring ring, or the blocking pool - and the fiber parks until it is done.
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "file/file_op.hpp"
#include "hook/hook_internal.hpp"

namespace fibers::hook::detail {
namespace {

/// The first try: what the kernel can move without waiting. -1 with errno as the call set it.
ssize_t without_waiting(int fd, dir d, void* buf, std::size_t n, off_t off) noexcept {
  iovec iov{buf, n};
  return d == dir::read ? ::preadv2(fd, &iov, 1, off, RWF_NOWAIT) : ::pwritev2(fd, &iov, 1, off, RWF_NOWAIT);
}

/// The kernel could not do it without waiting, or cannot say: the backend does it.
bool needs_backend(int err) noexcept {
  // EINVAL: RWF_NOWAIT unknown (Linux < 4.14), or a bad offset, which the backend's own call
  // reports the same way.
  return err == EAGAIN || err == EOPNOTSUPP || err == EINVAL;
}

}  // namespace

bool file_call(int fd, dir d, void* buf, std::size_t n, off_t off, call c, ssize_t& result) noexcept {
  if (parking_fiber() == nullptr) return false;
  fd_info* info = info_of(fd, true);
  if (classify(fd, info) != fd_kind::file) return false;
  const int saved = errno;
  std::size_t done = 0;
  const auto bit = static_cast<std::uint8_t>(1u << static_cast<unsigned>(d));
  const bool try_nowait = (info->no_nowait.load(std::memory_order_relaxed) & bit) == 0;
  const ssize_t first = try_nowait ? without_waiting(fd, d, buf, n, off) : -1;
  if (try_nowait && first < 0 && errno == EOPNOTSUPP) info->no_nowait.fetch_or(bit, std::memory_order_relaxed);
  if (!try_nowait) {
    // Known to refuse RWF_NOWAIT: straight to the backend.
  } else if (first >= 0) {
    done = static_cast<std::size_t>(first);
    // Short: the end of the file, or the rest is not in the page cache. Asked again without
    // waiting, the end says 0 and an uncached rest EAGAIN (a regular file reads short only at
    // its end, and programs rely on that).
    bool settled = done == n || n == 0 || first == 0;  // all, nothing asked, or the end
    while (!settled && d == dir::read) {
      const ssize_t more = without_waiting(fd, d, static_cast<char*>(buf) + done, n - done,
                                           off < 0 ? -1 : off + static_cast<off_t>(done));
      if (more > 0) {
        done += static_cast<std::size_t>(more);
        settled = done == n;
        continue;
      }
      // The end, or an error other than "would wait" after some bytes: those bytes, as read(2).
      settled = more == 0 || !needs_backend(errno);
      break;
    }
    if (settled) {
      errno = saved;
      result = static_cast<ssize_t>(done);
      return true;
    }
    // The rest must come from (or, for a write the page cache did not take, go to) the disk.
  } else if (!needs_backend(errno)) {
    result = -1;  // EBADF (not open for reading), EISDIR, EFAULT, ...: libc's answer
    return true;
  }
  fibers::detail::file_op op{.kind = d == dir::read ? fibers::detail::file_op_kind::read
                                                    : fibers::detail::file_op_kind::write,
                             .fd = fd,
                             .buf = static_cast<char*>(buf) + done,
                             .len = n - done,
                             .off = off < 0 ? -1 : off + static_cast<off_t>(done)};
  count_park(c);
  std::error_code ec;
  // Bounded (a regular file's call ends by itself): the pool may work on the caller's buffer;
  // on the ring a cancel that comes too late leaves the call's result standing.
  const std::int64_t r = fibers::detail::run_file_op(op, fibers::clock::time_point::max(), true, true, ec);
  if (r >= 0) {
    errno = saved;
    result = static_cast<ssize_t>(done + static_cast<std::size_t>(r));
    return true;
  }
  if (done > 0) {  // an error after some bytes: the count, as read(2) and write(2) do
    errno = saved;
    result = static_cast<ssize_t>(done);
    return true;
  }
  errno = ec == std::errc::timed_out ? ETIMEDOUT : ec ? ECANCELED : static_cast<int>(-r);
  result = -1;
  return true;
}

}  // namespace fibers::hook::detail
