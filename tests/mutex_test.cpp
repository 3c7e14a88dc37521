// tests/mutex_test.cpp - fibers::mutex: exclusion, FIFO handoff, fairness, deadlines,
// cancellation, fibers on several threads and plain threads.
#include "fibers/mutex.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "sync_test_util.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers_test::ms_since;

TEST(Mutex, WorksWithStdLockGuardUniqueLockAndScopedLock) {
  fibers::run([] {
    fibers::mutex a, b;
    {
      std::lock_guard lk(a);
      EXPECT_FALSE(a.try_lock());
    }
    EXPECT_TRUE(a.try_lock());
    a.unlock();
    {
      std::unique_lock lk(a, std::try_to_lock);
      EXPECT_TRUE(lk.owns_lock());
      std::unique_lock timed(b, 10ms);  // TimedLockable: try_lock_for
      EXPECT_TRUE(timed.owns_lock());
    }
    {
      std::scoped_lock both(a, b);
      EXPECT_FALSE(a.try_lock());
      EXPECT_FALSE(b.try_lock());
    }
    EXPECT_TRUE(a.try_lock());
    EXPECT_TRUE(b.try_lock());
    a.unlock();
    b.unlock();
  });
}

TEST(Mutex, WaitersGetTheLockInArrivalOrder) {
  fibers::run([] {
    fibers::mutex m;
    std::vector<int> order;
    m.lock();
    std::vector<fibers::fiber> fs;
    for (int i = 0; i < 5; ++i) {
      fs.push_back(fibers::spawn([&, i] {
        std::lock_guard lk(m);
        order.push_back(i);
      }));
      fibers::this_fiber::yield();  // fiber i queues before fiber i+1 starts
    }
    EXPECT_TRUE(order.empty());
    m.unlock();
    for (auto& f : fs) f.join();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
    EXPECT_TRUE(m.try_lock());
    m.unlock();
  });
}

TEST(Mutex, UnlockHandsOwnershipToTheWaiterBeforeAnyNewcomer) {
  fibers::run([] {
    fibers::mutex m;
    bool waiter_got_it = false;
    m.lock();
    auto waiter = fibers::spawn([&] {
      m.lock();
      waiter_got_it = true;
      m.unlock();
    });
    fibers::this_fiber::yield();  // the waiter queues
    m.unlock();
    // The waiter has not run yet, but it owns the mutex already: a newcomer cannot barge in.
    EXPECT_FALSE(waiter_got_it);
    EXPECT_FALSE(m.try_lock());
    waiter.join();
    EXPECT_TRUE(waiter_got_it);
    EXPECT_TRUE(m.try_lock());
    m.unlock();
  });
}

TEST(Mutex, LockForGivesUpAfterTheDeadlineAndNotBefore) {
  fibers::run([] {
    fibers::mutex m;
    m.lock();
    auto start = fibers::clock::now();
    EXPECT_FALSE(m.lock_for(50ms));
    EXPECT_GE(ms_since(start), 50ms);

    start = fibers::clock::now();
    EXPECT_FALSE(m.lock_until(fibers::clock::now() + 30ms));
    EXPECT_GE(ms_since(start), 30ms);
    EXPECT_FALSE(m.lock_until(fibers::deadline::after(10ms)));
    EXPECT_FALSE(m.lock_until(std::chrono::system_clock::now() + 10ms));
    EXPECT_FALSE(m.lock_for(0ms));
    EXPECT_FALSE(m.lock_for(-5ms));
    m.unlock();

    EXPECT_TRUE(m.lock_for(50ms));  // free: taken at once
    m.unlock();
    EXPECT_TRUE(m.lock_for(0ms));
    m.unlock();
  });
}

TEST(Mutex, LockForOnAPlainThreadTimesOutAndLaterSucceeds) {
  fibers::run([] {
    fibers::mutex m;
    m.lock();
    std::atomic<bool> first_done{false};
    bool timed_out = false, later = false;
    std::chrono::milliseconds waited{};
    std::thread t([&] {
      auto start = fibers::clock::now();
      timed_out = !m.lock_for(40ms);
      waited = ms_since(start);
      first_done = true;
      later = m.lock_for(30s);  // the fiber unlocks once the first attempt is over
      m.unlock();
    });
    while (!first_done) fibers::this_fiber::sleep_for(1ms);
    m.unlock();
    t.join();  // blocks this I/O thread, but the handoff to t does not need it
    EXPECT_TRUE(timed_out);
    EXPECT_GE(waited, 40ms);
    EXPECT_TRUE(later);
    EXPECT_TRUE(m.try_lock());
    m.unlock();
  });
}

TEST(Mutex, ATimedOutWaiterNeverEndsUpOwningTheMutex) {
  fibers::run([] {
    fibers::mutex m;
    m.lock();
    bool got = true;
    auto w = fibers::spawn([&] { got = m.lock_for(20ms); });
    w.join();
    EXPECT_FALSE(got);
    m.unlock();  // must not hand the lock to the waiter that gave up
    bool other = false;
    fibers::spawn([&] {
      other = m.try_lock();
      if (other) m.unlock();
    }).join();
    EXPECT_TRUE(other);
  });
}

