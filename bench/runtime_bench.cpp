// bench/runtime_bench.cpp - micro-benchmarks of the runtime core: context switch (yield),
// spawn+join, channel messages (same thread and across I/O threads), cross-thread wake; and
// two floors: the bare switch under yield, with no scheduler, and the channel's lock.
//
// Every benchmark runs inside a fibers::runtime; times are wall-clock (UseRealTime) because
// the work happens on the runtime's threads, not the benchmark's.
#include <benchmark/benchmark.h>

#include <atomic>
#include <thread>
#include <vector>

#include <fibers/channel.hpp>
#include <fibers/detail/spin_lock.hpp>
#include <fibers/fiber.hpp>
#include <fibers/future.hpp>
#include <fibers/runtime.hpp>

#include "runtime/context.hpp"  // the library's own switch (lib/runtime/switch.cpp, built in)

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

// Both fibers yield from one call site, as the fibers of a server do when they all run the
// same handler and park in the same call: the return after each switch lands where the CPU's
// return predictor expects, which BM_yield_switch's two loops (and bare_switch/two_sites
// below) do not give it.
[[gnu::noinline]] void yield_times(long n) {
  for (long i = 0; i < n; ++i) fibers::this_fiber::yield();
}

void BM_yield_switch_same_site(benchmark::State& state) {
  constexpr long batch = 1000;
  fibers::runtime rt;
  rt.run([&] {
    bool done = false;
    auto other = fibers::spawn([&] {
      while (!done) yield_times(batch);
    });
    while (state.KeepRunningBatch(batch)) yield_times(batch);
    done = true;
    other.join();
  });
  state.counters["s_per_switch"] = per_item(2);
}
BENCHMARK(BM_yield_switch_same_site)->UseRealTime();

// The floor under BM_yield_switch: two contexts switching to each other with the library's
// own jump (jump_context), and nothing else: no queue, no checks, no counters. One side is the
// benchmark's thread, the other a context on a stack of its own. Site is which copy of the
// loop a side runs: when both sides run the same one (same_site), every return after a switch
// goes where the CPU's return predictor expects; when they run different ones (two_sites, as
// the two fibers of BM_yield_switch do, and as any two fibers parked in different places do),
// the return into the loop mispredicts once per switch. yield's cost above two_sites is the
// scheduler's own work.
struct bare_pair {
  boost::context::detail::fcontext_t saved[2] = {};  // the switched-out side's context
  int running = 0;                                   // 0: the benchmark's thread, 1: the other
  long left = 0;                                     // switches still to make
};

[[gnu::noinline]] void bare_switch(bare_pair& p) {
  const int to = 1 - p.running;
  p.running = to;
  const auto from = fibers::detail::jump_context(p.saved[to], nullptr);
  p.saved[1 - p.running] = from.fctx;  // back here: store the side that just switched away
}

template <int Site>
[[gnu::noinline]] void bare_loop(bare_pair& p) {
  // Site makes the two copies differ, so that the linker's identical-code folding keeps both.
  asm volatile("" : : "i"(Site));
  while (p.left-- > 0) bare_switch(p);
}

template <int OtherSite>
void bare_entry(boost::context::detail::transfer_t from) {
  auto& p = *static_cast<bare_pair*>(from.data);
  p.saved[0] = from.fctx;
  for (;;) {
    bare_loop<OtherSite>(p);
    bare_switch(p);  // not reached while the counts are even: each batch ends on the thread
  }
}

template <int OtherSite>
void BM_bare_switch(benchmark::State& state) {
  bare_pair p;
  std::vector<char> stack(64 * 1024);
  p.saved[1] = boost::context::detail::make_fcontext(stack.data() + stack.size(), stack.size(),
                                                      &bare_entry<OtherSite>);
  // The first jump enters bare_entry with the pair as its data; it switches straight back.
  p.running = 1;
  const auto from = fibers::detail::jump_context(p.saved[1], &p);
  p.saved[1] = from.fctx;
  p.running = 0;
  for (auto _ : state) {
    p.left = 2;  // there and back: the batch ends on this side
    bare_loop<0>(p);
  }
  state.counters["s_per_switch"] = per_item(2);
}
BENCHMARK(BM_bare_switch<0>)->Name("BM_bare_switch/same_site")->UseRealTime();
BENCHMARK(BM_bare_switch<1>)->Name("BM_bare_switch/two_sites")->UseRealTime();

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

// The floor under a channel message: a send and a receive each take the channel's lock once
// (it is shared by fibers of any thread and by plain threads), so a buffered message costs at
// least two of these, uncontended, before any queue work.
void BM_spin_lock_uncontended(benchmark::State& state) {
  fibers::detail::spin_lock mu;
  for (auto _ : state) {
    mu.lock();
    benchmark::ClobberMemory();
    mu.unlock();
  }
}
BENCHMARK(BM_spin_lock_uncontended);

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

// The same unbuffered exchange with a deadline on every send and receive (as servers put an
// idle timeout on every read), next to `sleepers` fibers parked with deadlines of their own
// (idle connections): every park that waits has a deadline to keep in the thread's timers.
void BM_channel_deadline(benchmark::State& state) {
  const auto sleepers = static_cast<int>(state.range(0));
  fibers::runtime rt;
  rt.run([&] {
    std::vector<fibers::fiber> idle;
    for (int i = 0; i < sleepers; ++i) {
      idle.push_back(fibers::spawn([] {
        std::error_code ec;  // canceled at the end
        fibers::this_fiber::sleep_for(std::chrono::hours(1), ec);
      }));
    }
    // Let them all start and park (new fibers start 32 at a time, so a yield is not enough).
    fibers::this_fiber::sleep_for(std::chrono::milliseconds(20));
    fibers::channel<int> ch(0);
    auto consumer = fibers::spawn([ch]() mutable {
      while (ch.recv(fibers::deadline::after(std::chrono::seconds(60)))) {
      }
    });
    int i = 0;
    for (auto _ : state) ch.send(i++, fibers::deadline::after(std::chrono::seconds(60)));
    ch.close();
    consumer.join();
    for (auto& f : idle) f.cancel();
    for (auto& f : idle) f.join();
  });
  state.counters["s_per_msg"] = per_item(1);
}
BENCHMARK(BM_channel_deadline)->Arg(0)->Arg(1000)->UseRealTime();

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
