// tests/runtime_test.cpp - fibers::runtime: run(), post(), I/O threads, shutdown.
#include <atomic>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers_test::ms_since;

/// Runs `fn` on a thread of its own and reports whether it finished within `limit`. A hang
/// (e.g. a runtime destructor that never returns) then fails one test instead of the binary;
/// the stuck thread is left detached. `fn` must own everything it touches.
template <class F>
bool finishes_within(std::chrono::seconds limit, F fn) {
  auto done = std::make_shared<std::promise<void>>();
  auto fut = done->get_future();
  std::thread([done, fn = std::move(fn)]() mutable {
    try {
      fn();
      done->set_value();
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  }).detach();
  if (fut.wait_for(limit) != std::future_status::ready) return false;
  fut.get();  // rethrows what fn threw
  return true;
}

/// Waits on a plain thread until `counter` reaches `n` (bounded, so a bug fails rather than hangs).
bool wait_for_count(const std::atomic<int>& counter, int n) {
  auto until = std::chrono::steady_clock::now() + 30s;
  while (counter.load() < n) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(Runtime, RunReturnsTheFunctionsValue) {
  EXPECT_EQ(fibers::run([] { return 42; }), 42);
  auto p = fibers::run([] { return std::make_unique<std::string>("move-only"); });
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, "move-only");
}

TEST(Runtime, RunWaitsForAFunctionThatParks) {
  auto start = fibers::clock::now();
  int v = fibers::run([] {
    fibers::this_fiber::sleep_for(20ms);
    return 7;
  });
  EXPECT_EQ(v, 7);
  EXPECT_GE(ms_since(start), 20ms);
}

TEST(Runtime, RunRethrowsTheFunctionsException) {
  try {
    fibers::run([]() -> int { throw std::runtime_error("boom from fiber"); });
    FAIL() << "run() did not rethrow";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom from fiber");
  }
  try {
    fibers::run([] { throw std::system_error(std::make_error_code(std::errc::timed_out), "x"); });
    FAIL() << "run() did not rethrow";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::timed_out);
  }
}

TEST(Runtime, RunFromInsideARuntimeThreadThrowsLogicError) {
  std::promise<bool> threw;  // declared before rt: the runtime may still run fibers using it
  fibers::runtime rt(2);
  rt.run([&] {
    EXPECT_THROW(rt.run([] {}), std::logic_error);
    // Any runtime thread counts, not only the one that owns the runtime being run.
    EXPECT_THROW(fibers::run([] { return 1; }), std::logic_error);
  });
  rt.post(
      [&] {
        try {
          rt.run([] {});
          threw.set_value(false);
        } catch (const std::logic_error&) {
          threw.set_value(true);
        }
      },
      1);
  auto f = threw.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  EXPECT_TRUE(f.get()) << "run() from I/O thread 1 did not throw std::logic_error";
}

TEST(Runtime, PostFromAForeignThreadRunsAFiberOnTheIdleIoThread) {
  std::promise<std::pair<bool, std::size_t>> where;
  fibers::runtime rt;
  std::this_thread::sleep_for(50ms);  // let I/O thread 0 go idle in its reactor wait
  std::thread poster([&] {
    rt.post([&] {
      fibers::this_fiber::yield();  // a real fiber: may park and resume
      where.set_value({fibers::runtime::current() == &rt, fibers::runtime::current_thread_index()});
    });
  });
  poster.join();
  auto f = where.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready) << "posted fiber never ran";
  auto [same_runtime, index] = f.get();
  EXPECT_TRUE(same_runtime);
  EXPECT_EQ(index, 0u);
}

TEST(Runtime, PostsFromManyThreadsAllRun) {
  constexpr int kThreads = 4, kEach = 1000;
  std::atomic<int> ran{0};
  fibers::runtime rt(2);
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) rt.post([&] { ran.fetch_add(1); }, (t + i) % 2);
    });
  }
  for (auto& t : posters) t.join();
  EXPECT_TRUE(wait_for_count(ran, kThreads * kEach)) << "only " << ran.load() << " ran";
}

TEST(Runtime, TwoIoThreadsRunFibersOnDistinctThreads) {
  std::promise<std::pair<std::thread::id, std::size_t>> p1;
  fibers::runtime rt(fibers::runtime_options{.io_threads = 2});
  EXPECT_EQ(rt.io_threads(), 2u);
  std::thread::id t0;
  rt.run([&] {
    EXPECT_EQ(fibers::runtime::current_thread_index(), 0u);
    t0 = std::this_thread::get_id();
  });
  rt.post([&] { p1.set_value({std::this_thread::get_id(), fibers::runtime::current_thread_index()}); },
          1);
  auto f = p1.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  auto [t1, index] = f.get();
  EXPECT_EQ(index, 1u);
  EXPECT_NE(t0, t1);
  EXPECT_NE(t0, std::this_thread::get_id());
  EXPECT_NE(t1, std::this_thread::get_id());
}

TEST(Runtime, FibersOnTwoIoThreadsTalkOverASocket) {
  std::promise<std::string> client_result;
  fibers::runtime rt(2);
  rt.run([&] {
    auto l = fibers::stream_listener::bind(fibers::endpoint::loopback_v4(0));
    auto ep = l.local_endpoint();
    rt.post(
        [&client_result, ep] {
          try {
            auto c = fibers::stream_socket::connect(ep, 10s);
            c.write_all("ping");
            std::string got(4, '\0');
            c.read_exact(got, 10s);
            client_result.set_value(got);
          } catch (...) {
            client_result.set_exception(std::current_exception());
          }
        },
        1);
    auto s = l.accept(10s);
    std::string req(4, '\0');
    s.read_exact(req, 10s);
    EXPECT_EQ(req, "ping");
    s.write_all(req);
    char b;
    EXPECT_EQ(s.read_some(fibers::mutable_buffer(&b, 1), 10s), 0u);  // client closed
  });
  auto f = client_result.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(f.get(), "ping");
}

