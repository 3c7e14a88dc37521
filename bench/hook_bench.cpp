// bench/hook_bench.cpp - the blocking C echo client/server pair (tests/hook/echo_blocking.c,
// no libfibers header) through libfibers-hook on 1,000 fibers of ONE I/O thread, against the
// same code on OS threads (1,000 client threads + 1,000 server threads), in the same run.
//
//   hook_bench [connections=1000] [round_trips_per_connection=200] [message_bytes=64] [reps=3]
//              [modes=all|hook1|hook2|threads, comma-separated]
//
// Prints round trips per second for each repetition of each mode, the medians, their ratio and
// the process's OS thread count in the fiber mode. Not a Google Benchmark: each mode is one
// long measured run, like bench/scale.
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fibers/fibers.hpp"
#include "fibers/hook.hpp"
#include "hook/echo_blocking.h"

namespace {

using steady = std::chrono::steady_clock;

int thread_count() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

struct result {
  double rps = 0;
  double cpu_us_per_rt = 0;  // user+system time of the whole process per round trip
  int failed = 0;
  int first_error = 0;
  int threads = 0;
};

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// Client and server fibers spread over `io_threads` I/O threads (round robin).
result run_fibers(std::size_t io_threads, int conns, int rounds, std::size_t size) {
  result res;
  std::atomic<int> failed{0}, first_error{0};
  const double cpu0 = cpu_seconds();
  fibers::runtime rt(fibers::runtime_options{.io_threads = io_threads});
  rt.run([&] {
    int port = 0;
    const int lfd = echo_listen(&port);
    if (lfd < 0) std::abort();
    auto acceptor = fibers::spawn([&] {
      for (int i = 0; i < conns; ++i) {
        const int fd = echo_accept(lfd);
        if (fd < 0) break;
        rt.spawn_on(static_cast<std::size_t>(i) % io_threads, [fd] { echo_serve(fd); }).detach();
      }
    });
    const auto t0 = steady::now();
    std::vector<fibers::fiber> clients;
    clients.reserve(static_cast<std::size_t>(conns));
    for (int i = 0; i < conns; ++i) {
      clients.push_back(rt.spawn_on(static_cast<std::size_t>(i) % io_threads, [&, port] {
        if (const int rc = echo_client(port, rounds, size); rc != 0) {
          ++failed;
          int zero = 0;
          first_error.compare_exchange_strong(zero, rc);
        }
      }));
    }
    fibers::this_fiber::sleep_for(std::chrono::milliseconds(50));
    res.threads = thread_count();
    for (auto& c : clients) c.join();
    const double secs = std::chrono::duration<double>(steady::now() - t0).count();
    res.rps = double(conns) * rounds / secs;
    acceptor.join();
    ::close(lfd);
  });
  res.failed = failed;
  res.first_error = first_error;
  res.cpu_us_per_rt = (cpu_seconds() - cpu0) * 1e6 / (double(conns) * rounds);
  return res;
}

result run_threads(int conns, int rounds, std::size_t size) {
  result res;
  int port = 0;
  const int lfd = echo_listen(&port);
  if (lfd < 0) std::abort();
  std::vector<std::thread> servers;
  servers.reserve(static_cast<std::size_t>(conns));
  std::thread acceptor([&] {
    for (int i = 0; i < conns; ++i) {
      const int fd = echo_accept(lfd);
      if (fd < 0) break;
      servers.emplace_back([fd] { echo_serve(fd); });
    }
  });
  std::atomic<int> failed{0};
  const auto t0 = steady::now();
  const double cpu0 = cpu_seconds();
  std::vector<std::thread> clients;
  clients.reserve(static_cast<std::size_t>(conns));
  for (int i = 0; i < conns; ++i) {
    clients.emplace_back([&, port] {
      if (echo_client(port, rounds, size) != 0) ++failed;
    });
  }
  for (auto& c : clients) c.join();
  const double secs = std::chrono::duration<double>(steady::now() - t0).count();
  acceptor.join();
  for (auto& s : servers) s.join();
  ::close(lfd);
  res.rps = double(conns) * rounds / secs;
  res.failed = failed;
  res.cpu_us_per_rt = (cpu_seconds() - cpu0) * 1e6 / (double(conns) * rounds);
  return res;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int conns = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 200;
  const auto size = static_cast<std::size_t>(argc > 3 ? std::atoi(argv[3]) : 64);
  const int reps = argc > 4 ? std::atoi(argv[4]) : 3;
  // One mode alone, for profiling (strace -c -f, perf): "hook1", "hook2", "threads".
  const std::string modes = argc > 5 ? argv[5] : "all";
  auto want = [&](const char* m) { return modes == "all" || modes.find(m) != std::string::npos; };
  rlimit r{};
  ::getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &r);
  if (!fibers::hook::active()) std::printf("note: FIBERS_HOOK=off - the fiber mode blocks its thread\n");
  std::printf("blocking C echo, %d connections x %d round trips of %zu bytes, %d reps\n", conns, rounds, size, reps);
  std::vector<double> f1, f2, t;
  int threads1 = 0, threads2 = 0;
  for (int i = 0; i < reps; ++i) {
    const result a = want("hook1") ? run_fibers(1, conns, rounds, size) : result{};
    const result c = want("hook2") ? run_fibers(2, conns, rounds, size) : result{};
    const result b = want("threads") ? run_threads(conns, rounds, size) : result{};
    threads1 = a.threads;
    threads2 = c.threads;
    std::printf("rep %d: hook 1 I/O thread %8.0f/s %5.1f us CPU/rt (%d failed %d) | hook 2 I/O threads %8.0f/s "
                "%5.1f us CPU/rt (%d failed %d) | OS threads %8.0f/s %5.1f us CPU/rt (%d failed)\n",
                i + 1, a.rps, a.cpu_us_per_rt, a.failed, a.first_error, c.rps, c.cpu_us_per_rt, c.failed,
                c.first_error, b.rps, b.cpu_us_per_rt, b.failed);
    f1.push_back(a.rps);
    f2.push_back(c.rps);
    t.push_back(b.rps);
  }
  const double m1 = median(f1), m2 = median(f2), mt = median(t);
  std::printf("median round trips/s: hook 1 I/O thread %.0f (%.2fx threads, %d OS threads in the process), "
              "hook 2 I/O threads %.0f (%.2fx, %d OS threads), OS threads %.0f\n",
              m1, m1 / mt, threads1, m2, m2 / mt, threads2, mt);
  return 0;
}
