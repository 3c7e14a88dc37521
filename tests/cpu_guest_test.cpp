// tests/cpu_guest_test.cpp - a plain thread that calls a parallel loop, or waits for a
// task_group, takes part in it (see cpu::pool): it runs pieces itself, is the pool's worker for
// the length of the call, keeps the loop on size() threads counting itself, gives its place
// back whatever way the call ends, and past the pool's guest slots a loop still runs (on the
// workers). Fibers never take part.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fibers/cpu.hpp"
#include "fibers/fibers.hpp"

namespace {

using namespace std::chrono_literals;
namespace cpu = fibers::cpu;
using range = cpu::blocked_range<std::size_t>;

/// The distinct threads that ran pieces, and how many pieces ran at once at most.
class thread_log {
 public:
  void enter() {
    const int now = running_.fetch_add(1) + 1;
    int seen = most_.load();
    while (now > seen && !most_.compare_exchange_weak(seen, now)) {
    }
    std::lock_guard lock(mu_);
    ids_.insert(std::this_thread::get_id());
  }
  void leave() { running_.fetch_sub(1); }
  bool ran_on(std::thread::id id) {
    std::lock_guard lock(mu_);
    return ids_.count(id) != 0;
  }
  std::size_t threads() {
    std::lock_guard lock(mu_);
    return ids_.size();
  }
  int most_at_once() const { return most_.load(); }

