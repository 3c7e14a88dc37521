// tools/fibers-echo/signals.hpp - SIGINT/SIGTERM as ordinary events: blocked in every thread,
// collected with sigtimedwait by the thread that orchestrates the run.
#pragma once

#include <chrono>
#include <csignal>
#include <string>

namespace fibers_echo {

/// Blocks SIGINT and SIGTERM in the calling thread (call before any other thread starts, so
/// they inherit the mask) and returns that set.
sigset_t block_stop_signals();

/// Waits up to `timeout` for a signal of `set`; returns its number, or 0 on timeout.
int wait_signal(const sigset_t& set, std::chrono::milliseconds timeout);

/// "SIGINT", "SIGTERM", or "signal N".
std::string signal_name(int sig);

}  // namespace fibers_echo
