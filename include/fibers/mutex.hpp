// fibers/mutex.hpp - a fair mutual-exclusion lock for fibers and plain threads.
#pragma once

#include "fibers/detail/config.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

#include "fibers/clock.hpp"
#include "fibers/detail/sync_time.hpp"
#include "fibers/detail/wait_list.hpp"

namespace fibers {

class condition_variable;

/// A mutex whose lock() parks only the calling fiber (a plain thread blocks), so fibers on any
/// I/O thread and plain threads can share it without stalling an I/O thread.
///
/// Fair: waiters are served in FIFO order, and unlock() hands ownership directly to the first
/// waiter, so a fiber (on any thread) that re-locks in a tight loop cannot starve the others -
/// it queues behind them. Satisfies Lockable and TimedLockable: std::lock_guard,
/// std::unique_lock and std::scoped_lock work.
///
///     fibers::mutex m;
///     std::size_t hits = 0;                // guarded by m
///     ...
///     {
///       std::lock_guard lk(m);             // from any fiber or thread
///       ++hits;
///     }
///     if (m.lock_for(50ms)) { ...; m.unlock(); }
///
/// Waits are cancellation points: a fiber canceled while it waits (or already canceled when it
/// would have to wait) throws fibers::canceled and does not get the lock. Plain threads cannot
/// be canceled. The calling fiber's inherited deadline (with_deadline / scope) applies to
/// every wait: lock() then throws std::system_error(std::errc::timed_out), timed forms return
/// false. Not recursive. Unlocking a mutex that is not locked aborts with a message.
class mutex {
 public:
  /// An unlocked mutex.
  mutex() noexcept = default;
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;
  /// Aborts with a message if fibers or threads still wait for the mutex.
  ~mutex();

  /// Takes the lock, waiting (FIFO) as long as needed. Throws fibers::canceled if the fiber
  /// is canceled while it waits.
  void lock();
  /// Takes the lock if it is free right now; never waits.
  bool try_lock() noexcept;
  /// Releases the lock, handing it to the first waiter if there is one. Any fiber or thread
  /// may unlock (no owner tracking); unlocking a mutex that is not locked aborts.
  void unlock() noexcept;

  /// Takes the lock unless `tp` (of any std::chrono clock) passes first; true if taken.
  /// Throws fibers::canceled if the fiber is canceled while it waits.
  template <class Clock, class Duration>
  bool lock_until(const std::chrono::time_point<Clock, Duration>& tp) {
    return lock_until_impl(detail::time_on_clock(tp));
  }
  /// Takes the lock unless the deadline passes first (a default deadline waits forever).
  bool lock_until(deadline dl) { return lock_until_impl(dl.when()); }
  /// Takes the lock unless `d` passes first; true if taken. Throws fibers::canceled.
  template <class Rep, class Period>
  bool lock_for(std::chrono::duration<Rep, Period> d) {
    return lock_until_impl(detail::time_after(d));
  }
  /// TimedLockable spelling of lock_until (for std::unique_lock(m, tp)).
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& tp) {
    return lock_until(tp);
  }
  /// TimedLockable spelling of lock_for (for std::unique_lock(m, d)).
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> d) {
    return lock_for(d);
  }

 private:
  friend class condition_variable;
  bool lock_until_impl(clock::time_point until);
  // The slow path of every lock: under mu_, takes the mutex or queues and waits.
  detail::wake_reason lock_slow(clock::time_point until, bool cancelable);
  // Takes the lock ignoring cancellation (condition_variable must re-lock before it throws).
  void lock_uncancelable() noexcept;

  // Bit 1: locked (stays set across a handoff); bit 0: waiters may be queued, fast paths off.
  // See the gated state word in lib/sync/wait_helpers.hpp.
  std::atomic<std::uint64_t> state_{0};
  std::mutex mu_;               // guards waiters_ and the slow paths
  detail::wait_list waiters_;
};

}  // namespace fibers
