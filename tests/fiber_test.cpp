// tests/fiber_test.cpp - spawn/join/detach, yield, sleep, cancellation, ids and names.
#include <atomic>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers_test::ms_since;

TEST(Fiber, JoinReturnsAfterTheFiberHasFinished) {
  fibers::run([] {
    std::vector<std::string> log;
    auto f = fibers::spawn([&] {
      log.push_back("child-start");
      fibers::this_fiber::sleep_for(10ms);
      fibers::this_fiber::yield();
      log.push_back("child-end");
    });
    EXPECT_TRUE(f.joinable());
    log.push_back("parent-before-join");
    f.join();
    log.push_back("parent-after-join");
    EXPECT_FALSE(f.joinable());
    ASSERT_EQ(log.size(), 4u);
    EXPECT_EQ(log.back(), "parent-after-join");
    EXPECT_EQ(log[2], "child-end");
    EXPECT_THROW(f.join(), std::logic_error);  // no longer joinable
  });
}

TEST(Fiber, JoiningItselfThrowsLogicError) {
  fibers::run([] {
    fibers::fiber f;
    bool go = false, checked = false, threw = false;
    f = fibers::spawn([&] {
      while (!go) fibers::this_fiber::yield();
      try {
        f.join();
      } catch (const std::logic_error&) {
        threw = true;
      }
      checked = true;
    });
    go = true;
    // Only the child touches f meanwhile. Bounded: a self-join that parks would never return.
    for (int i = 0; i < 5000 && !checked; ++i) fibers::this_fiber::sleep_for(1ms);
    if (!checked) {
      f.detach();
      FAIL() << "a fiber joining itself did not return";
    }
    ASSERT_TRUE(f.joinable());
    f.join();
    EXPECT_TRUE(threw);
  });
}

TEST(Fiber, DetachedFiberRunsToCompletion) {
  fibers::run([] {
    std::atomic<bool> done{false};
    auto f = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(5ms);
      done = true;
    });
    f.detach();
    EXPECT_FALSE(f.joinable());
    EXPECT_EQ(f.id(), 0u);
    for (int i = 0; i < 10000 && !done; ++i) fibers::this_fiber::sleep_for(1ms);
    EXPECT_TRUE(done.load());
  });
}

TEST(Fiber, DetachedFiberThatThrowsDoesNotTakeDownTheProcess) {
  fibers::run([] {
    bool ran = false;
    fibers::spawn([&] {
      ran = true;
      throw std::runtime_error("expected: detached fiber exception (printed, not fatal)");
    }).detach();
    fibers::this_fiber::sleep_for(5ms);
    EXPECT_TRUE(ran);
  });
}

TEST(Fiber, JoinRethrowsTheFibersException) {
  fibers::run([] {
    auto f = fibers::spawn([] {
      fibers::this_fiber::yield();
      throw std::out_of_range("fiber failed");
    });
    try {
      f.join();
      FAIL() << "join() did not rethrow";
    } catch (const std::out_of_range& e) {
      EXPECT_STREQ(e.what(), "fiber failed");
    }
    EXPECT_FALSE(f.joinable());
  });
}

TEST(Fiber, MovedFromHandleIsEmpty) {
  fibers::run([] {
    auto a = fibers::spawn([] {});
    auto id = a.id();
    EXPECT_NE(id, 0u);
    fibers::fiber b = std::move(a);
    EXPECT_FALSE(a.joinable());  // NOLINT(bugprone-use-after-move): documented state
    EXPECT_EQ(a.id(), 0u);
    EXPECT_TRUE(b.joinable());
    EXPECT_EQ(b.id(), id);
    b.join();
  });
}

TEST(Fiber, YieldInterleavesTwoFibers) {
  fibers::run([] {
    std::vector<char> order;
    bool go = false;
    auto body = [&](char tag) {
      while (!go) fibers::this_fiber::yield();
      for (int i = 0; i < 5; ++i) {
        order.push_back(tag);
        fibers::this_fiber::yield();
      }
    };
    auto a = fibers::spawn([&] { body('a'); });
    auto b = fibers::spawn([&] { body('b'); });
    go = true;
    a.join();
    b.join();
    ASSERT_EQ(order.size(), 10u);
    for (std::size_t i = 1; i < order.size(); ++i)
      EXPECT_NE(order[i], order[i - 1]) << "yield did not let the other fiber run, at " << i;
  });
}

TEST(Fiber, SleepersWakeInDeadlineOrder) {
  fibers::run([] {
    std::vector<int> woke;
    std::vector<fibers::fiber> fs;
    for (int ms : {30, 10, 20}) {
      fs.push_back(fibers::spawn([&woke, ms] {
        auto start = fibers::clock::now();
        fibers::this_fiber::sleep_for(std::chrono::milliseconds(ms));
        EXPECT_GE(ms_since(start).count(), ms) << "sleep_for returned early";
        woke.push_back(ms);
      }));
    }
    for (auto& f : fs) f.join();
    EXPECT_EQ(woke, (std::vector<int>{10, 20, 30}));
  });
}

