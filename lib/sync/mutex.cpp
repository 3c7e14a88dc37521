// lib/sync/mutex.cpp - fibers::mutex: FIFO with direct handoff.
//
// `locked_` says whether someone owns the mutex. unlock() does not clear it while a waiter can
// be claimed: ownership passes to that waiter under mu_, so a caller of lock() arriving after
// the unlock finds the mutex still locked and queues behind it (Boost.Fiber's mutex clears the
// flag and wakes the waiter, and a re-locking fiber on another thread then wins every race).
// Hence: whenever `locked_` is false, no queued node belongs to a waiter that can still be
// claimed, and lock()/try_lock() may take a free mutex without looking at the queue.
#include "fibers/mutex.hpp"

#include "fibers/fiber.hpp"
#include "fibers/runtime.hpp"
#include "sync/wait_helpers.hpp"

namespace fibers {

using detail::wake_reason;

mutex::~mutex() {
  std::lock_guard lk(mu_);
  if (!waiters_.empty()) detail::fatal_misuse("fibers::mutex destroyed while fibers or threads wait for it");
}

void mutex::lock() {
  std::unique_lock lk(mu_);
  if (!locked_) {
    locked_ = true;
    return;
  }
  const wake_reason r = detail::wait_queued(lk, waiters_, clock::time_point::max());
  if (r == wake_reason::ready) return;
  lk.unlock();
  detail::throw_wait_failure(r, "fibers::mutex::lock");
}

bool mutex::try_lock() noexcept {
  std::lock_guard lk(mu_);
  if (locked_) return false;
  locked_ = true;
  return true;
}

bool mutex::lock_until_impl(clock::time_point until) {
  std::unique_lock lk(mu_);
  if (!locked_) {
    locked_ = true;
    return true;
  }
  const wake_reason r = detail::wait_queued(lk, waiters_, until);
  if (r == wake_reason::ready) return true;
  lk.unlock();
  if (r == wake_reason::canceled) throw canceled("fibers::mutex::lock_until");
  return false;
}

void mutex::lock_uncancelable() noexcept {
  for (;;) {
    std::unique_lock lk(mu_);
    if (!locked_) {
      locked_ = true;
      return;
    }
    if (detail::wait_queued(lk, waiters_, clock::time_point::max(), 0, false) == wake_reason::ready) {
      return;
    }
    lk.unlock();
    // Only the fiber's inherited deadline ends an uncancelable wait without the lock (park
    // applies it even then, and at once once it has passed): let the owner run, then retry.
    if (runtime::current() != nullptr) this_fiber::yield();
  }
}

void mutex::unlock() noexcept {
  std::unique_lock lk(mu_);
  if (!locked_) detail::fatal_misuse("fibers::mutex::unlock called on an unlocked mutex");
  detail::wait_node* next = waiters_.claim_front(wake_reason::ready);
  if (next == nullptr) {
    locked_ = false;
    return;
  }
  // `locked_` stays true: the claimed waiter owns the mutex from here on.
  lk.unlock();
  next->w->schedule();
}

}  // namespace fibers
