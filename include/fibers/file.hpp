// fibers/file.hpp - files that read and write without blocking the I/O thread.
#pragma once

#include "fibers/detail/config.hpp"

#include <fcntl.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include "fibers/buffer.hpp"
#include "fibers/clock.hpp"

namespace fibers {

/// How file calls reach the kernel.
enum class file_backend {
  /// The calling I/O thread's io_uring ring (one per I/O thread, its completions reaped by the
  /// thread's reactor): the default on a fiber.
  io_uring,
  /// fibers::default_blocking_pool(): when asked for (FIBERS_FILE_BACKEND=pool,
  /// set_file_backend), when io_uring is unavailable on the thread, and for an operation the
  /// kernel's io_uring lacks.
  pool,
  /// A plain blocking system call: calls made outside a fiber (a plain thread, or a task posted
  /// to an I/O thread's loop).
  blocking,
};

/// "io_uring", "pool" or "blocking".
const char* to_string(file_backend b) noexcept;

/// The backend a file call made here and now would use (set up the thread's ring on a fiber
/// if needed). For tests and diagnostics.
file_backend current_file_backend() noexcept;

/// Which backend fibers use: io_uring (the default, falling back to the pool where io_uring is
/// unavailable) or pool. Process-wide, for calls started after it; the environment variable
/// FIBERS_FILE_BACKEND=pool (or io_uring) sets the initial choice. file_backend::blocking is
/// not accepted (std::invalid_argument).
void set_file_backend(file_backend b);

/// An open file. Every call parks only the calling fiber: on an I/O thread it goes through
/// the thread's io_uring ring (or the blocking pool, see file_backend), never a blocking system
/// call on the I/O thread. Outside a fiber the calls are plain blocking system calls.
///
/// Every call takes a deadline (the fiber's inherited deadline, with_deadline or a scope's,
/// applies too) and is a cancellation point, except close(). Each exists twice: throwing
/// std::system_error (fibers::canceled when canceled) whose what() names the operation and the
/// path ("open /etc/nope: No such file or directory"), and with a std::error_code& that never
/// throws for I/O errors.
///
/// Deadlines and cancellation while an operation is in the kernel:
/// - io_uring: the operation is canceled in the kernel (IORING_OP_ASYNC_CANCEL) and the call
///   waits for it to finish before it returns, so the kernel never writes into a buffer the
///   caller has given up. If it completed anyway (a page-cache read is done before it can be
///   canceled), the call returns its result and the cancellation is seen by the next call.
/// - pool, on a seekable file (regular file, block device): the operation runs on the caller's
///   buffer and, once a pool thread runs it, to completion; the call returns its result. The
///   deadline and cancellation are checked before it is handed to the pool and at the next
///   call. These operations end by themselves (disk latency), so nothing waits without bound.
/// - pool, on a pipe, FIFO, socket or character device (which can wait forever), and for
///   open(): the call returns timed_out/canceled at once; the pool thread keeps a buffer of its
///   own (read data is copied out, write data copied in) and a dup of the fd, and goes on
///   waiting in the kernel until the operation ends. Data it reads after that is dropped; a
///   write may still happen; an fd opened after that is closed. A pool thread stuck that way
///   stays stuck until the pipe gets data or its writers close (with O_RDWR the dup is itself
///   a writer: only data ends the read), and the default pool's destructor at exit waits for it.
///
/// One file can be used by several fibers at once (read_at/write_at at distinct offsets);
/// read()/write() share the file's own position and should be used by one fiber at a time.
///
///     auto f = fibers::file::open("/var/log/app.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
///     f.write("started\n");
///     f.fdatasync();
class file {
 public:
  /// A closed file.
  file() noexcept = default;
  /// Moves the open file; `o` is left closed.
  file(file&& o) noexcept;
  /// Closes this file (as the destructor does), then takes `o`'s.
  file& operator=(file&& o) noexcept;
  file(const file&) = delete;
  file& operator=(const file&) = delete;
  /// Closes the file (errors ignored; see close()).
  ~file();

