// tests/semaphore_test.cpp - fibers::semaphore: permits, FIFO handoff, deadlines,
// cancellation, fibers on several threads and plain threads.
#include "fibers/semaphore.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "sync_test_util.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers_test::ms_since;

TEST(Semaphore, AcquireTakesAndReleaseReturnsPermits) {
  fibers::run([] {
    fibers::semaphore s(2);
    EXPECT_EQ(s.available(), 2);
    s.acquire();
    EXPECT_TRUE(s.try_acquire());
    EXPECT_EQ(s.available(), 0);
    EXPECT_FALSE(s.try_acquire());
    s.release();
    EXPECT_EQ(s.available(), 1);
    s.release(3);
    EXPECT_EQ(s.available(), 4);
    EXPECT_TRUE(s.acquire_for(10ms));
    EXPECT_TRUE(s.try_acquire_for(10ms));
    EXPECT_TRUE(s.try_acquire_until(fibers::clock::now() + 10ms));
    EXPECT_TRUE(s.acquire_until(fibers::deadline::after(10ms)));
    EXPECT_EQ(s.available(), 0);
  });
}

TEST(Semaphore, AcquireForGivesUpAfterTheDeadlineAndNotBefore) {
  fibers::run([] {
    fibers::semaphore s(0);
    auto start = fibers::clock::now();
    EXPECT_FALSE(s.acquire_for(50ms));
    EXPECT_GE(ms_since(start), 50ms);
    start = fibers::clock::now();
    EXPECT_FALSE(s.acquire_until(std::chrono::steady_clock::now() + 30ms));
    EXPECT_GE(ms_since(start), 30ms);
    EXPECT_FALSE(s.acquire_for(0ms));
    // A waiter that gave up took nothing: a later permit is still there.
    s.release();
    EXPECT_EQ(s.available(), 1);
  });
}

TEST(Semaphore, AcquireForOnAPlainThreadTimesOut) {
  fibers::run([] {
    fibers::semaphore s(0);
    bool got = true;
    std::chrono::milliseconds waited{};
    std::thread t([&] {
      auto start = fibers::clock::now();
      got = s.acquire_for(40ms);
      waited = ms_since(start);
    });
    t.join();
    EXPECT_FALSE(got);
    EXPECT_GE(waited, 40ms);
    EXPECT_EQ(s.available(), 0);
  });
}

TEST(Semaphore, ReleaseHandsPermitsToWaitersInArrivalOrder) {
  fibers::run([] {
    fibers::semaphore s(0);
    std::vector<int> order;
    std::vector<fibers::fiber> fs;
    for (int i = 0; i < 4; ++i) {
      fs.push_back(fibers::spawn([&, i] {
        s.acquire();
        order.push_back(i);
      }));
      fibers::this_fiber::yield();  // fiber i queues before fiber i+1 starts
    }
    s.release(2);
    // The two permits belong to the first two waiters now: a newcomer cannot take them.
    EXPECT_FALSE(s.try_acquire());
    EXPECT_EQ(s.available(), 0);
    fibers::this_fiber::yield();  // the two woken fibers run (in either order)
    std::vector<int> first = order;
    std::sort(first.begin(), first.end());
    EXPECT_EQ(first, (std::vector<int>{0, 1}));
    s.release(3);  // two for the remaining waiters, one left over
    for (auto& f : fs) f.join();
    ASSERT_EQ(order.size(), 4u);
    std::vector<int> second(order.begin() + 2, order.end());
    std::sort(second.begin(), second.end());
    EXPECT_EQ(second, (std::vector<int>{2, 3}));
    EXPECT_EQ(s.available(), 1);
  });
}

TEST(Semaphore, CancelReleasesABlockedAcquirerAndThePermitGoesToTheNextWaiter) {
  fibers::run([] {
    fibers::semaphore s(0);
    bool b_got = false, c_got = false, b_started = false;
    auto b = fibers::spawn([&] {
      b_started = true;
      s.acquire();
      b_got = true;
    });
    while (!b_started) fibers::this_fiber::yield();
    auto c = fibers::spawn([&] {
      s.acquire();
      c_got = true;
    });
    fibers::this_fiber::yield();  // c queues behind b
    b.cancel();
    EXPECT_THROW(b.join(), fibers::canceled);  // with no permit released meanwhile
    EXPECT_FALSE(b_got);
    s.release();  // skips the canceled b
    c.join();
    EXPECT_TRUE(c_got);
    EXPECT_EQ(s.available(), 0);
    s.release();
    EXPECT_EQ(s.available(), 1);  // nothing still counts the canceled waiter
  });
}

TEST(Semaphore, CancelFromAnotherThreadReleasesAnAcquirer) {
  fibers::semaphore s(0);
  std::atomic<bool> got{false};
  fibers::runtime rt(2);
  rt.run([&] {
    EXPECT_TRUE(fibers_test::cancel_on_thread(rt, 1, [&] {
      s.acquire();
      got = true;
    }));
  });
  EXPECT_FALSE(got.load());
  s.release();
  EXPECT_EQ(s.available(), 1);
  rt.run([&] { EXPECT_TRUE(s.acquire_for(1s)); });
}

TEST(Semaphore, NeverAdmitsMoreHoldersThanPermitsAcrossThreads) {
  constexpr int kPermits = 3;
  fibers::semaphore s(kPermits);
  std::atomic<int> inside{0};
  std::atomic<int> max_inside{0};
  std::atomic<long> entries{0};
  fibers::runtime rt(4);
  fibers_test::run_everywhere(rt, 6, 3, [&](std::size_t t, int i) {
    const bool on_fiber = fibers::runtime::current() != nullptr;
    for (int k = 0; k < 500; ++k) {
      if ((k + i) % 4 == 0) {
        if (!s.acquire_for(std::chrono::microseconds(50 + (k * 7 + t) % 200))) continue;
      } else {
        s.acquire();
      }
      const int now = inside.fetch_add(1) + 1;
      int seen = max_inside.load();
      while (now > seen && !max_inside.compare_exchange_weak(seen, now)) {
      }
      entries.fetch_add(1);
      if (on_fiber) fibers::this_fiber::yield();
      else std::this_thread::yield();
      inside.fetch_sub(1);
      s.release();
    }
  });
  EXPECT_LE(max_inside.load(), kPermits);
  EXPECT_GT(entries.load(), 0);
  EXPECT_EQ(s.available(), kPermits);
}

TEST(Semaphore, NegativeInitialCountThrowsInvalidArgument) {
  try {
    fibers::semaphore s(-1);
    ADD_FAILURE() << "a semaphore with a negative count was made";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "fibers::semaphore: the initial count must not be negative (got -1)");
  }
}

TEST(SemaphoreDeathTest, ReleasingANegativeCountAbortsNamingTheCall) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(fibers::run([] {
                 fibers::semaphore s(1);
                 s.release(-1);
               }),
               "fibers::semaphore::release\\(-1\\): n must not be negative");
}

}  // namespace
