// bench/socket_bench.cpp - a socket's call path on its home I/O thread against the same calls
// made from another I/O thread (the socket registered there on first use), and a connection
// whose reader and writer sit on different threads. Ping-pong of 64-byte messages over a
// Unix socketpair: every iteration is one write and one read on each end, one park and wake.
#include <benchmark/benchmark.h>

#include <sys/socket.h>

#include <array>
#include <stdexcept>

#include <fibers/fiber.hpp>
#include <fibers/runtime.hpp>
#include <fibers/stream_socket.hpp>

namespace {

struct socket_pair {
  fibers::stream_socket a, b;
};

socket_pair make_pair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw std::runtime_error("socketpair");
  return {fibers::stream_socket(sv[0]), fibers::stream_socket(sv[1])};
}

// The echo end: reads 64 bytes, writes them back, until the other end closes.
void echo(fibers::stream_socket& s) {
  std::array<char, 64> buf{};
  std::error_code ec;
  while (s.read_exact(buf, ec) == buf.size() && !ec) s.write_all(buf, ec);
}

// Runs the ping-pong loop of `state` on `s` (the pinging end).
void ping(benchmark::State& state, fibers::stream_socket& s) {
  std::array<char, 64> buf{};
  for (auto _ : state) {
    s.write_all(buf);
    s.read_exact(buf);
  }
}

// Both ends on the thread that created them: the home fast path.
void BM_socket_ping_pong_home_thread(benchmark::State& state) {
  fibers::runtime rt(1);
  rt.run([&] {
    auto p = make_pair();
    auto e = fibers::spawn([&] { echo(p.b); });
    ping(state, p.a);
    p.a.close();
    e.join();
  });
}
BENCHMARK(BM_socket_ping_pong_home_thread)->UseRealTime();

// The same two fibers on I/O thread 1, with both sockets created on thread 0: every call takes
// the path for a socket used off its home thread.
void BM_socket_ping_pong_off_home_thread(benchmark::State& state) {
  fibers::runtime rt(2);
  rt.run([&] {
    auto p = make_pair();
    rt.spawn_on(1, [&] {
      auto e = fibers::spawn([&] { echo(p.b); });
      ping(state, p.a);
      p.a.close();
      e.join();
    }).join();
  });
}
BENCHMARK(BM_socket_ping_pong_off_home_thread)->UseRealTime();

// The pinging end on thread 0, the echoing end on thread 1 (created on 0): each message crosses
// threads through the kernel, the reader parks on its own thread's reactor.
void BM_socket_ping_pong_across_threads(benchmark::State& state) {
  fibers::runtime rt(2);
  rt.run([&] {
    auto p = make_pair();
    auto e = rt.spawn_on(1, [&] { echo(p.b); });
    ping(state, p.a);
    p.a.close();
    e.join();
  });
}
BENCHMARK(BM_socket_ping_pong_across_threads)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
