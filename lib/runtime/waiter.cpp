// lib/runtime/waiter.cpp - park/fire, the one way libfibers suspends and resumes fibers.
#include "runtime/waiter.hpp"

#include <boost/fiber/scheduler.hpp>

#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"

namespace fibers::detail {

waiter::waiter() noexcept
    : ctx(boost::fibers::context::active()), home(io_thread::current()) {}

bool waiter::claim(wake_reason r) noexcept {
  wake_reason expected = wake_reason::none;
  return reason.compare_exchange_strong(expected, r, std::memory_order_acq_rel,
                                        std::memory_order_acquire);
}

bool waiter::fire(wake_reason r) noexcept {
  if (!claim(r)) return false;
  if (io_thread::current() == home) {
    home->make_ready(ctx);
  } else {
    // Boost's remote-ready queue is drained only by the target's dispatcher, i.e. after the
    // parking fiber has switched out, even if it has not reached suspend() yet.
    ctx->get_scheduler()->schedule_from_remote(ctx);
  }
  return true;
}

fiber_state* current_fiber_state() noexcept {
  return static_cast<fiber_state*>(boost::fibers::context::active()->get_properties());
}

wake_reason park(waiter& w, clock::time_point until, bool cancelable) noexcept {
  fiber_state* st = current_fiber_state();
  if (st != nullptr) {
    if (st->inherited_deadline < until) until = st->inherited_deadline;
    // If the claim fails, a waker already owns this waiter and will schedule us: we must
    // still suspend to consume that wake-up.
    if (cancelable && st->cancel_requested.load(std::memory_order_relaxed) &&
        w.claim(wake_reason::canceled)) {
      return wake_reason::canceled;
    }
  }
  timer tm;
  if (until != clock::time_point::max() && w.reason.load(std::memory_order_relaxed) == wake_reason::none) {
    if (until <= clock::now()) {
      if (w.claim(wake_reason::timeout)) return wake_reason::timeout;
    } else {
      tm.when = until;
      tm.w = &w;
      w.home->timers().push(tm);
    }
  }
  if (cancelable && st != nullptr) st->current_wait = &w;
  w.ctx->suspend();
  if (st != nullptr) st->current_wait = nullptr;
  w.home->timers().erase(tm);
  return w.reason.load(std::memory_order_acquire);
}

}  // namespace fibers::detail
