// tests/deadline_test.cpp - inherited deadlines: with_deadline, deadline_scope,
// current_deadline, and the deadline a spawned fiber or a scope's children inherit.
#include <atomic>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fibers/scope.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::clock;
using fibers_test::hang_guard;
using fibers_test::in_child_process;
using fibers_test::ms_since;
using fibers_test::sleep_an_hour;

TEST(Scope, SpawnAndSpawnOnPassTheCallersDeadlineOn) {
  // A fiber spawned inside with_deadline (or by a scope's child) inherits the deadline in
  // effect, on its own thread or another; a task posted to a thread starts with none.
  fibers::runtime rt(2);
  rt.run([&rt] {
    clock::time_point outer{}, local{}, here{}, there{}, free_there{}, in_child{}, posted{};
    fibers::latch posted_ran(1);
    fibers::with_deadline(1h, [&] {
      outer = fibers::current_deadline();
      ASSERT_LT(outer, clock::time_point::max());
      fibers::spawn([&] { local = fibers::current_deadline(); }).join();
      rt.spawn_on(0, [&] { here = fibers::current_deadline(); }).join();
      rt.spawn_on(1, [&] { there = fibers::current_deadline(); }).join();
      fibers::spawn_on(1, [&] { free_there = fibers::current_deadline(); }).join();
      fibers::with_scope([&](fibers::scope& s) {
        s.spawn([&] { fibers::spawn_on(1, [&] { in_child = fibers::current_deadline(); }).join(); });
      });
      rt.post([&] { posted = fibers::current_deadline(); posted_ran.count_down(); }, 1);
      posted_ran.wait();
    });
    EXPECT_EQ(local, outer);
    EXPECT_EQ(here, outer);
    EXPECT_EQ(there, outer);
    EXPECT_EQ(free_there, outer);
    EXPECT_EQ(in_child, outer);
    EXPECT_EQ(posted, clock::time_point::max());
    // Outside any deadline, a spawned fiber has none either.
    clock::time_point none{};
    fibers::spawn_on(1, [&] { none = fibers::current_deadline(); }).join();
    EXPECT_EQ(none, clock::time_point::max());
  });
}

TEST(Scope, AFiberSpawnedOnAnotherThreadTimesOutWithItsSpawnersDeadline) {
  // The inherited deadline is enforced in the new fiber: its wait fails with timed_out, and
  // the spawner's join (past that deadline itself) still collects it with join_until(max).
  fibers::runtime rt(2);
  rt.run([] {
    std::error_code got;
    fibers::fiber f;
    try {
      fibers::with_deadline(30ms, [&] {
        f = fibers::spawn_on(1, [&] {
          fibers::channel<int> never;
          try {
            never.recv();
          } catch (const std::system_error& e) {
            got = e.code();
          }
        });
        fibers::this_fiber::sleep_for(1h);
      });
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out);
    }
    f.join();
    EXPECT_EQ(got, std::errc::timed_out);
  });
}

TEST(Scope, WithDeadlineTimesOutAReadAndRestoresThePreviousDeadline) {
  fibers::run([] {
    auto pair = fibers_test::make_tcp_pair();
    EXPECT_EQ(fibers::current_deadline(), clock::time_point::max());
    const auto start = clock::now();
    try {
      fibers::with_deadline(50ms, [&] {
        EXPECT_LE(fibers::current_deadline(), clock::now() + 50ms);
        char buf[8];
        pair.server.read_some(buf);  // no data ever comes
      });
      FAIL() << "read returned";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
    }
    EXPECT_GE(ms_since(start), 50ms);
    EXPECT_EQ(fibers::current_deadline(), clock::time_point::max()) << "deadline not restored";
    // The socket still works without a deadline afterwards.
    pair.client.write_all("ok");
    char buf[2];
    pair.server.read_exact(buf, 10s);
    EXPECT_EQ(std::string(buf, 2), "ok");
    // The error_code form reports the same without throwing.
    std::error_code ec;
    fibers::with_deadline(10ms, [&] { pair.server.read_some(buf, ec); });
    EXPECT_EQ(ec, std::errc::timed_out);
  });
}

