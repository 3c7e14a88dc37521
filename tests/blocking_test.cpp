// tests/blocking_test.cpp - the blocking pool: results and exceptions come back, only the
// calling fiber waits, the queue is bounded, waits are cancellation points, plain threads work.
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fibers/blocking.hpp"
#include "fibers/fibers.hpp"
#include "fibers/scope.hpp"
#include "heartbeat_fiber.hpp"

namespace {

using namespace std::chrono_literals;

TEST(Blocking, ReturnsTheResultAndRethrowsTheException) {
  fibers::run([] {
    EXPECT_EQ(fibers::blocking([] { return 42; }), 42);
    EXPECT_EQ(fibers::blocking([] { return std::string("from a pool thread"); }), "from a pool thread");
    fibers::blocking([] {});  // void
    try {
      fibers::blocking([]() -> int { throw std::runtime_error("legacy call failed"); });
      FAIL() << "blocking() did not rethrow";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "legacy call failed");
    }
    // Move-only callables and results.
    auto p = std::make_unique<int>(7);
    auto r = fibers::blocking([p = std::move(p)] { return std::make_unique<int>(*p * 2); });
    EXPECT_EQ(*r, 14);
  });
}

TEST(Blocking, RunsOnAnotherThread) {
  const auto caller = std::this_thread::get_id();
  EXPECT_NE(fibers::blocking([] { return std::this_thread::get_id(); }), caller);
}

TEST(Blocking, HeartbeatKeepsTickingWhileEightFibersBlock) {
  std::mutex mu;
  std::set<std::thread::id> threads;
  fibers::run([&] {
    fibers_test::heartbeat hb;
    const long ticks_before = hb.ticks();
    std::vector<fibers::fiber> callers;
    for (int i = 0; i < 8; ++i) {
      callers.push_back(fibers::spawn([&, i] {
        const int r = fibers::blocking([&, i] {
          std::this_thread::sleep_for(100ms);  // a call that blocks its thread
          std::lock_guard lk(mu);
          threads.insert(std::this_thread::get_id());
          return i * i;
        });
        EXPECT_EQ(r, i * i);
      }));
    }
    for (auto& f : callers) f.join();
    const long ticks_while_blocked = hb.ticks() - ticks_before;
    hb.stop();
    EXPECT_GT(ticks_while_blocked, 0) << "the heartbeat never ran while the fibers waited";
    EXPECT_LT(hb.max_gap(), fibers_test::stall_limit) << "the I/O thread stalled while fibers waited in blocking()";
  });
  EXPECT_GE(threads.size(), 2u) << "the eight calls did not run concurrently";
}

TEST(Blocking, FullQueueFailsWithResourceUnavailable) {
  fibers::blocking_pool pool({.max_threads = 1, .max_queue = 2});
  std::atomic<bool> started{false}, release{false};
  auto a = pool.async([&] {
    started = true;
    while (!release) std::this_thread::sleep_for(1ms);
    return 1;
  });
  while (!started) std::this_thread::yield();  // the only thread is busy; the queue is empty
  auto b = pool.async([] { return 2; });
  auto c = pool.async([] { return 3; });
  EXPECT_EQ(pool.pending(), 2u);
  EXPECT_EQ(pool.threads(), 1u);
  try {
    pool.async([] { return 4; });
    FAIL() << "a third queued call was accepted";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::resource_unavailable_try_again);
    EXPECT_NE(std::string(e.what()).find("queue full (2 pending)"), std::string::npos) << e.what();
  }
  // The same from a fiber, through run().
  fibers::run([&] {
    try {
      pool.run([] { return 5; });
      FAIL() << "run() queued a call on a full queue";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::resource_unavailable_try_again);
    }
  });
  release = true;
  EXPECT_EQ(a.get() + b.get() + c.get(), 6);
  EXPECT_EQ(pool.run([] { return 6; }), 6);  // room again
}

