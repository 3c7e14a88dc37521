// tests/condition_variable_test.cpp - fibers::condition_variable with fibers::mutex:
// notify_one/notify_all, predicates, deadlines, cancellation (re-locking first), fibers on
// several threads and plain threads.
#include "fibers/condition_variable.hpp"

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "sync_test_util.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers_test::ms_since;

TEST(ConditionVariable, NotifyOneWakesAWaiterThatSeesTheChange) {
  fibers::run([] {
    fibers::mutex m;
    fibers::condition_variable cv;
    bool ready = false, seen = false;
    auto waiter = fibers::spawn([&] {
      std::unique_lock lk(m);
      cv.wait(lk, [&] { return ready; });
      EXPECT_TRUE(lk.owns_lock());
      seen = true;
    });
    fibers::this_fiber::yield();
    {
      std::lock_guard lk(m);
      ready = true;
    }
    cv.notify_one();
    waiter.join();
    EXPECT_TRUE(seen);
  });
}

TEST(ConditionVariable, NotifyOneWakesOneWaiterAndNotifyAllWakesTheRest) {
  fibers::run([] {
    fibers::mutex m;
    fibers::condition_variable cv;
    int woken = 0;
    std::vector<fibers::fiber> fs;
    for (int i = 0; i < 4; ++i) {
      fs.push_back(fibers::spawn([&] {
        std::unique_lock lk(m);
        cv.wait(lk);
        ++woken;
      }));
    }
    fibers::this_fiber::yield();  // all four wait now
    cv.notify_one();
    for (int i = 0; i < 5; ++i) fibers::this_fiber::yield();
    EXPECT_EQ(woken, 1);
    cv.notify_all();
    for (auto& f : fs) f.join();
    EXPECT_EQ(woken, 4);
  });
}

TEST(ConditionVariable, WaitForTimesOutAfterTheDeadlineHoldingTheLock) {
  fibers::run([] {
    fibers::mutex m;
    fibers::condition_variable cv;
    std::unique_lock lk(m);
    auto start = fibers::clock::now();
    EXPECT_EQ(cv.wait_for(lk, 50ms), std::cv_status::timeout);
    EXPECT_GE(ms_since(start), 50ms);
    EXPECT_TRUE(lk.owns_lock());
    EXPECT_FALSE(m.try_lock());  // really held

    start = fibers::clock::now();
    EXPECT_FALSE(cv.wait_for(lk, 30ms, [] { return false; }));
    EXPECT_GE(ms_since(start), 30ms);
    EXPECT_TRUE(cv.wait_for(lk, 30ms, [] { return true; }));
    EXPECT_EQ(cv.wait_until(lk, fibers::clock::now() + 10ms), std::cv_status::timeout);
    EXPECT_EQ(cv.wait_until(lk, std::chrono::system_clock::now() + 10ms), std::cv_status::timeout);
    EXPECT_EQ(cv.wait_until(lk, fibers::deadline::after(10ms)), std::cv_status::timeout);
    EXPECT_FALSE(cv.wait_until(lk, fibers::clock::now() + 10ms, [] { return false; }));
    EXPECT_TRUE(lk.owns_lock());
  });
}

TEST(ConditionVariable, WaitReleasesTheMutexWhileWaiting) {
  fibers::run([] {
    fibers::mutex m;
    fibers::condition_variable cv;
    bool flag = false;
    auto waiter = fibers::spawn([&] {
      std::unique_lock lk(m);
      cv.wait(lk, [&] { return flag; });
    });
    fibers::this_fiber::yield();
    EXPECT_TRUE(m.try_lock());  // the waiter released it
    flag = true;
    m.unlock();
    cv.notify_all();
    waiter.join();
  });
}

TEST(ConditionVariable, PlainThreadWaitsForAFiberAndTimesOut) {
  fibers::mutex m;
  fibers::condition_variable cv;
  bool flag = false;  // guarded by m
  fibers::runtime rt(1);
  bool timed_out = false, passed = false;
  std::atomic<bool> first_done{false};
  std::chrono::milliseconds waited{};
  std::thread t([&] {
    std::unique_lock lk(m);
    auto start = fibers::clock::now();
    timed_out = cv.wait_for(lk, 40ms) == std::cv_status::timeout;
    waited = ms_since(start);
    first_done = true;
    passed = cv.wait_for(lk, 30s, [&] { return flag; });
  });
  rt.run([&] {
    while (!first_done) fibers::this_fiber::sleep_for(1ms);
    std::lock_guard lk(m);
    flag = true;
    cv.notify_one();  // while holding the mutex: the thread re-locks after we leave
  });
  t.join();
  EXPECT_TRUE(timed_out);
  EXPECT_GE(waited, 40ms);
  EXPECT_TRUE(passed);
}

