// lib/net/socket_ring.cpp - a socket call as one io_uring operation, for I/O threads whose
// sockets go through their ring (runtime_options::sockets = socket_io::io_uring).
//
// The call's fiber registers as the slot's reader or writer, exactly as a readiness wait does,
// so everything that wakes a blocked call works unchanged: close() on any thread (take-down
// fires the registration with `closed`), a direction deadline moved earlier (a poke fires it
// with `timeout`), cancellation and the call's own limits (park's). The ring's completion
// fires the same waiter through uring_op::w; a waiter is fired at most once, whoever comes
// first. A call woken for any reason but its completion cancels the operation in the kernel
// and waits for its CQE before it returns, so the kernel never writes into a buffer the
// caller has given up; an operation that completed anyway keeps its result (a read's bytes
// are returned, not dropped).
//
// The first ring call on a slot takes its fd out of the epoll set (reactor::hand_to_ring):
// the ring reports everything the call needs, and epoll would only wake the thread for
// nothing. A readiness wait already parked on epoll for the other direction is woken and
// moves to the ring. close() submits what the thread queued on its ring before the fd can be closed
// (socket_base.cpp, take_down_here), so a queued operation never meets a reused fd number.
#include <poll.h>
#include <sys/socket.h>

#include <chrono>

#include "fibers/error.hpp"
#include "net/socket_inline.hpp"
#include "reactor/completion.hpp"
#include "runtime/waiter.hpp"

namespace fibers::detail {

std::size_t socket_base::ring_io(const io_handle& h, io_dir dir, ring_kind kind, void* data,
                                 std::size_t size, deadline dl, call_limit& lim,
                                 std::error_code& ec) noexcept {
  io_thread* t = io_thread::current();
  uring& u = *t->socket_ring();
  waiter*& registered = waiter_of(h.slot, dir);
  if (registered != nullptr) {
    ec = make_error_code(errc::busy);
    return 0;
  }
  // A readiness wait of the other direction parked on epoll is woken by the hand-over and
  // asks the ring instead (socket_wait.cpp, wait_ready).
  if (!h.slot->ring) t->reactor().hand_to_ring(h.slot);
  const char* what = kind == ring_kind::recv   ? "read"
                     : kind == ring_kind::send ? "write"
                     : dir == io_dir::read     ? "wait_readable"
                                               : "wait_writable";
  io_uring_sqe* s;
  while ((s = u.sqe()) == nullptr) {
    // The kernel takes no submissions right now (its completion queue overflowed, or it is out
    // of memory): try again shortly, within the call's limits.
    waiter w;
    const wake_reason r = park(w, std::min(limit(dir, dl, lim), clock::now() + std::chrono::milliseconds(1)),
                               true, what, h.fd);
    if (r == wake_reason::canceled) {
      ec = make_error_code(errc::canceled);
      return 0;
    }
    if (fd_.load(std::memory_order_acquire) != h.fd) {
      ec = make_error_code(errc::closed);
      return 0;
    }
    if (limit_passed(dir, dl, lim)) {
      ec = std::make_error_code(std::errc::timed_out);
      return 0;
    }
  }
  uring_op op;
  switch (kind) {
    case ring_kind::recv: io_uring_prep_recv(s, h.fd, data, size, 0); break;
    // MSG_NOSIGNAL: a reset peer is an EPIPE error, never a SIGPIPE (as on the epoll path).
    case ring_kind::send: io_uring_prep_send(s, h.fd, data, size, MSG_NOSIGNAL); break;
    case ring_kind::poll:
      io_uring_prep_poll_add(s, h.fd, dir == io_dir::read ? POLLIN | POLLRDHUP : POLLOUT);
      break;
  }
  io_uring_sqe_set_data(s, &op);
  u.count_op();
  for (;;) {
    waiter w;
    registered = &w;
    op.w = &w;
    // park() adds the fiber's inherited deadline (and returns timeout for it as well).
    const wake_reason r = park(w, limit(dir, dl, lim), true, what, h.fd);
    op.w = nullptr;
    // Still registered unless close() or a poke took it (a slot is never freed, only reused,
    // so the comparison is safe even after close()).
    if (registered == &w) registered = nullptr;
    if (op.done) break;  // completed, whatever woke the fiber first
    const bool closed = r == wake_reason::closed || fd_.load(std::memory_order_acquire) != h.fd;
    // A poke, or the old limit of a deadline since extended: wait on for the same operation.
    // (A readiness wake without the completion cannot come from epoll, which no longer has
    // the fd; should one come, it is no reason to give up either.)
    if ((r == wake_reason::timeout || r == wake_reason::ready) && !closed && !limit_passed(dir, dl, lim)) continue;
    u.cancel_and_wait(op, h.fd);
    // An operation interrupted in an io_uring worker thread reports EINTR.
    if (op.res == -ECANCELED || op.res == -EINTR) {
      ec = closed                          ? make_error_code(errc::closed)
           : r == wake_reason::canceled    ? make_error_code(errc::canceled)
                                           : std::make_error_code(std::errc::timed_out);
      return 0;
    }
    break;  // it completed after all: its result stands
  }
  if (op.res < 0) {
    ec.assign(-op.res, std::generic_category());
    return 0;
  }
  return kind == ring_kind::poll ? 0 : static_cast<std::size_t>(op.res);
}

}  // namespace fibers::detail
