// bench/hook_bench.cpp - the blocking C echo client/server pair (tests/hook/echo_blocking.c,
// no libfibers header) through libfibers-hook on 1,000 client + 1,000 server fibers, against
// the same code on OS threads (1,000 client threads + 1,000 server threads), in the same run.
//
//   hook_bench [connections=1000] [round_trips_per_connection=200] [message_bytes=64] [reps=3]
//              [modes=all|hook1|hook2|hook2a|threads, comma-separated]
//
// Modes: hook1, every fiber on ONE I/O thread; hook2, two I/O threads, clients and server
// handlers dealt round robin (so half the connections have their two ends on different
// threads); hook2a, two I/O threads, each handler on the thread where its connection's
// packets arrive (fibers::affine_thread), which for loopback is its client's thread; threads,
// plain OS threads. Prints round trips per second for each repetition of each mode, the
// medians, their ratio to the threads and the process's OS thread count in the fiber modes.
// Not a Google Benchmark: each mode is one long measured run, like bench/scale.
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

#include "fibers/affinity.hpp"
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

/// Client fibers spread over `io_threads` I/O threads round robin; server handlers too, or
/// (`affine`) each on the thread where its connection's packets arrive.
result run_fibers(std::size_t io_threads, bool affine, int conns, int rounds, std::size_t size) {
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
        const auto dealt = static_cast<std::size_t>(i) % io_threads;
        rt.post([fd] { echo_serve(fd); }, affine ? fibers::affine_thread(rt, fd, dealt) : dealt);
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

struct mode {
  const char* name;   // as given on the command line
  const char* title;  // as printed
  std::size_t io_threads;  // 0: OS threads
  bool affine;
};

constexpr mode all_modes[] = {
    {"hook1", "hook, 1 I/O thread", 1, false},
    {"hook2", "hook, 2 I/O threads", 2, false},
    {"hook2a", "hook, 2 I/O threads, affine", 2, true},
    {"threads", "OS threads", 0, false},
};

int main(int argc, char** argv) {
  const int conns = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 200;
  const auto size = static_cast<std::size_t>(argc > 3 ? std::atoi(argv[3]) : 64);
  const int reps = argc > 4 ? std::atoi(argv[4]) : 3;
  // Some modes only, for profiling (strace -c -f, perf): "hook1", "hook2a,threads", ...
  const std::string picked = argc > 5 ? argv[5] : "all";
  std::vector<const mode*> modes;
  std::vector<std::string> names;
  for (std::size_t at = 0; at <= picked.size();) {
    const std::size_t comma = std::min(picked.find(',', at), picked.size());
    names.push_back(picked.substr(at, comma - at));
    at = comma + 1;
  }
  for (const mode& m : all_modes) {
    if (picked == "all" || std::find(names.begin(), names.end(), m.name) != names.end()) modes.push_back(&m);
  }
  if (modes.empty()) {
    std::fprintf(stderr, "hook_bench: no mode in '%s' (modes: hook1, hook2, hook2a, threads, all)\n", picked.c_str());
    return 2;
  }
  rlimit r{};
  ::getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &r);
  if (!fibers::hook::active()) std::printf("note: FIBERS_HOOK=off - the fiber modes block their threads\n");
  std::printf("blocking C echo, %d connections x %d round trips of %zu bytes, %d reps\n", conns, rounds, size, reps);
  std::vector<std::vector<double>> rps(modes.size());
  std::vector<int> os_threads(modes.size());
  for (int i = 0; i < reps; ++i) {
    // Each repetition starts one mode later, so no mode always runs right after the 2,000
    // threads (whose exit still occupies the CPUs) or always first.
    std::printf("rep %d:", i + 1);
    for (std::size_t j = 0; j < modes.size(); ++j) {
      const std::size_t k = (j + static_cast<std::size_t>(i)) % modes.size();
      const mode& m = *modes[k];
      const result res = m.io_threads == 0 ? run_threads(conns, rounds, size)
                                           : run_fibers(m.io_threads, m.affine, conns, rounds, size);
      std::printf("%s %s %.0f/s %.1f us CPU/rt (%d failed", j == 0 ? "" : " |", m.title, res.rps,
                  res.cpu_us_per_rt, res.failed);
      if (res.first_error != 0) std::printf(", first error %d", res.first_error);
      std::printf(")");
      std::fflush(stdout);
      rps[k].push_back(res.rps);
      os_threads[k] = res.threads;
    }
    std::printf("\n");
  }
  double threads_rps = 0;
  for (std::size_t k = 0; k < modes.size(); ++k) {
    if (modes[k]->io_threads == 0) threads_rps = median(rps[k]);
  }
  std::printf("median round trips/s:");
  for (std::size_t k = 0; k < modes.size(); ++k) {
    const double m = median(rps[k]);
    std::printf("%s %s %.0f", k == 0 ? "" : ",", modes[k]->title, m);
    if (modes[k]->io_threads != 0) {
      if (threads_rps > 0) std::printf(" (%.2fx threads", m / threads_rps);
      else std::printf(" (");
      std::printf("%s%d OS threads in the process)", threads_rps > 0 ? ", " : "", os_threads[k]);
    }
  }
  std::printf("\n");
  return 0;
}
