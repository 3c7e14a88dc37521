// fibers/wait_group.hpp - waiting for a group of fibers or tasks to finish (Go's sync.WaitGroup).
#pragma once

#include "fibers/detail/config.hpp"

#include <chrono>
#include <cstddef>
#include <mutex>

#include "fibers/clock.hpp"
#include "fibers/detail/sync_time.hpp"
#include "fibers/detail/wait_list.hpp"

namespace fibers {

/// A counter of outstanding work: add() before starting each piece, done() when it finishes,
/// wait() until the counter is back at zero. Unlike a latch it can be reused: the counter may
/// go up again after reaching zero. wait() parks only the calling fiber (a plain thread
/// blocks); add() and done() work from any fiber or thread.
///
///     fibers::wait_group wg;
///     for (auto& url : urls) {
///       wg.add();
///       rt.post([&, url] { fetch(url); wg.done(); }, next_thread());
///     }
///     wg.wait();                           // every fetch has called done()
///
/// Waits are cancellation points: a fiber canceled while it waits (or already canceled when it
/// would have to wait) throws fibers::canceled; the group is unaffected. Plain threads cannot
/// be canceled. The fiber's inherited deadline (with_deadline / scope) also ends a wait: wait()
/// then throws std::system_error(std::errc::timed_out), timed forms return false.
///
/// Errors: a bad constructor argument throws std::invalid_argument; misuse of a group in use
/// (done() more often than add() counted, destruction while fibers wait) aborts with a message
/// naming the call and the rule, since the group's count would no longer mean anything.
class wait_group {
 public:
  /// A group with `initial` outstanding pieces of work. Throws std::invalid_argument if
  /// `initial` is negative.
  explicit wait_group(std::ptrdiff_t initial = 0);
  wait_group(const wait_group&) = delete;
  wait_group& operator=(const wait_group&) = delete;
  /// Aborts with a message if fibers or threads still wait on it.
  ~wait_group();

  /// Adds `n` to the counter (n may be negative, as in Go); at zero, wakes every waiter.
  /// Taking the counter below zero aborts: "fibers::wait_group::add(-3): counter would go
  /// negative (-1)".
  void add(std::ptrdiff_t n = 1) noexcept;
  /// Marks one piece of work finished (add(-1)). Called more often than counted, it aborts:
  /// "fibers::wait_group::done(): counter would go negative (-1)".
  void done() noexcept;
  /// Waits until the counter is zero. Throws fibers::canceled.
  void wait() const;
  /// Waits until the counter is zero or `tp` (any std::chrono clock) passes; true if zero.
  /// Throws fibers::canceled.
  template <class Clock, class Duration>
  bool wait_until(const std::chrono::time_point<Clock, Duration>& tp) const {
    return wait_until_impl(detail::time_on_clock(tp));
  }
  /// wait_until with a fibers::deadline (a default deadline waits forever).
  bool wait_until(deadline dl) const { return wait_until_impl(dl.when()); }
  /// Waits until the counter is zero or `d` passes; true if zero. Throws fibers::canceled.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) const {
    return wait_until_impl(detail::time_after(d));
  }

 private:
  void add_checked(std::ptrdiff_t n, const char* call) noexcept;
  bool wait_until_impl(clock::time_point until) const;

  mutable std::mutex mu_;
  std::ptrdiff_t count_;               // guarded by mu_
  mutable detail::wait_list waiters_;  // guarded by mu_
};

}  // namespace fibers
