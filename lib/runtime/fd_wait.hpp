// lib/runtime/fd_wait.hpp - parking the running fiber until fds that are not libfibers sockets
// are ready: what libfibers-hook's interposed calls (lib/hook/) wait with.
//
// Each I/O thread keeps a table of the fds its fibers wait on. An fd is registered with the
// thread's reactor (edge-triggered, through an io_handler) when its first waiter arrives and
// deregistered when its last one leaves, so the table never outlives a wait and an fd closed
// behind the hook's back (fclose, a library's internal close) leaves nothing stale behind.
// Several fibers may wait on one fd, in either direction; an event wakes every waiter it
// concerns and each retries its system call.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fibers/clock.hpp"
#include "reactor/reactor.hpp"

namespace fibers::detail {

struct fiber_state;

/// The running fiber, or nullptr on a plain thread or an I/O thread's scheduler loop. Reads a
/// thread_local and the thread's running context: never allocates, safe at any time (before a
/// runtime exists, in static constructors, after the runtime is gone).
fiber_state* running_fiber_state() noexcept;

/// One fd a wait is interested in: io_readable and/or io_writable (0: only hang-up/error).
struct fd_interest {
  int fd = -1;
  std::uint32_t events = 0;
};

enum class fd_wait_result {
  ready,      // one of the fds reported an event it was asked for (or a hang-up/error)
  timeout,    // `until` passed, or the fiber's inherited deadline
  canceled,   // the fiber was canceled
  closed,     // one of the fds was closed through fd_closed()
  unsupported // an fd could not be registered (regular file, already in the epoll set, ...)
};

/// Parks the running fiber (precondition: running_fiber_state() != nullptr) until one of the
/// `n` fds is ready for what it asks, `until` passes or the fiber is canceled. n == 0 just
/// sleeps. `what` names the wait in fibers::dump(). On `unsupported`, *err holds the errno
/// of the failed registration and nothing was parked.
fd_wait_result wait_fds(const fd_interest* fds, std::size_t n, clock::time_point until,
                        const char* what, int* err) noexcept;

/// `fd` is about to be closed: every fiber waiting on it wakes with fd_wait_result::closed
/// (on this thread at once, on other I/O threads through a task posted to them, only when
/// some fd wait is in progress there). Any thread; does nothing where there is no runtime.
void fd_closed(int fd) noexcept;

}  // namespace fibers::detail
