// lib/file/file_op.cpp - where a file call runs: the I/O thread's io_uring ring, the blocking
// pool (on the caller's buffer, or on one of its own when the call may never end), or the
// calling thread when it is not a fiber.
#include "file/file_op.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "fibers/blocking.hpp"
#include "fibers/error.hpp"
#include "reactor/completion.hpp"
#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/waiter.hpp"

namespace fibers {
namespace {

// -1: not read from the environment yet; else a file_backend.
std::atomic<int> configured_backend{-1};

file_backend configured() noexcept {
  int v = configured_backend.load(std::memory_order_relaxed);
  if (v < 0) [[unlikely]] {
    const char* e = std::getenv("FIBERS_FILE_BACKEND");
    v = static_cast<int>(e != nullptr && std::strcmp(e, "pool") == 0 ? file_backend::pool : file_backend::io_uring);
    int expected = -1;
    configured_backend.compare_exchange_strong(expected, v, std::memory_order_relaxed);
    v = configured_backend.load(std::memory_order_relaxed);
  }
  return static_cast<file_backend>(v);
}

}  // namespace

const char* to_string(file_backend b) noexcept {
  switch (b) {
    case file_backend::io_uring: return "io_uring";
    case file_backend::pool: return "pool";
    case file_backend::blocking: return "blocking";
  }
  return "?";
}

void set_file_backend(file_backend b) {
  if (b == file_backend::blocking) {
    throw std::invalid_argument("fibers::set_file_backend: file_backend::blocking is only used outside fibers");
  }
  configured_backend.store(static_cast<int>(b), std::memory_order_relaxed);
}

file_backend current_file_backend() noexcept {
  detail::io_thread* t = detail::io_thread::current();
  if (t == nullptr || t->running_fiber() == nullptr) return file_backend::blocking;
  if (configured() == file_backend::pool) return file_backend::pool;
  return detail::uring::of(*t) != nullptr ? file_backend::io_uring : file_backend::pool;
}

namespace detail {
namespace {

// One read or write moves at most this much (a CQE's res is an int; Linux moves at most
// 0x7ffff000 bytes per call anyway). The callers loop.
constexpr std::size_t max_io = std::size_t{1} << 30;

const char* describe(file_op_kind k) noexcept {
  switch (k) {
    case file_op_kind::read: return "file read";
    case file_op_kind::write: return "file write";
    case file_op_kind::open: return "file open";
    case file_op_kind::close: return "file close";
    case file_op_kind::fsync: return "file fsync";
    case file_op_kind::fdatasync: return "file fdatasync";
    case file_op_kind::size: return "file size";
    case file_op_kind::truncate: return "file truncate";
    case file_op_kind::rename: return "file rename";
    case file_op_kind::unlink: return "file unlink";
  }
  return "file";
}

/// The blocking system call (plain threads, pool threads). Retries EINTR, except close().
std::int64_t sync_call(const file_op& op) noexcept {
  for (;;) {
    long r = -1;
    const std::size_t len = std::min(op.len, max_io);
    switch (op.kind) {
      case file_op_kind::read:
        r = op.off < 0 ? ::read(op.fd, op.buf, len) : ::pread(op.fd, op.buf, len, op.off);
        break;
      case file_op_kind::write:
        r = op.off < 0 ? ::write(op.fd, op.buf, len) : ::pwrite(op.fd, op.buf, len, op.off);
        break;
      case file_op_kind::open: r = ::open(op.path, op.flags, op.mode); break;
      case file_op_kind::close: return ::close(op.fd) == 0 ? 0 : -errno;
      case file_op_kind::fsync: r = ::fsync(op.fd); break;
      case file_op_kind::fdatasync: r = ::fdatasync(op.fd); break;
      case file_op_kind::size: {
        struct stat st{};
        r = ::fstat(op.fd, &st);
        if (r == 0) return st.st_size;
        break;
      }
      case file_op_kind::truncate: r = ::ftruncate(op.fd, op.off); break;
      case file_op_kind::rename: r = ::rename(op.path, op.path2); break;
      case file_op_kind::unlink: r = ::unlink(op.path); break;
    }
    if (r >= 0) return r;
    if (errno != EINTR) return -errno;
  }
}

// IORING_OP_FTRUNCATE (Linux 6.9): liburing 2.3's headers predate it. The probe says whether
// the running kernel has it; older kernels truncate on the pool.
constexpr int op_ftruncate = 55;

/// The io_uring opcode for `k`.
int opcode_of(file_op_kind k) noexcept {
  switch (k) {
    case file_op_kind::read: return IORING_OP_READ;
    case file_op_kind::write: return IORING_OP_WRITE;
    case file_op_kind::open: return IORING_OP_OPENAT;
    case file_op_kind::close: return IORING_OP_CLOSE;
    case file_op_kind::fsync:
    case file_op_kind::fdatasync: return IORING_OP_FSYNC;
    case file_op_kind::size: return IORING_OP_STATX;
    case file_op_kind::truncate: return op_ftruncate;
    case file_op_kind::rename: return IORING_OP_RENAMEAT;
    case file_op_kind::unlink: return IORING_OP_UNLINKAT;
  }
  return -1;
}

void prep(io_uring_sqe* s, const file_op& op, struct statx* stx) noexcept {
  // io_uring reads and writes at offset -1 use (and move) the fd's position, like read(2).
  const auto off = op.off < 0 ? ~std::uint64_t{0} : static_cast<std::uint64_t>(op.off);
  const auto len = static_cast<unsigned>(std::min(op.len, max_io));
  switch (op.kind) {
    case file_op_kind::read: io_uring_prep_read(s, op.fd, op.buf, len, off); break;
    case file_op_kind::write: io_uring_prep_write(s, op.fd, op.buf, len, off); break;
    case file_op_kind::open: io_uring_prep_openat(s, AT_FDCWD, op.path, op.flags, op.mode); break;
    case file_op_kind::close: io_uring_prep_close(s, op.fd); break;
    case file_op_kind::fsync: io_uring_prep_fsync(s, op.fd, 0); break;
    case file_op_kind::fdatasync: io_uring_prep_fsync(s, op.fd, IORING_FSYNC_DATASYNC); break;
    case file_op_kind::size:
      io_uring_prep_statx(s, op.fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_SIZE, stx);
      break;
    case file_op_kind::rename: io_uring_prep_renameat(s, AT_FDCWD, op.path, AT_FDCWD, op.path2, 0); break;
    case file_op_kind::unlink: io_uring_prep_unlinkat(s, AT_FDCWD, op.path, 0); break;
    case file_op_kind::truncate:
      io_uring_prep_rw(op_ftruncate, s, op.fd, nullptr, 0, static_cast<std::uint64_t>(op.off));  // as liburing 2.6
      break;
  }
}

std::error_code gave_up(wake_reason r) noexcept {
  return r == wake_reason::timeout ? std::make_error_code(std::errc::timed_out) : make_error_code(errc::canceled);
}

std::int64_t ring_call(uring& ring, io_uring_sqe* s, file_op& op, clock::time_point until, bool cancelable,
                       std::error_code& ec) noexcept {
  struct statx stx{};
  uring_op u;
  prep(s, op, &stx);
  io_uring_sqe_set_data(s, &u);
  const int res = ring.wait(u, until, cancelable, describe(op.kind), op.fd, ec);
  if (ec) return -ECANCELED;
  if (op.kind == file_op_kind::size && res == 0) return static_cast<std::int64_t>(stx.stx_size);
  return res;
}

/// Pool, bounded call: a pool thread runs it on the caller's memory, and the caller waits for
/// it without a limit (it ends by itself).
std::int64_t pool_direct(file_op& op) noexcept {
  struct call {
    file_op* op;
    waiter* w;
    std::int64_t res = 0;
  };
  waiter w;
  call c{&op, &w};
  try {
    // The future is dropped: the fiber waits on `w`, which the call fires last thing; after
    // that the pool thread touches only its own state.
    (void)default_blocking_pool().async([cp = &c] {
      cp->res = sync_call(*cp->op);
      cp->w->fire(wake_reason::ready);
    });
  } catch (const std::system_error& e) {
    return -e.code().value();  // the pool's queue is full (EAGAIN), or no thread could start
  } catch (...) {
    return -ENOMEM;
  }
  park(w, clock::time_point::max(), false, describe(op.kind), op.fd);
  return c.res;
}

/// Pool, a call that may never end (a FIFO, a pipe, open of a FIFO): the pool thread works on
/// copies (path, data, and a dup of the fd) owned by this shared state, and the caller may give
/// up waiting. The dup matters: a caller that gave up may close its fd while the call is still
/// queued, and the number may be reused for another file before the pool thread gets to it.
struct bounce_call {
  std::mutex mu;
  waiter* w = nullptr;     // the waiting fiber's waiter; null once it stopped waiting
  bool done = false;
  std::int64_t res = 0;
  file_op op{};
  bool own_fd = false;     // op.fd is our dup
  std::string path, path2;
  std::unique_ptr<char[]> data;

