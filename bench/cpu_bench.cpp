// bench/cpu_bench.cpp - the CPU pool: recursive fib against oneTBB's task_group in the same
// binary, parallel loops against oneTBB's (y = a*x + y over 10^7 doubles, an integer hash
// kernel, a sum reduction; index form and blocked_range form, 1 and 2 workers), short loops
// and a small task_group called back to back from a plain thread, and the cross-thread wake
// of an I/O fiber waiting on cpu::async (I/O thread -> CPU pool -> back).
#include <benchmark/benchmark.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include <fibers/cpu.hpp>
#include <fibers/runtime.hpp>

// FIBERS_BENCH_TBB comes from bench/meson.build when the tbb dependency is found (a header
// test alone would compile against a library the build does not link).
#ifdef FIBERS_BENCH_TBB
#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>
#endif

namespace {

constexpr int fib_n = 25;
constexpr int fib_cutoff = 12;  // below this, plain recursion (same for both libraries)

long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }

// fib(n) with every call of n >= cutoff a task of `Group` (fibers::cpu::task_group or
// oneTBB's tbb::task_group: the same run/wait shape), plain recursion below it.
template <class Group>
long fib_tasks(int n, int cutoff) {
  if (n < cutoff) return fib_serial(n);
  long a = 0;
  Group g;
  g.run([&] { a = fib_tasks<Group>(n - 1, cutoff); });
  const long b = fib_tasks<Group>(n - 2, cutoff);
  g.wait();
  return a + b;
}

void BM_fib_fibers_pool(benchmark::State& state) {
  fibers::cpu::pool pool(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto f = pool.async([] { return fib_tasks<fibers::cpu::task_group>(fib_n, fib_cutoff); });
    long v = f.get();
    if (v != 75025) state.SkipWithError("wrong fib result");
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_fib_fibers_pool)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);

// Issue 13's task-throughput shape: fib(32) with every call of n >= 2 a task (3,524,577 tasks
// per run), against oneTBB below. Reported as s_per_task; tasks/s is its inverse.
constexpr int fib_tasks_n = 32;
constexpr double fib_tasks_count = 3524577;  // calls with n >= 2 in fib(32): fib(33) - 1

void set_per_task(benchmark::State& state) {
  state.counters["s_per_task"] = benchmark::Counter(fib_tasks_count * static_cast<double>(state.iterations()),
                                                    benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_fib_tasks_fibers(benchmark::State& state) {
  fibers::cpu::pool pool(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    const long v = pool.async([] { return fib_tasks<fibers::cpu::task_group>(fib_tasks_n, 2); }).get();
    if (v != 2178309) state.SkipWithError("wrong fib result");
  }
  set_per_task(state);
}
BENCHMARK(BM_fib_tasks_fibers)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

#ifdef FIBERS_BENCH_TBB
void BM_fib_tbb(benchmark::State& state) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    long v = 0;
    arena.execute([&] { v = fib_tasks<tbb::task_group>(fib_n, fib_cutoff); });
    if (v != 75025) state.SkipWithError("wrong fib result");
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_fib_tbb)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_fib_tasks_tbb(benchmark::State& state) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    long v = 0;
    arena.execute([&] { v = fib_tasks<tbb::task_group>(fib_tasks_n, 2); });
    if (v != 2178309) state.SkipWithError("wrong fib result");
  }
  set_per_task(state);
}
BENCHMARK(BM_fib_tasks_tbb)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
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

// Parallel loops over 10^7 elements, the same kernels for both libraries. Arg = workers.
constexpr std::size_t loop_n = 10'000'000;
using range = fibers::cpu::blocked_range<std::size_t>;

std::uint64_t mix(std::uint64_t v) {
  v *= 0x9E3779B97F4A7C15ull;
  v ^= v >> 29;
  v *= 0xBF58476D1CE4E5B9ull;
  return v ^ (v >> 32);
}

struct axpy_data {
  std::vector<double> x = std::vector<double>(loop_n, 1.5);
  std::vector<double> y = std::vector<double>(loop_n, 0.5);
  double a = 1.0000001;
};

template <class Run>
void loop_bench(benchmark::State& state, Run run) {
  for (auto _ : state) run();
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * loop_n));
}

