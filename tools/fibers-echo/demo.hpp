// tools/fibers-echo/demo.hpp - the `demo` command: server and load client in one process.
#pragma once

#include <chrono>
#include <csignal>
#include <cstddef>

namespace fibers_echo {

/// Options of the `demo` command.
struct demo_options {
  std::chrono::nanoseconds duration{};  // measured window
  std::chrono::nanoseconds warmup{};
  std::size_t conns = 1;
  std::size_t size = 1;
  std::chrono::nanoseconds timeout{};
};

/// Starts an echo server on 127.0.0.1 (a free port) in one runtime, runs the load against it
/// from another, prints the result and a summary. Exit code 0 when nothing failed.
int run_demo(const demo_options& opts, const sigset_t& stop);

}  // namespace fibers_echo