TEST(Blocking, CanceledFiberStopsWaitingWhileTheCallRunsToCompletion) {
  auto call_done = std::make_shared<std::atomic<bool>>(false);
  auto release = std::make_shared<std::atomic<bool>>(false);
  auto entered = std::make_shared<std::atomic<bool>>(false);
  bool got_canceled = false, returned = false;
  fibers::run([&] {
    auto f = fibers::spawn([&] {
      try {
        // Captures by value: the fiber may be gone before the call ends (see blocking()).
        fibers::blocking([call_done, release, entered] {
          *entered = true;
          while (!*release) std::this_thread::sleep_for(1ms);
          *call_done = true;
        });
        returned = true;
      } catch (const fibers::canceled&) {
        got_canceled = true;
      }
    });
    while (!*entered) fibers::this_fiber::sleep_for(1ms);
    f.cancel();
    f.join();
  });
  EXPECT_TRUE(got_canceled);
  EXPECT_FALSE(returned);
  EXPECT_FALSE(*call_done) << "the canceled fiber waited for the call after all";
  *release = true;  // the call itself still runs to completion on its thread
  while (!*call_done) std::this_thread::sleep_for(1ms);
}

TEST(Blocking, InheritedDeadlineEndsTheWaitWithTimedOut) {
  auto release = std::make_shared<std::atomic<bool>>(false);
  fibers::run([&] {
    try {
      fibers::with_deadline(20ms, [&] {
        return fibers::blocking([release] {
          while (!*release) std::this_thread::sleep_for(1ms);
          return 1;
        });
      });
      FAIL() << "the deadline did not end the wait";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out);
    }
  });
  *release = true;
}

TEST(Blocking, WorksFromPlainThreads) {
  EXPECT_EQ(fibers::blocking([] { return 1; }), 1);  // the test's main thread
  std::vector<std::thread> threads;
  std::atomic<int> sum{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&sum, i] {
      for (int k = 0; k < 25; ++k) sum += fibers::blocking([i, k] { return i * 100 + k; });
    });
  }
  for (auto& t : threads) t.join();
  int expect = 0;
  for (int i = 0; i < 4; ++i) {
    for (int k = 0; k < 25; ++k) expect += i * 100 + k;
  }
  EXPECT_EQ(sum.load(), expect);
}

TEST(BlockingPool, NoThreadsOrNoQueueIsRejectedWithInvalidArgument) {
  // Such a pool could never run a call (max_threads = 0 used to mean 1, silently).
  try {
    fibers::blocking_pool pool({.max_threads = 0});
    ADD_FAILURE() << "a pool without threads was made";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "fibers::blocking_pool: max_threads must be at least 1 (got 0)");
  }
  try {
    fibers::blocking_pool pool({.max_queue = 0});
    ADD_FAILURE() << "a pool without room for a call was made";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "fibers::blocking_pool: max_queue must be at least 1 (got 0)");
  }
}

TEST(BlockingPool, IdleThreadsExitAndComeBack) {
  fibers::blocking_pool pool({.max_threads = 4, .idle_timeout = 20ms});
  EXPECT_EQ(pool.threads(), 0u);
  EXPECT_EQ(pool.run([] { return 1; }), 1);
  for (int i = 0; i < 5000 && pool.threads() != 0; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(pool.threads(), 0u) << "an idle thread did not exit";
  EXPECT_EQ(pool.run([] { return 2; }), 2);
}

TEST(BlockingPool, DestructionRunsQueuedCalls) {
  std::atomic<int> ran{0};
  {
    fibers::blocking_pool pool({.max_threads = 1});
    std::vector<fibers::future<void>> futures;
    for (int i = 0; i < 50; ++i) {
      futures.push_back(pool.async([&ran] {
        std::this_thread::sleep_for(100us);
        ++ran;
      }));
    }
  }
  EXPECT_EQ(ran.load(), 50);
}

}  // namespace
