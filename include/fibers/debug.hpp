// fibers/debug.hpp - seeing inside a running runtime: fiber dumps, counters, SIGQUIT dumps.
#pragma once

#include "fibers/detail/config.hpp"

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <vector>

namespace fibers {

class runtime;

/// Counters of one I/O thread (monotonic, except fibers_alive). Read from any thread; values
/// from a running thread are a moment's snapshot.
struct thread_stats {
  std::size_t fibers_alive = 0;        ///< fibers spawned on the thread and not yet ended
  std::uint64_t fibers_spawned = 0;    ///< fibers ever spawned on the thread
  std::uint64_t switches = 0;          ///< context switches (picks of the next fiber)
  std::uint64_t parks = 0;             ///< waits that parked a fiber
  std::uint64_t reactor_polls = 0;     ///< reactor waits (blocking and non-blocking)
  std::uint64_t reactor_events = 0;    ///< fd readiness events handled
  std::uint64_t stacks_carved = 0;     ///< fiber stacks taken from the OS (the rest are reused)
};

/// Per-thread counters of `rt`, indexed by I/O thread.
std::vector<thread_stats> stats(const runtime& rt);

/// Writes every fiber of every live runtime in the process: id, name, state (running, ready,
/// waiting on what - "read fd 7", "sleep", "channel", "future", ... - for how long and until
/// when) and where it is suspended (a frame-pointer backtrace, symbolized with dladdr: build
/// with -fno-omit-frame-pointer and link with -rdynamic for complete traces, or use
/// tools/gdb/fibers.py). Each I/O thread writes its own fibers; a thread that does not answer
/// within 1 s is reported as blocked, with what the watchdog knows. Callable from any thread.
void dump(std::ostream& out);

/// Installs a SIGQUIT handler (opt-in, like Go's) that writes dump() to stderr. The process
/// keeps running. Idempotent.
void install_sigquit_dump();

}  // namespace fibers
