// tests/future_test.cpp - promise/future across fibers, I/O threads and plain threads; async,
// when_all, when_any; cancellation and deadlines of waits.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fibers/future.hpp"
#include "fibers/scope.hpp"
#include "heartbeat_fiber.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::clock;
using fibers_test::ms_since;

/// Run-queue delay of the calling thread (/proc/thread-self/schedstat, field 2), subtracted
/// from heartbeat gaps so an overloaded 2-core VM is not mistaken for a blocked I/O thread.
std::chrono::nanoseconds run_delay() {
  int fd = ::open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char buf[128];
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  ::close(fd);
  if (n <= 0) return {};
  buf[n] = '\0';
  unsigned long long on_cpu = 0, waiting = 0;
  if (std::sscanf(buf, "%llu %llu", &on_cpu, &waiting) != 2) return {};
  return std::chrono::nanoseconds(static_cast<std::int64_t>(waiting));
}

TEST(Future, ValueSetByPromiseIsReturnedByGet) {
  fibers::run([] {
    fibers::promise<std::string> p;
    auto f = p.get_future();
    EXPECT_TRUE(f.valid());
    EXPECT_FALSE(f.ready());
    fibers::spawn([&p] {
      fibers::this_fiber::sleep_for(5ms);
      p.set_value("forty-two");
    }).detach();
    EXPECT_EQ(f.get(), "forty-two");
    EXPECT_FALSE(f.valid()) << "get() consumes the future";
  });
}

TEST(Future, ExceptionSetByPromiseIsRethrownByGet) {
  fibers::run([] {
    fibers::promise<int> p;
    auto f = p.get_future();
    p.set_exception(std::make_exception_ptr(std::out_of_range("boom")));
    try {
      f.get();
      FAIL() << "get() did not rethrow";
    } catch (const std::out_of_range& e) {
      EXPECT_STREQ(e.what(), "boom");
    }
    fibers::promise<void> pv;
    auto fv = pv.get_future();
    pv.set_exception(std::make_exception_ptr(std::runtime_error("void boom")));
    EXPECT_THROW(fv.get(), std::runtime_error);
  });
}

TEST(Future, SecondSetAndSecondGetFutureAreErrors) {
  fibers::run([] {
    fibers::promise<int> p;
    auto f = p.get_future();
    EXPECT_THROW(p.get_future(), std::future_error);
    p.set_value(1);
    try {
      p.set_value(2);
      FAIL() << "second set_value did not throw";
    } catch (const std::future_error& e) {
      EXPECT_EQ(e.code(), std::future_errc::promise_already_satisfied);
    }
    EXPECT_EQ(f.get(), 1);
  });
}

TEST(Future, PromiseDestroyedWithoutValueGivesBrokenPromise) {
  fibers::run([] {
    fibers::future<int> f;
    {
      fibers::promise<int> p;
      f = p.get_future();
    }
    try {
      f.get();
      FAIL() << "no broken_promise";
    } catch (const std::future_error& e) {
      EXPECT_EQ(e.code(), std::future_errc::broken_promise);
    }
    // Also while a fiber is already waiting, with the promise dying on another thread.
    auto p = std::make_unique<fibers::promise<int>>();
    auto f2 = p->get_future();
    std::thread killer([&p] {
      std::this_thread::sleep_for(20ms);
      p.reset();
    });
    EXPECT_THROW(f2.get(), std::future_error);
    killer.join();
  });
}

TEST(Future, GetFromAFiberParksOnlyThatFiberWhileAPlainThreadSetsTheValue) {
  fibers::run([] {
    fibers::promise<int> p;
    auto f = p.get_future();
    bool stop = false;
    int ticks = 0;
    clock::duration max_gap{0};
    auto heartbeat = fibers::spawn("heartbeat", [&] {
      auto last = clock::now();
      auto last_delay = run_delay();
      while (!stop) {
        fibers::this_fiber::sleep_for(5ms);
        auto now = clock::now();
        auto d = run_delay();
        max_gap = std::max(max_gap, (now - last) - (d - last_delay));
        last = now;
        last_delay = d;
        ++ticks;
      }
    });
    fibers::this_fiber::sleep_for(10ms);
    const auto start = clock::now();
    std::thread setter([&p] {
      std::this_thread::sleep_for(200ms);
      p.set_value(42);
    });
    const int v = f.get();
    const auto waited = ms_since(start);
    setter.join();
    stop = true;
    heartbeat.join();
    EXPECT_EQ(v, 42);
    EXPECT_GE(waited, 200ms) << "get() returned before the value was set";
    EXPECT_GE(ticks, 10) << "the heartbeat barely ran while get() waited";
    EXPECT_LT(max_gap, fibers_test::stall_limit) << "get() blocked the I/O thread";
  });
}

TEST(Future, ValueSetByAFiberOnAnotherIoThreadWakesTheWaitingFiber) {
  fibers::runtime rt(2);
  rt.run([] {
    EXPECT_EQ(fibers::runtime::current_thread_index(), 0u);
    fibers::promise<std::size_t> p;
    auto f = p.get_future();
    auto setter = fibers::spawn_on(1, [&p] {
      fibers::this_fiber::sleep_for(20ms);
      p.set_value(fibers::runtime::current_thread_index());
    });
    EXPECT_EQ(f.get(), 1u);
    setter.join();
  });
}

