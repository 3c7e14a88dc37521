// tests/cpu_range_test.cpp - the range forms of cpu::parallel_for and cpu::parallel_reduce
// (cpu::blocked_range): the pieces cover the range exactly once and respect the grain, the
// pieces of a reduction combine in index order, exceptions stop the loop, and a canceled
// fiber stops it between pieces.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "fibers/cpu.hpp"
#include "fibers/fibers.hpp"

namespace {

using namespace std::chrono_literals;
namespace cpu = fibers::cpu;

/// Records the pieces a loop hands its body, from any worker.
template <class I>
class piece_log {
 public:
  void add(const cpu::blocked_range<I>& r) {
    std::lock_guard lock(mu_);
    pieces_.emplace_back(r.begin(), r.end());
  }
  /// "" when the pieces are non-empty, at most `grain` long (0: unchecked) and cover
  /// [begin, end) exactly once; otherwise what is wrong.
  std::string check(I begin, I end, std::size_t grain) {
    std::lock_guard lock(mu_);
    std::sort(pieces_.begin(), pieces_.end());
    I next = begin;
    for (auto [b, e] : pieces_) {
      if (!(b < e)) return "an empty piece";
      if (b != next) return "a gap or an overlap at " + std::to_string(b);
      if (grain != 0 && static_cast<std::size_t>(e - b) > grain) return "a piece longer than the grain";
      next = e;
    }
    if (next != end) return "the range is not covered to its end";
    return "";
  }
  std::size_t count() {
    std::lock_guard lock(mu_);
    return pieces_.size();
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<I, I>> pieces_;
};

TEST(CpuRange, BlockedRangeReportsItsBounds) {
  const cpu::blocked_range<int> r(-3, 5, 2);
  EXPECT_EQ(r.begin(), -3);
  EXPECT_EQ(r.end(), 5);
  EXPECT_EQ(r.size(), 8u);
  EXPECT_EQ(r.grainsize(), 2u);
  EXPECT_FALSE(r.empty());
  EXPECT_TRUE(cpu::blocked_range<int>(4, 4).empty());
  EXPECT_EQ(cpu::blocked_range<int>(5, 4).size(), 0u) << "a reversed range is empty";
}

TEST(CpuRange, ParallelForPiecesCoverTheRangeOnceWithinTheGrain) {
  cpu::pool pool(4);
  constexpr std::int64_t n = 100'003;
  for (std::size_t grain : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000}, std::size_t{1} << 40}) {
    piece_log<std::int64_t> log;
    cpu::parallel_for(pool, cpu::blocked_range<std::int64_t>(0, n, grain),
                      [&](const cpu::blocked_range<std::int64_t>& r) { log.add(r); });
    // Automatic grain: about 8 pieces per worker, so no piece longer than n / 32 (rounded up).
    const std::size_t limit = grain != 0 ? grain : n / 32 + 1;
    EXPECT_EQ(log.check(0, n, limit), "") << "grain " << grain;
    if (grain == 0) {
      EXPECT_GE(log.count(), 32u) << "the automatic grain made too few pieces";
    }
  }
  piece_log<int> negative;
  cpu::parallel_for(pool, cpu::blocked_range<int>(-500, 501, 10), [&](cpu::blocked_range<int> r) { negative.add(r); });
  EXPECT_EQ(negative.check(-500, 501, 10), "");

  int calls = 0;
  cpu::parallel_for(pool, cpu::blocked_range<int>(5, 5), [&](const cpu::blocked_range<int>&) { ++calls; });
  cpu::parallel_for(pool, cpu::blocked_range<int>(6, 5), [&](const cpu::blocked_range<int>&) { ++calls; });
  EXPECT_EQ(calls, 0) << "the body ran for an empty range";
}

TEST(CpuRange, ParallelForRangeFormComputesAxpyOnTheDefaultPool) {
  constexpr std::size_t n = 1 << 20;
  std::vector<double> x(n), y(n);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = static_cast<double>(i);
    y[i] = 1.0;
  }
  using range = cpu::blocked_range<std::size_t>;
  cpu::async([&] {
    cpu::parallel_for(range(0, n), [&](range r) {
      for (std::size_t i = r.begin(); i != r.end(); ++i) y[i] = 2.0 * x[i] + y[i];
    });
  }).get();
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < n; ++i) wrong += y[i] != 2.0 * static_cast<double>(i) + 1.0;
  EXPECT_EQ(wrong, 0u);
}

