// fibers/detail/socket_base.hpp - what every libfibers socket shares: the fd, its reactor
// registrations (one per I/O thread that used it), timeouts and Go-style deadlines, close()
// and local_endpoint().
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <system_error>

#include "fibers/clock.hpp"
#include "fibers/endpoint.hpp"

namespace fibers::detail {

struct io_slot;
class io_thread;
struct remote_registrations;

/// A socket's registration with one I/O thread's reactor.
struct io_registration {
  io_thread* thread = nullptr;
  std::uint64_t thread_id = 0;  // io_thread::id(): tells a live thread from a reused address
  io_slot* slot = nullptr;
  std::uint32_t gen = 0;  // the slot's generation when it was opened for this socket
};

/// Direction of a socket operation.
enum class io_dir { read, write };

class socket_base {
 public:
  socket_base(const socket_base&) = delete;
  socket_base& operator=(const socket_base&) = delete;

  /// True while the socket holds an open fd (false once close() has begun, on any thread).
  bool is_open() const noexcept { return fd_.load(std::memory_order_relaxed) >= 0; }
  /// The fd (-1 when closed). Do not close it behind the socket's back.
  int native_handle() const noexcept { return fd_.load(std::memory_order_relaxed); }

  /// Closes the socket. Callable from any thread (an I/O thread's fiber or task, or a plain
  /// thread), also while other fibers are blocked on it: each of them, on whatever I/O
  /// thread, wakes at once with errc::closed, and later calls fail with
  /// std::errc::bad_file_descriptor. The fd itself is closed once no I/O thread can be in a
  /// system call on it: at once when closed from the only thread that used the socket,
  /// otherwise after one hop through each other thread's loop. Idempotent.
  void close() noexcept;
  /// Gives up ownership of the fd without closing it (deregisters it from every reactor) and
  /// returns it; -1 if closed. Fibers blocked on the socket wake with errc::closed.
  int release() noexcept;

  /// Default timeout for calls given no deadline (none by default: wait until ready or
  /// canceled). Applied per call: each call's deadline is now + timeout; zero or negative
  /// means every such call fails at once with std::errc::timed_out. Not thread-safe against
  /// calls in progress (use the set_*_deadline functions for that).
  void set_timeout(std::optional<clock::duration> t) noexcept { timeout_ = t; }
  /// The default timeout, if any.
  std::optional<clock::duration> timeout() const noexcept { return timeout_; }

  /// Go-style absolute deadline for reads (read_some, read_exact, accept, recv_from): applies
  /// to calls in progress and later calls until changed. Moving it to now or the past wakes a
  /// blocked read at once with std::errc::timed_out; extending it lets a blocked read go on;
  /// time_point::max() clears it. A call's own deadline (or set_timeout) and the fiber's
  /// inherited deadline still apply: the earliest wins. Any thread, any time.
  void set_read_deadline(clock::time_point tp) noexcept;
  /// The same for writes (write_some, write_all, send_to, connect).
  void set_write_deadline(clock::time_point tp) noexcept;
  /// set_read_deadline(tp) and set_write_deadline(tp).
  void set_deadline(clock::time_point tp) noexcept;
  /// The current read deadline (time_point::max() when none).
  clock::time_point read_deadline() const noexcept { return load_deadline(read_deadline_); }
  /// The current write deadline (time_point::max() when none).
  clock::time_point write_deadline() const noexcept { return load_deadline(write_deadline_); }

  /// The local address (getsockname).
  endpoint local_endpoint() const;

