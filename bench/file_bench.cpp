// bench/file_bench.cpp - file reads from the page cache: 64 fibers on one I/O thread reading
// through io_uring (SQEs batched until the thread polls, and submitted one by one), through
// the blocking pool, against plain pread(2) in a loop on one thread (the ceiling a single
// thread reaches with blocking calls). Prints MB/s and the ratios to pread in one run, and
// what a read costs on the pool. Not a Google Benchmark: one table, repetitions interleaved.
//
//     build/bench/file_bench [--reps N] [--file-mib M] [--fibers F]
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <fibers/fiber.hpp>
#include <fibers/file.hpp>
#include <fibers/runtime.hpp>

#include "reactor/completion.hpp"  // white-box: the ring's counters
#include "runtime/io_thread.hpp"

namespace {

using steady = std::chrono::steady_clock;

struct workload {
  const char* name;
  std::size_t block;    // bytes per read
  std::size_t reads;    // reads per run, over all fibers
  bool random;          // random block-aligned offsets, else sequential per fiber
};

struct config {
  std::string path;
  std::size_t file_size = 0;
  int fibers = 64;
};

/// The offset of read `i` of fiber `f` (same sequence for every backend).
std::uint64_t offset_of(const config& c, const workload& w, std::size_t f, std::size_t i) {
  const std::size_t blocks = c.file_size / w.block;
  if (w.random) {
    std::uint64_t x = (f * 0x9E3779B97F4A7C15ull) ^ (i * 0xBF58476D1CE4E5B9ull);
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    return (x % blocks) * w.block;
  }
  return ((f * blocks / static_cast<std::size_t>(c.fibers) + i) % blocks) * w.block;
}

/// CPU seconds used by the whole process so far (every thread: pool threads and the kernel's
/// io_uring workers included).
double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// Wall and CPU seconds of the measured loop of one run, and for io_uring the operations per
/// io_uring_enter that submitted.
struct sample {
  double wall, cpu;
  double ops_per_submit = 0;
};

/// The calling I/O thread's ring counters (zero without a ring).
fibers::detail::uring::counters ring_counters() {
  auto* r = fibers::detail::uring::of(*fibers::detail::io_thread::current());
  return r != nullptr ? r->stats() : fibers::detail::uring::counters{};
}

/// Seconds for w.reads reads with plain pread on this thread: the same reads into the same
/// buffers as the fibers' (fiber f's read i, round robin), one after another.
sample run_pread(const config& c, const workload& w) {
  const int fd = ::open(c.path.c_str(), O_RDONLY | O_CLOEXEC);
  std::vector<std::vector<char>> bufs(static_cast<std::size_t>(c.fibers), std::vector<char>(w.block, 1));
  const std::size_t per = w.reads / static_cast<std::size_t>(c.fibers);
  const double c0 = cpu_seconds();
  const auto t0 = steady::now();
  for (std::size_t i = 0; i < per; ++i) {
    for (std::size_t f = 0; f < static_cast<std::size_t>(c.fibers); ++f) {
      if (::pread(fd, bufs[f].data(), w.block, static_cast<off_t>(offset_of(c, w, f, i))) != static_cast<ssize_t>(w.block)) {
        std::fprintf(stderr, "pread failed\n");
        std::exit(1);
      }
    }
  }
  const sample s{std::chrono::duration<double>(steady::now() - t0).count(), cpu_seconds() - c0};
  ::close(fd);
  return s;
}

/// Seconds for w.reads reads by c.fibers fibers on one I/O thread through fibers::file.
sample run_fibers(const config& c, const workload& w, fibers::file_backend b, const char* submit_mode) {
  fibers::set_file_backend(b);
  ::setenv("FIBERS_URING_SUBMIT", submit_mode, 1);  // read when the thread's ring is set up
  // One I/O thread (a fresh ring each run); no watchdog: the set-up below touches 64 MiB of
  // fresh buffers, which it would report.
  fibers::runtime rt({.io_threads = 1, .watchdog = std::chrono::milliseconds(0)});
  return rt.run([&] {
    auto f = fibers::file::open(c.path);
    if (fibers::current_file_backend() != b) {
      std::fprintf(stderr, "backend %s not available here\n", fibers::to_string(b));
      std::exit(1);
    }
    std::vector<char> warm(w.block);
    (void)f.read_at(0, warm);  // sets up the ring (and its probe) outside the measurement
    const std::size_t per = w.reads / static_cast<std::size_t>(c.fibers);
    // Buffers made (and touched) before the clock starts: a fresh page costs ~16 us on first
    // touch on these VMs, which would swamp 1 MiB reads.
    std::vector<std::vector<char>> bufs(static_cast<std::size_t>(c.fibers), std::vector<char>(w.block, 1));
    std::vector<fibers::fiber> fs;
    const auto r0 = ring_counters();
    const double c0 = cpu_seconds();
    const auto t0 = steady::now();
    for (std::size_t k = 0; k < static_cast<std::size_t>(c.fibers); ++k) {
      fs.push_back(fibers::spawn([&, k] {
        std::vector<char>& buf = bufs[k];
        for (std::size_t i = 0; i < per; ++i) {
          if (f.read_at(offset_of(c, w, k, i), buf) != w.block) {
            std::fprintf(stderr, "short read\n");
            std::exit(1);
          }
        }
      }));
    }
    for (auto& x : fs) x.join();
    sample out{std::chrono::duration<double>(steady::now() - t0).count(), cpu_seconds() - c0};
    const auto r1 = ring_counters();
    if (r1.submits > r0.submits) {
      out.ops_per_submit = static_cast<double>(r1.ops - r0.ops) / static_cast<double>(r1.submits - r0.submits);
    }
    return out;
  });
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  std::size_t file_mib = 256;
  config c;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::atoi(argv[i + 1]);
    else if (std::strcmp(argv[i], "--file-mib") == 0) file_mib = static_cast<std::size_t>(std::atoi(argv[i + 1]));
    else if (std::strcmp(argv[i], "--fibers") == 0) c.fibers = std::atoi(argv[i + 1]);
  }
  c.file_size = file_mib << 20;
  char tmpl[] = "/tmp/fibers-file-bench-XXXXXX";
  const int fd = ::mkstemp(tmpl);
  if (fd < 0) return 1;
  c.path = tmpl;
  {
    // Fill the file (and with it the page cache).
    std::vector<char> chunk(1 << 20);
    std::mt19937 rng(42);
    for (auto& ch : chunk) ch = static_cast<char>(rng());
    for (std::size_t i = 0; i < file_mib; ++i) {
      if (::write(fd, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size())) return 1;
    }
    ::close(fd);
  }

