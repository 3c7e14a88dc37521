// lib/runtime/timer_heap.hpp - the per-thread deadline heap (sleeps and per-call deadlines).
//
// Timer nodes live on the waiting fiber's stack (a fiber's deadline timer in its fiber_state,
// kept armed between parks: waiter.cpp); each knows its heap index, so removing or moving a
// timer costs O(log n) and no search or allocation beyond the heap's vector.
#pragma once

#include <cstddef>
#include <limits>
#include <vector>

#include "fibers/clock.hpp"

namespace fibers::detail {

struct waiter;

/// One armed deadline.
struct timer {
  static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();
  clock::time_point when;
  waiter* w = nullptr;
  // Set: the thread calls expire(*this) when the timer is due, instead of firing `w`. For
  // deadlines the library keeps itself (the resolver's c-ares timeouts, lib/dns/channel.cpp);
  // it runs on the loop or inside a fast park, must not park, and may push timers again.
  void (*expire)(timer&) noexcept = nullptr;
  std::size_t index = npos;  // position in the heap, npos when not armed
  bool armed() const noexcept { return index != npos; }
};

/// A binary min-heap of timers ordered by `when`.
class timer_heap {
 public:
  bool empty() const noexcept { return heap_.empty(); }
  std::size_t size() const noexcept { return heap_.size(); }
  /// Earliest deadline, or time_point::max() when empty.
  clock::time_point next() const noexcept {
    return heap_.empty() ? clock::time_point::max() : heap_.front()->when;
  }
  void push(timer& t);
  void erase(timer& t) noexcept;
  /// Removes and returns the earliest timer if it is due at `now`, else nullptr.
  timer* pop_due(clock::time_point now) noexcept;

 private:
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;
  void place(std::size_t i, timer* t) noexcept {
    heap_[i] = t;
    t->index = i;
  }
  std::vector<timer*> heap_;
};

}  // namespace fibers::detail