TEST(Future, GetFromAPlainThreadBlocksUntilAFiberSetsTheValue) {
  fibers::runtime rt;
  fibers::promise<int> p;
  auto f = p.get_future();
  rt.post([&p] {
    fibers::this_fiber::sleep_for(30ms);
    p.set_value(9);
  });
  const auto start = clock::now();
  EXPECT_EQ(f.get(), 9);  // this test thread is not a runtime thread
  EXPECT_GE(ms_since(start), 30ms);
}

TEST(Future, WaitForAndWaitUntilReturnFalseAtTheDeadlineAndNotBefore) {
  fibers::run([] {
    fibers::promise<int> p;
    auto f = p.get_future();
    auto start = clock::now();
    EXPECT_FALSE(f.wait_for(50ms));
    EXPECT_GE(ms_since(start), 50ms);
    start = clock::now();
    EXPECT_FALSE(f.wait_until(start + 40ms));
    EXPECT_GE(ms_since(start), 40ms);
    EXPECT_TRUE(f.valid());
    p.set_value(3);
    EXPECT_TRUE(f.wait_for(0ms));
    EXPECT_TRUE(f.wait_until(clock::now() + 10s));
    EXPECT_EQ(f.get(), 3);
  });
  // The same from a plain thread.
  fibers::promise<int> p;
  auto f = p.get_future();
  const auto start = clock::now();
  EXPECT_FALSE(f.wait_for(30ms));
  EXPECT_GE(ms_since(start), 30ms);
}

TEST(Future, GetAndWaitEndedByAnInheritedDeadlineThrowTimedOutAndKeepTheFuture) {
  fibers::run([] {
    fibers::promise<int> p;
    auto f = p.get_future();
    const auto start = clock::now();
    try {
      const int v = fibers::with_deadline(30ms, [&] { return f.get(); });
      ADD_FAILURE() << "get() returned " << v << " although no value was ever set";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
    }
    EXPECT_GE(ms_since(start), 30ms);
    EXPECT_TRUE(f.valid()) << "a get() that timed out consumed the future";
    p.set_value(5);
    if (f.valid()) {
      EXPECT_EQ(f.get(), 5);
    }

    fibers::promise<int> p2;
    auto f2 = p2.get_future();
    try {
      fibers::with_deadline(10ms, [&] { f2.wait(); });
      EXPECT_TRUE(f2.ready()) << "wait() returned but the future is not ready";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
    }
  });
}

TEST(Future, CancelingAFiberBlockedInGetThrowsCanceledAndThePromiseStaysUsable) {
  fibers::run([] {
    fibers::promise<int> p;
    auto f = p.get_future();
    bool got_canceled = false;
    const auto start = clock::now();
    auto waiter = fibers::spawn([&] {
      try {
        f.get();
      } catch (const fibers::canceled& e) {
        EXPECT_EQ(e.code(), fibers::errc::canceled);
        got_canceled = true;
        throw;
      }
    });
    fibers::this_fiber::sleep_for(20ms);
    waiter.cancel();
    EXPECT_THROW(waiter.join(), fibers::canceled);
    EXPECT_TRUE(got_canceled);
    EXPECT_LT(ms_since(start), 5s);
    p.set_value(5);  // the canceled waiter's node is gone: no crash, no stale wake-up
    EXPECT_TRUE(f.valid());
    EXPECT_TRUE(f.ready());
    EXPECT_EQ(f.get(), 5);
  });
}

TEST(Future, CancelingFromAPlainThreadInterruptsGet) {
  fibers::runtime rt;
  fibers::promise<int> p;
  auto f = p.get_future();
  auto waiter = rt.spawn_on(0, [&f] { f.get(); });
  std::this_thread::sleep_for(20ms);
  waiter.cancel();
  EXPECT_THROW(waiter.join(), fibers::canceled);
  p.set_value(1);
}

TEST(Future, AsyncRunsTheFunctionInAFiberAndCarriesItsResultOrException) {
  fibers::run([] {
    bool ran = false;
    auto a = fibers::async([] {
      fibers::this_fiber::sleep_for(5ms);
      return 7;
    });
    auto b = fibers::async([]() -> int { throw std::invalid_argument("bad"); });
    auto c = fibers::async([&ran] { ran = true; });
    EXPECT_EQ(a.get(), 7);
    EXPECT_THROW(b.get(), std::invalid_argument);
    c.get();
    EXPECT_TRUE(ran);
  });
}

