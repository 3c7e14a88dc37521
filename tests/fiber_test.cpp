// tests/fiber_test.cpp - spawn/join/detach, timed and canceled joins, yield, sleep,
// cancellation (of others and of itself), ids and names.
#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::clock;
using fibers_test::hang_guard;
using fibers_test::in_child_process;
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

// --- join: a cancellation point with a deadline; self-cancellation; handles of canceled fibers

/// Parks for an hour unless canceled; on cancellation takes a few scheduler rounds to clean
/// up (a join must wait for that), records "canceled" in `how`, and rethrows.
void sleep_an_hour_then_clean_up(std::string& how) {
  try {
    fibers::this_fiber::sleep_for(1h);
    how = "slept an hour";
  } catch (const fibers::canceled&) {
    for (int i = 0; i < 20; ++i) fibers::this_fiber::yield();
    how = "canceled";
    throw;
  } catch (const std::system_error& e) {  // a deadline inherited from the spawner
    for (int i = 0; i < 20; ++i) fibers::this_fiber::yield();
    how = e.code() == std::errc::timed_out ? "timed out" : e.what();
    throw;
  }
}

TEST(Fiber, CancelingAFiberParkedInJoinThrowsCanceledAndTheJoinedFiberGoesOn) {
  fibers::run([] {
    fibers::latch go(1);
    bool child_ended = false, parked = false, joinable_after = false;
    std::string join_outcome = "still parked";
    fibers::fiber child = fibers::spawn("child", [&] {
      go.wait();
      child_ended = true;
    });
    auto parent = fibers::spawn([&] {
      parked = true;  // the join below parks at once: the child waits for `go`
      try {
        child.join();
        join_outcome = "returned";
      } catch (const fibers::canceled& e) {
        join_outcome = e.what();
      }
      joinable_after = child.joinable();
    });
    while (!parked) fibers::this_fiber::yield();
    const auto start = clock::now();
    parent.cancel();
    parent.join();  // it caught the canceled
    EXPECT_LT(ms_since(start), 10s);
    EXPECT_NE(join_outcome.find("join fiber 'child'"), std::string::npos) << join_outcome;
    EXPECT_TRUE(joinable_after) << "a canceled join released the handle";
    EXPECT_FALSE(child_ended);
    go.count_down();  // the child was not canceled with its joiner: it goes on and ends
    child.join();
    EXPECT_TRUE(child_ended);
  });
}

TEST(Fiber, ACanceledJoinerCanCancelItsChildAndJoinWaitsForItsEnd) {
  fibers::run([] {
    std::string child_end = "running", second_join = "not reached";
    bool parked = false;
    auto parent = fibers::spawn([&] {
      auto child = fibers::spawn([&] { sleep_an_hour_then_clean_up(child_end); });
      parked = true;
      try {
        child.join();
      } catch (const fibers::canceled&) {
        // Canceled itself, the parent stops the child too; this join waits for its clean-up.
        child.cancel();
        try {
          child.join();
          second_join = "returned";
        } catch (const fibers::canceled&) {
          second_join = child.joinable() ? "gave up (handle kept)" : "rethrew the child's canceled";
        }
        second_join += ", child " + child_end;
        throw;
      }
    });
    while (!parked) fibers::this_fiber::yield();
    parent.cancel();
    EXPECT_THROW(parent.join(), fibers::canceled);
    EXPECT_EQ(second_join, "rethrew the child's canceled, child canceled");
  });
}

TEST(Fiber, JoinForGivesUpAtItsDeadlineAndTheHandleCanBeJoinedAgain) {
  fibers::run([] {
    fibers::latch go(1);
    auto f = fibers::spawn([&] {
      go.wait();
      throw std::runtime_error("child failed");
    });
    const auto start = clock::now();
    EXPECT_FALSE(f.join_for(30ms));
    EXPECT_GE(ms_since(start), 30ms) << "join_for gave up before its deadline";
    EXPECT_TRUE(f.joinable()) << "a timed-out join released the handle";
    EXPECT_FALSE(f.join_until(fibers::deadline::at(clock::now() - 1ms)));  // past: only looks
    EXPECT_FALSE(f.join_until(std::chrono::system_clock::now() + 5ms));     // any clock
    EXPECT_TRUE(f.joinable());
    go.count_down();
    EXPECT_THROW((void)f.join_for(10s), std::runtime_error) << "a timed join that succeeds rethrows";
    EXPECT_FALSE(f.joinable());

    auto quick = fibers::spawn([] { fibers::this_fiber::yield(); });
    EXPECT_TRUE(quick.join_until(fibers::deadline{}));  // a default deadline: no limit
    EXPECT_FALSE(quick.joinable());
  });
}

