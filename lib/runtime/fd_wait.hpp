// lib/runtime/fd_wait.hpp - parking the running fiber until fds that are not libfibers sockets
// are ready: what libfibers-hook's interposed calls (lib/hook/) wait with.
//
// Each I/O thread keeps a table of the fds its fibers wait on. An fd is registered with the
// thread's reactor (edge-triggered, through an io_handler) by its first wait there and stays
// registered between waits (no epoll_ctl per park), until fd_closed(), or until a wait finds
// the fd number's generation changed (fd_created(), or a close seen on another thread). A
// registration for a file closed behind the hook's back whose number was reused unseen is
// caught by revalidation: the thread's "fd revalidation" fiber (started by the first wait on
// a kept registration, gone after ten idle seconds) re-registers, once a second, every fd whose
// waits have been parked on a kept registration for a second.
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

/// Whether a call on `fd` may find it ready for `events` (io_readable or io_writable): false
/// only when `fd` is registered with the calling I/O thread's reactor (under its current
/// generation) and no edge for `events` (nor a hang-up) came since fd_drained(). Lets a
/// caller that knows the fd drained park at once instead of making the call that would say
/// EAGAIN: with edge-triggered registration, data that arrives later raises a new edge.
/// Call on an I/O thread.
bool fd_may_be_ready(int fd, std::uint32_t events) noexcept;

/// A call just found `fd` drained for `events` (a short read of a TCP stream or a pipe): until
/// the next edge, fd_may_be_ready says false. No effect if `fd` is not registered here.
void fd_drained(int fd, std::uint32_t events) noexcept;

/// `fd` was just created (socket, accept, pipe, dup, ...): a registration any thread kept for
/// an older file with that number is replaced at its next wait. Any thread.
void fd_created(int fd) noexcept;

/// `fd` is about to be closed: every fiber waiting on it wakes with fd_wait_result::closed
/// and the fd is deregistered (on this thread at once, on the other I/O threads that
/// registered it through a task posted to them). Any thread; one load when no thread ever
/// waited on that number.
void fd_closed(int fd) noexcept;

}  // namespace fibers::detail
