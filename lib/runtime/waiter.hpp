// lib/runtime/waiter.hpp - parking a fiber and waking it exactly once.
//
// A waiter lives on the parked fiber's stack (no allocation per wait). Whoever wants to wake
// the fiber - the reactor, a timer, a canceller, another thread - calls fire(); the first
// caller wins (a CAS on `reason`) and schedules the fiber, the others do nothing. The fiber
// does not leave park() until the winner has scheduled it, so the winner may touch the waiter
// until then.
#pragma once

#include <atomic>
#include <cstdint>

#include <boost/fiber/context.hpp>

#include "fibers/clock.hpp"

namespace fibers::detail {

class io_thread;
struct fiber_state;

/// Why a parked fiber was resumed.
enum class wake_reason : std::uint8_t { none, ready, timeout, canceled, closed };

/// One park of one fiber. Construct it on the fiber that will park (it records the fiber's
/// context and I/O thread), publish its address where a waker will find it, then park().
struct waiter {
  waiter() noexcept;
  waiter(const waiter&) = delete;
  waiter& operator=(const waiter&) = delete;

  /// Claims the wake-up with `r` and schedules the fiber. Returns false if someone else
  /// already claimed it. Callable from any thread.
  bool fire(wake_reason r) noexcept;
  /// Claims the wake-up without scheduling; only for the parking fiber itself.
  bool claim(wake_reason r) noexcept;

  boost::fibers::context* ctx;
  io_thread* home;
  std::atomic<wake_reason> reason{wake_reason::none};
};

/// Parks the calling fiber until `w` is fired, `until` passes (wake_reason::timeout) or - when
/// `cancelable` - the fiber is canceled (wake_reason::canceled). The fiber's inherited deadline
/// also applies. Returns at once (without switching) if canceled or expired already.
wake_reason park(waiter& w, clock::time_point until, bool cancelable = true) noexcept;

/// The fibers::fiber state of the running fiber, or nullptr on a thread's main context, the
/// dispatcher, or a fiber not spawned by libfibers.
fiber_state* current_fiber_state() noexcept;

}  // namespace fibers::detail