struct park_state {
  std::atomic<int> parked{0};
  std::atomic<int> canceled{0};
  std::atomic<int> other{0};
};

/// Runs `blocking_call` expecting fibers::canceled; records what happened in `st`.
template <class F>
void expect_canceled(const std::shared_ptr<park_state>& st, F blocking_call) {
  st->parked.fetch_add(1);
  try {
    blocking_call();
    st->other.fetch_add(1);
  } catch (const fibers::canceled&) {
    st->canceled.fetch_add(1);
    throw;
  } catch (...) {
    st->other.fetch_add(1);
  }
}

TEST(Runtime, DestructorCancelsAFiberSleepingForAnHour) {
  auto st = std::make_shared<park_state>();
  bool finished = finishes_within(30s, [st] {
    fibers::runtime rt;
    rt.post([st] { expect_canceled(st, [] { fibers::this_fiber::sleep_for(1h); }); });
    ASSERT_TRUE(wait_for_count(st->parked, 1));
    std::this_thread::sleep_for(20ms);  // let it park
  });
  ASSERT_TRUE(finished) << "~runtime did not return within 30 s";
  EXPECT_EQ(st->canceled.load(), 1);
  EXPECT_EQ(st->other.load(), 0);
}

TEST(Runtime, DestructorCancelsAFiberBlockedInAcceptWithNoClient) {
  auto st = std::make_shared<park_state>();
  bool finished = finishes_within(30s, [st] {
    fibers::runtime rt;
    rt.post([st] {
      auto l = fibers::stream_listener::bind(fibers::endpoint::loopback_v4(0));
      expect_canceled(st, [&] { l.accept(); });
    });
    ASSERT_TRUE(wait_for_count(st->parked, 1));
    std::this_thread::sleep_for(20ms);
  });
  ASSERT_TRUE(finished) << "~runtime did not return within 30 s";
  EXPECT_EQ(st->canceled.load(), 1);
  EXPECT_EQ(st->other.load(), 0);
}

TEST(Runtime, DestructorCancelsDetachedChildFibersOnEveryIoThread) {
  auto st = std::make_shared<park_state>();
  bool finished = finishes_within(30s, [st] {
    fibers::runtime rt(2);
    for (std::size_t t = 0; t < 2; ++t) {
      rt.post(
          [st] {
            fibers::spawn([st] { expect_canceled(st, [] { fibers::this_fiber::sleep_for(1h); }); })
                .detach();
            expect_canceled(st, [] { fibers::this_fiber::sleep_for(1h); });
          },
          t);
    }
    ASSERT_TRUE(wait_for_count(st->parked, 4));
    std::this_thread::sleep_for(20ms);
  });
  ASSERT_TRUE(finished) << "~runtime did not return within 30 s";
  EXPECT_EQ(st->canceled.load(), 4);
  EXPECT_EQ(st->other.load(), 0);
}

TEST(Runtime, FiberCallsOnAPlainThreadThrowLogicError) {
  // No runtime is running on this thread (one may exist elsewhere in the process: see below).
  EXPECT_EQ(fibers::runtime::current(), nullptr);
  EXPECT_THROW(fibers::runtime::current_thread_index(), std::logic_error);
  try {
    auto f = fibers::spawn([] {});
    ADD_FAILURE() << "spawn() outside a runtime thread did not throw";
    f.detach();
  } catch (const std::logic_error& e) {
    EXPECT_STRNE(e.what(), "");
  }
  EXPECT_THROW(fibers::this_fiber::sleep_for(1ms), std::logic_error);
  EXPECT_THROW(fibers::this_fiber::sleep_until(fibers::clock::now() + 1ms), std::logic_error);
}

TEST(Runtime, FiberCallsOnAForeignThreadThrowLogicErrorWhileARuntimeRuns) {
  fibers::runtime rt;
  std::atomic<bool> in_fiber_ok{false};
  rt.run([&] { in_fiber_ok = fibers::runtime::current() == &rt; });
  EXPECT_TRUE(in_fiber_ok.load());
  std::thread other([] {
    EXPECT_EQ(fibers::runtime::current(), nullptr);
    try {
      auto f = fibers::spawn_fiber({.name = "x"}, [] {});
      ADD_FAILURE() << "spawn_fiber() on a foreign thread did not throw";
      f.detach();
    } catch (const std::logic_error&) {
    }
    EXPECT_THROW(fibers::this_fiber::sleep_for(1ms), std::logic_error);
  });
  other.join();
}

TEST(Runtime, StackSizeOptionGivesFibersThatMuchStack) {
  fibers::runtime rt(fibers::runtime_options{.io_threads = 1, .stack_size = 1024 * 1024});
  int sum = rt.run([] {
    // 256 KiB of locals: overflows the 64 KiB default, fits the 1 MiB asked for.
    volatile char big[256 * 1024];
    for (std::size_t i = 0; i < sizeof big; i += 4096) big[i] = static_cast<char>(i >> 12);
    int s = 0;
    for (std::size_t i = 0; i < sizeof big; i += 4096) s += big[i];
    return s;
  });
  int expect = 0;
  for (int i = 0; i < 64; ++i) expect += static_cast<char>(i);
  EXPECT_EQ(sum, expect);
}

}  // namespace
