// tests/scheduler_test.cpp - the I/O thread's scheduler: run order, fairness between busy
// fibers and timers, wakes from other threads, fiber lifetimes across threads, and the
// per-fiber deadline timer that outlives a park.
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "fibers/channel.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;

TEST(Scheduler, ASpawnedFiberRunsOnceItsSpawnerYields) {
  fibers::runtime rt;
  rt.run([] {
    bool ran = false;
    auto f = fibers::spawn([&] { ran = true; });
    EXPECT_FALSE(ran);  // queued behind the spawner, which keeps running
    fibers::this_fiber::yield();
    EXPECT_TRUE(ran);
    f.join();
  });
}

TEST(Scheduler, ReadyFibersRunInFifoOrder) {
  fibers::runtime rt;
  rt.run([] {
    std::vector<int> order;
    std::vector<fibers::fiber> fs;
    for (int i = 0; i < 5; ++i) fs.push_back(fibers::spawn([&order, i] { order.push_back(i); }));
    for (auto& f : fs) f.join();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
  });
}

TEST(Scheduler, YieldWithNothingElseReadyReturns) {
  fibers::runtime rt;
  rt.run([] {
    for (int i = 0; i < 100'000; ++i) fibers::this_fiber::yield();
    SUCCEED();
  });
}

TEST(Scheduler, FibersThatNeverParkDoNotStarveTimers) {
  // Two fibers yield to each other without ever parking, so something is always ready: the
  // scheduler loop must still get its turn and fire the sleeper's timer.
  fibers::runtime rt;
  rt.run([] {
    std::atomic<bool> woke{false};
    auto sleeper = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(20ms);
      woke = true;
    });
    auto spin = [&] {
      while (!woke.load(std::memory_order_relaxed)) fibers::this_fiber::yield();
    };
    auto a = fibers::spawn(spin);
    auto b = fibers::spawn(spin);
    a.join();
    b.join();
    sleeper.join();
    EXPECT_TRUE(woke.load());
  });
}

TEST(Scheduler, FibersThatNeverParkDoNotStarveSockets) {
  // On thread 0 a fiber spins on yield while another serves a connection: the reactor must
  // still be polled. The client runs on thread 1.
  fibers::runtime rt(2);
  rt.run([&] {
    auto listener = fibers::tcp_listener::bind(fibers::endpoint::loopback_v4(0));
    std::atomic<bool> echoed{false};
    auto server = fibers::spawn([&] {
      auto conn = listener.accept(10s);
      char c = 0;
      conn.read_exact(fibers::mutable_buffer(&c, 1));
      conn.write_all(fibers::const_buffer(&c, 1));
    });
    auto spinner = fibers::spawn([&] {
      while (!echoed.load(std::memory_order_relaxed)) fibers::this_fiber::yield();
    });
    auto client = rt.spawn_on(1, [&, to = listener.local_endpoint()] {
      auto s = fibers::tcp_stream::connect(to, 10s);
      const char c = 'x';
      s.write_all(fibers::const_buffer(&c, 1));
      char back = 0;
      s.read_exact(fibers::mutable_buffer(&back, 1));
      EXPECT_EQ(back, 'x');
      echoed = true;
    });
    client.join();
    server.join();
    spinner.join();
    EXPECT_TRUE(echoed.load());
  });
}

TEST(Scheduler, WakesFromManyPlainThreadsAllArrive) {
  constexpr int threads = 8, per_thread = 500;
  fibers::runtime rt;
  rt.run([] {
    std::vector<fibers::promise<int>> promises(threads * per_thread);
    std::vector<fibers::future<int>> futures;
    for (auto& p : promises) futures.push_back(p.get_future());
    std::atomic<int> sum{0};
    std::vector<fibers::fiber> waiters;
    for (auto& f : futures) {
      waiters.push_back(fibers::spawn([&sum, &f] { sum += f.get(); }));
    }
    fibers::this_fiber::yield();  // every waiter parks first
    std::vector<std::thread> wakers;
    for (int t = 0; t < threads; ++t) {
      wakers.emplace_back([&promises, t] {
        for (int i = 0; i < per_thread; ++i) promises[t * per_thread + i].set_value(1);
      });
    }
    for (auto& f : waiters) f.join();
    for (auto& w : wakers) w.join();
    EXPECT_EQ(sum.load(), threads * per_thread);
  });
}

TEST(Scheduler, AHandleJoinedOnAPlainThreadAfterTheRuntimeIsGone) {
  // The handle keeps the fiber's state and stack alive; the stack goes back to a pool whose
  // I/O thread no longer exists (ASan checks that nothing is touched after it is freed).
  fibers::fiber f;
  {
    fibers::runtime rt;
    f = rt.spawn_on(0, [] { fibers::this_fiber::sleep_for(1h); });
  }  // shutdown cancels the sleeper
  EXPECT_TRUE(f.joinable());
  EXPECT_THROW(f.join(), fibers::canceled);
}

