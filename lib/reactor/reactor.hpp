// lib/reactor/reactor.hpp - the readiness interface every reactor backend implements.
//
// A backend is small (as in Go's netpoll): create, open (register an fd once, for read and
// write, edge-triggered), close, wake (break a blocking poll from any thread, deduplicated),
// and poll(timeout), which marks registered fds ready and fires the fibers waiting on them.
// The scheduler never knows which backend it runs on.
#pragma once

#include <cstdint>
#include <memory>
#include <system_error>

#include "fibers/clock.hpp"

namespace fibers::detail {

struct waiter;
struct io_slot;

/// Event bits passed to an io_handler.
enum io_event : std::uint32_t { io_readable = 1, io_writable = 2, io_hangup = 4 };

/// For an fd the library drives itself rather than a fiber waiting on it (a resolver's
/// sockets, an io_uring ring's eventfd): the reactor calls `fn(ctx, slot, events)` on the
/// owning I/O thread, inside poll(), for every event on the slot, instead of setting the
/// readiness bits and firing reader/writer. The registration is edge-triggered like every
/// other: the handler must drain what it was told about (or remember that it did not).
/// A handler may fire waiters and open or close slots (including its own).
struct io_handler {
  void (*fn)(void* ctx, io_slot& slot, std::uint32_t events) noexcept = nullptr;
  void* ctx = nullptr;
};

/// Per-fd state shared by the socket code and the reactor. Owned by the reactor; only the
/// owning I/O thread touches it. A socket used from several I/O threads has one slot in each
/// thread's reactor (the same fd registered in each epoll set): every thread waits on its own
/// slot, and no slot is ever shared between threads.
struct io_slot {
  int fd = -1;
  std::uint32_t index = 0;  // position in the reactor's slot table
  std::uint32_t gen = 0;    // bumped on close: events tagged with an old gen are stale
  // Readiness bits (DESIGN.md "No EAGAIN syscall per message"): cleared when a read/write
  // came up short or hit EAGAIN, set again by the next edge. While clear, an operation parks
  // at once instead of trying the syscall.
  bool readable = true;
  bool writable = true;
  // Sticky: the peer shut down its side (EPOLLRDHUP) or the socket failed (EPOLLHUP/ERR).
  // No further edge will come, so a short read/write must not clear the bits any more: the
  // FIN may have been reported before the read that returned the last bytes.
  bool hup = false;
  // The socket is registered with other threads' reactors too. An event that finds nobody
  // waiting on this thread then mutes the slot (the kernel stops reporting it here), so a
  // socket served elsewhere does not wake this thread for every message; the next wait on
  // this thread calls unmute() first.
  bool shared = false;
  bool muted = false;
  // The socket's reads, writes and readiness waits go through the thread's io_uring ring
  // (runtime_options::sockets = socket_io::io_uring): the fd left the epoll set
  // (reactor::hand_to_ring) and its readiness bits are not kept any more.
  bool ring = false;
  waiter* reader = nullptr;  // fiber parked until readable
  waiter* writer = nullptr;  // fiber parked until writable
  io_handler handler;        // set: events go to handler.fn (see io_handler), not to waiters
};

/// Something an I/O thread drives next to its reactor that delivers completions, not
/// readiness (an io_uring ring: lib/reactor/completion.hpp). Its first user makes it and
/// stores it in reactor::completions; it reports its completions through an fd registered in
/// the reactor with an io_handler. The I/O thread calls before_poll() right before every
/// reactor poll, so work queued by the fibers that just parked goes to the kernel in one
/// batch, and destroys it when its loop ends, once every fiber of the thread has ended.
struct completion_source {
  virtual ~completion_source() = default;
  /// Hands queued work to the kernel (e.g. io_uring_submit). Home thread.
  virtual void before_poll() noexcept = 0;
  /// True if the thread waits in this source instead of in the reactor (drive()): an io_uring
  /// ring that carries the thread's socket I/O.
  virtual bool drives() const noexcept { return false; }
  /// Submits queued work and waits up to `timeout` (negative: no limit) in the source itself,
  /// which watches the reactor's fd (reactor::native_handle) and polls the reactor without
  /// waiting when that fd has events. Returns the completions and fd events handled. Only
  /// called when drives(); the default is before_poll() and a reactor poll.
  virtual int drive(class reactor& r, clock::duration timeout) noexcept;
};

/// An I/O readiness reactor; one per I/O thread.
class reactor {
 public:
  virtual ~reactor() = default;
  /// The best backend for this machine (epoll on Linux).
  static std::unique_ptr<reactor> create();

  /// Registers `fd` once for read and write readiness. The fd must be non-blocking.
  virtual io_slot* open(int fd, std::error_code& ec) noexcept = 0;
  /// Registers `fd` like open(), its events going to `h` (see io_handler) instead of waiters.
  io_slot* open(int fd, io_handler h, std::error_code& ec) noexcept {
    io_slot* s = open(fd, ec);
    if (s != nullptr) s->handler = h;
    return s;
  }
  /// Deregisters the slot (it is reused later with a new generation). Waiters must have been
  /// fired by the caller. Does not close the fd.
  virtual void close(io_slot* slot) noexcept = 0;
  /// Removes `fd` from the kernel's interest set only. Any thread (the slot stays allocated
  /// until forget() on the owning thread; events already read for it are harmless).
  virtual void deregister(int fd) noexcept = 0;
  /// Frees a slot whose fd was deregister()ed. Waiters must have been fired by the caller.
  virtual void forget(io_slot* slot) noexcept = 0;
  /// Reports a muted slot's events again (owning thread). Edges were lost while it was muted,
  /// so its readiness bits are set: the caller retries its system call before it waits.
  virtual void unmute(io_slot* slot) noexcept = 0;
  /// Makes a blocking poll() return soon. Any thread; one syscall per burst of calls.
  virtual void wake() noexcept = 0;
  /// Waits up to `timeout` (negative: no limit; zero: just look) for readiness, marks slots
  /// ready and fires their waiters. Returns the number of fd events handled.
  virtual int poll(clock::duration timeout) noexcept = 0;
  /// True (once) if a poll since the last call consumed a wake(): the thread has cross-thread
  /// work queued for its scheduler loop (posted tasks, remote wakes).
  virtual bool take_wake() noexcept = 0;
  /// "epoll", "io_uring", ...
  virtual const char* name() const noexcept = 0;
  /// An fd that is readable while poll() has events to report (the epoll fd), so that a
  /// completion source that drives the thread can wait for it.
  virtual int native_handle() const noexcept = 0;
  /// True if the last poll() stopped at its batch limit: more events may be waiting, and no
  /// new readiness of native_handle() announces them.
  virtual bool more_pending() const noexcept = 0;
  /// Takes the slot's fd out of the kernel's interest set for good and marks the slot `ring`:
  /// its I/O completes on the thread's io_uring ring from now on (owning thread). The slot
  /// stays allocated (close() frees it). Waiters parked on its readiness are fired with
  /// wake_reason::ready: no readiness event will come for them any more.
  virtual void hand_to_ring(io_slot* slot) noexcept = 0;

  /// This thread's completion source (see completion_source), or nullptr until its first
  /// user makes one. Home thread only.
  std::unique_ptr<completion_source> completions;
};

inline int completion_source::drive(reactor& r, clock::duration timeout) noexcept {
  before_poll();
  return r.poll(timeout);
}

}  // namespace fibers::detail