TEST(Mutex, CancelReleasesABlockedLockerPromptlyAndTheQueueStaysIntact) {
  fibers::run([] {
    fibers::mutex m;
    m.lock();  // held throughout the cancellation: only cancel can end b's wait
    bool b_started = false, b_locked = false, c_locked = false;
    auto b = fibers::spawn([&] {
      b_started = true;
      m.lock();
      b_locked = true;
      m.unlock();
    });
    while (!b_started) fibers::this_fiber::yield();
    auto c = fibers::spawn([&] {
      std::lock_guard lk(m);
      c_locked = true;
    });
    fibers::this_fiber::yield();  // c queues behind b
    b.cancel();
    EXPECT_THROW(b.join(), fibers::canceled);  // returns while m is still held
    EXPECT_FALSE(b_locked);
    m.unlock();  // must skip the canceled b and hand the lock to c
    c.join();
    EXPECT_TRUE(c_locked);
    EXPECT_TRUE(m.try_lock());
    m.unlock();
  });
}

TEST(Mutex, AFiberAlreadyCanceledThrowsInsteadOfWaiting) {
  fibers::run([] {
    fibers::mutex m;
    m.lock();
    EXPECT_TRUE(fibers_test::cancel_here([&] {
      while (!fibers::this_fiber::cancel_requested()) fibers::this_fiber::yield();
      m.lock();  // contended and canceled: throws at once
      ADD_FAILURE() << "lock() returned in a canceled fiber";
    }));
    m.unlock();
    EXPECT_TRUE(m.try_lock());
    m.unlock();
  });
}

TEST(Mutex, CancelFromAnotherThreadReleasesALockerAndTheMutexStaysUsable) {
  fibers::mutex m;
  fibers::runtime rt(2);
  std::atomic<bool> locked_by_canceled{false};
  m.lock();
  rt.run([&] {
    const bool canceled = fibers_test::cancel_on_thread(rt, 1, [&] {
      m.lock();
      locked_by_canceled = true;
      m.unlock();
    });
    EXPECT_TRUE(canceled);
  });
  EXPECT_FALSE(locked_by_canceled.load());
  m.unlock();
  rt.run([&] {
    EXPECT_TRUE(m.lock_for(1s));  // free again, not owned by the canceled fiber
    m.unlock();
  });
}

TEST(Mutex, ExcludesFibersOnFourThreadsAndPlainThreads) {
  fibers::mutex m;
  long counter = 0;  // deliberately not atomic: m is what protects it
  std::atomic<int> inside{0};
  std::atomic<bool> overlap{false};
  constexpr int kFibers = 8, kPlain = 3, kIters = 2000;
  fibers::runtime rt(4);
  fibers_test::run_everywhere(rt, kFibers, kPlain, [&](std::size_t, int i) {
    for (int k = 0; k < kIters; ++k) {
      std::lock_guard lk(m);
      if (inside.fetch_add(1) != 0) overlap = true;
      ++counter;
      // Sometimes hold the lock across a switch, so waiters pile up on every thread.
      if (fibers::runtime::current() != nullptr && (k + i) % 64 == 0) fibers::this_fiber::yield();
      inside.fetch_sub(1);
    }
  });
  EXPECT_FALSE(overlap.load());
  EXPECT_EQ(counter, long{4 * kFibers + kPlain} * kIters);
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}

TEST(Mutex, TimedLocksRacingUnlocksNeverLoseOrDuplicateOwnership) {
  // Waiters give up (timeout) at the moment unlockers hand the lock over, on four threads:
  // each handoff must land on exactly one live waiter, and the mutex ends up free.
  fibers::mutex m;
  long counter = 0;
  std::atomic<long> acquired{0};
  std::atomic<int> inside{0};
  std::atomic<bool> overlap{false};
  fibers::runtime rt(4);
  fibers_test::run_everywhere(rt, 6, 2, [&](std::size_t t, int i) {
    for (int k = 0; k < 2000; ++k) {
      const auto wait = std::chrono::microseconds((k * 37 + i * 11 + t * 5) % 300);
      if (!m.lock_for(wait)) continue;
      if (inside.fetch_add(1) != 0) overlap = true;
      ++counter;
      acquired.fetch_add(1);
      if (fibers::runtime::current() != nullptr && k % 3 == 0) fibers::this_fiber::yield();
      inside.fetch_sub(1);
      m.unlock();
    }
  });
  EXPECT_FALSE(overlap.load());
  EXPECT_EQ(counter, acquired.load());
  EXPECT_GT(acquired.load(), 0);
  EXPECT_TRUE(m.try_lock()) << "a waiter that gave up was left owning the mutex";
  m.unlock();
}

