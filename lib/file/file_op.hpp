// lib/file/file_op.hpp - one file system call, run on the calling thread's backend: the I/O
// thread's io_uring ring, the blocking pool, or (outside a fiber) the calling thread.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <system_error>

#include "fibers/clock.hpp"
#include "fibers/file.hpp"

namespace fibers::detail {

enum class file_op_kind : std::uint8_t { read, write, open, close, fsync, fdatasync, size, truncate, rename, unlink };

/// The arguments of one call. Pointers must stay valid until run_file_op returns.
struct file_op {
  file_op_kind kind;
  int fd = -1;
  void* buf = nullptr;     // read: where to; write: where from
  std::size_t len = 0;
  std::int64_t off = -1;   // read/write: the offset, -1 for the fd's position; truncate: length
  const char* path = nullptr;   // open, rename (from), unlink
  const char* path2 = nullptr;  // rename (to)
  int flags = 0;
  mode_t mode = 0;
};

/// Runs `op` and returns its result (>= 0: bytes, fd, size) or -errno. When the wait ends
/// first - `until`, or with `cancelable` the fiber's cancellation or inherited deadline -
/// sets `ec` (timed_out / fibers::errc::canceled) and returns -ECANCELED; see fibers::file for
/// what happens to the operation then. `bounded`: the call ends by itself (a seekable file),
/// so on the pool it may run on the caller's buffer and be waited for without a limit.
std::int64_t run_file_op(file_op& op, clock::time_point until, bool cancelable, bool bounded,
                         std::error_code& ec) noexcept;

}  // namespace fibers::detail
