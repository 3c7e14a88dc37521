// tests/wait_group_test.cpp - fibers::wait_group: add/done/wait, reuse, deadlines,
// cancellation, fibers on several threads and plain threads.
#include "fibers/wait_group.hpp"

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "sync_test_util.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers_test::ms_since;

TEST(WaitGroup, WaitReturnsWhenEveryPieceOfWorkIsDone) {
  fibers::run([] {
    fibers::wait_group wg;
    int finished = 0;
    for (int i = 0; i < 5; ++i) {
      wg.add();
      fibers::spawn([&, i] {
        fibers::this_fiber::sleep_for(std::chrono::milliseconds(i));
        ++finished;
        wg.done();
      }).detach();
    }
    wg.wait();
    EXPECT_EQ(finished, 5);
  });
}

TEST(WaitGroup, AZeroGroupDoesNotWaitAndCanBeReused) {
  fibers::run([] {
    fibers::wait_group wg;
    wg.wait();
    EXPECT_TRUE(wg.wait_for(0ms));
    for (int round = 0; round < 3; ++round) {
      bool done = false;
      wg.add(2);
      fibers::spawn([&] {
        wg.done();
        fibers::this_fiber::yield();
        done = true;
        wg.done();
      }).detach();
      wg.wait();
      EXPECT_TRUE(done);
    }
    fibers::wait_group preset(1);
    EXPECT_FALSE(preset.wait_for(0ms));
    preset.add(-1);  // negative deltas count down, as in Go
    EXPECT_TRUE(preset.wait_for(0ms));
  });
}

TEST(WaitGroup, WaitForGivesUpAfterTheDeadlineAndNotBefore) {
  fibers::run([] {
    fibers::wait_group wg(1);
    auto start = fibers::clock::now();
    EXPECT_FALSE(wg.wait_for(50ms));
    EXPECT_GE(ms_since(start), 50ms);
    start = fibers::clock::now();
    EXPECT_FALSE(wg.wait_until(std::chrono::steady_clock::now() + 30ms));
    EXPECT_GE(ms_since(start), 30ms);
    EXPECT_FALSE(wg.wait_until(fibers::deadline::after(5ms)));
    wg.done();
    EXPECT_TRUE(wg.wait_for(50ms));
  });
}

TEST(WaitGroup, PlainThreadWaitsForFibersAndTimesOut) {
  fibers::wait_group wg(3);
  fibers::runtime rt(2);
  bool timed_out = false;
  std::chrono::milliseconds waited{};
  std::thread t([&] {
    auto start = fibers::clock::now();
    timed_out = !wg.wait_for(40ms);
    waited = ms_since(start);
  });
  t.join();
  EXPECT_TRUE(timed_out);
  EXPECT_GE(waited, 40ms);
  for (std::size_t i = 0; i < 3; ++i) {
    rt.post([&] {
      fibers::this_fiber::sleep_for(5ms);
      wg.done();
    }, i % 2);
  }
  wg.wait();  // this test's own (plain) thread
  EXPECT_TRUE(wg.wait_for(0ms));
}

TEST(WaitGroup, CancelReleasesAWaiterAndTheGroupIsUnaffected) {
  fibers::run([] {
    fibers::wait_group wg(1);
    EXPECT_TRUE(fibers_test::cancel_here([&] { wg.wait(); }));
    EXPECT_FALSE(wg.wait_for(0ms));
    bool passed = false;
    auto other = fibers::spawn([&] {
      wg.wait();
      passed = true;
    });
    fibers::this_fiber::yield();
    wg.done();
    other.join();
    EXPECT_TRUE(passed);
  });
}

TEST(WaitGroup, CancelFromAnotherThreadReleasesAWaiter) {
  fibers::wait_group wg(1);
  fibers::runtime rt(2);
  rt.run([&] { EXPECT_TRUE(fibers_test::cancel_on_thread(rt, 1, [&] { wg.wait(); })); });
  wg.done();
  rt.run([&] { EXPECT_TRUE(wg.wait_for(1s)); });
}

TEST(WaitGroup, CountsWorkFromFourThreadsAndPlainThreads) {
  constexpr int kFibers = 10, kPlain = 3, kPieces = 50;
  fibers::wait_group wg;
  std::atomic<long> finished{0};
  std::atomic<int> early{0};
  fibers::runtime rt(4);
  // All pieces are counted up front; tasks on every thread finish them, and the waiters among
  // them (fibers and plain threads) must only pass once every piece is done.
  wg.add(long{4 * kFibers + kPlain} * kPieces);
  fibers_test::run_everywhere(rt, kFibers, kPlain, [&](std::size_t t, int i) {
    const bool waiter = (i % 3 == 0);
    for (int k = 0; k < kPieces; ++k) {
      finished.fetch_add(1);
      wg.done();
      if (fibers::runtime::current() != nullptr && (k + t) % 8 == 0) fibers::this_fiber::yield();
    }
    if (waiter) {
      wg.wait();
      if (finished.load() != long{4 * kFibers + kPlain} * kPieces) early.fetch_add(1);
    }
  });
  EXPECT_EQ(early.load(), 0);
  EXPECT_EQ(finished.load(), long{4 * kFibers + kPlain} * kPieces);
  EXPECT_TRUE(wg.wait_for(0ms));
}

TEST(WaitGroup, NegativeInitialCounterThrowsInvalidArgument) {
  try {
    fibers::wait_group wg(-1);
    ADD_FAILURE() << "a wait_group with a negative counter was made";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "fibers::wait_group: the initial counter must not be negative (got -1)");
  }
}

TEST(WaitGroupDeathTest, DoneCalledTooManyTimesAbortsNamingTheCallAndTheCounter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(fibers::run([] {
                 fibers::wait_group wg;
                 wg.add();
                 wg.done();
                 wg.done();
               }),
               "fibers::wait_group::done\\(\\): counter would go negative \\(-1\\)");
}

TEST(WaitGroupDeathTest, AddTakingTheCounterBelowZeroAbortsNamingTheCallAndTheCounter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(fibers::run([] {
                 fibers::wait_group wg(2);
                 wg.add(-3);
               }),
               "fibers::wait_group::add\\(-3\\): counter would go negative \\(-1\\)");
}

}  // namespace
