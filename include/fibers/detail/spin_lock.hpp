// fibers/detail/spin_lock.hpp - the lock inside channels, select and futures.
#pragma once

#include <sched.h>

#include <atomic>

namespace fibers::detail {

/// A test-and-test-and-set lock for critical sections of a few dozen instructions that never
/// park. Uncontended it costs one atomic exchange to lock and a release store to unlock (a
/// pthread mutex pays a read-modify-write on both, plus two calls: a third of an unbuffered
/// channel message in a profile). Contended, it spins briefly, then yields the OS thread, so
/// a holder that was preempted gets to run. Meets Lockable (std::unique_lock works).
class spin_lock {
 public:
  void lock() noexcept {
    if (!locked_.exchange(true, std::memory_order_acquire)) return;
    lock_contended();
  }
  bool try_lock() noexcept {
    return !locked_.load(std::memory_order_relaxed) && !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  void lock_contended() noexcept {
    unsigned spins = 0;
    do {
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins < 100) cpu_relax();
        else sched_yield();
      }
    } while (locked_.exchange(true, std::memory_order_acquire));
  }
  static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  std::atomic<bool> locked_{false};
};

}  // namespace fibers::detail