  /// Opens `path`. `flags` are open(2)'s (O_RDONLY, O_WRONLY | O_CREAT | O_TRUNC, O_APPEND,
  /// ...; O_CLOEXEC is always added); `mode` is used when a file is created. Opening a FIFO
  /// differs by backend: the pool waits for the other end like open(2) (a cancellation
  /// point); io_uring opens it without waiting (the kernel tries a non-blocking open first).
  static file open(std::string_view path, int flags = O_RDONLY, mode_t mode = 0666, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  static file open(std::string_view path, int flags, mode_t mode, std::error_code& ec, deadline dl = {});

  /// Reads up to buf.size bytes at `offset`; returns how many, 0 at end of file. On a
  /// seekable file fewer than buf.size only at end of file; on a pipe or device, what one
  /// read(2) returned. Does not move the file's position.
  std::size_t read_at(std::uint64_t offset, mutable_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t read_at(std::uint64_t offset, mutable_buffer buf, std::error_code& ec, deadline dl = {});

  /// Writes all of buf at `offset` (with O_APPEND, Linux appends instead). The ec form returns
  /// the bytes written before an error. Does not move the file's position.
  void write_at(std::uint64_t offset, const_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t write_at(std::uint64_t offset, const_buffer buf, std::error_code& ec, deadline dl = {});

  /// read_at at the file's own position, which then advances by the bytes read. On a pipe or
  /// device, a plain read(2).
  std::size_t read(mutable_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t read(mutable_buffer buf, std::error_code& ec, deadline dl = {});

  /// write_at at the file's own position, which then advances by the bytes written.
  void write(const_buffer buf, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::size_t write(const_buffer buf, std::error_code& ec, deadline dl = {});

  /// The file's own position (starts at 0; read/write advance it).
  std::uint64_t position() const noexcept { return pos_; }
  /// Moves the file's own position.
  void seek(std::uint64_t pos) noexcept { pos_ = pos; }

  /// The file's size in bytes (statx).
  std::uint64_t size(deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  std::uint64_t size(std::error_code& ec, deadline dl = {});

  /// fsync(2): data and metadata reach stable storage.
  void fsync(deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  void fsync(std::error_code& ec, deadline dl = {});
  /// fdatasync(2): data (and the metadata needed to read it) reach stable storage.
  void fdatasync(deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  void fdatasync(std::error_code& ec, deadline dl = {});

  /// ftruncate(2) to `length` bytes. On the blocking pool where the kernel's io_uring has no
  /// ftruncate (before Linux 6.9).
  void truncate(std::uint64_t length, deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  void truncate(std::uint64_t length, std::error_code& ec, deadline dl = {});

  /// Closes the file. Not a cancellation point and takes no deadline: the fd is always closed
  /// (an error, e.g. from a network file system's final flush, is still reported).
  void close();
  /// As above, but a failure is stored in `ec` instead of thrown.
  void close(std::error_code& ec);

  /// True while open.
  bool is_open() const noexcept { return fd_ >= 0; }
  /// The file descriptor (-1 when closed).
  int native_handle() const noexcept { return fd_; }
  /// The path given to open().
  const std::string& path() const noexcept { return path_; }

 private:
  file(int fd, std::string path, bool seekable) noexcept;
  int fd_ = -1;
  bool seekable_ = true;  // lseek works: a regular file or block device
  std::uint64_t pos_ = 0;
  std::string path_;
};

/// Reads the whole file at `path`. The deadline covers the whole call.
std::string read_file(std::string_view path, deadline dl = {});
/// As above, but a failure is stored in `ec` instead of thrown.
std::string read_file(std::string_view path, std::error_code& ec, deadline dl = {});

/// How write_file writes.
struct write_file_options {
  /// Replace the file atomically: write a temporary file in the same directory, fsync it,
  /// rename it over `path`, then fsync the directory. Readers see the old contents or the new,
  /// never a mix, even after a crash. Otherwise `path` is truncated and written in place.
  bool atomic_replace = false;
  /// Without atomic_replace: fdatasync before closing.
  bool sync = false;
  /// Permissions of a file that is created (before the umask).
  mode_t mode = 0666;
};

/// Writes `data` to `path` (created if missing). The deadline covers the whole call; a
/// failed or canceled atomic replace leaves the old file as it was and removes its temporary.
void write_file(std::string_view path, const_buffer data, const write_file_options& opts = {}, deadline dl = {});
/// As above, but a failure is stored in `ec` instead of thrown.
void write_file(std::string_view path, const_buffer data, const write_file_options& opts, std::error_code& ec,
                deadline dl = {});

}  // namespace fibers
