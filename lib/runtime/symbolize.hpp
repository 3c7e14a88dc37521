// lib/runtime/symbolize.hpp - backtraces: walking a fiber's frame pointers, and turning a code
// address into "0x... function (library)".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace fibers::detail {

/// The address, its demangled function name when dladdr knows it (exported symbols: link
/// executables with -rdynamic) and the object it lies in.
std::string symbolize(void* pc);

/// Collects up to `max` return addresses by walking saved frame pointers from `fp`, staying
/// inside the stack [lo, hi): frames of code built without frame pointers end the walk instead
/// of leading it astray. Only reads memory: async-signal-safe (the watchdog's handler uses it).
/// Returns how many addresses it stored in `out`.
inline int walk_frame_pointers(const void* fp, const void* lo, const void* hi, void** out,
                               int max) noexcept {
  auto f = reinterpret_cast<std::uintptr_t>(fp);
  const auto low = reinterpret_cast<std::uintptr_t>(lo);
  const auto high = reinterpret_cast<std::uintptr_t>(hi);
  int n = 0;
  while (n < max && f >= low && f + 2 * sizeof(void*) <= high && f % sizeof(void*) == 0) {
    const auto* frame = reinterpret_cast<const std::uintptr_t*>(f);
    if (frame[1] == 0) break;
    out[n++] = reinterpret_cast<void*>(frame[1]);
    if (frame[0] <= f) break;  // frames lie at higher addresses as the walk goes out
    f = frame[0];
  }
  return n;
}

}  // namespace fibers::detail