  /// Parks the calling fiber until the socket is readable (bytes, end of stream or an error
  /// to read; for a listener, a connection to accept) without reading anything: for code that
  /// moves the bytes with system calls of its own on native_handle() (splice(2), recvmmsg,
  /// ...). Returns at once if the socket is readable now (checked with a zero-timeout poll,
  /// skipped when the socket's last read found it empty and no readiness event came since).
  /// The limits are those of a read: `dl` (default: now + the socket's timeout, if set), the
  /// read deadline (set_read_deadline) and the fiber's inherited deadline, whichever is
  /// first, give std::errc::timed_out. A cancellation point (fibers::canceled). Fails with
  /// errc::closed when the socket is closed meanwhile (on any thread), errc::busy when
  /// another fiber of this thread already waits to read it, std::errc::bad_file_descriptor
  /// when closed before. Fiber only (std::logic_error elsewhere).
  ///
  ///     for (;;) {   // a non-blocking call of one's own, then the wait
  ///       ssize_t n = ::splice(s.native_handle(), nullptr, pipe_w, nullptr, 65536, SPLICE_F_NONBLOCK);
  ///       if (n >= 0 || errno != EAGAIN) break;
  ///       s.wait_readable(5s);
  ///     }
  void wait_readable(deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  void wait_readable(std::error_code& ec, deadline dl = {});
  /// Parks the calling fiber until the socket is writable (room in its send buffer, or an
  /// error to report), writing nothing: the counterpart of wait_readable() with a write's
  /// limits (`dl` or the socket's timeout, the write deadline, the inherited deadline).
  void wait_writable(deadline dl = {});
  /// As above, but a failure is stored in `ec` instead of thrown.
  void wait_writable(std::error_code& ec, deadline dl = {});

 protected:
  socket_base() noexcept = default;
  socket_base(socket_base&& other) noexcept;
  socket_base& operator=(socket_base&& other) noexcept;
  ~socket_base();

  /// What one call uses on the calling I/O thread: the fd, read once at the start of the call,
  /// and this thread's registration of it.
  struct io_handle {
    int fd = -1;
    io_slot* slot = nullptr;
  };
  /// The limits of one call: its own deadline (fixed at its start) and what it last waited
  /// for (re-read from the direction's deadline after every timeout wake).
  struct call_limit {
    clock::time_point own = clock::time_point::max();
    bool resolved = false;
  };

  /// Takes ownership of a non-blocking fd and registers it with the calling thread's reactor.
  void adopt(int fd, const endpoint& peer);
  /// The fd and this thread's registration for an operation named `op`. On an I/O thread
  /// other than the one that created the socket, the fd is registered with this thread's
  /// reactor on first use. When closed: fd -1 and ec = bad_file_descriptor. Outside an I/O
  /// thread: throws std::logic_error naming `op`.
  io_handle handle_for(const char* op, std::error_code& ec);  // inline: lib/net/socket_inline.hpp
  /// Starts a call in direction `dir` with deadline `dl`: true (and ec = std::errc::timed_out)
  /// if one of the limits that apply (dl or the default timeout, the direction's deadline, the
  /// fiber's inherited deadline) has passed already, so no system call is made.
  bool expired(io_dir dir, deadline dl, call_limit& lim, std::error_code& ec) const noexcept;  // inline, ditto
  /// What ring_io() asks the ring for.
  enum class ring_kind : unsigned char { recv, send, poll };
  /// The call's I/O as one operation on the calling thread's io_uring ring (only when the
  /// thread has one for sockets: runtime_options::sockets): recv into or send from `data`, or
  /// poll for `dir`. Parks until it completes; the same limits and wake-ups as wait() (a moved
  /// deadline, close() on any thread, cancellation), after which the operation is canceled in
  /// the kernel, and if it completed anyway its result stands. Returns the bytes moved (poll:
  /// 0); failures in `ec`.
  std::size_t ring_io(const io_handle& h, io_dir dir, ring_kind kind, void* data, std::size_t size,
                      deadline dl, call_limit& lim, std::error_code& ec) noexcept;
  /// Parks until `h` is ready for `dir` (or its readiness bit is set). Fails with
  /// std::errc::timed_out when the earliest limit passes (a direction deadline moved while
  /// waiting is followed), errc::canceled, errc::closed (the socket was closed, on any
  /// thread), errc::busy (another fiber already waits for `dir` on this thread).
  std::error_code wait(const io_handle& h, io_dir dir, deadline dl, call_limit& lim) noexcept;
  /// The deadline of a call made of several waits (read_exact, write_all): `dl`, or now + the
  /// socket's timeout, fixed once for the whole call; unset when neither applies.
  deadline whole_call(deadline dl) const noexcept {
    if (dl.is_set() || !timeout_) [[likely]] return dl;
    return timeout_deadline();
  }
  /// "op peer" for error messages.
  std::string describe(const char* op) const;

  std::atomic<int> fd_{-1};
  io_registration home_;  // the thread that created the socket: its calls take the fast path
  std::optional<clock::duration> timeout_;
  endpoint peer_;  // remembered for error messages and peer_endpoint()

 private:
  static clock::time_point load_deadline(const std::atomic<clock::rep>& d) noexcept {
    return clock::time_point(clock::duration(d.load(std::memory_order_relaxed)));
  }
  io_handle handle_slow(const char* op, int fd, std::error_code& ec);
  /// wait_readable / wait_writable.
  std::error_code wait_ready(io_dir dir, deadline dl);
  /// True if the earliest limit of the call (the fiber's inherited deadline included) has passed.
  bool limit_passed(io_dir dir, deadline dl, call_limit& lim) const noexcept;
  clock::time_point limit(io_dir dir, deadline dl, call_limit& lim) const noexcept {
    if (!lim.resolved) {
      lim.resolved = true;
      lim.own = whole_call(dl).when();
    }
    return std::min(lim.own, load_deadline(dir == io_dir::read ? read_deadline_ : write_deadline_));
  }
  /// now + the socket's timeout (a time already past when it is zero or less).
  deadline timeout_deadline() const noexcept;
  void set_dir_deadline(io_dir dir, clock::time_point tp) noexcept;
  /// Closes (close_fd) or releases the fd: wakes every waiter, deregisters everywhere.
  int shut(bool close_fd) noexcept;
  /// Asks the home thread to mute its registration while nobody there waits (reactor.hpp,
  /// io_slot::shared): the socket is now also served by another thread.
  void mark_home_shared() noexcept;
  /// Frees the remote registrations' bookkeeping (not thread-safe: destructor, reassignment).
  void reset_remote() noexcept;

  // Other I/O threads' registrations; allocated on first use off the home thread. The low bit
  // marks "closed": no thread may register any more.
  std::atomic<std::uintptr_t> remote_{0};
  std::atomic<clock::rep> read_deadline_{clock::time_point::max().time_since_epoch().count()};
  std::atomic<clock::rep> write_deadline_{clock::time_point::max().time_since_epoch().count()};
};

}  // namespace fibers::detail