TEST(Scheduler, ARuntimeDestroyedRightAfterARemoteWakeWaitsForTheWaker) {
  // Once the waker has queued the fiber, the fiber may end and the runtime be destroyed while
  // the waker is still writing the I/O thread's eventfd: the thread waits for wakers in flight
  // before it ends (under ASan, touching the freed reactor would be reported).
  for (int i = 0; i < 200; ++i) {
    fibers::promise<int> p;
    auto f = p.get_future();
    std::thread waker;
    {
      fibers::runtime rt;
      waker = std::thread([&p] { p.set_value(1); });
      EXPECT_EQ(rt.run([&] { return f.get(); }), 1);
    }
    waker.join();
  }
}

TEST(Scheduler, StatsCountSwitchesAndParks) {
  fibers::runtime rt;
  rt.run([&] {
    const auto before = fibers::stats(rt).at(0);
    // Two fibers yielding to each other: every yield is a switch.
    auto yielder = [] {
      for (int i = 0; i < 10; ++i) fibers::this_fiber::yield();
    };
    auto a = fibers::spawn(yielder);
    auto b = fibers::spawn(yielder);
    a.join();
    b.join();
    // A lone sleeper parks each time, but waits in the reactor itself (fast park): no switch.
    auto sleeper = fibers::spawn([] {
      for (int i = 0; i < 10; ++i) fibers::this_fiber::sleep_for(1ms);
    });
    sleeper.join();
    const auto after = fibers::stats(rt).at(0);
    EXPECT_GE(after.switches - before.switches, 20u);
    EXPECT_GE(after.parks - before.parks, 10u);
    EXPECT_EQ(after.fibers_spawned - before.fibers_spawned, 3u);
  });
}

// Bursts of new fibers (docs/DESIGN.md, "Bursts"): at most 32 fibers that have never run
// wait in the ready queue; the others wait in a backlog the loop admits from.

TEST(Scheduler, ABurstOfNewFibersRunsInSpawnOrder) {
  fibers::runtime rt;
  rt.run([] {
    constexpr int n = 1000;  // far more than the ready queue admits at once
    std::vector<int> order;
    std::vector<fibers::fiber> fs;
    for (int i = 0; i < n; ++i) fs.push_back(fibers::spawn([&order, i] { order.push_back(i); }));
    for (auto& f : fs) f.join();
    ASSERT_EQ(order.size(), std::size_t{n});
    for (int i = 0; i < n; ++i) ASSERT_EQ(order[i], i);
  });
}

TEST(Scheduler, AWokenFiberWaitsBehindAtMost32NewFibers) {
  fibers::runtime rt;
  rt.run([] {
    int started = 0, started_at_wake = -1, started_when_it_ran = -1;
    fibers::promise<void> p;
    auto woken = fibers::spawn([&, f = p.get_future()]() mutable {
      f.get();
      started_when_it_ran = started;
    });
    fibers::this_fiber::yield();  // `woken` parks in get()
    std::vector<fibers::fiber> fs;
    for (int i = 0; i < 1000; ++i) fs.push_back(fibers::spawn([&] { ++started; }));
    started_at_wake = started;
    p.set_value();  // queues `woken` behind the new fibers already admitted, not behind 1,000
    for (auto& f : fs) f.join();
    woken.join();
    EXPECT_LE(started_when_it_ran - started_at_wake, 32);
  });
}

TEST(Scheduler, NewFibersInTheBacklogRunWhileTheAdmittedOnesPark) {
  // Every new fiber parks, with no timer, until all have started: once the admitted ones are
  // parked nothing is ready, and the thread must admit the backlog rather than wait in the
  // reactor (the spawner's 10 s timer is the only one armed).
  fibers::runtime rt;
  rt.run([] {
    constexpr int n = 200;
    fibers::latch all_started(n);
    int started = 0;
    std::vector<fibers::fiber> fs;
    for (int i = 0; i < n; ++i) {
      fs.push_back(fibers::spawn([&] {
        ++started;
        all_started.arrive_and_wait();
      }));
    }
    const bool all = all_started.wait_for(10s);
    EXPECT_TRUE(all) << started << " of " << n << " started";
    if (!all) all_started.count_down(n - started);  // let the started ones end
    for (auto& f : fs) f.join();
  });
}

