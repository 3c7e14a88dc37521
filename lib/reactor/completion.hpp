// lib/reactor/completion.hpp - the io_uring completion source: one ring per I/O thread, its
// completions reaped by the thread's reactor.
//
// Generic, not file-specific: a caller takes an SQE, prepares any operation on it and parks
// until that operation's CQE, getting the CQE's res. The file backend (lib/file/) is the first
// user; an io_uring socket backend can use the same calls.
//
// How it fits the reactor: the ring's eventfd (io_uring_register_eventfd) is registered in the
// thread's reactor with an io_handler, so every CQE the kernel posts makes the eventfd
// readable, and the reactor's poll calls the handler, which reaps all CQEs and fires the
// waiter each one's user_data points at (the same direct wake as a socket's). SQEs are not
// submitted one by one: they are batched until the thread is about to poll its reactor
// (completion_source::before_poll, called by the I/O thread), so 64 fibers that each queue a
// read and park cost one io_uring_enter, not 64 (see docs/DESIGN.md, "Files").
//
// When the runtime's sockets go through the ring (runtime_options::sockets), the ring is set
// up with IORING_SETUP_DEFER_TASKRUN and drives the thread instead: the loop waits in
// io_uring_enter, the reactor's epoll fd is watched by a multishot poll on the ring, and the
// epoll set is polled only when that poll reports events (drive()). There is no eventfd then.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <system_error>

#include "fibers/clock.hpp"
#include "reactor/reactor.hpp"

namespace fibers::detail {

struct waiter;
class io_thread;

/// One operation in a ring. Its SQE's user_data points at it, so it must stay where it is (on
/// the submitting fiber's stack) until its CQE has been reaped: uring::wait() does not return
/// before that, even when the wait is canceled or times out.
struct uring_op {
  waiter* w = nullptr;    // fired with wake_reason::ready when the CQE is reaped
  int res = 0;            // the CQE's res (>= 0, or -errno)
  std::uint32_t flags = 0;  // the CQE's flags
  bool done = false;      // the CQE has been reaped
};

/// An I/O thread's io_uring ring (see the file comment). Home thread only.
class uring final : public completion_source {
 public:
  /// The calling I/O thread's ring, set up on first use. Returns nullptr when io_uring is not
  /// usable on this thread (the set-up or its probe failed: seccomp, an old kernel, ENOMEM...);
  /// the failure is remembered, so later calls on the thread return nullptr at once.
  static uring* of(io_thread& t) noexcept;
  /// Sets up the calling I/O thread's ring to drive the thread (see the file comment) and
  /// returns it; nullptr when this kernel cannot (io_uring unusable, or no DEFER_TASKRUN:
  /// Linux < 6.1), and then the thread's ring, if any, is an ordinary one. Called once, by the
  /// I/O thread before its loop starts.
  static uring* start_driving(io_thread& t) noexcept;

  uring(const uring&) = delete;
  uring& operator=(const uring&) = delete;
  ~uring() override;

  /// True if this kernel supports `opcode` (IORING_OP_*), from the probe made at set-up.
  bool supports(int opcode) const noexcept {
    return probe_ != nullptr && io_uring_opcode_supported(probe_, opcode) != 0;
  }

  /// A fresh SQE to prepare. When the submission queue is full, what is queued is submitted
  /// first. nullptr only if the kernel accepts no more submissions right now.
  io_uring_sqe* sqe() noexcept;

  /// Parks the calling fiber until `op`'s CQE, whose SQE (prepared by the caller with
  /// io_uring_sqe_set_data(sqe, &op)) is the last one taken from sqe(). Returns the CQE's res.
  ///
  /// `until` and, when `cancelable`, cancellation and the fiber's inherited deadline limit the
  /// wait: when one of them ends it, the operation is canceled in the kernel
  /// (IORING_OP_ASYNC_CANCEL) and the fiber still waits, not cancelably, for the original
  /// operation's CQE, so the kernel never writes into memory the caller has given up. If the
  /// operation completed anyway, its res is returned (the work was done); if it was canceled,
  /// `ec` is set to std::errc::timed_out or fibers::errc::canceled and -ECANCELED returned.
  /// `what` and `fd` describe the wait in fibers::dump().
  int wait(uring_op& op, clock::time_point until, bool cancelable, const char* what, int fd,
           std::error_code& ec) noexcept;

  /// For a caller that parks on `op` itself (op.w set while it waits) and has given up on it:
  /// cancels it in the kernel and parks, not cancelably, until its CQE has been reaped. Then
  /// op.done is true and op.res is -ECANCELED or -EINTR if it was canceled, else its result.
  void cancel_and_wait(uring_op& op, int fd) noexcept;

  /// Counts an operation the caller queued itself (stats().ops).
  void count_op() noexcept { ++stats_.ops; }

  /// Submits the queued SQEs now (the batch is otherwise submitted before the next poll).
  void submit() noexcept;

  /// Submits the queued SQEs: called by the I/O thread right before each reactor poll.
  void before_poll() noexcept override { if (queued_ != 0) submit(); }

  bool drives() const noexcept override { return drive_; }
  int drive(class reactor& r, clock::duration timeout) noexcept override;

  /// For tests and benchmarks: operations submitted, io_uring_enter calls that submitted, and
  /// CQEs reaped, on this ring.
  struct counters {
    std::uint64_t ops = 0, submits = 0, reaped = 0;
  };
  counters stats() const noexcept { return stats_; }

 private:
  uring() = default;
  /// The thread's ring, made and set up (to drive the thread if `drive`) on first use;
  /// nullptr only when there was no memory for it. It may be unusable (usable_ false).
  static uring* ensure(io_thread& t, bool drive) noexcept;
  bool setup(io_thread& t, bool drive) noexcept;
  unsigned reap() noexcept;  // returns the CQEs reaped
  static void on_event(void* ctx, io_slot& slot, std::uint32_t events) noexcept;

  io_uring ring_{};
  bool ring_ok_ = false;
  bool usable_ = false;       // set up and probed
  bool drive_ = false;        // a DEFER_TASKRUN ring that the thread waits in (drive())
  bool epoll_armed_ = false;  // the multishot poll of the reactor's fd is in the kernel
  bool epoll_ready_ = false;  // reap() saw that poll fire: the reactor has events
  io_uring_probe* probe_ = nullptr;
  int efd_ = -1;
  io_slot* slot_ = nullptr;
  class reactor* reactor_ = nullptr;
  unsigned queued_ = 0;       // SQEs prepared but not yet submitted
  bool immediate_ = false;    // FIBERS_URING_SUBMIT=immediate: submit each SQE at once
  counters stats_;
};

}  // namespace fibers::detail