TEST(ConditionVariable, CancelReLocksTheMutexBeforeThrowing) {
  fibers::run([] {
    fibers::mutex m;
    fibers::condition_variable cv;
    bool held_in_handler = false;
    bool started = false;
    auto f = fibers::spawn([&] {
      std::unique_lock lk(m);
      started = true;
      try {
        cv.wait(lk);
      } catch (const fibers::canceled&) {
        held_in_handler = lk.owns_lock() && !m.try_lock();
        throw;
      }
    });
    while (!started) fibers::this_fiber::yield();
    // Hold the mutex when the cancel arrives: the waiter must wait for it before throwing.
    m.lock();
    f.cancel();
    for (int i = 0; i < 5; ++i) fibers::this_fiber::yield();
    EXPECT_FALSE(held_in_handler);
    m.unlock();
    EXPECT_THROW(f.join(), fibers::canceled);
    EXPECT_TRUE(held_in_handler);
    EXPECT_TRUE(m.try_lock());  // the unwound unique_lock released it
    m.unlock();
  });
}

TEST(ConditionVariable, CanceledTimedWaitThrowsAndLeavesTheOthersNotifiable) {
  fibers::run([] {
    fibers::mutex m;
    fibers::condition_variable cv;
    bool flag = false, other_woke = false;
    auto other = fibers::spawn([&] {
      std::unique_lock lk(m);
      cv.wait(lk, [&] { return flag; });
      other_woke = true;
    });
    EXPECT_TRUE(fibers_test::cancel_here([&] {
      std::unique_lock lk(m);
      cv.wait_for(lk, 30s);
    }));
    {
      std::lock_guard lk(m);
      flag = true;
    }
    cv.notify_one();  // must reach `other`, not the canceled waiter
    other.join();
    EXPECT_TRUE(other_woke);
  });
}

TEST(ConditionVariable, CancelFromAnotherThreadReleasesAWaiter) {
  fibers::mutex m;
  fibers::condition_variable cv;
  fibers::runtime rt(2);
  rt.run([&] {
    EXPECT_TRUE(fibers_test::cancel_on_thread(rt, 1, [&] {
      std::unique_lock lk(m);
      cv.wait(lk);
    }));
    EXPECT_TRUE(m.try_lock());
    m.unlock();
  });
}

TEST(ConditionVariable, BoundedQueueAcrossFourThreadsAndPlainThreadsLosesNothing) {
  // Producers and consumers on every I/O thread and on plain threads share a bounded queue
  // guarded by one mutex and two condition variables. Every item must be consumed once.
  constexpr int kProducersPerThread = 3, kItems = 300, kCapacity = 8;
  constexpr int kPlainProducers = 2;
  constexpr long kTotal = long{4 * kProducersPerThread + kPlainProducers} * kItems;
  fibers::mutex m;
  fibers::condition_variable not_empty, not_full;
  std::deque<long> q;  // guarded by m
  long consumed = 0, sum = 0;  // guarded by m
  fibers::runtime rt(4);
  std::vector<std::thread> consumers;
  fibers_test::completion consumers_done(4 + 2);
  auto consume = [&] {
    for (;;) {
      std::unique_lock lk(m);
      not_empty.wait(lk, [&] { return !q.empty() || consumed == kTotal; });
      if (q.empty()) break;
      sum += q.front();
      q.pop_front();
      ++consumed;
      const bool last = consumed == kTotal;
      lk.unlock();
      not_full.notify_one();
      if (last) not_empty.notify_all();  // release the other consumers
    }
    consumers_done.done();
  };
  for (std::size_t t = 0; t < 4; ++t) rt.post(consume, t);
  for (int k = 0; k < 2; ++k) consumers.emplace_back(consume);
  fibers_test::run_everywhere(rt, kProducersPerThread, kPlainProducers, [&](std::size_t t, int i) {
    for (int k = 0; k < kItems; ++k) {
      std::unique_lock lk(m);
      not_full.wait(lk, [&] { return q.size() < kCapacity; });
      q.push_back(long{1} + k + (long{static_cast<long>(t)} * 10 + i) * kItems);
      lk.unlock();
      not_empty.notify_one();
    }
  });
  EXPECT_TRUE(consumers_done.wait());
  for (auto& c : consumers) c.join();
  EXPECT_EQ(consumed, kTotal);
  long expected = 0;
  for (long t = 0; t < 4 + kPlainProducers; ++t) {
    const int producers = t < 4 ? kProducersPerThread : 1;
    for (long i = 0; i < producers; ++i) {
      for (long k = 0; k < kItems; ++k) expected += 1 + k + (t * 10 + i) * kItems;
    }
  }
  EXPECT_EQ(sum, expected);
}

TEST(ConditionVariableDeathTest, WaitingWithoutTheLockAbortsWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(fibers::run([] {
                 fibers::mutex m;
                 fibers::condition_variable cv;
                 std::unique_lock lk(m, std::defer_lock);
                 cv.wait(lk);
               }),
               "fibers::condition_variable::wait called without holding the lock");
}

}  // namespace
