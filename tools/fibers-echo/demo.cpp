// tools/fibers-echo/demo.cpp - the `demo` command (what `./tools/dev.sh demo` runs): one
// single-thread runtime serves, another single-thread runtime loads it, in the same process.
#include "demo.hpp"

#include <cstdio>
#include <exception>
#include <memory>

#include <fmt/core.h>

#include <fibers/fibers.hpp>

#include "load.hpp"
#include "serve.hpp"

namespace fibers_echo {

int run_demo(const demo_options& opts, const sigset_t& stop) {
  server_stats stats(1);  // outlives the server runtime
  load_result r;
  {
    fibers::runtime server_rt(1);
    std::unique_ptr<echo_server> server;
    try {
      server = std::make_unique<echo_server>(server_rt, fibers::endpoint::loopback_v4(0), stats,
                                             echo_limits{});
    } catch (const std::exception& e) {
      fmt::print(stderr, "fibers-echo demo: {}\n", e.what());
      return 1;
    }
    const fibers::endpoint bound = server->local_endpoint();
    fmt::print("fibers-echo demo: server on {}; load: {} connections x {} bytes for {:.1f} s\n",
               bound.to_string(), opts.conns, opts.size,
               std::chrono::duration<double>(opts.duration).count());
    std::fflush(stdout);

    load_options lo;
    lo.host = bound.address();
    lo.port = bound.port();
    lo.target = bound;
    lo.conns = opts.conns;
    lo.size = opts.size;
    lo.duration = opts.duration;
    lo.warmup = opts.warmup;
    lo.threads = 1;
    lo.timeout = opts.timeout;
    r = run_load(lo, &stop);
  }  // ~echo_server stops accepting, ~runtime ends the connections
  if (r.connected == 0) {
    fmt::print(stderr, "fibers-echo demo: {}\n", r.first_error);
    return 1;
  }
  fmt::print("{}\n", r.line());
  auto t = stats.sum();
  fmt::print(
      "fibers-echo demo: {:.0f} round-trips/s, {:.1f} MB/s echoed, latency p50 {:.1f} us "
      "p99 {:.1f} us p99.9 {:.1f} us over {} connections; server: {} connections, {} bytes, {} "
      "resets, {} errors; {}\n",
      r.round_trips_per_sec(), r.megabytes_per_sec(), r.latency.quantile_us(0.50),
      r.latency.quantile_us(0.99), r.latency.quantile_us(0.999), r.conns, t.connections, t.bytes,
      t.of(serve_error::reset), t.other_errors(), r.ok() ? "no errors" : "FAILED");
  return r.ok() ? 0 : 1;
}

}  // namespace fibers_echo
