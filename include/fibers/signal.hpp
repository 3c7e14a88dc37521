// fibers/signal.hpp - waiting for POSIX signals in a fiber (asyncio's add_signal_handler, Go's
// signal.Notify), without an async-signal handler doing anything but count.
#pragma once

#include "fibers/detail/config.hpp"

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <system_error>
#include <vector>

#include "fibers/clock.hpp"

namespace fibers {

/// A set of signals that fibers wait for. While at least one signal_set names a signal, the
/// process catches it (sigaction with SA_RESTART) instead of taking its default action; the
/// previous disposition comes back when the last such set is destroyed.
///
/// Every set counts each delivered signal it names, from the moment it was created: a signal
/// that arrives while nobody waits is kept until the next wait() (several deliveries of one
/// signal number before a wait may be merged by the kernel, as POSIX allows). Several sets,
/// on any I/O threads, may name the same signal: each of them sees it. Several fibers may wait
/// on one set: each delivery wakes one of them.
///
/// Signals may be delivered to any thread of the process; the runtime changes no thread's
/// signal mask (see docs/DESIGN.md "Signals" for why this is not signalfd).
///
///     fibers::signal_set stop{SIGINT, SIGTERM};
///     int sig = stop.wait();          // parks this fiber only
///     server.drain();
class signal_set {
 public:
  /// Starts catching `signals`. std::invalid_argument for an empty list, a number that is
  /// not a signal, SIGKILL/SIGSTOP (cannot be caught) or a fault signal (SIGSEGV, SIGBUS,
  /// SIGFPE, SIGILL, SIGTRAP, SIGSYS: raised by the faulting thread itself, not awaitable).
  signal_set(std::initializer_list<int> signals);
  /// Moves the set; the moved-from one catches nothing.
  signal_set(signal_set&&) noexcept;
  /// Destroys this set (see ~signal_set()), then takes the other's.
  signal_set& operator=(signal_set&&) noexcept;
  /// Stops counting; destroying a set while fibers wait on it is a bug (aborts, naming it).
  ~signal_set();

  /// Waits for one of the set's signals and returns its number. Parks only the calling
  /// fiber; a cancellation point; std::errc::timed_out (system_error) at `dl` or the fiber's
  /// inherited deadline; fibers::canceled when canceled. std::logic_error off a fiber.
  int wait(deadline dl = {});
  /// As wait(); returns 0 with `ec` set instead of throwing for timeout or cancellation.
  int wait(std::error_code& ec, deadline dl = {});
  /// Takes a pending signal without waiting: its number, or 0 when none is pending.
  int try_wait() noexcept;
  /// The signals of the set.
  const std::vector<int>& signals() const noexcept;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace fibers
