// lib/net/socket_wait.cpp - how a socket call waits: its limits (the call's own deadline or
// the socket's timeout, the Go-style per-direction deadline, the fiber's inherited deadline),
// parking on the calling thread's slot, and deadlines changed while a call waits.
//
// A direction's deadline can change at any time from any thread. A blocked call does not
// have to be told when it is extended: its timer fires at the old time, it sees the new limit
// is still ahead and parks again. When the deadline moves earlier, every thread where the
// socket is registered is "poked": its waiter for that direction wakes as if its timer had
// fired and looks again (Go's net/timeout_test.go cases).
#include <poll.h>

#include <mutex>

#include "fibers/error.hpp"
#include "net/socket_inline.hpp"
#include "runtime/waiter.hpp"

namespace fibers::detail {

namespace {

/// Wakes the waiter for `dir` on `reg`'s slot (on its own thread) so it re-reads its limits.
void poke_here(const io_registration& reg, io_dir dir) noexcept {
  if (reg.slot->gen != reg.gen) return;  // taken down by close() meanwhile
  take_and_fire(waiter_of(reg.slot, dir), wake_reason::timeout);
}

void poke(const io_registration& reg, io_dir dir) noexcept {
  io_thread* self = io_thread::current();
  if (reg.thread == self && reg.thread_id == self->id()) {
    poke_here(reg, dir);
    return;
  }
  io_thread::with_live(reg.thread, reg.thread_id, [&](io_thread& t) {
    try {
      t.post([reg, dir] { poke_here(reg, dir); });
    } catch (const std::exception&) {
      // Out of memory: the waiter keeps its old, later limit.
    }
  });
}

}  // namespace

deadline socket_base::timeout_deadline() const noexcept {
  if (*timeout_ <= clock::duration::zero()) return deadline::at(clock::time_point::min());
  return deadline::after(*timeout_);
}

bool socket_base::limit_passed(io_dir dir, deadline dl, call_limit& lim) const noexcept {
  auto until = limit(dir, dl, lim);
  const fiber_state* st = io_thread::current()->running_fiber();
  if (st != nullptr) until = std::min(until, st->inherited_deadline);
  return until != clock::time_point::max() && until <= clock::now();
}

std::error_code socket_base::wait(const io_handle& h, io_dir dir, deadline dl, call_limit& lim) noexcept {
  for (;;) {
    if (h.slot->muted) [[unlikely]] {
      // Shared with other threads and muted while nobody here waited: edges may have been
      // missed, so report ready and let the caller retry its system call first.
      io_thread::current()->reactor().unmute(h.slot);
      return {};
    }
    waiter*& registered = waiter_of(h.slot, dir);
    if (registered != nullptr) return make_error_code(errc::busy);
    waiter w;
    registered = &w;
    // park() adds the fiber's inherited deadline (and returns timeout for it as well).
    const wake_reason r = park(w, limit(dir, dl, lim), true, dir == io_dir::read ? "read" : "write", h.fd);
    if (r == wake_reason::closed) return make_error_code(errc::closed);
    if (registered == &w) registered = nullptr;  // timed out or canceled: still registered
    // Closed on another thread after this fiber was woken for another reason: the fd may be
    // closed as soon as this thread's registration is taken down, so it must not be used.
    if (fd_.load(std::memory_order_acquire) != h.fd) return make_error_code(errc::closed);
    switch (r) {
      case wake_reason::ready: return {};
      case wake_reason::timeout:
        // The limit that fired, or a poke: the direction's deadline may have moved either way.
        if (limit_passed(dir, dl, lim)) return std::make_error_code(std::errc::timed_out);
        continue;
      default: return make_error_code(errc::canceled);
    }
  }
}

std::error_code socket_base::wait_ready(io_dir dir, deadline dl) {
  std::error_code ec;
  const io_handle h = handle_for(dir == io_dir::read ? "wait_readable" : "wait_writable", ec);
  if (h.fd < 0) return ec;
  call_limit lim;
  if (expired(dir, dl, lim, ec)) return ec;
  if (h.slot->ring) {  // no readiness bits on the ring: ask it
    ring_io(h, dir, ring_kind::poll, nullptr, 0, dl, lim, ec);
    return ec;
  }
  // The bit says "maybe ready": set by every readiness event, cleared only when one of the
  // socket's own calls found it empty/full. The caller's calls do not clear it, so ask the
  // kernel; if not ready, clear it: the edge that makes the socket ready is still to come.
  bool& maybe = dir == io_dir::read ? h.slot->readable : h.slot->writable;
  if (maybe) {
    pollfd p{h.fd, static_cast<short>(dir == io_dir::read ? POLLIN | POLLRDHUP : POLLOUT), 0};
    // Ready (or the poll failed: the caller's own call will report why).
    if (::poll(&p, 1, 0) != 0) return {};
    maybe = false;
  }
  ec = wait(h, dir, dl, lim);
  // Woken because the socket moved to the ring meanwhile (its first ring call, in the other
  // direction, took it out of the epoll set): the ring answers from here on.
  if (!ec && h.slot->ring) ring_io(h, dir, ring_kind::poll, nullptr, 0, dl, lim, ec);
  return ec;
}

void socket_base::wait_readable(std::error_code& ec, deadline dl) { ec = wait_ready(io_dir::read, dl); }

void socket_base::wait_writable(std::error_code& ec, deadline dl) { ec = wait_ready(io_dir::write, dl); }

void socket_base::wait_readable(deadline dl) {
  if (std::error_code ec = wait_ready(io_dir::read, dl)) throw_error(ec, describe("wait_readable"));
}

void socket_base::wait_writable(deadline dl) {
  if (std::error_code ec = wait_ready(io_dir::write, dl)) throw_error(ec, describe("wait_writable"));
}

void socket_base::set_dir_deadline(io_dir dir, clock::time_point tp) noexcept {
  auto& d = dir == io_dir::read ? read_deadline_ : write_deadline_;
  const auto old = clock::time_point(clock::duration(d.exchange(tp.time_since_epoch().count(), std::memory_order_acq_rel)));
  // Later (or unchanged): a waiting call finds out when its old limit fires and waits on.
  if (tp >= old || fd_.load(std::memory_order_acquire) < 0) return;
  if (home_.thread != nullptr) poke(home_, dir);
  const std::uintptr_t v = remote_.load(std::memory_order_acquire);
  remote_registrations* regs = as_regs(v);
  if (regs == nullptr) return;
  // Under the lock: a call that registered after it read the old deadline is in the list.
  std::lock_guard lk(regs->mu);
  for (const io_registration& r : regs->regs) poke(r, dir);
}

void socket_base::set_read_deadline(clock::time_point tp) noexcept { set_dir_deadline(io_dir::read, tp); }

void socket_base::set_write_deadline(clock::time_point tp) noexcept { set_dir_deadline(io_dir::write, tp); }

void socket_base::set_deadline(clock::time_point tp) noexcept {
  set_dir_deadline(io_dir::read, tp);
  set_dir_deadline(io_dir::write, tp);
}

}  // namespace fibers::detail
