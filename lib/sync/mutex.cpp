// lib/sync/mutex.cpp - fibers::mutex: FIFO with direct handoff, and a lock-free fast path.
//
// Uncontended lock()/unlock() are one CAS on state_ (see the gated state word in
// wait_helpers.hpp). Once anyone queues, the queued bit turns every later lock() and unlock()
// into the slow path under mu_, so a newcomer queues behind the waiters instead of barging.
//
// unlock() does not clear the locked bit while a waiter can be claimed: ownership passes to
// that waiter under mu_ (Boost.Fiber's mutex clears the flag and wakes the waiter, and a
// re-locking fiber on another thread then wins every race). Hence whenever the mutex is
// unlocked, no queued node belongs to a waiter that can still be claimed.
#include "fibers/mutex.hpp"

#include "fibers/fiber.hpp"
#include "fibers/runtime.hpp"
#include "sync/wait_helpers.hpp"

namespace fibers {

using detail::wake_reason;

namespace {
constexpr std::uint64_t locked = 2;
}  // namespace

mutex::~mutex() {
  std::lock_guard lk(mu_);
  if (!waiters_.empty()) detail::fatal_misuse("fibers::mutex destroyed while fibers or threads wait for it");
}

bool mutex::try_lock() noexcept {
  return detail::gate_try_fast(state_, [](std::uint64_t v) { return v == 0 ? locked : detail::gate_no_change; });
}

wake_reason mutex::lock_slow(clock::time_point until, bool cancelable) {
  std::unique_lock lk(mu_);
  if (detail::gate_freeze(state_) == 0) {
    // Free, so nobody can be queued (see the file comment).
    detail::gate_publish(state_, locked, waiters_);
    return wake_reason::ready;
  }
  const wake_reason r = detail::wait_queued(lk, waiters_, until, 0, cancelable);
  if (r == wake_reason::ready) return r;  // handed over: the unlocker updated state_
  detail::gate_publish(state_, detail::gate_freeze(state_), waiters_);
  return r;
}

void mutex::lock() {
  if (try_lock()) return;
  const wake_reason r = lock_slow(clock::time_point::max(), true);
  if (r != wake_reason::ready) detail::throw_wait_failure(r, "fibers::mutex::lock");
}

bool mutex::lock_until_impl(clock::time_point until) {
  if (try_lock()) return true;
  const wake_reason r = lock_slow(until, true);
  if (r == wake_reason::canceled) throw canceled("fibers::mutex::lock_until");
  return r == wake_reason::ready;
}

void mutex::lock_uncancelable() noexcept {
  if (try_lock()) return;
  while (lock_slow(clock::time_point::max(), false) != wake_reason::ready) {
    // park() ends an uncancelable wait only with the handoff (it ignores cancellation and
    // the inherited deadline). Should that ever change, let the owner run, and retry: the
    // caller (a condition_variable wait) must hold the mutex again before it returns.
    if (runtime::current() != nullptr) this_fiber::yield();
  }
}

void mutex::unlock() noexcept {
  if (detail::gate_try_fast(state_, [](std::uint64_t v) { return v == locked ? 0 : detail::gate_no_change; })) {
    return;
  }
  std::unique_lock lk(mu_);
  if (detail::gate_freeze(state_) != locked) {
    detail::fatal_misuse("fibers::mutex::unlock called on an unlocked mutex");
  }
  detail::wait_node* next = waiters_.claim_front(wake_reason::ready);
  // With a waiter claimed the mutex stays locked: that waiter owns it from here on.
  detail::gate_publish(state_, next != nullptr ? locked : 0, waiters_);
  lk.unlock();
  if (next != nullptr) next->w->schedule();
}

}  // namespace fibers