TEST(Future, WhenAllReturnsATupleAndAVectorOfEveryValue) {
  fibers::run([] {
    fibers::promise<int> pi;
    fibers::promise<std::string> ps;
    auto fi = pi.get_future();
    auto fs = ps.get_future();
    std::thread t([&] {
      std::this_thread::sleep_for(10ms);
      ps.set_value("s");
      std::this_thread::sleep_for(10ms);
      pi.set_value(1);
    });
    auto [i, s] = fibers::when_all(fi, fs);
    t.join();
    EXPECT_EQ(i, 1);
    EXPECT_EQ(s, "s");

    std::vector<fibers::future<int>> fs2;
    for (int k = 0; k < 10; ++k) {
      fs2.push_back(fibers::async([k] {
        fibers::this_fiber::sleep_for(std::chrono::milliseconds(10 - k));
        return k * k;
      }));
    }
    auto all = fibers::when_all(fs2);
    ASSERT_EQ(all.size(), 10u);
    for (int k = 0; k < 10; ++k) EXPECT_EQ(all[k], k * k);

    fibers::promise<int> never;
    auto fn = never.get_future();
    auto done = fibers::async([] { return 1; });
    const auto start = clock::now();
    EXPECT_FALSE(fibers::when_all(fibers::deadline(30ms), done, fn));
    EXPECT_GE(ms_since(start), 30ms);
  });
}

TEST(Future, WhenAnyReturnsTheIndexOfTheFirstReadyAndNulloptAtTheDeadline) {
  fibers::run([] {
    fibers::promise<int> p0, p1, p2;
    auto f0 = p0.get_future(), f1 = p1.get_future(), f2 = p2.get_future();
    std::thread t([&p1] {
      std::this_thread::sleep_for(20ms);
      p1.set_value(11);
    });
    EXPECT_EQ(fibers::when_any(f0, f1, f2), 1u);
    t.join();
    EXPECT_TRUE(f1.ready());
    EXPECT_FALSE(f0.ready());
    EXPECT_EQ(f1.get(), 11);

    auto start = clock::now();
    EXPECT_EQ(fibers::when_any(fibers::deadline(40ms), f0, f2), std::nullopt);
    EXPECT_GE(ms_since(start), 40ms);

    std::vector<fibers::future<int>> v;
    fibers::promise<int> q0, q1;
    v.push_back(q0.get_future());
    v.push_back(q1.get_future());
    start = clock::now();
    EXPECT_EQ(fibers::when_any(v, fibers::deadline(30ms)), std::nullopt);
    EXPECT_GE(ms_since(start), 30ms);
    fibers::spawn([&q1] { q1.set_value(2); }).detach();
    EXPECT_EQ(fibers::when_any(v), std::optional<std::size_t>(1));
  });
}

TEST(Future, WhenAnyRacingWithASetterOnAnotherThreadNeverMissesTheWakeUp) {
  constexpr int kRounds = 3000;
  fibers::runtime rt;
  std::vector<fibers::promise<int>> promises(2 * kRounds);
  std::vector<fibers::future<int>> futures;
  for (auto& p : promises) futures.push_back(p.get_future());
  std::atomic<int> round{-1};
  std::thread setter([&] {  // sets one of each pair just as the fiber starts queuing on both
    for (int k = 0; k < kRounds; ++k) {
      while (round.load() < k) {
      }
      promises[2 * k + (k % 2)].set_value(k);
    }
  });
  rt.run([&] {
    for (int k = 0; k < kRounds; ++k) {
      round.store(k);
      auto i = fibers::when_any(fibers::deadline(10s), futures[2 * k], futures[2 * k + 1]);
      ASSERT_EQ(i, std::optional<std::size_t>(k % 2)) << "round " << k;
    }
  });
  setter.join();
}

TEST(Future, TenThousandPairsSetFromTwoPlainThreadsAreEachAwaitedByAFiber) {
#if defined(__SANITIZE_THREAD__)
  constexpr int kN = 4000;  // TSan counts each live fiber as a thread and stops at 8,128
#else
  constexpr int kN = 10000;
#endif
  fibers::runtime rt(fibers::runtime_options{1, 32 * 1024});
  std::vector<fibers::promise<std::int64_t>> promises(kN);
  std::vector<fibers::future<std::int64_t>> futures;
  futures.reserve(kN);
  for (auto& p : promises) futures.push_back(p.get_future());
  const std::int64_t sum = rt.run([&] {
    std::int64_t total = 0;
    std::vector<fibers::fiber> waiters;
    waiters.reserve(kN);
    auto spawn_waiters = [&](int from, int to) {
      for (int i = from; i < to; ++i) {
        waiters.push_back(fibers::spawn([&total, &f = futures[i]] { total += f.get(); }));
      }
    };
    // Half the waiters are parked before the setters start; the other half race them.
    spawn_waiters(0, kN / 2);
    fibers::this_fiber::yield();
    std::thread a([&] {
      for (int i = 0; i < kN; i += 2) promises[i].set_value(i);
    });
    std::thread b([&] {
      for (int i = kN - 1; i >= 1; i -= 2) promises[i].set_value(i);
    });
    spawn_waiters(kN / 2, kN);
    for (auto& w : waiters) w.join();
    a.join();
    b.join();
    return total;
  });
  EXPECT_EQ(sum, std::int64_t{kN} * (kN - 1) / 2);
}

}  // namespace