TEST(Scope, NestedDeadlinesTheEarlierWinsAndTheOuterIsRestored) {
  fibers::run([] {
    fibers::with_deadline(10s, [] {
      const auto outer = fibers::current_deadline();
      EXPECT_LT(outer, clock::time_point::max());
      fibers::with_deadline(30ms, [&] {
        const auto inner = fibers::current_deadline();
        EXPECT_LT(inner, outer);
        const auto start = clock::now();
        std::error_code ec;
        fibers::this_fiber::sleep_for(1h, ec);
        EXPECT_EQ(ec, std::errc::timed_out);
        EXPECT_GE(ms_since(start), 30ms);
      });
      EXPECT_EQ(fibers::current_deadline(), outer) << "outer deadline not restored";
      fibers::with_deadline(1h, [&] {
        EXPECT_EQ(fibers::current_deadline(), outer) << "a later inner deadline extended the outer one";
      });
      EXPECT_EQ(fibers::current_deadline(), outer);
    });
    EXPECT_EQ(fibers::current_deadline(), clock::time_point::max());
  });
}

TEST(Scope, OuterDeadlineExpiringInsideInnerLevelsPassesThemAsCanceledAndIsTimedOutAtTheOuter) {
  fibers::run([] {
    std::string middle_saw = "nothing", inner_saw = "nothing";
    const auto start = clock::now();
    try {
      fibers::with_deadline(30ms, [&] {
        try {
          fibers::with_deadline(1h, [&] {
            try {
              fibers::with_deadline(2h, [&] { fibers::this_fiber::sleep_for(10s); });
              inner_saw = "returned";
            } catch (const fibers::canceled&) {
              inner_saw = "canceled";
              throw;
            } catch (const std::system_error& e) {
              inner_saw = "its own timeout";
              throw;
            }
          });
          middle_saw = "returned";
        } catch (const fibers::deadline_expired&) {
          middle_saw = "deadline_expired";
          throw;
        } catch (const std::system_error&) {
          middle_saw = "its own timeout";
          throw;
        }
      });
      ADD_FAILURE() << "with_deadline returned";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
      EXPECT_EQ(dynamic_cast<const fibers::canceled*>(&e), nullptr) << "the owner did not turn it back: " << e.what();
      EXPECT_NE(std::string(e.what()).find("sleep"), std::string::npos) << "not the wait's exception: " << e.what();
    }
    EXPECT_EQ(inner_saw, "canceled");
    EXPECT_EQ(middle_saw, "deadline_expired");
    EXPECT_GE(ms_since(start), 30ms);
    EXPECT_LT(ms_since(start), 5s) << "waited for an inner deadline";
    EXPECT_EQ(fibers::current_deadline(), clock::time_point::max());
  });
}

TEST(Scope, InnerDeadlineExpiringFirstIsTheInnerLevelsTimeoutAndTheOuterGoesOn) {
  fibers::run([] {
    bool fallback_ran = false;
    fibers::with_deadline(10s, [&] {
      try {
        fibers::with_deadline(20ms, [&] { fibers::this_fiber::sleep_for(1h); });
        ADD_FAILURE() << "inner with_deadline returned";
      } catch (const fibers::canceled& e) {
        ADD_FAILURE() << "the inner level's own expiry came out as canceled: " << e.what();
      } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
      }
      fibers::this_fiber::sleep_for(1ms);  // the outer deadline has not passed: waits work
      fallback_ran = true;
    });
    EXPECT_TRUE(fallback_ran);
  });
}

TEST(Scope, AWaitsOwnTimeoutPassesThroughDeadlineLevelsUnchanged) {
  fibers::run([] {
    auto pair = fibers_test::make_tcp_pair();
    try {
      fibers::with_deadline(10s, [&] {
        fibers::with_deadline(1h, [&] {
          char buf[8];
          pair.server.read_some(buf, 20ms);  // the read's own deadline, no data comes
        });
      });
      ADD_FAILURE() << "read returned";
    } catch (const fibers::canceled& e) {
      ADD_FAILURE() << "a read's own timeout came out as canceled: " << e.what();
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
    }
  });
}

TEST(Scope, DeadlineScopeExpiryIsPlainTimedOutThroughInnerLevels) {
  // A deadline_scope cannot catch what leaves its block, so nothing may turn its expiry into
  // deadline_expired: it stays the plain timed_out it always was.
  fibers::run([] {
    try {
      fibers::deadline_scope outer(20ms);
      fibers::with_deadline(1h, [&] { fibers::this_fiber::sleep_for(10s); });
      ADD_FAILURE() << "sleep returned";
    } catch (const fibers::canceled& e) {
      ADD_FAILURE() << "came out as canceled: " << e.what();
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
    }
  });
}