  ~bounce_call() {
    if (own_fd) ::close(op.fd);
  }

  void run() noexcept {
    const std::int64_t r = sync_call(op);
    std::lock_guard lk(mu);
    res = r;
    done = true;
    // Under the lock: the fiber takes `w` back under it before its waiter goes away. The claim
    // fails if a timer or a cancel woke the fiber first; it then sees `done` under the lock.
    if (w != nullptr) {
      w->fire(wake_reason::ready);
    } else if (op.kind == file_op_kind::open && r >= 0) {
      ::close(static_cast<int>(r));  // nobody will ever see this fd
    }
  }
};

std::int64_t pool_bounce(file_op& op, clock::time_point until, bool cancelable, std::error_code& ec) noexcept {
  std::shared_ptr<bounce_call> b;
  try {
    b = std::make_shared<bounce_call>();
    b->op = op;
    if (op.path != nullptr) b->op.path = (b->path = op.path).c_str();
    if (op.path2 != nullptr) b->op.path2 = (b->path2 = op.path2).c_str();
    if (op.kind == file_op_kind::read || op.kind == file_op_kind::write) {
      b->op.len = std::min(op.len, max_io);
      b->data = std::make_unique_for_overwrite<char[]>(b->op.len);
      if (op.kind == file_op_kind::write) std::memcpy(b->data.get(), op.buf, b->op.len);
      b->op.buf = b->data.get();
    }
  } catch (...) {
    return -ENOMEM;
  }
  if (op.fd >= 0) {
    b->op.fd = ::fcntl(op.fd, F_DUPFD_CLOEXEC, 0);  // no I/O
    if (b->op.fd < 0) return -errno;
    b->own_fd = true;
  }
  waiter w;
  b->w = &w;
  try {
    (void)default_blocking_pool().async([b] { b->run(); });
  } catch (const std::system_error& e) {
    return -e.code().value();
  } catch (...) {
    return -ENOMEM;
  }
  const wake_reason r = park(w, until, cancelable, describe(op.kind), op.fd);
  {
    std::lock_guard lk(b->mu);
    b->w = nullptr;
    if (!b->done) {
      ec = gave_up(r);
      return -ECANCELED;
    }
  }
  if (op.kind == file_op_kind::read && b->res > 0) std::memcpy(op.buf, b->data.get(), static_cast<std::size_t>(b->res));
  return b->res;
}

}  // namespace

std::int64_t run_file_op(file_op& op, clock::time_point until, bool cancelable, bool bounded,
                         std::error_code& ec) noexcept {
  ec.clear();
  io_thread* t = io_thread::current();
  fiber_state* st = t != nullptr ? t->running_fiber() : nullptr;
  if (st == nullptr) return sync_call(op);  // a plain thread (or an I/O thread's loop): just block
  // Checked before the call is handed to the kernel or the pool: a call whose limit has passed
  // starts nothing.
  if (cancelable) {
    if (st->cancel_requested.load(std::memory_order_relaxed) != 0) {
      ec = make_error_code(errc::canceled);
      return -ECANCELED;
    }
    until = std::min(until, st->inherited_deadline);
  }
  if (until != clock::time_point::max() && until <= clock::now()) {
    ec = std::make_error_code(std::errc::timed_out);
    return -ECANCELED;
  }
  if (configured() == file_backend::io_uring) {
    const int opcode = opcode_of(op.kind);
    if (uring* ring = uring::of(*t); ring != nullptr && opcode >= 0 && ring->supports(opcode)) {
      if (io_uring_sqe* s = ring->sqe(); s != nullptr) return ring_call(*ring, s, op, until, cancelable, ec);
    }
  }
  return bounded ? pool_direct(op) : pool_bounce(op, until, cancelable, ec);
}

}  // namespace detail
}  // namespace fibers
