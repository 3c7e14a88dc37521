// tests/heartbeat_fiber.hpp - a fiber that ticks every few milliseconds (5 unless told) and
// records the longest gap between ticks, to prove that something did not block (or hog) its
// I/O thread.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>

#include "fibers/fibers.hpp"

namespace fibers_test {

#if defined(__SANITIZE_THREAD__)
/// The longest heartbeat gap that still means "not blocked". ThreadSanitizer's runtime stops
/// every thread now and then (its periodic trace reset) and slows each step several times, so
/// under TSan the bound is looser; a real block (a syscall on the I/O thread) is far longer.
inline constexpr std::chrono::milliseconds stall_limit{250};
#else
/// The longest heartbeat gap that still means "not blocked".
inline constexpr std::chrono::milliseconds stall_limit{50};
#endif

/// Time the calling thread has spent runnable but waiting for a CPU (field 2 of
/// /proc/thread-self/schedstat). The gap subtracts it: the tests are about the library blocking
/// its thread, not about the OS giving the CPU to another process on a loaded 2-core machine.
/// Time blocked in a syscall or spent running still counts in full. Reads as zero where
/// schedstat is unavailable (then the raw gap is measured).
class run_delay_clock {
 public:
  run_delay_clock() : fd_(::open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC)) {}
  run_delay_clock(const run_delay_clock&) = delete;
  run_delay_clock& operator=(const run_delay_clock&) = delete;
  ~run_delay_clock() {
    if (fd_ >= 0) ::close(fd_);
  }
  std::chrono::nanoseconds now() const {
    char buf[128];
    ssize_t n = fd_ >= 0 ? ::pread(fd_, buf, sizeof buf - 1, 0) : -1;
    if (n <= 0) return {};
    buf[n] = '\0';
    unsigned long long on_cpu = 0, waiting = 0;
    if (std::sscanf(buf, "%llu %llu", &on_cpu, &waiting) != 2) return {};
    return std::chrono::nanoseconds(static_cast<std::int64_t>(waiting));
  }

 private:
  int fd_;
};

/// Spawns, on the calling fiber's I/O thread, a fiber that sleeps `period` (5 ms) in a loop and
/// records the longest gap between two ticks (less the time the thread waited for a CPU).
class heartbeat {
 public:
  explicit heartbeat(std::chrono::milliseconds period = std::chrono::milliseconds(5))
      : fiber_(fibers::spawn("heartbeat", [this, period] {
          run_delay_clock delay;  // opened here: it must read the I/O thread's counters
          auto last = fibers::clock::now();
          auto last_delay = delay.now();
          while (!stop_) {
            fibers::this_fiber::sleep_for(period);
            const auto now = fibers::clock::now();
            const auto d = delay.now();
            max_raw_gap_ = std::max(max_raw_gap_, now - last);
            max_gap_ = std::max(max_gap_, (now - last) - (d - last_delay));
            last = now;
            last_delay = d;
            ++ticks_;
          }
        })) {}
  heartbeat(const heartbeat&) = delete;
  heartbeat& operator=(const heartbeat&) = delete;
  ~heartbeat() { stop(); }

  /// Stops the fiber and waits for it.
  void stop() {
    stop_ = true;
    if (fiber_.joinable()) fiber_.join();
  }
  /// Ticks so far (read on the same I/O thread).
  long ticks() const { return ticks_; }
  /// The longest gap between ticks so far.
  std::chrono::milliseconds max_gap() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(max_gap_);
  }
  /// The same, without taking out the time the thread waited for a CPU.
  std::chrono::milliseconds max_raw_gap() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(max_raw_gap_);
  }

 private:
  bool stop_ = false;
  long ticks_ = 0;
  fibers::clock::duration max_gap_{0};
  fibers::clock::duration max_raw_gap_{0};
  fibers::fiber fiber_;
};

}  // namespace fibers_test
