// fibers/detail/waiter.hpp - parking a fiber (or a plain thread) and waking it exactly once.
//
// A waiter lives on the waiting fiber's or thread's stack: no allocation per wait. Whoever
// wants to wake it - the reactor, a timer, a canceller, a primitive on another thread -
// first claim()s it (a CAS on `reason`: exactly one claimer wins), then schedule()s it. The
// waiter does not leave park() until it has been scheduled, so the claimer may touch it (and
// the wait_node that holds it) until it calls schedule(), and not after.
//
// Cross-thread primitives claim under their own lock, so a waiter that gave up (timeout,
// cancel) can never also be handed a value or a lock: the giver's claim fails and it moves on
// to the next waiter.
#pragma once

#include <atomic>
#include <cstdint>

#include "fibers/clock.hpp"

namespace fibers::detail {

class io_thread;

/// Why a parked fiber or thread was resumed.
enum class wake_reason : std::uint32_t { none, ready, timeout, canceled, closed };

/// One wait of one fiber (on a runtime thread) or one plain thread (anywhere else).
struct waiter {
  /// Records the calling fiber's context and I/O thread, or the plain thread.
  waiter() noexcept;
  waiter(const waiter&) = delete;
  waiter& operator=(const waiter&) = delete;

  /// Claims the wake-up with reason `r`; false if someone else claimed it first.
  bool claim(wake_reason r) noexcept {
    wake_reason expected = wake_reason::none;
    return reason.compare_exchange_strong(expected, r, std::memory_order_acq_rel,
                                          std::memory_order_acquire);
  }
  /// claim() for a waiter all of whose possible claimers run on one thread (as for a fiber
  /// that joins a fiber of its own I/O thread): a plain load and store, no locked instruction.
  bool claim_here(wake_reason r) noexcept {
    if (reason.load(std::memory_order_relaxed) != wake_reason::none) return false;
    reason.store(r, std::memory_order_release);
    return true;
  }
  /// Resumes the waiter. Only the successful claimer calls it, exactly once, and must not
  /// touch the waiter afterwards.
  void schedule() noexcept;
  /// claim() + schedule(). Callable from any thread.
  bool fire(wake_reason r) noexcept {
    if (!claim(r)) return false;
    schedule();
    return true;
  }

  void* ctx;        // the fiber's context (lib/runtime/context.hpp), or nullptr for a plain thread
  io_thread* home;  // the fiber's I/O thread, or nullptr for a plain thread
  std::atomic<wake_reason> reason{wake_reason::none};
  std::atomic<std::uint32_t> woken{0};  // plain threads: futex word set by schedule()
};

/// Parks the caller until `w` is fired, `until` passes (wake_reason::timeout) or - for a
/// fiber, when `cancelable` - the fiber is canceled (wake_reason::canceled) or its inherited
/// deadline passes (wake_reason::timeout). Non-cancelable waits ignore both. Returns at once (without switching) if canceled or
/// expired already. Plain threads block on a futex.
/// `what` (a string literal: "read", "sleep", "channel recv", ...) and `fd` describe the wait
/// in fibers::dump().
wake_reason park(waiter& w, clock::time_point until, bool cancelable = true,
                 const char* what = nullptr, int fd = -1) noexcept;

}  // namespace fibers::detail
