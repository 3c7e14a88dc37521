// tests/cpu_test.cpp - the CPU pool: no task lost or run twice, fork-join (task_group,
// parallel_for, parallel_reduce), exceptions, shutdown, and waiting from I/O fibers without
// stalling the I/O thread.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "fibers/cpu.hpp"
#include "fibers/fibers.hpp"
#include "fibers/future.hpp"
#include "fibers/scope.hpp"
#include "heartbeat_fiber.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
namespace cpu = fibers::cpu;

/// One counter per index, to prove that every index ran exactly once.
class hit_array {
 public:
  explicit hit_array(std::size_t n) : n_(n), hits_(new std::atomic<std::uint32_t>[n]) {
    for (std::size_t i = 0; i < n; ++i) hits_[i].store(0, std::memory_order_relaxed);
  }
  void hit(std::size_t i) { hits_[i].fetch_add(1, std::memory_order_relaxed); }
  /// Number of indices not hit exactly once (0 is the expected answer).
  std::size_t wrong() const {
    std::size_t bad = 0;
    for (std::size_t i = 0; i < n_; ++i) bad += hits_[i].load(std::memory_order_relaxed) != 1;
    return bad;
  }

 private:
  std::size_t n_;
  std::unique_ptr<std::atomic<std::uint32_t>[]> hits_;
};

long fib(int n) {
  if (n < 2) return n;
  long a = 0;
  cpu::task_group g;  // the calling worker's pool
  g.run([&a, n] { a = fib(n - 1); });
  const long b = fib(n - 2);
  g.wait();
  return a + b;
}

/// Spins (keeps a worker busy) for about `d`; returns a value derived from `seed`.
long busy_for(std::chrono::milliseconds d, long seed) {
  const auto until = fibers::clock::now() + d;
  volatile long x = seed;
  while (fibers::clock::now() < until) x = x + 1;
  return seed * 2;
}

TEST(CpuPool, MillionTinyTasksSubmittedFromOutsideEachRunOnce) {
  constexpr std::size_t n = 1'000'000;
  cpu::pool pool(4);
  hit_array hits(n);
  std::atomic<std::size_t> count{0};
  cpu::task_group g(pool);
  for (std::size_t i = 0; i < n; ++i) {
    g.run([&hits, &count, i] {
      hits.hit(i);
      count.fetch_add(1, std::memory_order_relaxed);
    });
  }
  g.wait();
  EXPECT_EQ(count.load(), n);
  EXPECT_EQ(hits.wrong(), 0u);
}

TEST(CpuPool, MillionTinyTasksSpawnedInsideATaskAreStolenAndEachRunOnce) {
  constexpr std::size_t n = 1'000'000;
  cpu::pool pool(4);
  hit_array hits(n);
  std::atomic<std::size_t> count{0};
  pool.async([&] {
        cpu::task_group g;  // on a worker: tasks go to its own deque, the others steal them
        for (std::size_t i = 0; i < n; ++i) {
          g.run([&, i] {
            hits.hit(i);
            count.fetch_add(1, std::memory_order_relaxed);
          });
        }
        g.wait();
      })
      .get();
  EXPECT_EQ(count.load(), n);
  EXPECT_EQ(hits.wrong(), 0u);
}

TEST(CpuPool, SubmitRunsEveryTaskAndCurrentNamesThePool) {
  cpu::pool pool(2);
  EXPECT_EQ(pool.size(), 2u);
  EXPECT_EQ(cpu::pool::current(), nullptr);
  std::atomic<int> on_pool{0};
  std::latch done(1000);
  for (int i = 0; i < 1000; ++i) {
    pool.submit([&] {
      if (cpu::pool::current() == &pool && &cpu::current_pool() == &pool) on_pool.fetch_add(1);
      done.count_down();
    });
  }
  done.wait();
  EXPECT_EQ(on_pool.load(), 1000);
}

