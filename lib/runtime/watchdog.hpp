// lib/runtime/watchdog.hpp - the blocked-thread detector of a runtime.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace fibers::detail {

class io_thread;

/// A thread that samples each I/O thread's progress counters; when one has neither switched
/// fibers nor waited in its reactor for `threshold`, it signals that thread, which records its
/// running fiber and backtrace, and prints the report to stderr (once per stall).
class watchdog {
 public:
  watchdog(std::vector<io_thread*> threads, std::chrono::milliseconds threshold);
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  ~watchdog();

  /// The threshold for a runtime asked for `requested` (negative: default/environment).
  static std::chrono::milliseconds resolve(std::chrono::milliseconds requested);

 private:
  void loop();
  void report(io_thread& t, std::chrono::milliseconds stalled);

  std::vector<io_thread*> threads_;
  std::chrono::milliseconds threshold_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace fibers::detail
