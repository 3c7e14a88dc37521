// bench/cpu_bench.cpp - the CPU pool: recursive fib against oneTBB's task_group in the same
// binary, parallel_for speed-up on 1 vs 2 workers, and the cross-thread wake of an I/O fiber
// waiting on cpu::async (I/O thread -> CPU pool -> back).
#include <benchmark/benchmark.h>

#include <cmath>
#include <numeric>
#include <vector>

#include <fibers/cpu.hpp>
#include <fibers/runtime.hpp>

#if __has_include(<tbb/task_group.h>)
#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>
#define FIBERS_BENCH_TBB 1
#endif

namespace {

constexpr int fib_n = 25;
constexpr int fib_cutoff = 12;  // below this, plain recursion (same for both libraries)

long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }

long fib_fibers(int n) {
  if (n < fib_cutoff) return fib_serial(n);
  long a = 0;
  fibers::cpu::task_group g;
  g.run([&] { a = fib_fibers(n - 1); });
  const long b = fib_fibers(n - 2);
  g.wait();
  return a + b;
}

void BM_fib_fibers_pool(benchmark::State& state) {
  fibers::cpu::pool pool(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto f = pool.async([] { return fib_fibers(fib_n); });
    long v = f.get();
    if (v != 75025) state.SkipWithError("wrong fib result");
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_fib_fibers_pool)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);

#ifdef FIBERS_BENCH_TBB
long fib_tbb(int n) {
  if (n < fib_cutoff) return fib_serial(n);
  long a = 0;
  tbb::task_group g;
  g.run([&] { a = fib_tbb(n - 1); });
  const long b = fib_tbb(n - 2);
  g.wait();
  return a + b;
}

void BM_fib_tbb(benchmark::State& state) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    long v = 0;
    arena.execute([&] { v = fib_tbb(fib_n); });
    if (v != 75025) state.SkipWithError("wrong fib result");
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_fib_tbb)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
#endif

void BM_parallel_for(benchmark::State& state) {
  fibers::cpu::pool pool(static_cast<std::size_t>(state.range(0)));
  std::vector<double> data(1 << 20);
  for (auto _ : state) {
    auto f = pool.async([&] {
      fibers::cpu::parallel_for(std::size_t{0}, data.size(),
                                [&](std::size_t i) { data[i] = std::sqrt(static_cast<double>(i)) * 1.5; });
    });
    f.get();
    benchmark::DoNotOptimize(data.data());
  }
}
BENCHMARK(BM_parallel_for)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);

// An I/O fiber sends a tiny task to the CPU pool and parks until its future is set.
void BM_io_to_cpu_round_trip(benchmark::State& state) {
  fibers::runtime rt;
  fibers::cpu::pool pool(1);
  rt.run([&] {
    for (auto _ : state) benchmark::DoNotOptimize(pool.async([] { return 1; }).get());
  });
}
BENCHMARK(BM_io_to_cpu_round_trip)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