TEST(Scheduler, AFiberThatSpawnsForLongerThanASliceLetsDueTimersRunFirst) {
  // A fiber that runs 1 ms without switching yields to the loop at its next spawn checkpoint
  // (every 16th spawn): the loop fires due timers, and the woken fibers run before it resumes.
  fibers::runtime rt;
  rt.run([] {
    bool slept = false;
    auto sleeper = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(1ms);
      slept = true;
    });
    fibers::this_fiber::yield();  // the sleeper parks, its timer armed
    std::vector<fibers::fiber> fs;
    auto spawn_16 = [&] {  // one of any 16 spawns checks the slice
      for (int i = 0; i < 16; ++i) fs.push_back(fibers::spawn([] {}));
    };
    spawn_16();  // this check sees that the fiber has switched: no slice yet
    spawn_16();  // this one sees no switch since: the slice is timed from here
    const auto t0 = fibers::clock::now();
    while (fibers::clock::now() - t0 < 5ms) {
    }  // runs without switching, past the slice and the sleeper's deadline
    EXPECT_FALSE(slept);
    spawn_16();  // this check ends the slice
    EXPECT_TRUE(slept) << "the spawning fiber kept running past its slice and a due timer";
    for (auto& f : fs) f.join();
    sleeper.join();
  });
}

// A fiber's deadline timer stays armed when a park ends before its deadline (waiter.cpp):
// the next park reuses it. These check the three cases that reuse could get wrong.

// Receives on `ch` with a deadline `d` from now; returns how long it took and whether it
// timed out.
std::pair<std::chrono::milliseconds, bool> timed_recv(fibers::channel<int>& ch, fibers::clock::duration d) {
  const auto t0 = fibers::clock::now();
  std::error_code ec;
  ch.recv(ec, fibers::deadline::after(d));
  return {fibers_test::ms_since(t0), ec == std::errc::timed_out};
}

// Parks in a receive with a deadline `d` from now, woken before it by a fiber that sends.
void park_woken_early(fibers::clock::duration d) {
  fibers::channel<int> ch(0);
  auto sender = fibers::spawn([ch]() mutable { ch.send(1); });  // runs once the receive parks
  auto [waited, timed_out] = timed_recv(ch, d);
  EXPECT_FALSE(timed_out);
  sender.join();
}

TEST(Scheduler, AParkWithALaterDeadlineThanTheLastWaitsItsWholeTime) {
  // The first park arms the timer for 50 ms and ends at once; the second has 300 ms. The
  // timer fires at 50 ms into the second park, which must go on waiting to its own deadline.
  fibers::runtime rt;
  rt.run([] {
    park_woken_early(50ms);
    fibers::channel<int> ch(0);
    auto [waited, timed_out] = timed_recv(ch, 300ms);
    EXPECT_TRUE(timed_out);
    EXPECT_GE(waited.count(), 300) << "timed out at the previous park's deadline";
  });
}

TEST(Scheduler, AParkWithAnEarlierDeadlineThanTheLastTimesOutAtIt) {
  // The first park arms the timer for an hour and ends at once; the second must time out at
  // its own 30 ms, not wait for the hour.
  fibers_test::hang_guard guard(20s, "a park waited for an earlier park's later deadline");
  fibers::runtime rt;
  rt.run([] {
    park_woken_early(1h);
    fibers::channel<int> ch(0);
    auto [waited, timed_out] = timed_recv(ch, 30ms);
    EXPECT_TRUE(timed_out);
    EXPECT_GE(waited.count(), 30);
    EXPECT_LT(waited.count(), 10'000);
  });
}

TEST(Scheduler, AFiberThatEndsWithItsDeadlineTimerArmedLeavesNoTimerBehind) {
  // 100 fibers, one after another, each end right after a park whose 300 ms deadline did not
  // come; 100 new fibers then take their stacks (the pool gives the freed ones back first)
  // and park without a deadline past those 300 ms. A timer left in the heap would point into
  // a new fiber's state when it comes due. (One at a time, so that each park is woken at once
  // however slow spawning is, as under TSan.)
  fibers::runtime rt;
  rt.run([] {
    for (int i = 0; i < 100; ++i) fibers::spawn([] { park_woken_early(300ms); }).join();
    std::vector<fibers::fiber> fs;
    fibers::channel<int> gate(0);
    int woken = 0;
    for (int i = 0; i < 100; ++i) {
      fs.push_back(fibers::spawn([gate, &woken]() mutable {
        if (gate.recv()) ++woken;
      }));
    }
    fibers::this_fiber::sleep_for(400ms);  // past the ended fibers' deadlines
    for (int i = 0; i < 100; ++i) gate.send(i);
    for (auto& f : fs) f.join();
    EXPECT_EQ(woken, 100);
  });
}

}  // namespace