TEST(Scope, CurrentDeadlineIsMaxOutsideAnyDeadlineAndOnPlainThreads) {
  EXPECT_EQ(fibers::current_deadline(), clock::time_point::max());
  // Scopes and deadline scopes belong to fibers: a plain thread gets a clear error.
  EXPECT_THROW({ fibers::scope s; }, std::logic_error);
  EXPECT_THROW(fibers::with_deadline(1s, [] {}), std::logic_error);
  fibers::run([] {
    EXPECT_EQ(fibers::current_deadline(), clock::time_point::max());
    const auto before = clock::now();
    fibers::with_deadline(fibers::deadline::at(before + 1s), [&] {
      EXPECT_EQ(fibers::current_deadline(), before + 1s);
    });
    EXPECT_EQ(fibers::current_deadline(), clock::time_point::max());
  });
}

TEST(Scope, ChildrenInheritTheDeadlineInEffectWhereTheScopeIsCreated) {
  fibers::run([] {
    std::string child_end = "running";
    clock::time_point child_deadline{};
    std::optional<fibers::scope> s;
    const auto start = clock::now();
    fibers::with_deadline(50ms, [&] { s.emplace(); });
    EXPECT_EQ(fibers::current_deadline(), clock::time_point::max());
    s->spawn([&] {
      child_deadline = fibers::current_deadline();
      sleep_an_hour(child_end);
    });
    try {
      s->join();  // the owner itself has no deadline here
      FAIL() << "no error from the timed-out child";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
    }
    EXPECT_EQ(child_end, "timed_out");
    EXPECT_GE(child_deadline, start + 50ms);
    EXPECT_LE(child_deadline, start + 50ms + 5ms);
    EXPECT_GE(ms_since(start), 50ms);
  });
}

TEST(Scope, JoinWhoseInheritedDeadlinePassesCancelsAndAwaitsChildrenThenThrowsTimedOut) {
  in_child_process([] {
    hang_guard guard(20s, "scope::join under an expired inherited deadline");
    fibers::run([] {
      // Children that inherit the same deadline: they time out (or are canceled) with join.
      std::string child_end = "running";
      auto start = clock::now();
      try {
        fibers::with_deadline(50ms, [&] {
          fibers::with_scope([&](fibers::scope& s) { s.spawn([&] { sleep_an_hour(child_end); }); });
        });
        ADD_FAILURE() << "join returned although the child was still sleeping";
      } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
      }
      EXPECT_TRUE(child_end == "timed_out" || child_end == "canceled") << child_end;
      EXPECT_GE(ms_since(start), 50ms);

      // A child without a deadline (scope made outside with_deadline) is canceled, and join
      // still waits for its clean-up before throwing.
      std::string other_end = "running";
      bool cleaned_up = false, cleaned_up_before_join_threw = false;
      fibers::scope s;
      s.spawn([&] {
        try {
          sleep_an_hour(other_end);
        } catch (const fibers::canceled&) {
          for (int i = 0; i < 20; ++i) fibers::this_fiber::yield();
          cleaned_up = true;
          throw;
        }
      });
      start = clock::now();
      try {
        fibers::with_deadline(50ms, [&] { s.join(); });
        ADD_FAILURE() << "join returned although the child was still sleeping";
      } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
        cleaned_up_before_join_threw = cleaned_up;
      }
      EXPECT_GE(ms_since(start), 50ms);
      EXPECT_EQ(other_end, "canceled");
      EXPECT_TRUE(cleaned_up_before_join_threw);
    });
  });
}

TEST(Scope, FiberJoinInsideWithDeadlineNeverReturnsWhileTheFiberStillRuns) {
  // fiber::join returns only once the fiber has ended (the fiber may use the joiner's stack).
  // When the inherited deadline passes first it throws timed_out and the handle stays joinable.
  in_child_process([] {
    hang_guard guard(20s, "fiber::join under an inherited deadline");
    fibers::run([] {
      bool ended = false;
      auto f = fibers::spawn([&ended] {
        std::error_code ec;
        fibers::this_fiber::sleep_for(200ms, ec);
        ended = true;
      });
      try {
        fibers::with_deadline(20ms, [&] { f.join(); });
        EXPECT_TRUE(ended) << "join returned while the fiber was still running";
      } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
        EXPECT_TRUE(f.joinable()) << "join gave up but released the handle";
        if (f.joinable()) f.join();
      }
      if (f.joinable()) f.detach();
      fibers::this_fiber::sleep_for(300ms);  // let a wrongly released fiber end (and fire its joiner)
    });
  });
}

}  // namespace
