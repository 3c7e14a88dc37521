// tools/fibers-echo/load.hpp - the load client: C connections, each a fiber sending S bytes
// and reading back the verified echo in a loop; and the `load` command around it.
#pragma once

#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <string>

#include <fibers/endpoint.hpp>

#include "stats.hpp"

namespace fibers_echo {

/// Options of a load run.
struct load_options {
  fibers::endpoint target;
  std::size_t conns = 1;
  std::size_t size = 1;
  std::chrono::nanoseconds duration{};  // measured window
  std::chrono::nanoseconds warmup{};    // run before the window, not counted
  std::size_t threads = 1;              // I/O threads of the client runtime
  std::chrono::nanoseconds timeout{};   // deadline of every connect/write/read
};

/// What a load run measured (round-trips that started inside the measured window).
struct load_result {
  std::size_t conns = 0;
  std::size_t size = 0;
  double seconds = 0;  // length of the measured window
  std::uint64_t round_trips = 0;
  std::uint64_t bytes = 0;  // echoed payload, one direction
  std::uint64_t errors = 0;
  std::uint64_t corrupt = 0;
  latency_histogram latency;
  std::string connect_error;  // set when connecting failed: nothing else ran

  bool ok() const { return connect_error.empty() && errors == 0 && corrupt == 0; }
  double round_trips_per_sec() const;
  double megabytes_per_sec() const;  // 1 MB = 1e6 B
  /// "rt/s=... MB/s=... p50_us=... p99_us=... errors=... corrupt=... conns=C size=S".
  std::string line() const;
};

/// Runs the load on its own runtime and returns what it measured. Connects every connection
/// first, then starts the clock. Stops early when a signal of `stop` arrives (if given).
/// Notes each connection's first error and any corruption on stderr.
load_result run_load(const load_options& opts, const sigset_t* stop);

/// The `load` command: runs the load, prints the result line; exit code 1 on any error.
int run_load_command(const load_options& opts, const sigset_t& stop);

}  // namespace fibers_echo