TEST(Fiber, SleepUntilInThePastReturnsAtOnce) {
  fibers::run([] {
    // A watchdog turns a hang into a failure: it cancels the sleeper after 10 s.
    std::error_code ec;
    auto sleeper = fibers::spawn([&] {
      fibers::this_fiber::sleep_until(fibers::clock::now() - 1h, ec);
      if (!ec) fibers::this_fiber::sleep_for(-5ms, ec);
      if (!ec) fibers::this_fiber::sleep_for(0ms, ec);
    });
    auto watchdog = fibers::spawn([&] {
      std::error_code wec;
      fibers::this_fiber::sleep_for(10s, wec);
      if (!wec) sleeper.cancel();
    });
    sleeper.join();
    watchdog.cancel();
    watchdog.join();
    EXPECT_FALSE(ec) << "a past deadline did not return at once: " << ec.message();
  });
}

TEST(Fiber, CancelMakesASleepingFiberThrowCanceled) {
  fibers::run([] {
    bool caught = false, flag_seen = false;
    auto f = fibers::spawn([&] {
      try {
        fibers::this_fiber::sleep_for(30s);
      } catch (const fibers::canceled& e) {
        caught = true;
        flag_seen = fibers::this_fiber::cancel_requested();
        EXPECT_EQ(e.code(), fibers::errc::canceled);
        throw;
      }
    });
    auto start = fibers::clock::now();
    fibers::this_fiber::sleep_for(20ms);
    f.cancel();
    EXPECT_THROW(f.join(), fibers::canceled);
    EXPECT_TRUE(caught);
    EXPECT_TRUE(flag_seen);
    EXPECT_LT(ms_since(start), 10s) << "cancel did not interrupt the 30 s sleep";
  });
}

TEST(Fiber, CancelBeforeTheSleepMakesTheNextSleepFail) {
  fibers::run([] {
    bool go = false, requested = false;
    std::error_code ec;
    auto f = fibers::spawn([&] {
      while (!go) fibers::this_fiber::yield();
      requested = fibers::this_fiber::cancel_requested();
      fibers::this_fiber::sleep_for(30s, ec);
    });
    EXPECT_FALSE(fibers::this_fiber::cancel_requested());
    f.cancel();
    go = true;
    f.join();
    EXPECT_TRUE(requested);
    EXPECT_EQ(ec, fibers::errc::canceled);
  });
}

TEST(Fiber, ErrorCodeSleepGivesCanceledAndClearsOnSuccess) {
  fibers::run([] {
    std::error_code ok_ec = std::make_error_code(std::errc::io_error);
    fibers::this_fiber::sleep_for(1ms, ok_ec);
    EXPECT_FALSE(ok_ec) << "sleep did not clear ec: " << ok_ec.message();

    std::error_code ec;
    auto f = fibers::spawn([&] { fibers::this_fiber::sleep_for(30s, ec); });
    fibers::this_fiber::sleep_for(10ms);
    f.cancel();
    f.join();  // the error_code form does not throw, so neither does join
    EXPECT_EQ(ec, fibers::errc::canceled);
    EXPECT_EQ(ec.category().name(), std::string("fibers"));
  });
}

TEST(Fiber, CancelFromAForeignThreadWakesTheSleeper) {
  fibers::run([] {
    std::atomic<bool> sleeping{false};
    std::error_code ec;
    auto start = fibers::clock::now();
    auto f = fibers::spawn([&] {
      sleeping = true;
      fibers::this_fiber::sleep_for(30s, ec);
    });
    std::thread canceler([&] {
      while (!sleeping) std::this_thread::sleep_for(1ms);
      std::this_thread::sleep_for(20ms);
      f.cancel();
    });
    f.join();
    canceler.join();
    EXPECT_EQ(ec, fibers::errc::canceled);
    EXPECT_LT(ms_since(start), 10s);
  });
}

TEST(Fiber, IdsAreUniqueAndNamesAreKept) {
  fibers::run([] {
    EXPECT_NE(fibers::this_fiber::id(), 0u);  // run() executes on a fiber
    EXPECT_EQ(fibers::fiber().id(), 0u);
    std::set<std::uint64_t> ids{fibers::this_fiber::id()};
    std::vector<fibers::fiber> fs;
    std::vector<std::uint64_t> seen_inside(100);
    for (int i = 0; i < 100; ++i) {
      fs.push_back(fibers::spawn([&seen_inside, i] { seen_inside[i] = fibers::this_fiber::id(); }));
      EXPECT_TRUE(ids.insert(fs.back().id()).second) << "duplicate id " << fs.back().id();
      EXPECT_EQ(fs.back().name(), "fiber-" + std::to_string(fs.back().id()));
    }
    for (int i = 0; i < 100; ++i) {
      auto id = fs[i].id();
      fs[i].join();
      EXPECT_EQ(seen_inside[i], id);
    }
    // Ids are never reused, even after the fibers above have ended.
    auto again = fibers::spawn([] {});
    EXPECT_EQ(ids.count(again.id()), 0u);
    again.join();

    auto named = fibers::spawn("worker-7", [] { fibers::this_fiber::yield(); });
    EXPECT_EQ(named.name(), "worker-7");
    named.join();
  });
}

TEST(Fiber, TenThousandFibersSpawnAndJoin) {
  fibers::run([] {
    constexpr int kFibers = 10000;
    int started = 0, finished = 0;
    std::vector<fibers::fiber> fs;
    fs.reserve(kFibers);
    for (int i = 0; i < kFibers; ++i) {
      fs.push_back(fibers::spawn([&] {
        ++started;
        fibers::this_fiber::sleep_for(2ms);  // all of them parked at once
        ++finished;
      }));
    }
    for (auto& f : fs) f.join();
    EXPECT_EQ(started, kFibers);
    EXPECT_EQ(finished, kFibers);
  });
}

}  // namespace
