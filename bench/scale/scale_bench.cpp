// bench/scale/scale_bench.cpp - N parked fibers on one I/O thread: resident memory per fiber,
// spawn time and wake-all time. Compare with bench/scale/go-scale (goroutines).
//
//   scale_bench [N=1000000] [stack_kib=16] [canary=1]
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <fibers/fibers.hpp>

namespace {

long resident_kib() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * 4;
}

double ms_between(fibers::clock::time_point a, fibers::clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  long args[3] = {1'000'000, 16, 1};
  for (int i = 1; i < argc && i <= 3; ++i) {
    char* end = nullptr;
    args[i - 1] = std::strtol(argv[i], &end, 10);
    if (end == argv[i] || *end != '\0' || args[i - 1] < 0 || (i < 3 && args[i - 1] == 0)) {
      std::fprintf(stderr, "scale_bench: bad argument '%s'\nusage: scale_bench [N=1000000] [stack_kib=16] [canary=1]\n",
                   argv[i]);
      return 2;
    }
  }
  const long n = args[0];
  const long stack_kib = args[1];
  fibers::runtime_options opts;
  opts.stack_size = static_cast<std::size_t>(stack_kib) * 1024;
  opts.watchdog = std::chrono::milliseconds(0);
  opts.stack_canary = args[2] != 0;
  fibers::runtime rt(opts);
  rt.run([&] {
    fibers::latch go(1);
    fibers::wait_group done;
    long parked = 0;
    const long rss_before = resident_kib();
    const auto t0 = fibers::clock::now();
    for (long i = 0; i < n; ++i) {
      done.add(1);
      fibers::spawn([&] {
        ++parked;
        go.wait();
        done.done();
      }).detach();
    }
    while (parked < n) fibers::this_fiber::yield();  // every fiber has run and parked
    const auto t1 = fibers::clock::now();
    const long rss_parked = resident_kib();
    go.count_down();
    done.wait();
    const auto t2 = fibers::clock::now();
    const long rss_ended = resident_kib();
    std::printf(
        "scale_bench: %ld parked fibers, %ld KiB stacks, canary %s: %.2f KiB resident per fiber, "
        "spawn+park %.0f ns/fiber (%.0f ms), wake-all+finish %.0f ns/fiber (%.0f ms); "
        "stacks touched by the end: %.2f KiB per fiber\n",
        n, stack_kib, opts.stack_canary ? "on" : "off", static_cast<double>(rss_parked - rss_before) / static_cast<double>(n),
        ms_between(t0, t1) * 1e6 / static_cast<double>(n), ms_between(t0, t1),
        ms_between(t1, t2) * 1e6 / static_cast<double>(n), ms_between(t1, t2),
        static_cast<double>(rss_ended - rss_before) / static_cast<double>(n));
  });
  return 0;
}