TEST(CpuPool, DestructionRunsTasksStillQueued) {
  std::atomic<int> ran{0};
  std::atomic<bool> release{false};
  {
    cpu::pool pool(1);
    pool.submit([&] {
      while (!release.load()) std::this_thread::yield();
      ran.fetch_add(1);
    });
    for (int i = 0; i < 1000; ++i) {
      pool.submit([&] {
        // Nested work spawned during shutdown runs too.
        pool.submit([&] { ran.fetch_add(1); });
        ran.fetch_add(1);
      });
    }
    release.store(true);
  }  // the destructor drains the queue
  EXPECT_EQ(ran.load(), 2001);
}

TEST(CpuTaskGroup, RecursiveFibonacci) {
  cpu::pool pool(4);
  EXPECT_EQ(pool.async([] { return fib(25); }).get(), 75025);
  // The same from a plain thread: the outer waits park it, the inner ones help on workers.
  cpu::task_group g(pool);
  long r = 0;
  g.run([&r] { r = fib(20); });
  g.wait();
  EXPECT_EQ(r, 6765);
}

TEST(CpuTaskGroup, FirstExceptionPropagatesAndGroupIsReusable) {
  cpu::pool pool(2);
  cpu::task_group g(pool);
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) {
    g.run([&ran, i] {
      ran.fetch_add(1);
      if (i == 3) throw std::runtime_error("task 3 failed");
    });
  }
  try {
    g.wait();
    FAIL() << "wait() did not rethrow";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "task 3 failed");
  }
  EXPECT_LE(ran.load(), 100);
  EXPECT_FALSE(g.stopping());

  // Reusable: a clean round after the failed one.
  std::atomic<int> second{0};
  for (int i = 0; i < 100; ++i) g.run([&second] { second.fetch_add(1); });
  g.wait();
  EXPECT_EQ(second.load(), 100);
}

TEST(CpuTaskGroup, ExceptionsPropagateThroughNestedWaitsOnWorkers) {
  cpu::pool pool(2);
  auto f = pool.async([] {
    cpu::task_group outer;
    outer.run([] {
      cpu::task_group inner;
      inner.run([] { throw std::invalid_argument("deep"); });
      inner.wait();
    });
    outer.wait();
    return 1;
  });
  EXPECT_THROW(f.get(), std::invalid_argument);
}

TEST(CpuAsync, ExceptionPropagatesThroughTheFuture) {
  cpu::pool pool(2);
  auto f = pool.async([]() -> int { throw std::runtime_error("boom"); });
  try {
    f.get();
    FAIL() << "get() did not rethrow";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom");
  }
  auto v = cpu::async([] {});  // default pool, void result
  v.get();
  EXPECT_EQ(cpu::async([] { return std::string("default pool"); }).get(), "default pool");
}

TEST(CpuParallelFor, CoversEveryIndexExactlyOnce) {
  cpu::pool pool(4);
  for (std::size_t grain : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000}, std::size_t{1} << 30}) {
    constexpr int n = 100'003;
    hit_array hits(n);
    cpu::parallel_for(pool, 0, n, [&](int i) { hits.hit(static_cast<std::size_t>(i)); }, grain);
    EXPECT_EQ(hits.wrong(), 0u) << "grain " << grain;
  }
  // Negative bounds, a range of one, an empty and a reversed range.
  hit_array hits(1001);
  cpu::parallel_for(pool, -500, 501, [&](int i) { hits.hit(static_cast<std::size_t>(i + 500)); });
  EXPECT_EQ(hits.wrong(), 0u);
  int calls = 0;
  cpu::parallel_for(pool, 5, 6, [&](int i) { calls += i; });
  cpu::parallel_for(pool, 5, 5, [&](int) { ++calls; });
  cpu::parallel_for(pool, 6, 5, [&](int) { ++calls; });
  EXPECT_EQ(calls, 5);
}