 private:
  std::atomic<int> running_{0};
  std::atomic<int> most_{0};
  std::mutex mu_;
  std::set<std::thread::id> ids_;
};

/// Sum of i over [b, e) by a plain loop, to check a parallel sum against.
std::uint64_t serial_sum(std::size_t b, std::size_t e) {
  std::uint64_t s = 0;
  for (std::size_t i = b; i < e; ++i) s += i;
  return s;
}

/// A range body for parallel_reduce: adds the piece's indices to `acc`.
std::uint64_t add_indices(range q, std::uint64_t acc) {
  for (std::size_t i = q.begin(); i != q.end(); ++i) acc += i;
  return acc;
}

TEST(CpuGuest, ThePlainThreadRunsPiecesOfItsOwnLoopAsAWorkerOfThePool) {
  cpu::pool pool(2);
  thread_log log;
  std::atomic<int> pieces_seeing_pool{0};
  const auto caller = std::this_thread::get_id();
  cpu::parallel_for(pool, range(0, 64, 1), [&](range) {
    log.enter();
    if (std::this_thread::get_id() == caller && cpu::pool::current() == &pool) pieces_seeing_pool.fetch_add(1);
    std::this_thread::sleep_for(100us);
    log.leave();
  });
  // The leftmost piece always runs where the loop was split first: on the caller, if it joined.
  EXPECT_TRUE(log.ran_on(caller));
  EXPECT_GE(pieces_seeing_pool.load(), 1) << "pool::current() is the pool on the caller during the loop";
  EXPECT_EQ(cpu::pool::current(), nullptr) << "and nothing once the loop returned";
}

TEST(CpuGuest, ALoopFromAPlainThreadRunsOnSizeThreadsCountingTheCaller) {
  // One worker: once it is asleep, the caller takes its place and runs the whole loop alone.
  cpu::pool pool(1);
  std::this_thread::sleep_for(100ms);  // the worker spins a few microseconds, then sleeps
  thread_log log;
  cpu::parallel_for(pool, range(0, 16, 1), [&](range) {
    log.enter();
    std::this_thread::sleep_for(2ms);  // long enough for a stray worker to steal a piece
    log.leave();
  });
  EXPECT_EQ(log.most_at_once(), 1);
  EXPECT_EQ(log.threads(), 1u);
  EXPECT_TRUE(log.ran_on(std::this_thread::get_id()));

  // The worker was given its place back: a task submitted from a fiber still runs.
  EXPECT_EQ(fibers::run([&] { return pool.async([] { return 7; }).get(); }), 7);
}

TEST(CpuGuest, AWorkerBusyWhenTheCallerJoinsGivesUpItsPlaceAfterItsTask) {
  cpu::pool pool(1);
  std::atomic<bool> release{false};
  std::atomic<bool> started{false};
  auto busy = pool.async([&] {
    started.store(true);
    while (!release.load()) std::this_thread::sleep_for(1ms);
    return 1;
  });
  while (!started.load()) std::this_thread::sleep_for(1ms);
  thread_log log;
  std::thread releaser([&] {
    std::this_thread::sleep_for(20ms);
    release.store(true);
  });
  // The worker is busy: the caller joins owing a place, which the worker pays when its task ends
  // instead of stealing pieces of this loop.
  cpu::parallel_for(pool, range(0, 40, 1), [&](range) {
    log.enter();
    std::this_thread::sleep_for(2ms);
    log.leave();
  });
  releaser.join();
  EXPECT_EQ(busy.get(), 1);
  EXPECT_EQ(log.most_at_once(), 1);
  EXPECT_TRUE(log.ran_on(std::this_thread::get_id()));
  // Paid and given back: the pool still runs work from outside.
  EXPECT_EQ(fibers::run([&] { return pool.async([] { return 8; }).get(); }), 8);
}

TEST(CpuGuest, TheCallerGivesItsPlaceBackWhenAPieceThrows) {
  cpu::pool pool(2);
  for (int round = 0; round < 10; ++round) {  // more rounds than guest slots: each is freed
    EXPECT_THROW(cpu::parallel_for(pool, range(0, 1000, 10),
                                   [&](range r) {
                                     if (r.begin() == 500) throw std::runtime_error("piece 50");
                                   }),
                 std::runtime_error);
  }
  thread_log log;
  cpu::parallel_for(pool, range(0, 8, 1), [&](range) {
    log.enter();
    log.leave();
  });
  EXPECT_TRUE(log.ran_on(std::this_thread::get_id())) << "a slot is still free to join";
  EXPECT_EQ(cpu::pool::current(), nullptr);
}

TEST(CpuGuest, NestedWaitsInsideTheCallersPiecesHelpInsteadOfBlocking) {
  cpu::pool pool(1);
  std::atomic<std::uint64_t> total{0};
  cpu::parallel_for(pool, range(0, 8, 1), [&](range r) {
    // On the caller these go to its own deque and get() runs them (the park hook of the slot).
    auto f = cpu::async([b = r.begin()] { return static_cast<std::uint64_t>(b) * 10; });
    const std::uint64_t inner =
        cpu::parallel_reduce(range(0, 1000), std::uint64_t{0}, add_indices, std::plus<std::uint64_t>());
    total.fetch_add(f.get() + inner);
  });
  EXPECT_EQ(total.load(), 10 * serial_sum(0, 8) + 8 * serial_sum(0, 1000));
}

TEST(CpuGuest, ManyPlainThreadsLoopAtOnceBeyondTheGuestSlots) {
  // Six threads (more than the 4 guest slots) run back-to-back loops on one pool: every sum is
  // right, and the pool ends in a state that still runs work.
  cpu::pool pool(2);
  constexpr int threads = 6;
  constexpr int loops = 200;
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&, t] {
      const std::size_t n = 1000 + static_cast<std::size_t>(t) * 37;
      for (int k = 0; k < loops; ++k) {
        const std::uint64_t sum =
            cpu::parallel_reduce(pool, range(0, n, 50), std::uint64_t{0}, add_indices, std::plus<std::uint64_t>());
        if (sum != serial_sum(0, n)) wrong.fetch_add(1);
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(fibers::run([&] { return pool.async([] { return 9; }).get(); }), 9);
}

TEST(CpuGuest, APlainThreadPastTheSlotsHasItsLoopRunByTheWorkers) {
  // Four callers hold the four guest slots inside their loops, blocked on a libfibers latch
  // (the pool starts a spare worker for each blocked one); a fifth caller's loop must still
  // run, on the workers, and only then lets the four go on.
  cpu::pool pool(1);
  fibers::latch fifth_done(1);
  std::atomic<int> inside{0};
  std::vector<std::thread> holders;
  for (int t = 0; t < 4; ++t) {
    holders.emplace_back([&] {
      cpu::parallel_for(pool, range(0, 1, 1), [&](range) {
        inside.fetch_add(1);
        fifth_done.wait();
      });
    });
  }
  while (inside.load() < 4) std::this_thread::sleep_for(1ms);
  thread_log log;
  cpu::parallel_for(pool, range(0, 32, 1), [&](range) {
    log.enter();
    log.leave();
  });
  EXPECT_FALSE(log.ran_on(std::this_thread::get_id())) << "no slot was free: the workers ran it";
  fifth_done.count_down();
  for (auto& h : holders) h.join();
}

TEST(CpuGuest, APlainThreadWaitingForATaskGroupRunsItsTasksInAWorkersPlace) {
  cpu::pool pool(1);
  thread_log log;
  cpu::task_group g(pool);
  for (int i = 0; i < 8; ++i) {
    g.run([&] {
      log.enter();
      std::this_thread::sleep_for(5ms);
      log.leave();
    });
  }
  // The worker, woken by the first run(), finishes the task it has, then sleeps in the
  // caller's place: the caller runs the rest, never more than one besides the worker's.
  g.wait();
  EXPECT_TRUE(log.ran_on(std::this_thread::get_id()));
  EXPECT_LE(log.most_at_once(), 2);
  EXPECT_EQ(cpu::pool::current(), nullptr);

  // A task's exception still comes back from wait(), and the place is given back each time.
  for (int round = 0; round < 6; ++round) {
    g.run([] { throw std::runtime_error("task"); });
    EXPECT_THROW(g.wait(), std::runtime_error);
  }
  EXPECT_EQ(fibers::run([&] { return pool.async([] { return 5; }).get(); }), 5);
}

TEST(CpuGuest, AnIoThreadNeverComputesTheLoopOfItsFiber) {
  cpu::pool pool(2);
  thread_log log;
  std::thread::id io_thread;
  fibers::run([&] {
    io_thread = std::this_thread::get_id();
    cpu::parallel_for(pool, range(0, 64, 1), [&](range) {
      log.enter();
      log.leave();
    });
  });
  EXPECT_FALSE(log.ran_on(io_thread));
  EXPECT_GE(log.threads(), 1u);
}

}  // namespace
