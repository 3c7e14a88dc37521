// tests/latch_test.cpp - fibers::latch: counting down, waiting, deadlines, cancellation,
// fibers on several threads and plain threads.
#include "fibers/latch.hpp"

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "sync_test_util.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers_test::ms_since;

TEST(Latch, WaitReturnsOnceTheCountReachesZero) {
  fibers::run([] {
    fibers::latch l(3);
    int counted = 0;
    bool passed = false;
    auto waiter = fibers::spawn([&] {
      l.wait();
      passed = true;
      EXPECT_EQ(counted, 3);
    });
    for (int i = 0; i < 3; ++i) {
      fibers::this_fiber::yield();
      EXPECT_FALSE(passed);
      EXPECT_FALSE(l.try_wait());
      ++counted;
      l.count_down();
    }
    waiter.join();
    EXPECT_TRUE(passed);
    EXPECT_TRUE(l.try_wait());
    l.wait();  // open: returns at once
    EXPECT_TRUE(l.wait_for(0ms));
  });
}

TEST(Latch, CountDownByMoreThanOneAndAZeroLatch) {
  fibers::run([] {
    fibers::latch zero(0);
    EXPECT_TRUE(zero.try_wait());
    zero.wait();
    fibers::latch l(5);
    l.count_down(2);
    EXPECT_FALSE(l.try_wait());
    l.count_down(3);
    EXPECT_TRUE(l.try_wait());
  });
}

TEST(Latch, WaitForGivesUpAfterTheDeadlineAndNotBefore) {
  fibers::run([] {
    fibers::latch l(1);
    auto start = fibers::clock::now();
    EXPECT_FALSE(l.wait_for(50ms));
    EXPECT_GE(ms_since(start), 50ms);
    start = fibers::clock::now();
    EXPECT_FALSE(l.wait_until(fibers::clock::now() + 30ms));
    EXPECT_GE(ms_since(start), 30ms);
    EXPECT_FALSE(l.wait_until(fibers::deadline::after(5ms)));
    l.count_down();
    EXPECT_TRUE(l.wait_for(50ms));
  });
}

TEST(Latch, PlainThreadsWaitAndTimeOut) {
  fibers::run([] {
    fibers::latch l(1);
    bool timed_out = false, opened = false;
    std::chrono::milliseconds waited{};
    std::atomic<bool> first_done{false};
    std::thread t([&] {
      auto start = fibers::clock::now();
      timed_out = !l.wait_for(40ms);
      waited = ms_since(start);
      first_done = true;
      l.wait();  // opened by the fiber below
      opened = true;
    });
    while (!first_done) fibers::this_fiber::sleep_for(1ms);
    l.count_down();
    t.join();
    EXPECT_TRUE(timed_out);
    EXPECT_GE(waited, 40ms);
    EXPECT_TRUE(opened);
  });
}

TEST(Latch, CancelReleasesAWaiterAndTheLatchStillOpensForOthers) {
  fibers::run([] {
    fibers::latch l(1);
    bool other_passed = false;
    auto other = fibers::spawn([&] {
      l.wait();
      other_passed = true;
    });
    EXPECT_TRUE(fibers_test::cancel_here([&] { l.wait(); }));  // the latch is still closed
    EXPECT_FALSE(l.try_wait());
    EXPECT_FALSE(other_passed);
    l.count_down();
    other.join();
    EXPECT_TRUE(other_passed);
  });
}

TEST(Latch, CancelFromAnotherThreadReleasesAWaiter) {
  fibers::latch l(1);
  fibers::runtime rt(2);
  rt.run([&] { EXPECT_TRUE(fibers_test::cancel_on_thread(rt, 1, [&] { l.wait(); })); });
  EXPECT_FALSE(l.try_wait());
  l.count_down();
  rt.run([&] { EXPECT_TRUE(l.wait_for(1s)); });
}

TEST(Latch, ArriveAndWaitReleasesEveryoneOnlyWhenTheLastArrives) {
  constexpr int kFibers = 5, kPlain = 3;
  constexpr int kParties = 4 * kFibers + kPlain;
  fibers::latch l(kParties);
  std::atomic<int> arrived{0};
  std::atomic<int> early{0};
  fibers::runtime rt(4);
  fibers_test::run_everywhere(rt, kFibers, kPlain, [&](std::size_t, int) {
    arrived.fetch_add(1);
    l.arrive_and_wait();
    if (arrived.load() != kParties) early.fetch_add(1);
  });
  EXPECT_EQ(early.load(), 0);
  EXPECT_TRUE(l.try_wait());
}

TEST(Latch, ManyWaitersOnFourThreadsAllWakeAtZero) {
  fibers::latch gate(1);
  std::atomic<int> passed{0};
  fibers::runtime rt(4);
  std::thread opener([&] {
    std::this_thread::sleep_for(20ms);  // most waiters are parked by now (not required)
    gate.count_down();
  });
  fibers_test::run_everywhere(rt, 25, 2, [&](std::size_t, int) {
    gate.wait();
    passed.fetch_add(1);
  });
  opener.join();
  EXPECT_EQ(passed.load(), 4 * 25 + 2);
}

TEST(Latch, NegativeExpectedCountThrowsInvalidArgument) {
  try {
    fibers::latch l(-2);
    ADD_FAILURE() << "a latch with a negative count was made";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "fibers::latch: the expected count must not be negative (got -2)");
  }
}

TEST(LatchDeathTest, CountingBelowZeroAbortsNamingTheCallAndTheCounter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(fibers::run([] {
                 fibers::latch l(1);
                 l.count_down(2);
               }),
               "fibers::latch::count_down\\(2\\): counter would go negative \\(-1\\)");
}

TEST(LatchDeathTest, CountingDownANegativeAmountAbortsWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(fibers::run([] {
                 fibers::latch l(1);
                 l.count_down(-1);
               }),
               "fibers::latch::count_down\\(-1\\): n must not be negative");
}

}  // namespace
