// lib/runtime/waiter.cpp - park/schedule, the one way libfibers suspends and resumes fibers
// and plain threads.
#include "runtime/waiter.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/sanitizer.hpp"

namespace fibers::detail {
namespace {

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

thread_local const thread_park_hook* tl_park_hook = nullptr;

}  // namespace

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

void set_thread_park_hook(const thread_park_hook* h) noexcept { tl_park_hook = h; }

waiter::waiter() noexcept : ctx(nullptr), home(io_thread::current()) {
  if (home != nullptr) ctx = home->running();
}

namespace {
[[noreturn]] void abort_park_on_loop(const char* what) noexcept {
  std::fprintf(stderr,
               "libfibers: a task posted to an I/O thread tried to wait (%s): tasks run on the "
               "thread's scheduler loop and must not block; spawn a fiber for work that waits\n",
               what != nullptr ? what : "wait");
  std::abort();
}
}  // namespace

void waiter::schedule() noexcept {
  if (home == nullptr) {
    std::atomic<std::uint32_t>* word = &woken;
    word->store(1, std::memory_order_release);
    futex_wake(word);  // only the address is used: the waiter may already be gone
    return;
  }
  // Read everything needed first, then publish: the release store below makes what the
  // waker wrote (e.g. a value into the waiter's slot) visible to the resumed fiber, which
  // reads `woken` after resuming. After the store the waiter is not read.
  auto* c = static_cast<context*>(ctx);
  io_thread* h = home;
  const bool local = io_thread::current() == h;
  woken.store(1, std::memory_order_release);
  if (local) {
    h->make_ready(c);
  } else {
    // The remote queue is drained only by the target's scheduler loop, i.e. after the parking
    // fiber has switched out, even if it has not reached its switch yet.
    h->make_ready_remote(c);
  }
}

fiber_state* current_fiber_state() noexcept {
  io_thread* t = io_thread::current();
  return t != nullptr ? t->running_fiber() : nullptr;
}

namespace {

// fiber_state::deadline_timer fired: times out the park it serves, or moves to that park's
// later deadline, or (no park with a deadline in progress) stays disarmed.
void expire_deadline(timer& t) noexcept {
  fiber_state* st = static_cast<fiber_timer&>(t).fiber;
  waiter* w = st->deadline_park;
  if (w == nullptr) return;
  // expire_timers() has just read the clock into coarse_now(); a later deadline is pushed
  // strictly after it, so its loop does not pop the timer again.
  if (st->wait_deadline > st->home->coarse_now()) {
    t.when = st->wait_deadline;
    st->home->timers().push(t);
    return;
  }
  w->fire(wake_reason::timeout);
}

// Makes the fiber's deadline timer fire no later than `until` for the park of `w`.
void arm_deadline(fiber_state& st, waiter& w, clock::time_point until) noexcept {
  st.deadline_park = &w;
  fiber_timer& t = st.deadline_timer;
  if (t.armed()) {
    if (t.when <= until) return;  // fires first; expire_deadline then waits on for `until`
    w.home->timers().erase(t);
  } else {
    t.fiber = &st;
    t.expire = &expire_deadline;
  }
  t.when = until;
  w.home->timers().push(t);
}

}  // namespace

wake_reason park(waiter& w, clock::time_point until, bool cancelable, const char* what,
                 int fd) noexcept {
  if (w.home == nullptr) {
    if (const thread_park_hook* h = tl_park_hook) return h->park(h->ctx, w, until, false);
    return park_thread(w, until);
  }
  auto* self = static_cast<context*>(w.ctx);
  if (!self->is_fiber) abort_park_on_loop(what);
  auto* st = static_cast<fiber_state*>(self);
  // Non-cancelable waits (join, shutdown) must run to completion: they ignore the fiber's
  // inherited deadline as well as cancellation.
  if (cancelable) {
    if (st->inherited_deadline < until) until = st->inherited_deadline;
    // If the claim fails, a waker already owns this waiter and will schedule us: we must
    // still suspend to consume that wake-up.
    if (st->cancel_requested.load(std::memory_order_relaxed) &&
        w.claim(wake_reason::canceled)) {
      return wake_reason::canceled;
    }
  }
  if (until != clock::time_point::max() && w.reason.load(std::memory_order_relaxed) == wake_reason::none) {
    // Past already at the thread's last clock read: no wait. A deadline that passed since
    // then is armed and fires at the loop's next look at the timers, within a round.
    if (until <= w.home->coarse_now()) {
      if (w.claim(wake_reason::timeout)) return wake_reason::timeout;
    } else {
      arm_deadline(*st, w, until);
    }
  }
  if (cancelable) st->current_wait = &w;
  st->wait_what = what != nullptr ? what : "wait";
  st->wait_fd = fd;
  st->wait_since = w.home->coarse_now();
  st->wait_deadline = until;
  st->park_frame = __builtin_frame_address(0);
  w.home->count_park();
  w.home->park_running(self);
  (void)w.woken.load(std::memory_order_acquire);  // pairs with schedule()
  st->current_wait = nullptr;
  st->wait_what = nullptr;
  st->deadline_park = nullptr;  // the timer stays armed for the next park (arm_deadline)
  return w.reason.load(std::memory_order_acquire);
}

wake_reason park_helping(waiter& w, clock::time_point until, bool cancelable, const char* what) noexcept {
  if (w.home == nullptr) {
    if (const thread_park_hook* h = tl_park_hook) return h->park(h->ctx, w, until, true);
    return park_thread(w, until);
  }
  return park(w, until, cancelable, what);
}

}  // namespace fibers::detail