TEST(Fiber, JoinWhoseInheritedDeadlinePassesThrowsTimedOutAndKeepsTheHandle) {
  fibers::run([] {
    fibers::latch go(1);
    auto f = fibers::spawn([&] { go.wait(); });
    const auto start = clock::now();
    try {
      fibers::with_deadline(20ms, [&] { f.join(); });
      ADD_FAILURE() << "join returned while the fiber waits";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
    }
    EXPECT_GE(ms_since(start), 20ms);
    EXPECT_TRUE(f.joinable());
    // A timed join reports the inherited deadline as its own: false.
    EXPECT_FALSE(fibers::with_deadline(20ms, [&] { return f.join_for(1h); }));
    EXPECT_TRUE(f.joinable());
    go.count_down();
    f.join();
  });
}

TEST(Fiber, PlainThreadJoinsAFiberAndItsTimedJoinGivesUp) {
  fibers::runtime rt(1);
  fibers::latch go(1);
  std::atomic<bool> ended{false};
  fibers::fiber f = rt.run([&] {
    return fibers::spawn([&] {
      go.wait();
      ended = true;
    });
  });
  const auto start = clock::now();
  EXPECT_FALSE(f.join_for(30ms));
  EXPECT_GE(ms_since(start), 30ms);
  EXPECT_TRUE(f.joinable());
  std::thread opener([&] {
    std::this_thread::sleep_for(20ms);
    go.count_down();
  });
  f.join();  // blocks this plain thread until the fiber has ended
  EXPECT_TRUE(ended);
  opener.join();
}

// A join on the fiber's own thread and one on another thread take different paths through the
// fiber's end state (plain stores, and CAS: fiber_state.hpp); one handle may use both.
TEST(Fiber, AHandleTimedOutOnTheFibersThreadIsJoinedFromAnotherThread) {
  fibers::runtime rt(2);
  fibers::latch go(1);
  fibers::fiber child;
  rt.spawn_on(0, [&] {
    child = fibers::spawn([&] {
      go.wait();
      throw std::runtime_error("child failed");
    });
    EXPECT_FALSE(child.join_for(10ms));  // on the child's thread, and gives up
  }).join();
  rt.spawn_on(1, [&] {
    fibers::spawn([&go] {
      fibers::this_fiber::sleep_for(20ms);  // the join below is parked by then (usually)
      go.count_down();
    }).detach();
    EXPECT_THROW(child.join(), std::runtime_error);  // from thread 1: the error still arrives
  }).join();
  EXPECT_FALSE(child.joinable());
}

// The other way round: a join from another thread gives up, then one on the fiber's own thread.
TEST(Fiber, AHandleTimedOutOnAnotherThreadIsJoinedOnTheFibersThread) {
  fibers::runtime rt(2);
  fibers::latch go(1);
  int result = 0;
  fibers::fiber child;
  rt.spawn_on(0, [&] {
    child = fibers::spawn([&] {
      go.wait();
      result = 7;
    });
  }).join();
  rt.spawn_on(1, [&] { EXPECT_FALSE(child.join_for(10ms)); }).join();
  rt.spawn_on(0, [&] {
    fibers::spawn([&go] { go.count_down(); }).detach();
    child.join();  // parks first; the child ends after the detached fiber opens the latch
  }).join();
  EXPECT_EQ(result, 7);
  EXPECT_FALSE(child.joinable());
}

TEST(Fiber, ThisFiberCancelMakesTheNextWaitAndEveryLaterOneFail) {
  fibers::run([] {
    bool returned = false, requested = false;
    std::error_code later;
    const auto start = clock::now();
    auto f = fibers::spawn([&] {
      fibers::this_fiber::cancel();  // interrupts nothing by itself
      returned = true;
      requested = fibers::this_fiber::cancel_requested();
      try {
        fibers::this_fiber::sleep_for(10s);
      } catch (const fibers::canceled&) {
        fibers::this_fiber::sleep_for(10s, later);  // cancellation sticks
        throw;
      }
    });
    EXPECT_THROW(f.join(), fibers::canceled);
    EXPECT_TRUE(returned);
    EXPECT_TRUE(requested);
    EXPECT_EQ(later, fibers::errc::canceled);
    EXPECT_LT(ms_since(start), 5s) << "a sleep did not see the fiber's own cancellation";
  });
  EXPECT_THROW(fibers::this_fiber::cancel(), std::logic_error);  // not on a fiber
}