  const workload loads[] = {
      {"4 KiB random", 4096, 64 * 3000, true},
      {"1 MiB sequential", 1 << 20, 64 * 24, false},
  };
  struct variant {
    const char* name;
    fibers::file_backend backend;
    const char* submit;
  };
  const variant variants[] = {
      {"io_uring (batched)", fibers::file_backend::io_uring, "batch"},
      {"io_uring (immediate)", fibers::file_backend::io_uring, "immediate"},
      {"pool", fibers::file_backend::pool, "batch"},
  };
  std::printf("file_bench: %s, %zu MiB in the page cache, %d fibers on one I/O thread, %d repetitions "
              "(medians)\n\n", c.path.c_str(), file_mib, c.fibers, reps);
  for (const workload& w : loads) {
    std::vector<double> base, base_cpu;
    std::vector<std::vector<double>> t(std::size(variants)), tc(std::size(variants)), tb(std::size(variants));
    (void)run_pread(c, w);  // warm
    for (int r = 0; r < reps; ++r) {
      const sample b = run_pread(c, w);
      base.push_back(b.wall);
      base_cpu.push_back(b.cpu);
      for (std::size_t v = 0; v < std::size(variants); ++v) {
        const sample x = run_fibers(c, w, variants[v].backend, variants[v].submit);
        t[v].push_back(x.wall);
        tc[v].push_back(x.cpu);
        tb[v].push_back(x.ops_per_submit);
      }
    }
    const double mb = static_cast<double>(w.reads) * static_cast<double>(w.block) / 1e6;
    const double n = static_cast<double>(w.reads);
    const double b = median(base);
    std::printf("%s reads (%zu reads of %zu bytes per run)\n", w.name, w.reads, w.block);
    std::printf("  %-22s %9s  %12s  %13s  %13s  %s\n", "", "MB/s", "wall us/read", "CPU us/read", "MB/s vs pread",
                "reads/submit");
    std::printf("  %-22s %9.0f  %12.2f  %13.2f  %12.2fx\n", "pread, one thread", mb / b, b * 1e6 / n,
                median(base_cpu) * 1e6 / n, 1.0);
    for (std::size_t v = 0; v < std::size(variants); ++v) {
      const double s = median(t[v]);
      std::printf("  %-22s %9.0f  %12.2f  %13.2f  %12.2fx", variants[v].name, mb / s, s * 1e6 / n,
                  median(tc[v]) * 1e6 / n, b / s);
      if (median(tb[v]) > 0) std::printf("  %12.1f", median(tb[v]));
      std::printf("\n");
    }
    const double pool = median(t[2]);
    std::printf("  pool cost per read: %+.2f us wall, %+.2f us CPU against pread\n\n", (pool - b) * 1e6 / n,
                (median(tc[2]) - median(base_cpu)) * 1e6 / n);
  }
  ::unlink(c.path.c_str());
  return 0;
}
