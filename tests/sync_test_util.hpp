// tests/sync_test_util.hpp - helpers shared by the tests of the sync primitives (mutex,
// shared_mutex, condition_variable, semaphore, latch, wait_group).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "fibers/fibers.hpp"
#include "fibers/future.hpp"

namespace fibers_test {

using namespace std::chrono_literals;

/// Counts finished tasks (fibers or plain threads) so that a plain thread can wait for all of
/// them with a bound: a deadlock becomes a test failure instead of a hang. Deliberately built
/// on std:: primitives, not on the libfibers primitives under test.
class completion {
 public:
  explicit completion(int expected) : left_(expected) {}
  /// One task finished. Any thread.
  void done() {
    std::lock_guard lk(mu_);
    if (--left_ == 0) cv_.notify_all();
  }
  /// Waits (blocking: only from plain threads) until every task has finished or `limit`
  /// passed; true if all finished.
  bool wait(std::chrono::seconds limit = 60s) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, limit, [this] { return left_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int left_;
};

/// Posts `per_thread` fibers to every I/O thread of `rt`, each running body(thread, i), and
/// starts `plain` plain threads running body(rt.io_threads() + k, 0). Waits (from the calling
/// plain thread) until all have finished; if they do not within a minute, the test fails and
/// the process ends (the tasks still use the caller's state). An exception escaping `body`
/// fails the test.
inline void run_everywhere(fibers::runtime& rt, int per_thread, int plain,
                           const std::function<void(std::size_t, int)>& body) {
  const std::size_t n = rt.io_threads();
  completion all(static_cast<int>(n) * per_thread + plain);
  auto guarded = [&all, &body](std::size_t t, int i) {
    try {
      body(t, i);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "task " << t << "/" << i << " threw: " << e.what();
    }
    all.done();
  };
  for (std::size_t t = 0; t < n; ++t) {
    for (int i = 0; i < per_thread; ++i) rt.post([&guarded, t, i] { guarded(t, i); }, t);
  }
  std::vector<std::thread> threads;
  for (int k = 0; k < plain; ++k) threads.emplace_back([&guarded, n, k] { guarded(n + k, 0); });
  if (!all.wait()) {
    ADD_FAILURE() << "tasks did not finish within a minute (deadlock or lost wake-up?)";
    for (auto& t : threads) t.detach();  // blocked for good: cannot join
    std::terminate();  // the tasks still use this frame's state
  }
  for (auto& t : threads) t.join();
}

/// Sleeps the calling fiber, or the calling plain thread.
inline void pause(std::chrono::milliseconds d) {
  if (fibers::runtime::current() != nullptr) fibers::this_fiber::sleep_for(d);
  else std::this_thread::sleep_for(d);
}

/// Runs `body` in a fiber on I/O thread `thread` of `rt`, lets it run (and block) for a moment,
/// cancels it from the caller (a fiber on another I/O thread, or a plain thread), and returns
/// true if the fiber ended by throwing fibers::canceled. Waits at most 30 s for that end.
template <class F>
bool cancel_on_thread(fibers::runtime& rt, std::size_t thread, F body) {
  fibers::promise<void> started;
  fibers::promise<void> cancel_sent;
  fibers::promise<bool> outcome;
  auto started_f = started.get_future();
  auto cancel_sent_f = cancel_sent.get_future();
  auto outcome_f = outcome.get_future();
  std::atomic<fibers::fiber*> handle{nullptr};
  rt.post(
      [&] {
        // The child runs only once this coordinator parks, after `handle` is published.
        fibers::fiber child = fibers::spawn([&] {
          started.set_value();
          body();
        });
        handle = &child;
        cancel_sent_f.wait();
        bool was_canceled = false;
        try {
          child.join();
        } catch (const fibers::canceled&) {
          was_canceled = true;
        } catch (const std::exception& e) {
          ADD_FAILURE() << "the canceled fiber threw something else: " << e.what();
        }
        outcome.set_value(was_canceled);
      },
      thread);
  started_f.wait();
  pause(20ms);  // let it reach its wait (if not, cancel still hits its next wait)
  handle.load()->cancel();
  cancel_sent.set_value();
  if (!outcome_f.wait_for(30s)) {
    ADD_FAILURE() << "the canceled fiber did not end within 30 s";
    std::terminate();  // it still uses this frame's state
  }
  return outcome_f.get();
}

/// Runs `body` in a new fiber on the calling fiber's thread; when it has reached its wait,
/// cancels it and returns true if it ended by throwing fibers::canceled.
template <class F>
bool cancel_here(F body) {
  bool started = false;
  auto f = fibers::spawn([&] {
    started = true;
    body();
  });
  while (!started) fibers::this_fiber::yield();
  fibers::this_fiber::yield();  // it parked in its wait, or it will see the cancel there
  f.cancel();
  try {
    f.join();
  } catch (const fibers::canceled&) {
    return true;
  }
  return false;
}

}  // namespace fibers_test
