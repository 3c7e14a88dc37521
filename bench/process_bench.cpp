// bench/process_bench.cpp - children started and reaped per second: process::run of `true`
// from 64 fibers on one I/O thread, against posix_spawn + waitpid on 64 OS threads (and Go's
// os/exec when bench/peers/go-exec is built: not yet). One table, ratios in one run,
// repetitions interleaved.
//
//   process_bench [--seconds S] [--reps N] [--workers W]
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "fibers/fibers.hpp"

extern char** environ;

namespace {

using steady = std::chrono::steady_clock;

double cpu_seconds() {
  rusage self{}, kids{};
  ::getrusage(RUSAGE_SELF, &self);
  ::getrusage(RUSAGE_CHILDREN, &kids);
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  // The children's own CPU (exec + exit of `true`) is the same for both ways; count only ours.
  return sec(self.ru_utime) + sec(self.ru_stime);
}

struct result {
  double per_sec = 0;
  double cpu_us = 0;  // this process's CPU per child
  long errors = 0;
};

result run_fibers(int workers, double seconds) {
  std::atomic<long> done{0}, errors{0};
  const double cpu0 = cpu_seconds();
  const auto t0 = steady::now();
  const auto until = t0 + std::chrono::duration<double>(seconds);
  fibers::run([&] {
    fibers::with_scope([&](fibers::scope& s) {
      for (int w = 0; w < workers; ++w) {
        s.spawn([&] {
          while (steady::now() < until) {
            try {
              auto r = fibers::process::run({"true"}, {}, std::chrono::seconds(10));
              if (r.status.success()) {
                ++done;
              } else {
                ++errors;
              }
            } catch (const std::exception&) {
              ++errors;
            }
          }
        });
      }
    });
  });
  const double wall = std::chrono::duration<double>(steady::now() - t0).count();
  const double cpu = cpu_seconds() - cpu0;
  return {static_cast<double>(done) / wall, done ? cpu / static_cast<double>(done) * 1e6 : 0, errors};
}

result run_threads(int workers, double seconds) {
  std::atomic<long> done{0}, errors{0};
  const double cpu0 = cpu_seconds();
  const auto t0 = steady::now();
  const auto until = t0 + std::chrono::duration<double>(seconds);
  std::vector<std::thread> ts;
  for (int w = 0; w < workers; ++w) {
    ts.emplace_back([&] {
      char prog[] = "true";
      char* argv[] = {prog, nullptr};
      while (steady::now() < until) {
        pid_t pid;
        if (::posix_spawnp(&pid, "true", nullptr, nullptr, argv, environ) != 0) {
          ++errors;
          continue;
        }
        int st = 0;
        while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
          ++done;
        } else {
          ++errors;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  const double wall = std::chrono::duration<double>(steady::now() - t0).count();
  const double cpu = cpu_seconds() - cpu0;
  return {static_cast<double>(done) / wall, done ? cpu / static_cast<double>(done) * 1e6 : 0, errors};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2;
  int reps = 3, workers = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    if (a == "--reps") reps = std::atoi(argv[i + 1]);
    if (a == "--workers") workers = std::atoi(argv[i + 1]);
  }
  std::printf("process_bench: `true` started and reaped, %d workers, %.1f s x %d reps\n", workers,
              seconds, reps);
  std::printf("%-4s %-34s %12s %14s %8s\n", "rep", "way", "children/s", "our CPU us/ch", "errors");
  std::vector<double> ratio, f_rate, t_rate, f_cpu, t_cpu;
  for (int r = 0; r < reps; ++r) {
    // Alternate which goes first: the VM's CPU speed drifts.
    result f, t;
    if (r % 2 == 0) {
      f = run_fibers(workers, seconds);
      t = run_threads(workers, seconds);
    } else {
      t = run_threads(workers, seconds);
      f = run_fibers(workers, seconds);
    }
    std::printf("%-4d %-34s %12.0f %14.1f %8ld\n", r, "process::run, 64 fibers, 1 I/O thr", f.per_sec, f.cpu_us, f.errors);
    std::printf("%-4d %-34s %12.0f %14.1f %8ld\n", r, "posix_spawn+waitpid, OS threads", t.per_sec, t.cpu_us, t.errors);
    ratio.push_back(t.per_sec > 0 ? f.per_sec / t.per_sec : 0);
    f_rate.push_back(f.per_sec);
    t_rate.push_back(t.per_sec);
    f_cpu.push_back(f.cpu_us);
    t_cpu.push_back(t.cpu_us);
  }
  std::printf("\nmedian: fibers %.0f/s (%.1f us CPU each), threads %.0f/s (%.1f us CPU each); "
              "fibers/threads %.2fx [%.2f-%.2f] (target >= 1.0x)\n",
              median(f_rate), median(f_cpu), median(t_rate), median(t_cpu), median(ratio),
              *std::min_element(ratio.begin(), ratio.end()), *std::max_element(ratio.begin(), ratio.end()));
  std::printf("Go os/exec: not measured (no Go peer for this bench yet)\n");
  return 0;
}
