// bench/runtime_bench.cpp - micro-benchmarks of the runtime core: context switch (yield),
// spawn+join, channel messages (same thread and across I/O threads), cross-thread wake.
//
// Every benchmark runs inside a fibers::runtime; times are wall-clock (UseRealTime) because
// the work happens on the runtime's threads, not the benchmark's.
#include <benchmark/benchmark.h>

#include <atomic>
#include <thread>

#include <fibers/channel.hpp>
#include <fibers/fiber.hpp>
#include <fibers/future.hpp>
#include <fibers/runtime.hpp>

namespace {

// Time per item, where each benchmark iteration does `per_iteration` items.
benchmark::Counter per_item(double per_iteration) {
  return benchmark::Counter(per_iteration,
                            benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_yield_switch(benchmark::State& state) {
  fibers::runtime rt;
  rt.run([&] {
    bool done = false;
    auto other = fibers::spawn([&] {
      while (!done) fibers::this_fiber::yield();
    });
    for (auto _ : state) fibers::this_fiber::yield();  // one switch away, one back
    done = true;
    other.join();
  });
  state.counters["s_per_switch"] = per_item(2);
}
BENCHMARK(BM_yield_switch)->UseRealTime();

void BM_spawn_join(benchmark::State& state) {
  fibers::runtime rt;
  rt.run([&] {
    for (auto _ : state) {
      auto f = fibers::spawn([] {});
      f.join();
    }
  });
}
BENCHMARK(BM_spawn_join)->UseRealTime();

void BM_spawn_batch_join(benchmark::State& state) {
  const int batch = 1000;
  fibers::runtime rt;
  rt.run([&] {
    std::vector<fibers::fiber> fs;
    fs.reserve(batch);
    for (auto _ : state) {
      for (int i = 0; i < batch; ++i) fs.push_back(fibers::spawn([] {}));
      for (auto& f : fs) f.join();
      fs.clear();
    }
  });
  state.counters["s_per_fiber"] = per_item(batch);
}
BENCHMARK(BM_spawn_batch_join)->UseRealTime();

// One message from a producer fiber to a consumer fiber on the same I/O thread.
void BM_channel_same_thread(benchmark::State& state) {
  const auto capacity = static_cast<std::size_t>(state.range(0));
  fibers::runtime rt;
  rt.run([&] {
    fibers::channel<int> ch(capacity);
    auto consumer = fibers::spawn([ch]() mutable {
      while (ch.recv()) {
      }
    });
    int i = 0;
    for (auto _ : state) ch.send(i++);
    ch.close();
    consumer.join();
  });
  state.counters["s_per_msg"] = per_item(1);
}
BENCHMARK(BM_channel_same_thread)->Arg(0)->Arg(1)->Arg(64)->Arg(1024)->UseRealTime();

// Ping-pong between fibers on two I/O threads: each iteration is two cross-thread wakes.
void BM_channel_ping_pong_cross_thread(benchmark::State& state) {
  fibers::runtime rt(2);
  rt.run([&] {
    fibers::channel<int> ping(0), pong(0);
    auto echo = rt.spawn_on(1, [ping, pong]() mutable {
      while (auto v = ping.recv()) pong.send(*v);
    });
    int i = 0;
    for (auto _ : state) {
      ping.send(i++);
      benchmark::DoNotOptimize(pong.recv());
    }
    ping.close();
    echo.join();
  });
  state.counters["s_per_wake"] = per_item(2);
}
BENCHMARK(BM_channel_ping_pong_cross_thread)->UseRealTime();

// A plain thread completes a promise that an I/O fiber waits on, and back (round trip).
void BM_future_plain_thread_round_trip(benchmark::State& state) {
  fibers::runtime rt;
  fibers::channel<fibers::promise<int>> requests(1);
  std::thread worker([requests]() mutable {
    while (auto p = requests.recv()) p->set_value(1);
  });
  rt.run([&] {
    for (auto _ : state) {
      fibers::promise<int> p;
      auto f = p.get_future();
      requests.send(std::move(p));
      benchmark::DoNotOptimize(f.get());
    }
  });
  requests.close();
  worker.join();
}
BENCHMARK(BM_future_plain_thread_round_trip)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