TEST(CpuParallelFor, NestsInsideTasksAndRethrows) {
  cpu::pool pool(3);
  constexpr int rows = 300, cols = 300;
  hit_array hits(rows * cols);
  pool.async([&] {
        cpu::parallel_for(0, rows, [&](int r) {
          cpu::parallel_for(0, cols, [&](int c) { hits.hit(static_cast<std::size_t>(r * cols + c)); }, 16);
        });
      })
      .get();
  EXPECT_EQ(hits.wrong(), 0u);

  std::atomic<int> ran{0};
  EXPECT_THROW(cpu::parallel_for(pool, 0, 100'000,
                                 [&](int i) {
                                   ran.fetch_add(1);
                                   if (i == 777) throw std::out_of_range("777");
                                 }),
               std::out_of_range);
  EXPECT_LE(ran.load(), 100'000);
}

TEST(CpuParallelReduce, SumIsExactAndOrderIsKept) {
  cpu::pool pool(4);
  constexpr std::int64_t n = 1'000'000;
  for (std::size_t grain : {std::size_t{0}, std::size_t{1}, std::size_t{333}}) {
    const std::int64_t sum = cpu::parallel_reduce(
        pool, std::int64_t{0}, n, std::int64_t{42}, [](std::int64_t i) { return i; }, std::plus<>(), grain);
    EXPECT_EQ(sum, 42 + n * (n - 1) / 2) << "grain " << grain;
  }
  // Concatenation is associative but not commutative: pieces must combine in index order.
  std::string expect = ">";
  for (int i = 0; i < 2000; ++i) expect += static_cast<char>('a' + i % 26);
  const std::string got = cpu::parallel_reduce(
      pool, 0, 2000, std::string(">"), [](int i) { return std::string(1, static_cast<char>('a' + i % 26)); },
      [](std::string a, const std::string& b) { return a + b; }, 7);
  EXPECT_EQ(got, expect);
  EXPECT_EQ(cpu::parallel_reduce(pool, 3, 3, 9, [](int i) { return i; }, std::plus<>()), 9);
  EXPECT_THROW(cpu::parallel_reduce(
                   pool, 0, 10'000, 0,
                   [](int i) {
                     if (i == 5000) throw std::runtime_error("map");
                     return i;
                   },
                   std::plus<>()),
               std::runtime_error);
}

TEST(CpuIo, AsyncAwaitedFromAnIoFiberDoesNotStallTheIoThread) {
  cpu::pool pool(2);
  fibers::run([&] {
    fibers_test::heartbeat hb;
    fibers::this_fiber::sleep_for(20ms);  // let it start ticking
    long ticks_while_waiting = 0;
    for (long k = 1; k <= 4; ++k) {
      const long before = hb.ticks();
      // Two tasks per round keep both workers (and so both cores) busy for a while.
      auto a = pool.async([k] { return busy_for(60ms, k); });
      auto b = pool.async([k] { return busy_for(60ms, k + 100); });
      EXPECT_EQ(a.get(), 2 * k);
      EXPECT_EQ(b.get(), 2 * (k + 100));
      ticks_while_waiting += hb.ticks() - before;
    }
    // Parallel loops awaited from the fiber park it too.
    hit_array hits(20'000);
    cpu::parallel_for(pool, 0, 20'000, [&](int i) {
      if (i % 1000 == 0) busy_for(5ms, i);
      hits.hit(static_cast<std::size_t>(i));
    });
    EXPECT_EQ(hits.wrong(), 0u);
    hb.stop();
    EXPECT_GT(ticks_while_waiting, 0) << "the heartbeat never ran while the fiber waited";
    EXPECT_LT(hb.max_gap(), fibers_test::stall_limit) << "the I/O thread stalled while a fiber waited for the CPU pool";
  });
}

TEST(CpuIo, CanceledFiberInTaskGroupWaitSkipsUnstartedTasksAndWaitsForRunningOnes) {
  cpu::pool pool(2);
  constexpr int n = 200;
  std::atomic<bool> gate{false};
  std::atomic<int> started{0}, finished{0};
  int started_at_return = -1, finished_at_return = -1;
  bool got_canceled = false;
  fibers::run([&] {
    auto f = fibers::spawn([&] {
      cpu::task_group g(pool);
      for (int i = 0; i < n; ++i) {
        g.run([&] {
          started.fetch_add(1);
          while (!gate.load()) std::this_thread::yield();  // every worker holds one task
          finished.fetch_add(1);
        });
      }
      try {
        g.wait();
      } catch (const fibers::canceled&) {
        got_canceled = true;
      }
      started_at_return = started.load();
      finished_at_return = finished.load();
    });
    while (started.load() == 0) fibers::this_fiber::sleep_for(1ms);
    f.cancel();
    fibers::this_fiber::yield();  // the waiter takes the cancel, marks the rest to be skipped
    gate.store(true);
    f.join();
  });
  EXPECT_TRUE(got_canceled);
  EXPECT_EQ(finished_at_return, started_at_return) << "wait() returned while a task still ran";
  EXPECT_GE(started_at_return, 1);
  EXPECT_LE(started_at_return, 2) << "tasks that had not started when the fiber was canceled ran";
}

TEST(CpuIo, InheritedDeadlineEndsAParallelForWaitOnceRunningTasksFinish) {
  cpu::pool pool(2);
  std::atomic<bool> gate{false};
  std::atomic<int> started{0}, finished{0};
  int started_at_return = -1, finished_at_return = -1;
  std::error_code ec;
  fibers::run([&] {
    auto f = fibers::spawn([&] {
      try {
        fibers::with_deadline(20ms, [&] {
          cpu::parallel_for(pool, 0, 1000, [&](int) {
            started.fetch_add(1);
            while (!gate.load()) std::this_thread::yield();
            finished.fetch_add(1);
          }, 1);
        });
      } catch (const std::system_error& e) {
        ec = e.code();
      }
      started_at_return = started.load();
      finished_at_return = finished.load();
    });
    // The fiber's 20 ms deadline fires first and stops the loop; then let the running calls end.
    fibers::this_fiber::sleep_for(60ms);
    gate.store(true);
    f.join();
  });
  EXPECT_EQ(ec, std::errc::timed_out);
  EXPECT_EQ(finished_at_return, started_at_return) << "wait() returned while a call still ran";
  EXPECT_LT(started_at_return, 1000) << "the loop went on after the deadline";
}

TEST(CpuIo, StressManyFibersOnFourIoThreadsRoundTripThroughTwoWorkers) {
  constexpr std::size_t io_threads = 4, fibers_per_thread = 64, round_trips = 50;
  cpu::pool pool(2);
  fibers::runtime rt(io_threads);
  std::atomic<long> wrong{0}, done_trips{0};
  std::latch done(io_threads * fibers_per_thread);
  for (std::size_t t = 0; t < io_threads; ++t) {
    for (std::size_t f = 0; f < fibers_per_thread; ++f) {
      rt.post(
          [&, t, f] {
            for (std::size_t r = 0; r < round_trips; ++r) {
              const long x = static_cast<long>((t * 1000 + f) * 1000 + r);
              long got = 0;
              if (r % 2 == 0) {
                got = pool.async([x] { return x * 3 + 1; }).get();
              } else {
                // A small fork-join inside the task.
                got = pool.async([x] {
                            long parts[3] = {0, 0, 0};
                            cpu::task_group g;
                            for (int k = 0; k < 3; ++k) g.run([&parts, k, x] { parts[k] = x; });
                            g.wait();
                            return parts[0] + parts[1] + parts[2] + 1;
                          })
                          .get();
              }
              if (got != x * 3 + 1) wrong.fetch_add(1);
              done_trips.fetch_add(1);
            }
            done.count_down();
          },
          t);
    }
  }
  done.wait();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(done_trips.load(), static_cast<long>(io_threads * fibers_per_thread * round_trips));
}

TEST(CpuPool, TasksSubmittedFromOutsideStartInSubmissionOrder) {
  // Issue 12: external submissions are FIFO relative to each other (they used to be taken in
  // batches onto the worker's deque and so run newest first).
  cpu::pool pool(1);
  std::mutex mu;
  std::vector<int> order;
  std::latch gate(1);
  pool.submit([&gate] { gate.wait(); });  // holds the only worker while the rest queue up
  constexpr int n = 200;
  for (int i = 0; i < n; ++i) {
    pool.submit([&mu, &order, i] {
      std::lock_guard lk(mu);
      order.push_back(i);
    });
  }
  gate.count_down();
  auto last = pool.async([] { return 0; });
  last.get();
  std::lock_guard lk(mu);
  ASSERT_EQ(order.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) ASSERT_EQ(order[static_cast<std::size_t>(i)], i) << "at position " << i;
}

// Issue 12: a wait inside a CPU task does not deadlock the pool. Each test runs in a child
// process under a hang_guard, so a regression fails the test instead of hanging the suite.

/// Whether every task that called note_thread() ran on the thread that called reset().
class same_thread_check {
 public:
  void reset() {
    id_ = std::this_thread::get_id();
    other_.store(false);
  }
  void note_thread() {
    if (std::this_thread::get_id() != id_) other_.store(true);
  }
  bool all_on_one_thread() const { return !other_.load(); }

 private:
  std::thread::id id_;
  std::atomic<bool> other_{false};
};

same_thread_check one_thread;

int nested_chain(int depth) {
  one_thread.note_thread();
  if (depth == 0) return 0;
  return cpu::async([depth] { return nested_chain(depth - 1); }).get() + 1;
}

long async_fib(int n) {
  one_thread.note_thread();
  if (n < 2) return n;
  auto a = cpu::async([n] { return async_fib(n - 1); });
  auto b = cpu::async([n] { return async_fib(n - 2); });
  return a.get() + b.get();  // b is on top of the deque: a.get() runs it first, then a
}

TEST(CpuWaitInsideTask, NestedAsyncGetChainOfDepth20OnOneAndTwoWorkers) {
  fibers_test::in_child_process([] {
    fibers_test::hang_guard guard(60s, "nested cpu::async().get() chain");
    for (std::size_t workers : {1, 2}) {
      cpu::pool pool(workers);
      EXPECT_EQ(pool.async([] {
                  one_thread.reset();
                  return nested_chain(20);
                }).get(),
                20)
          << workers << " worker(s)";
      // On one worker, each get() ran the awaited task itself (helping): no spare was needed.
      if (workers == 1) {
        EXPECT_TRUE(one_thread.all_on_one_thread());
      }
    }
  });
}

TEST(CpuWaitInsideTask, RecursiveAsyncGetFibonacciOnOneWorker) {
  fibers_test::in_child_process([] {
    fibers_test::hang_guard guard(120s, "recursive async/get fib(20) on 1 worker");
    cpu::pool pool(1);
    EXPECT_EQ(pool.async([] {
                one_thread.reset();
                return async_fib(20);
              }).get(),
              6765);
    EXPECT_TRUE(one_thread.all_on_one_thread());  // 21891 tasks, all run by helping waits
  });
}

TEST(CpuWaitInsideTask, WhenAllWhenAnyAndTimedWaitsHelpOnOneWorker) {
  fibers_test::in_child_process([] {
    fibers_test::hang_guard guard(60s, "when_all/when_any/wait_for inside a CPU task");
    cpu::pool pool(1);
    auto r = pool.async([] {
      one_thread.reset();
      auto a = cpu::async([] {
        one_thread.note_thread();
        return 1;
      });
      auto b = cpu::async([] {
        one_thread.note_thread();
        return 2;
      });
      auto t = std::tuple<int, int>(fibers::when_all(a, b));
      auto c = cpu::async([] {
        one_thread.note_thread();
        return 3;
      });
      auto d = cpu::async([] {
        one_thread.note_thread();
        return 4;
      });
      const std::size_t first = fibers::when_any(c, d);
      const bool all = fibers::when_all(fibers::deadline::never(), c, d);
      auto e = cpu::async([] {
        one_thread.note_thread();
        return 5;
      });
      const bool e_ready = e.wait_for(30s);  // ready long before: the wait runs e
      fibers::promise<int> never;
      auto n = never.get_future();
      const bool n_ready = n.wait_for(20ms);  // nothing to help with: times out
      return std::get<0>(t) + std::get<1>(t) + (first < 2 ? 10 : 0) + (all ? 100 : 0) +
             (e_ready ? e.get() * 1000 : 0) + (n_ready ? 1'000'000 : 0);
    });
    EXPECT_EQ(r.get(), 3 + 10 + 100 + 5000);
    EXPECT_TRUE(one_thread.all_on_one_thread());  // the waits ran the tasks themselves
  });
}

TEST(CpuWaitInsideTask, ChannelRelayOf64StagesOnFourWorkersCompletes) {
  // Stage i receives from channel i and sends to channel i + 1: every stage blocks on its
  // neighbours. Blocked workers are replaced by spares, so the relay cannot run out of workers.
  fibers_test::in_child_process([] {
    fibers_test::hang_guard guard(120s, "64-stage channel relay on 4 CPU workers");
    constexpr int stages = 64;
    constexpr int messages = 20;
    cpu::pool pool(4);
    std::vector<std::unique_ptr<fibers::channel<int>>> ch;
    for (int i = 0; i <= stages; ++i) ch.push_back(std::make_unique<fibers::channel<int>>());
    for (int i = 0; i < stages; ++i) {
      pool.submit([&ch, i] {
        for (int m = 0; m < messages; ++m) {
          auto v = ch[static_cast<std::size_t>(i)]->recv();
          ch[static_cast<std::size_t>(i) + 1]->send(*v + 1);
        }
      });
    }
    std::thread feeder([&ch] {
      for (int m = 0; m < messages; ++m) ch[0]->send(m * 1000);
    });
    for (int m = 0; m < messages; ++m) {
      auto v = ch[stages]->recv();
      ASSERT_TRUE(v.has_value());
      EXPECT_EQ(*v, m * 1000 + stages);
    }
    feeder.join();
  });
}

TEST(CpuWaitInsideTask, TaskBlockedOnAChannelDoesNotStopALaterTaskOnOneWorker) {
  fibers_test::in_child_process([] {
    fibers_test::hang_guard guard(60s, "1-worker pool: blocked task and the task that unblocks it");
    cpu::pool pool(1);
    fibers::channel<int> ch;
    auto consumer = pool.async([&ch] { return *ch.recv() + 1; });  // blocks the only worker
    pool.submit([&ch] { ch.send(41); });
    EXPECT_EQ(consumer.get(), 42);
  });
}

TEST(CpuWaitInsideTask, TaskBlockedOnAMutexDoesNotTakeTheOnlyWorkerAway) {
  fibers_test::in_child_process([] {
    fibers_test::hang_guard guard(60s, "1-worker pool: task blocked on a fibers::mutex");
    cpu::pool pool(1);
    fibers::mutex m;
    m.lock();  // held by this thread until a later task has run
    auto blocked = pool.async([&m] {
      std::lock_guard lk(m);  // blocks the only worker
      return 1;
    });
    auto later = pool.async([] { return 2; });
    EXPECT_EQ(later.get(), 2);  // ran while the first task was blocked: a spare took over
    m.unlock();
    EXPECT_EQ(blocked.get(), 1);
  });
}

}  // namespace
