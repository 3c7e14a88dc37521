// fibers/latch.hpp - a single-use countdown that fibers and threads wait on.
#pragma once

#include "fibers/detail/config.hpp"

#include <chrono>
#include <cstddef>
#include <mutex>

#include "fibers/clock.hpp"
#include "fibers/detail/sync_time.hpp"
#include "fibers/detail/wait_list.hpp"

namespace fibers {

/// A downward counter that opens once, when it reaches zero (std::latch for fibers). wait()
/// parks only the calling fiber (a plain thread blocks) until then; count_down() works from any
/// fiber or thread.
///
///     fibers::latch ready(3);
///     for (int i = 0; i < 3; ++i)
///       rt.post([&] { warm_up(); ready.count_down(); }, i);
///     ready.wait();                        // all three warmed up
///
/// Waits are cancellation points: a fiber canceled while it waits (or already canceled when it
/// would have to wait) throws fibers::canceled; the latch is unaffected. Plain threads cannot
/// be canceled. The fiber's inherited deadline (with_deadline / scope) also ends a wait: wait()
/// then throws std::system_error(std::errc::timed_out), timed forms return false.
///
/// Errors: a bad constructor argument throws std::invalid_argument; misuse of a latch in use
/// (counting it below zero, destruction while fibers wait) aborts with a message naming the
/// call and the rule, since the waiters' view of the count would be wrong.
class latch {
 public:
  /// A latch that opens after `expected` count-downs. Throws std::invalid_argument if
  /// `expected` is negative.
  explicit latch(std::ptrdiff_t expected);
  latch(const latch&) = delete;
  latch& operator=(const latch&) = delete;
  /// Aborts with a message if fibers or threads still wait on it.
  ~latch();

  /// Decrements the counter by `n`; at zero, wakes every waiter. Aborts if `n` is negative or
  /// larger than the counter: "fibers::latch::count_down(2): counter would go negative (-1)".
  void count_down(std::ptrdiff_t n = 1) noexcept;
  /// True if the counter has reached zero; never waits.
  bool try_wait() const noexcept;
  /// Waits until the counter reaches zero. Throws fibers::canceled.
  void wait() const;
  /// Waits until the counter reaches zero or `tp` (any std::chrono clock) passes; true if it
  /// reached zero. Throws fibers::canceled.
  template <class Clock, class Duration>
  bool wait_until(const std::chrono::time_point<Clock, Duration>& tp) const {
    return wait_until_impl(detail::time_on_clock(tp));
  }
  /// wait_until with a fibers::deadline (a default deadline waits forever).
  bool wait_until(deadline dl) const { return wait_until_impl(dl.when()); }
  /// Waits until the counter reaches zero or `d` passes; true if it reached zero.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) const {
    return wait_until_impl(detail::time_after(d));
  }
  /// count_down(n), then wait(). Throws fibers::canceled (after counting down).
  void arrive_and_wait(std::ptrdiff_t n = 1);

 private:
  bool wait_until_impl(clock::time_point until) const;

  mutable std::mutex mu_;
  std::ptrdiff_t count_;               // guarded by mu_
  mutable detail::wait_list waiters_;  // guarded by mu_
};

}  // namespace fibers
