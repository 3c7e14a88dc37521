// fibers/semaphore.hpp - a counting semaphore for fibers and plain threads.
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

/// A counting semaphore: a pool of permits that acquire() takes one at a time and release()
/// returns. acquire() parks only the calling fiber (a plain thread blocks). Typical use: cap
/// how many fibers do something at once (connections to a backend, files open, ...).
///
///     fibers::semaphore slots(8);          // at most 8 requests in flight
///     ...
///     slots.acquire();                     // from any fiber or thread
///     auto reply = backend.call(req);
///     slots.release();
///
/// Fair: waiters are served in FIFO order and release() hands each permit directly to the
/// first waiter, so a permit released while fibers wait can never be grabbed by a newcomer.
///
/// Waits are cancellation points: a fiber canceled while it waits (or already canceled when it
/// would have to wait) throws fibers::canceled and takes no permit. Plain threads cannot be
/// canceled. The fiber's inherited deadline (with_deadline / scope) also ends a wait:
/// acquire() then throws std::system_error(std::errc::timed_out), timed forms return false.
///
/// Errors: a bad constructor argument throws std::invalid_argument; misuse of a semaphore in
/// use (release() of a negative count, destruction while fibers wait) aborts with a message
/// naming the call and the rule, since other fibers and threads rely on its state.
class semaphore {
 public:
  /// A semaphore holding `initial` permits. Throws std::invalid_argument if `initial` is
  /// negative.
  explicit semaphore(std::ptrdiff_t initial = 0);
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;
  /// Aborts with a message if fibers or threads still wait on it.
  ~semaphore();

  /// Takes one permit, waiting (FIFO) until one is available. Throws fibers::canceled.
  void acquire();
  /// Takes one permit if one is available right now; never waits.
  bool try_acquire() noexcept;
  /// Takes one permit unless `tp` (any std::chrono clock) passes first; true if taken.
  /// Throws fibers::canceled.
  template <class Clock, class Duration>
  bool acquire_until(const std::chrono::time_point<Clock, Duration>& tp) {
    return acquire_until_impl(detail::time_on_clock(tp));
  }
  /// acquire_until with a fibers::deadline (a default deadline waits forever).
  bool acquire_until(deadline dl) { return acquire_until_impl(dl.when()); }
  /// Takes one permit unless `d` passes first; true if taken. Throws fibers::canceled.
  template <class Rep, class Period>
  bool acquire_for(std::chrono::duration<Rep, Period> d) {
    return acquire_until_impl(detail::time_after(d));
  }
  /// std::counting_semaphore spelling of acquire_until.
  template <class Clock, class Duration>
  bool try_acquire_until(const std::chrono::time_point<Clock, Duration>& tp) {
    return acquire_until(tp);
  }
  /// std::counting_semaphore spelling of acquire_for.
  template <class Rep, class Period>
  bool try_acquire_for(std::chrono::duration<Rep, Period> d) {
    return acquire_for(d);
  }
  /// Returns `n` permits, handing them to waiters first, oldest first. A negative `n` aborts:
  /// "fibers::semaphore::release(-1): n must not be negative".
  void release(std::ptrdiff_t n = 1) noexcept;
  /// Permits available right now (a snapshot: others may take or return permits at once).
  std::ptrdiff_t available() const noexcept;

 private:
  bool acquire_until_impl(clock::time_point until);
  // The slow path of every acquire: under mu_, takes a permit or queues and waits.
  detail::wake_reason acquire_slow(clock::time_point until);

  // Permits in bits 1 and up; bit 0: waiters may be queued, fast paths off. Permits are > 0
  // only while no claimable waiter is queued. See the gated state word in
  // lib/sync/wait_helpers.hpp.
  std::atomic<std::uint64_t> state_;
  std::mutex mu_;              // guards waiters_ and the slow paths
  detail::wait_list waiters_;
};

}  // namespace fibers
