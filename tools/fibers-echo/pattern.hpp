// tools/fibers-echo/pattern.hpp - the load client's payload: different for every connection
// and every round-trip, so a byte echoed from the wrong place or the wrong message is caught.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace fibers_echo {

/// splitmix64: a fast, well-mixed 64-bit step.
inline std::uint64_t mix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// Fills `out` with the pattern of round-trip `iteration` on connection `conn`.
inline void fill_pattern(std::span<unsigned char> out, std::uint64_t conn,
                         std::uint64_t iteration) noexcept {
  std::uint64_t state = (conn << 40) ^ iteration;
  std::size_t i = 0;
  for (; i + sizeof(std::uint64_t) <= out.size(); i += sizeof(std::uint64_t)) {
    std::uint64_t word = mix64(state);
    std::memcpy(out.data() + i, &word, sizeof word);
  }
  if (i < out.size()) {
    std::uint64_t word = mix64(state);
    std::memcpy(out.data() + i, &word, out.size() - i);
  }
}

}  // namespace fibers_echo
