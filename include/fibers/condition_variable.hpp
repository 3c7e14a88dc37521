// fibers/condition_variable.hpp - waiting for a condition guarded by a fibers::mutex.
#pragma once

#include "fibers/detail/config.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "fibers/clock.hpp"
#include "fibers/detail/sync_time.hpp"
#include "fibers/detail/wait_list.hpp"
#include "fibers/mutex.hpp"

namespace fibers {

/// A condition variable for fibers::mutex: wait() atomically releases the mutex and parks the
/// calling fiber (a plain thread blocks) until notified; notify_one/notify_all work from any
/// fiber or thread, with or without holding the mutex.
///
///     fibers::mutex m;
///     fibers::condition_variable cv;
///     std::deque<job> q;                          // guarded by m
///
///     // consumer (any fiber or thread)
///     std::unique_lock lk(m);
///     if (!cv.wait_for(lk, 5s, [&] { return !q.empty(); })) return;   // timed out
///     job j = std::move(q.front()); q.pop_front();
///
///     // producer
///     { std::lock_guard lk(m); q.push_back(j); }
///     cv.notify_one();
///
/// Waiters are woken in FIFO order. As with std::condition_variable, a wait may return without
/// a notification (use the predicate forms). Every wait re-acquires the mutex before it
/// returns or throws, including on timeout and cancellation.
///
/// Waits are cancellation points: a fiber canceled while it waits (or already canceled when it
/// waits) re-locks the mutex, then throws fibers::canceled. Plain threads cannot be canceled.
/// The fiber's inherited deadline (with_deadline / scope) also ends a wait: timed forms then
/// report a timeout, wait() throws std::system_error(std::errc::timed_out).
class condition_variable {
 public:
  /// A condition variable nobody waits on.
  condition_variable() noexcept = default;
  condition_variable(const condition_variable&) = delete;
  condition_variable& operator=(const condition_variable&) = delete;
  /// Aborts with a message if fibers or threads still wait on it.
  ~condition_variable();

  /// Wakes the longest-waiting waiter, if any.
  void notify_one() noexcept;
  /// Wakes every current waiter.
  void notify_all() noexcept;

  /// Releases `lk` (which must own its mutex), waits for a notification, re-locks. Throws
  /// fibers::canceled (with `lk` locked) if the fiber is canceled.
  void wait(std::unique_lock<mutex>& lk);
  /// Waits until `pred()` is true (checked with the mutex held). Throws fibers::canceled.
  template <class Pred>
  void wait(std::unique_lock<mutex>& lk, Pred pred) {
    while (!pred()) wait(lk);
  }

  /// Waits for a notification until `tp` (any std::chrono clock); std::cv_status::timeout if
  /// `tp` passed first. Throws fibers::canceled (with `lk` locked).
  template <class Clock, class Duration>
  std::cv_status wait_until(std::unique_lock<mutex>& lk,
                            const std::chrono::time_point<Clock, Duration>& tp) {
    return wait_until_impl(lk, detail::time_on_clock(tp));
  }
  /// wait_until with a fibers::deadline (a default deadline waits forever).
  std::cv_status wait_until(std::unique_lock<mutex>& lk, deadline dl) {
    return wait_until_impl(lk, dl.when());
  }
  /// Waits until `pred()` or `tp`; returns pred() (false: timed out with the predicate false).
  template <class Clock, class Duration, class Pred>
  bool wait_until(std::unique_lock<mutex>& lk, const std::chrono::time_point<Clock, Duration>& tp,
                  Pred pred) {
    return wait_pred(lk, detail::time_on_clock(tp), std::move(pred));
  }
  /// Predicate wait_until with a fibers::deadline.
  template <class Pred>
  bool wait_until(std::unique_lock<mutex>& lk, deadline dl, Pred pred) {
    return wait_pred(lk, dl.when(), std::move(pred));
  }
  /// Waits for a notification for at most `d`; std::cv_status::timeout if `d` passed first.
  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<mutex>& lk, std::chrono::duration<Rep, Period> d) {
    return wait_until_impl(lk, detail::time_after(d));
  }
  /// Waits until `pred()` for at most `d`; returns pred().
  template <class Rep, class Period, class Pred>
  bool wait_for(std::unique_lock<mutex>& lk, std::chrono::duration<Rep, Period> d, Pred pred) {
    return wait_pred(lk, detail::time_after(d), std::move(pred));
  }

 private:
  std::cv_status wait_until_impl(std::unique_lock<mutex>& lk, clock::time_point until);
  detail::wake_reason wait_core(std::unique_lock<mutex>& lk, clock::time_point until,
                                const char* misuse_message);
  template <class Pred>
  bool wait_pred(std::unique_lock<mutex>& lk, clock::time_point until, Pred pred) {
    while (!pred()) {
      if (wait_until_impl(lk, until) == std::cv_status::timeout) return pred();
    }
    return true;
  }

  std::mutex mu_;
  detail::wait_list waiters_;  // guarded by mu_
};

}  // namespace fibers
