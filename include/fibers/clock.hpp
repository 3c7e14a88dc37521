// fibers/clock.hpp - the runtime's one clock and the deadline type every waiting call takes.
#pragma once

#include "fibers/detail/config.hpp"

#include <chrono>

namespace fibers {

/// The clock every deadline, sleep and reactor timeout in libfibers is measured on.
/// All library code reads time through clock::now() (never steady_clock directly), so a
/// virtual-time test clock can later replace it in one place.
struct clock {
  /// The std::chrono Clock requirements: nanosecond ticks on std::chrono::steady_clock.
  ///@{
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<std::chrono::steady_clock, duration>;
  static constexpr bool is_steady = true;
  ///@}
  /// Current time of the runtime clock (monotonic).
  static time_point now() noexcept;
};

/// A point in time after which a waiting operation gives up with std::errc::timed_out.
///
/// A default-constructed deadline means "not given here": the operation uses the object's
/// default timeout (e.g. stream_socket::set_timeout), if any. The calling fiber's inherited
/// deadline (with_deadline / scope) always applies as well; the earlier one wins.
///
///     sock.read_some(buf, fibers::deadline::after(500ms));
///     sock.read_some(buf, 500ms);                        // same thing
class deadline {
 public:
  /// No deadline given: inherit the object's default timeout.
  constexpr deadline() noexcept = default;
  /// The deadline `d` from now (a duration converts implicitly).
  template <class Rep, class Period>
  deadline(std::chrono::duration<Rep, Period> d) noexcept  // NOLINT: implicit by design
      : deadline(after(std::chrono::duration_cast<clock::duration>(d))) {}
  /// An absolute deadline on the runtime clock.
  static deadline at(clock::time_point tp) noexcept { return deadline(tp); }
  /// The deadline `d` from now.
  static deadline after(clock::duration d) noexcept;
  /// Explicitly no deadline (ignores the object's default timeout).
  static deadline never() noexcept { return deadline(clock::time_point::max()); }
  /// True if a deadline was given (including never()).
  constexpr bool is_set() const noexcept { return set_; }
  /// The absolute time; clock::time_point::max() for never().
  constexpr clock::time_point when() const noexcept { return tp_; }

 private:
  explicit constexpr deadline(clock::time_point tp) noexcept : tp_(tp), set_(true) {}
  clock::time_point tp_ = clock::time_point::max();
  bool set_ = false;
};

}  // namespace fibers
