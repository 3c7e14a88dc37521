// lib/runtime/clock.cpp - the runtime's one clock (DESIGN.md "One clock").
#include "fibers/clock.hpp"

namespace fibers {

clock::time_point clock::now() noexcept {
  return std::chrono::time_point_cast<duration>(std::chrono::steady_clock::now());
}

deadline deadline::after(clock::duration d) noexcept {
  const auto now = clock::now();
  if (d >= clock::time_point::max() - now) return never();
  return at(now + d);
}

}  // namespace fibers