void BM_axpy_fibers_index(benchmark::State& state) {
  fibers::cpu::pool pool(static_cast<std::size_t>(state.range(0)));
  axpy_data d;
  loop_bench(state, [&] {
    fibers::cpu::parallel_for(pool, std::size_t{0}, loop_n, [&](std::size_t i) { d.y[i] = d.a * d.x[i] + d.y[i]; });
  });
  benchmark::DoNotOptimize(d.y.data());
}
BENCHMARK(BM_axpy_fibers_index)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_axpy_fibers_range(benchmark::State& state) {
  fibers::cpu::pool pool(static_cast<std::size_t>(state.range(0)));
  axpy_data d;
  loop_bench(state, [&] {
    fibers::cpu::parallel_for(pool, range(0, loop_n), [&](range r) {
      double* y = d.y.data();
      const double* x = d.x.data();
      for (std::size_t i = r.begin(); i != r.end(); ++i) y[i] = d.a * x[i] + y[i];
    });
  });
  benchmark::DoNotOptimize(d.y.data());
}
BENCHMARK(BM_axpy_fibers_range)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_hash_fibers_range(benchmark::State& state) {
  fibers::cpu::pool pool(static_cast<std::size_t>(state.range(0)));
  std::vector<std::uint64_t> out(loop_n);
  loop_bench(state, [&] {
    fibers::cpu::parallel_for(pool, range(0, loop_n), [&](range r) {
      std::uint64_t* o = out.data();
      for (std::size_t i = r.begin(); i != r.end(); ++i) o[i] = mix(i);
    });
  });
  benchmark::DoNotOptimize(out.data());
}
BENCHMARK(BM_hash_fibers_range)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_sum_fibers_range(benchmark::State& state) {
  fibers::cpu::pool pool(static_cast<std::size_t>(state.range(0)));
  axpy_data d;
  loop_bench(state, [&] {
    const double sum = fibers::cpu::parallel_reduce(
        pool, range(0, loop_n), 0.0,
        [&](range r, double acc) {
          const double* x = d.x.data();
          for (std::size_t i = r.begin(); i != r.end(); ++i) acc += x[i];
          return acc;
        },
        std::plus<>());
    benchmark::DoNotOptimize(sum);
  });
}
BENCHMARK(BM_sum_fibers_range)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// Short loops called back to back from a plain thread, where handing the loop to the workers
// and back costs as much as the loop: the hash kernel over n indices. Args = workers, n.
void BM_short_hash_fibers_range(benchmark::State& state) {
  fibers::cpu::pool pool(static_cast<std::size_t>(state.range(0)));
  std::vector<std::uint64_t> out(static_cast<std::size_t>(state.range(1)));
  for (auto _ : state) {
    fibers::cpu::parallel_for(pool, range(0, out.size()), [&](range r) {
      std::uint64_t* o = out.data();
      for (std::size_t i = r.begin(); i != r.end(); ++i) o[i] = mix(i);
    });
  }
  benchmark::DoNotOptimize(out.data());
}
BENCHMARK(BM_short_hash_fibers_range)
    ->ArgsProduct({{1, 2}, {10'000, 100'000}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// A small task_group run and waited for from a plain thread, back to back: 16 tasks of about
// 0.6 us each here (the hash kernel 200 times over). `Group` is fibers::cpu::task_group (on `pool`)
// or tbb::task_group (inside the caller's arena). Arg = workers.
constexpr int small_group_tasks = 16;

template <class Group, class... PoolArg>
void small_group(std::atomic<std::uint64_t>& sink, PoolArg&... pool) {
  Group g(pool...);
  for (int i = 0; i < small_group_tasks; ++i) {
    g.run([&sink, i] {
      std::uint64_t v = static_cast<std::uint64_t>(i);
      for (int k = 0; k < 200; ++k) v = mix(v);
      sink.fetch_add(v, std::memory_order_relaxed);
    });
  }
  g.wait();
}

void BM_small_group_fibers(benchmark::State& state) {
  fibers::cpu::pool pool(static_cast<std::size_t>(state.range(0)));
  std::atomic<std::uint64_t> sink{0};
  for (auto _ : state) small_group<fibers::cpu::task_group>(sink, pool);
  benchmark::DoNotOptimize(sink.load());
}
BENCHMARK(BM_small_group_fibers)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);

#ifdef FIBERS_BENCH_TBB
void BM_short_hash_tbb(benchmark::State& state) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  std::vector<std::uint64_t> out(static_cast<std::size_t>(state.range(1)));
  for (auto _ : state) {
    arena.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, out.size()), [&](const tbb::blocked_range<std::size_t>& r) {
        std::uint64_t* o = out.data();
        for (std::size_t i = r.begin(); i != r.end(); ++i) o[i] = mix(i);
      });
    });
  }
  benchmark::DoNotOptimize(out.data());
}
BENCHMARK(BM_short_hash_tbb)->ArgsProduct({{1, 2}, {10'000, 100'000}})->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_small_group_tbb(benchmark::State& state) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  std::atomic<std::uint64_t> sink{0};
  for (auto _ : state) arena.execute([&] { small_group<tbb::task_group>(sink); });
  benchmark::DoNotOptimize(sink.load());
}
BENCHMARK(BM_small_group_tbb)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);

// oneTBB's own idiom: blocked_range with its default (auto) partitioner, in an arena of N.
void BM_axpy_tbb(benchmark::State& state) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  axpy_data d;
  loop_bench(state, [&] {
    arena.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, loop_n), [&](const tbb::blocked_range<std::size_t>& r) {
        double* y = d.y.data();
        const double* x = d.x.data();
        for (std::size_t i = r.begin(); i != r.end(); ++i) y[i] = d.a * x[i] + y[i];
      });
    });
  });
  benchmark::DoNotOptimize(d.y.data());
}
BENCHMARK(BM_axpy_tbb)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_hash_tbb(benchmark::State& state) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  std::vector<std::uint64_t> out(loop_n);
  loop_bench(state, [&] {
    arena.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, loop_n), [&](const tbb::blocked_range<std::size_t>& r) {
        std::uint64_t* o = out.data();
        for (std::size_t i = r.begin(); i != r.end(); ++i) o[i] = mix(i);
      });
    });
  });
  benchmark::DoNotOptimize(out.data());
}
BENCHMARK(BM_hash_tbb)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_sum_tbb(benchmark::State& state) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  axpy_data d;
  loop_bench(state, [&] {
    double sum = 0;
    arena.execute([&] {
      sum = tbb::parallel_reduce(
          tbb::blocked_range<std::size_t>(0, loop_n), 0.0,
          [&](const tbb::blocked_range<std::size_t>& r, double acc) {
            const double* x = d.x.data();
            for (std::size_t i = r.begin(); i != r.end(); ++i) acc += x[i];
            return acc;
          },
          std::plus<>());
    });
    benchmark::DoNotOptimize(sum);
  });
}
BENCHMARK(BM_sum_tbb)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
#endif

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