TEST(Fiber, CancelOnTheFibersOwnHandleMakesItsNextWaitThrowCanceled) {
  fibers::run([] {
    fibers::fiber f;
    const auto start = clock::now();
    f = fibers::spawn([&f] {  // f is assigned before the new fiber first runs
      f.cancel();
      fibers::this_fiber::sleep_for(10s);
    });
    EXPECT_THROW(f.join(), fibers::canceled);
    EXPECT_LT(ms_since(start), 5s);
  });
}

TEST(Fiber, RuntimeShutdownEndsAFiberParkedInJoinOnlyAfterTheJoinedFiber) {
  // Shutdown cancels both. The joined fiber is then on its way out, so the join waits for its
  // clean-up and rethrows its canceled, as before join became a cancellation point.
  in_child_process([] {
    hang_guard guard(20s, "runtime shutdown with a fiber parked in join");
    std::string parent_saw = "nothing", child_end = "running";
    {
      fibers::runtime rt(1);
      std::atomic<bool> parked{false};
      rt.post([&] {
        auto child = fibers::spawn([&] { sleep_an_hour_then_clean_up(child_end); });
        parked = true;
        try {
          child.join();
          parent_saw = "join returned";
        } catch (const fibers::canceled&) {
          parent_saw = child.joinable() ? "join gave up" : "the child's canceled, child " + child_end;
          throw;
        }
      });
      while (!parked) std::this_thread::sleep_for(1ms);
      std::this_thread::sleep_for(10ms);  // the parent is parked in join by now (not required)
    }
    EXPECT_EQ(parent_saw, "the child's canceled, child canceled");
  });
}

TEST(Fiber, RuntimeShutdownEndsAFiberJoiningAFiberOnAnotherIoThread) {
  // Thread 0 shuts down first: the joiner's join is canceled while the child on thread 1 is
  // not (yet). The joiner unwinds, and its handle cancels the child and waits for it.
  in_child_process([] {
    hang_guard guard(20s, "runtime shutdown with a join across I/O threads");
    std::string child_end = "running";
    std::atomic<bool> parked{false};
    {
      fibers::runtime rt(2);
      rt.post([&] {
        auto child = fibers::spawn_on(1, [&] { sleep_an_hour_then_clean_up(child_end); });
        parked = true;
        child.join();
      }, 0);
      while (!parked) std::this_thread::sleep_for(1ms);
      std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(child_end, "canceled");
  });
}

TEST(Fiber, JoinableHandleInACanceledOrExpiredFiberCancelsTheFiberAndWaitsForIt) {
  fibers::run([] {
    // Canceled: the parent never gets to join; unwinding destroys the handle.
    std::string child_end = "running", seen_after_handle = "not yet";
    bool parked = false;
    auto parent = fibers::spawn([&] {
      struct probe {  // destroyed after the handle below
        std::string& end;
        std::string& seen;
        ~probe() { seen = end; }
      } after_handle{child_end, seen_after_handle};
      auto child = fibers::spawn([&] { sleep_an_hour_then_clean_up(child_end); });
      parked = true;
      fibers::this_fiber::sleep_for(1h);
    });
    while (!parked) fibers::this_fiber::yield();
    parent.cancel();
    EXPECT_THROW(parent.join(), fibers::canceled);
    EXPECT_EQ(seen_after_handle, "canceled") << "the handle did not wait for the canceled child";

    // Expired: join throws timed_out inside with_deadline, where the handle lives. The child
    // inherited the same deadline, so its sleep ends too (timed out, or canceled by the
    // handle if that came first); either way it has ended when the handle is gone.
    std::string other_end = "running";
    EXPECT_THROW(fibers::with_deadline(20ms, [&] {
                   auto child = fibers::spawn([&] { sleep_an_hour_then_clean_up(other_end); });
                   child.join();
                 }),
                 std::system_error);
    EXPECT_TRUE(other_end == "canceled" || other_end == "timed out") << other_end;
  });
}

TEST(FiberDeathTest, DestroyingAJoinableHandleAbortsNamingTheFiber) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(fibers::run([] { auto f = fibers::spawn("forgotten", [] {}); }),
               "fiber 'forgotten' \\(id [0-9]+\\) handle destroyed while joinable");
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