// Pins the calling OS thread to the `k`-th CPU this process may use (no-op with fewer than two).
void pin_to_cpu(int k) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2) return;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &allowed) && k-- == 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      ::pthread_setaffinity_np(::pthread_self(), sizeof one, &one);
      return;
    }
  }
}

// Involuntary context switches of the calling OS thread so far.
long preemptions() {
  rusage ru{};
  ::getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nivcsw;
}

// A looper re-locks in a tight loop; a waiter on another thread must get the lock within a
// few of the looper's iterations (Boost.Fiber 1.81's mutex starved it for over a second).
// Counted: the looper's iterations between the waiter's call to lock() and its getting the
// lock. Rounds in which the OS preempted the waiter's thread are not counted (the looper
// may legitimately run on before the waiter has even queued); each looper iteration does
// a few us of work under the lock, so the waiter's way into the queue spans few of them. The two
// threads are pinned to different CPUs, so that a lock without handoff fails reliably (the
// waiter, woken on its own CPU, always finds the looper holding the lock again).
void expect_no_starvation(bool plain_thread_looper) {
  fibers::mutex m;
  std::atomic<bool> stop{false};
  std::atomic<long> iterations{0};
  std::uint64_t guarded = 1;  // the looper's work under m
  fibers_test::completion looper_done(1);
  auto loop = [&] {
    pin_to_cpu(1);
    while (!stop.load()) {
      m.lock();
      for (int i = 0; i < 2000; ++i) guarded = guarded * 6364136223846793005u + 1442695040888963407u;
      iterations.fetch_add(1);
      m.unlock();
    }
    looper_done.done();
  };
  fibers::runtime rt(2);
  std::thread plain;
  if (plain_thread_looper) plain = std::thread(loop);
  else rt.post(loop, 1);
  long worst = 0;
  int counted = 0;
  rt.run([&] {
    pin_to_cpu(0);
    while (iterations.load() < 1000) fibers::this_fiber::sleep_for(1ms);
    for (int round = 0; round < 500 && counted < 20; ++round) {
      fibers::this_fiber::sleep_for(2ms);  // the looper spins uncontended meanwhile
      const long switches = preemptions();
      const long before = iterations.load();
      m.lock();
      const long after = iterations.load();
      m.unlock();
      if (preemptions() != switches) continue;
      ++counted;
      worst = std::max(worst, after - before);
    }
  });
  stop = true;
  EXPECT_TRUE(looper_done.wait());
  if (plain.joinable()) plain.join();
  EXPECT_GT(iterations.load(), 1000);
  EXPECT_EQ(counted, 20) << "the waiter's thread was preempted in almost every round";
#if defined(__SANITIZE_THREAD__)
  const long bound = 50;  // every step of the waiter's path costs several times more under TSan
#else
  const long bound = 10;
#endif
  // Without handoff the waiter waits for thousands of iterations (over a second).
  EXPECT_LT(worst, bound) << "the waiter had to wait for " << worst << " of the looper's iterations";
  EXPECT_NE(guarded, 0u);
}

TEST(Mutex, ALoopingFiberOnAnotherThreadCannotStarveAWaiter) { expect_no_starvation(false); }

TEST(Mutex, ALoopingPlainThreadCannotStarveAFiberWaiter) { expect_no_starvation(true); }

TEST(Mutex, PlainThreadsAndFibersHandTheLockToEachOther) {
  fibers::mutex m;
  std::vector<int> log;  // guarded by m
  fibers::runtime rt(1);
  rt.run([&] {
    std::atomic<int> stage{0};
    m.lock();
    std::thread t([&] {
      stage = 1;
      m.lock();  // blocks this plain thread until the fiber unlocks
      log.push_back(2);
      stage = 2;
      std::this_thread::sleep_for(30ms);  // the fiber's lock() parks meanwhile
      log.push_back(3);
      m.unlock();
    });
    while (stage.load() == 0) fibers::this_fiber::sleep_for(1ms);
    fibers::this_fiber::sleep_for(10ms);
    log.push_back(1);
    m.unlock();
    while (stage.load() < 2) fibers::this_fiber::sleep_for(1ms);
    // While this fiber waits for the plain thread, its I/O thread keeps running fibers.
    bool stop = false;
    int ticks = 0;
    auto heartbeat = fibers::spawn([&] {
      while (!stop) {
        ++ticks;
        fibers::this_fiber::sleep_for(1ms);
      }
    });
    m.lock();
    log.push_back(4);
    m.unlock();
    stop = true;
    heartbeat.join();
    t.join();
    EXPECT_GT(ticks, 0);
  });
  EXPECT_EQ(log, (std::vector<int>{1, 2, 3, 4}));
}

TEST(MutexDeathTest, UnlockingAnUnlockedMutexAbortsWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(fibers::run([] {
                 fibers::mutex m;
                 m.unlock();
               }),
               "fibers::mutex::unlock called on an unlocked mutex");
}

}  // namespace
