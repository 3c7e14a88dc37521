// fibers/detail/sync_time.hpp - std::chrono durations and time points of any clock, as absolute
// times on fibers::clock, for the timed waits of the sync primitives.
#pragma once

#include <chrono>
#include <type_traits>

#include "fibers/clock.hpp"

namespace fibers::detail {

/// `d` from now on fibers::clock. Zero or negative means now (the wait only checks); durations
/// too long for fibers::clock (e.g. hours::max()) mean never.
template <class Rep, class Period>
clock::time_point time_after(std::chrono::duration<Rep, Period> d) noexcept {
  using std::chrono::duration;
  if (d <= d.zero()) return clock::now();
  if (duration<double>(d) >= duration<double>(clock::duration::max()) / 2) {
    return clock::time_point::max();
  }
  return deadline::after(std::chrono::ceil<clock::duration>(d)).when();
}

/// `tp` as a fibers::clock time point. steady_clock time points convert exactly (rounded up);
/// other clocks (system_clock) by the distance from their now().
template <class Clock, class Duration>
clock::time_point time_on_clock(const std::chrono::time_point<Clock, Duration>& tp) noexcept {
  using std::chrono::duration;
  if constexpr (std::is_same_v<Clock, clock::time_point::clock>) {
    if (duration<double>(tp.time_since_epoch()) >= duration<double>(clock::duration::max())) {
      return clock::time_point::max();
    }
    return std::chrono::ceil<clock::duration>(tp);
  } else {
    if (tp == std::chrono::time_point<Clock, Duration>::max()) return clock::time_point::max();
    return time_after(tp - Clock::now());
  }
}

}  // namespace fibers::detail
