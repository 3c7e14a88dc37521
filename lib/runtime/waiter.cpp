// lib/runtime/waiter.cpp - park/schedule, the one way libfibers suspends and resumes fibers
// and plain threads.
#include "runtime/waiter.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include <boost/fiber/context.hpp>
#include <boost/fiber/scheduler.hpp>

#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/sanitizer.hpp"

namespace fibers::detail {
namespace {

boost::fibers::context* as_context(void* p) noexcept { return static_cast<boost::fibers::context*>(p); }

void futex_wake(std::atomic<std::uint32_t>* word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

// Waits while *word == 0, until the absolute CLOCK_MONOTONIC time `until` (steady_clock is
// CLOCK_MONOTONIC). Returns false on timeout.
bool futex_wait_until(std::atomic<std::uint32_t>* word, clock::time_point until) noexcept {
  timespec ts{};
  timespec* tsp = nullptr;
  if (until != clock::time_point::max()) {
    auto ns = until.time_since_epoch().count();
    if (ns < 0) ns = 0;
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    tsp = &ts;
  }
  long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word),
                     FUTEX_WAIT_BITSET_PRIVATE, 0, tsp, nullptr, FUTEX_BITSET_MATCH_ANY);
  return !(r != 0 && errno == ETIMEDOUT);
}

wake_reason park_thread(waiter& w, clock::time_point until) noexcept {
  while (w.woken.load(std::memory_order_acquire) == 0) {
    if (!futex_wait_until(&w.woken, until) && w.claim(wake_reason::timeout)) {
      return wake_reason::timeout;
    }
    if (w.reason.load(std::memory_order_acquire) != wake_reason::none) {
      // Claimed by someone (maybe after our timeout): wait for their schedule().
      until = clock::time_point::max();
    }
  }
  return w.reason.load(std::memory_order_acquire);
}

}  // namespace

waiter::waiter() noexcept : ctx(nullptr), home(io_thread::current()) {
  if (home != nullptr) ctx = home->running();
}

void waiter::schedule() noexcept {
  if (home == nullptr) {
    std::atomic<std::uint32_t>* word = &woken;
    word->store(1, std::memory_order_release);
    futex_wake(word);  // only the address is used: the waiter may already be gone
    return;
  }
  // Read everything needed first, then publish: the release store below makes what the
  // waker wrote (e.g. a value into the waiter's slot) visible to the resumed fiber, which
  // reads `woken` after resuming. The real hand-over goes through Boost's remote-ready queue,
  // whose synchronisation ThreadSanitizer cannot see; after the store the waiter is not read.
  auto* c = as_context(ctx);
  io_thread* h = home;
  const bool local = io_thread::current() == h;
  woken.store(1, std::memory_order_release);
  if (local) {
    h->make_ready(c);
  } else {
    // Boost's remote-ready queue is drained only by the target's dispatcher, i.e. after the
    // parking fiber has switched out, even if it has not reached suspend() yet.
    c->get_scheduler()->schedule_from_remote(c);
  }
}

fiber_state* current_fiber_state() noexcept {
  io_thread* t = io_thread::current();
  return t != nullptr ? static_cast<fiber_state*>(t->running()->get_properties()) : nullptr;
}

wake_reason park(waiter& w, clock::time_point until, bool cancelable, const char* what,
                 int fd) noexcept {
  if (w.home == nullptr) return park_thread(w, until);
  fiber_state* st = current_fiber_state();
  // Non-cancelable waits (join, shutdown) must run to completion: they ignore the fiber's
  // inherited deadline as well as cancellation.
  if (st != nullptr && cancelable) {
    if (st->inherited_deadline < until) until = st->inherited_deadline;
    // If the claim fails, a waker already owns this waiter and will schedule us: we must
    // still suspend to consume that wake-up.
    if (st->cancel_requested.load(std::memory_order_relaxed) &&
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
  if (st != nullptr) {
    if (cancelable) st->current_wait = &w;
    st->wait_what = what != nullptr ? what : "wait";
    st->wait_fd = fd;
    st->wait_since = w.home->coarse_now();
    st->wait_deadline = until;
    st->park_frame = __builtin_frame_address(0);
  }
  w.home->count_park();
  if (!w.home->fast_park(as_context(w.ctx))) as_context(w.ctx)->suspend();
  (void)w.woken.load(std::memory_order_acquire);  // pairs with schedule()
  if constexpr (sanitizers_on) sanitizer_switch_in(w.home->sanitizer_of(as_context(w.ctx)), false);
  if (st != nullptr) {
    st->current_wait = nullptr;
    st->wait_what = nullptr;
  }
  w.home->timers().erase(tm);
  return w.reason.load(std::memory_order_acquire);
}

}  // namespace fibers::detail