TEST(CpuRange, ParallelForRangeFormRethrowsAndSkipsPiecesNotStarted) {
  // 100,000 indices halved down to pieces of at most 10: 16,384 pieces. On one worker the
  // piece that starts at 0 is the first to run (the splitting worker keeps the left halves),
  // and every other piece is still queued when it throws: the loop must skip them all. (With
  // more workers the others go on until they see the stop, which the first exception of a
  // process can delay by a millisecond of unwinding: no exact count to assert there.)
  // The loop runs on the worker itself: called from this plain thread it would run here too,
  // and the worker, if not yet asleep when this thread joins, may steal a half and finish it
  // before it gives up its place (docs/DESIGN.md, "A plain thread takes part").
  cpu::pool pool(1);
  std::atomic<int> pieces{0};
  auto loop = pool.async([&] {
    cpu::parallel_for(pool, cpu::blocked_range<int>(0, 100'000, 10), [&](cpu::blocked_range<int> r) {
      pieces.fetch_add(1);
      if (r.begin() == 0) throw std::out_of_range("first piece");
    });
  });
  EXPECT_THROW(loop.get(), std::out_of_range);
  EXPECT_EQ(pieces.load(), 1) << "pieces queued behind the one that threw still ran";
  // On two workers it still rethrows.
  cpu::pool two(2);
  EXPECT_THROW(cpu::parallel_for(two, cpu::blocked_range<int>(0, 100'000, 10),
                                 [&](cpu::blocked_range<int> r) {
                                   if (r.begin() <= 777 && 777 < r.end()) throw std::out_of_range("777");
                                 }),
               std::out_of_range);
}

TEST(CpuRange, ParallelReduceRangeFormIsExactAndKeepsIndexOrder) {
  cpu::pool pool(4);
  using range = cpu::blocked_range<std::int64_t>;
  constexpr std::int64_t n = 1'000'000;
  for (std::size_t grain : {std::size_t{0}, std::size_t{1}, std::size_t{333}}) {
    const std::int64_t sum = cpu::parallel_reduce(
        pool, range(0, n, grain), std::int64_t{0},
        [](const range& r, std::int64_t acc) {
          for (std::int64_t i = r.begin(); i != r.end(); ++i) acc += i;
          return acc;
        },
        std::plus<>());
    EXPECT_EQ(sum, n * (n - 1) / 2) << "grain " << grain;
  }
  // Concatenation is associative but not commutative: the pieces combine in index order.
  std::string expect;
  for (int i = 0; i < 2000; ++i) expect += static_cast<char>('a' + i % 26);
  const std::string got = cpu::parallel_reduce(
      pool, cpu::blocked_range<int>(0, 2000, 7), std::string(),
      [](cpu::blocked_range<int> r, std::string acc) {
        for (int i = r.begin(); i != r.end(); ++i) acc += static_cast<char>('a' + i % 26);
        return acc;
      },
      [](std::string a, const std::string& b) { return a + b; });
  EXPECT_EQ(got, expect);

  const int empty = cpu::parallel_reduce(
      pool, cpu::blocked_range<int>(3, 3), 9, [](cpu::blocked_range<int>, int) { return -1; }, std::plus<>());
  EXPECT_EQ(empty, 9) << "an empty range returns the identity";
  EXPECT_THROW(cpu::parallel_reduce(
                   pool, cpu::blocked_range<int>(0, 10'000, 100), 0,
                   [](cpu::blocked_range<int> r, int acc) {
                     if (r.begin() == 5000) throw std::runtime_error("piece");
                     return acc + 1;
                   },
                   std::plus<>()),
               std::runtime_error);
}

TEST(CpuRange, CanceledFiberStopsARangeLoopBetweenPieces) {
  cpu::pool pool(2);
  std::atomic<bool> gate{false};
  std::atomic<int> started{0};
  int started_at_return = -1;
  bool got_canceled = false;
  fibers::run([&] {
    auto f = fibers::spawn([&] {
      try {
        cpu::parallel_for(pool, cpu::blocked_range<int>(0, 200, 1), [&](cpu::blocked_range<int>) {
          started.fetch_add(1);
          while (!gate.load()) std::this_thread::yield();  // each worker holds one piece
        });
      } catch (const fibers::canceled&) {
        got_canceled = true;
      }
      started_at_return = started.load();
    });
    while (started.load() == 0) fibers::this_fiber::sleep_for(1ms);
    f.cancel();
    fibers::this_fiber::yield();  // the waiter takes the cancel and stops the loop
    gate.store(true);
    f.join();
  });
  EXPECT_TRUE(got_canceled);
  EXPECT_GE(started_at_return, 1);
  EXPECT_LE(started_at_return, 4) << "pieces that had not started when the fiber was canceled ran";
}

}  // namespace
