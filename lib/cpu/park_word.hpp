// lib/cpu/park_word.hpp - a 32-bit word a thread sleeps on until another thread changes it
// (Linux futex; std::atomic::wait elsewhere).
#pragma once

#include <atomic>
#include <cstdint>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace fibers::cpu::detail {

/// Sleeps while `word` holds `expected` (may return spuriously: callers loop).
inline void park_on(std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
#if defined(__linux__)
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected,
            nullptr, nullptr, 0);
#else
  word.wait(expected, std::memory_order_acquire);
#endif
}

/// Wakes one thread sleeping on `word` (after the caller changed it).
inline void unpark_one(std::atomic<std::uint32_t>& word) noexcept {
#if defined(__linux__)
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, 1, nullptr,
            nullptr, 0);
#else
  word.notify_one();
#endif
}

#if defined(__SANITIZE_THREAD__)
#define FIBERS_CPU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FIBERS_CPU_TSAN 1
#endif
#endif

/// A store-load barrier for the two sides of a store-buffering (Dekker) handshake: a seq_cst
/// fence. ThreadSanitizer does not model fences (GCC warns, -Wtsan), so under TSan both sides
/// instead do an acq_rel read-modify-write of the same shared word `sync`: those are totally
/// ordered, and whichever comes second sees everything the other side wrote before its own.
inline void store_load_barrier([[maybe_unused]] std::atomic<std::uint32_t>& sync) noexcept {
#if defined(FIBERS_CPU_TSAN)
  sync.fetch_add(0, std::memory_order_acq_rel);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

/// A short pause for spin loops.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace fibers::cpu::detail
