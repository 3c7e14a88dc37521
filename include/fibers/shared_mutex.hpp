// fibers/shared_mutex.hpp - a fair reader-writer lock for fibers and plain threads.
#pragma once

#include "fibers/detail/config.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "fibers/clock.hpp"
#include "fibers/detail/sync_time.hpp"
#include "fibers/detail/wait_list.hpp"

namespace fibers {

/// A reader-writer lock: many holders of the shared lock at once, or one holder of the
/// exclusive lock. Waits park only the calling fiber (a plain thread blocks). Satisfies
/// SharedTimedLockable: std::shared_lock, std::unique_lock and std::lock_guard work.
///
///     fibers::shared_mutex m;
///     std::map<std::string, route> table;           // guarded by m
///
///     { std::shared_lock lk(m); use(table.at(k)); } // readers run concurrently
///     { std::lock_guard lk(m); table[k] = r; }      // a writer runs alone
///
/// Fair (phase-fair FIFO): requests are served in arrival order. While anyone waits, newcomers
/// queue too, so a steady stream of readers cannot starve a writer: readers that arrive after
/// a waiting writer go in after it. When a writer leaves, every reader queued before the next
/// writer is let in at once, as a batch; ownership is handed over directly, as by
/// fibers::mutex.
///
/// Waits are cancellation points: a fiber canceled while it waits (or already canceled when it
/// would have to wait) throws fibers::canceled and gets no lock. Plain threads cannot be
/// canceled. The fiber's inherited deadline (with_deadline / scope) also ends a wait: lock()
/// and lock_shared() then throw std::system_error(std::errc::timed_out), timed forms return
/// false. Not recursive, no upgrades. Unlocking a lock that is not held aborts with a message.
class shared_mutex {
 public:
  /// An unlocked shared_mutex.
  shared_mutex() noexcept = default;
  shared_mutex(const shared_mutex&) = delete;
  shared_mutex& operator=(const shared_mutex&) = delete;
  /// Aborts with a message if fibers or threads still wait for it.
  ~shared_mutex();

  /// Takes the exclusive lock, waiting (FIFO) as long as needed. Throws fibers::canceled.
  void lock();
  /// Takes the exclusive lock if nobody holds or waits for the lock; never waits.
  bool try_lock() noexcept;
  /// Releases the exclusive lock; aborts if it is not held exclusively.
  void unlock() noexcept;
  /// Takes the exclusive lock unless `tp` (any std::chrono clock) passes first; true if taken.
  /// Throws fibers::canceled.
  template <class Clock, class Duration>
  bool lock_until(const std::chrono::time_point<Clock, Duration>& tp) {
    return lock_until_impl(detail::time_on_clock(tp), exclusive);
  }
  /// lock_until with a fibers::deadline (a default deadline waits forever).
  bool lock_until(deadline dl) { return lock_until_impl(dl.when(), exclusive); }
  /// Takes the exclusive lock unless `d` passes first; true if taken. Throws fibers::canceled.
  template <class Rep, class Period>
  bool lock_for(std::chrono::duration<Rep, Period> d) {
    return lock_until_impl(detail::time_after(d), exclusive);
  }
  /// TimedLockable spelling of lock_until.
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& tp) {
    return lock_until(tp);
  }
  /// TimedLockable spelling of lock_for.
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> d) {
    return lock_for(d);
  }

  /// Takes a shared lock, waiting (FIFO) as long as needed. Throws fibers::canceled.
  void lock_shared();
  /// Takes a shared lock if no writer holds or waits for the lock; never waits.
  bool try_lock_shared() noexcept;
  /// Releases a shared lock; aborts if no shared lock is held.
  void unlock_shared() noexcept;
  /// Takes a shared lock unless `tp` (any std::chrono clock) passes first; true if taken.
  /// Throws fibers::canceled.
  template <class Clock, class Duration>
  bool lock_shared_until(const std::chrono::time_point<Clock, Duration>& tp) {
    return lock_until_impl(detail::time_on_clock(tp), shared);
  }
  /// lock_shared_until with a fibers::deadline (a default deadline waits forever).
  bool lock_shared_until(deadline dl) { return lock_until_impl(dl.when(), shared); }
  /// Takes a shared lock unless `d` passes first; true if taken. Throws fibers::canceled.
  template <class Rep, class Period>
  bool lock_shared_for(std::chrono::duration<Rep, Period> d) {
    return lock_until_impl(detail::time_after(d), shared);
  }
  /// SharedTimedLockable spelling of lock_shared_until (for std::shared_lock(m, tp)).
  template <class Clock, class Duration>
  bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration>& tp) {
    return lock_shared_until(tp);
  }
  /// SharedTimedLockable spelling of lock_shared_for (for std::shared_lock(m, d)).
  template <class Rep, class Period>
  bool try_lock_shared_for(std::chrono::duration<Rep, Period> d) {
    return lock_shared_for(d);
  }

 private:
  enum kind : std::size_t { exclusive = 0, shared = 1 };  // a wait_node's tag
  bool try_fast(kind k) noexcept;
  // The slow path of every lock: under mu_, enters or queues and waits.
  detail::wake_reason lock_slow(kind k, clock::time_point until);
  bool lock_until_impl(clock::time_point until, kind k);
  // Under mu_, with `state` the frozen value of state_:
  bool can_enter_now(kind k, std::uint64_t state) noexcept;
  void drop_abandoned_front() noexcept;
  void grant(std::uint64_t& state, detail::wake_batch& wake) noexcept;

  // Bit 1: a writer holds the lock; bits 2 and up: number of readers holding it; bit 0:
  // waiters may be queued, fast paths off. See the gated state word in
  // lib/sync/wait_helpers.hpp.
  std::atomic<std::uint64_t> state_{0};
  std::mutex mu_;              // guards waiters_ and the slow paths
  detail::wait_list waiters_;  // FIFO of readers and writers
};

}  // namespace fibers
