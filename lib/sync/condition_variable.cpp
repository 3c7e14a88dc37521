// lib/sync/condition_variable.cpp - fibers::condition_variable.
//
// A waiter queues on the condition variable's list *before* it releases the user's mutex, so
// a notify issued after the release (under the mutex or not) finds it: no lost wake-ups.
// Notifiers claim under the internal lock; a waiter that timed out or was canceled fails the
// claim, and notify_one moves on to the next waiter instead of losing the notification.
#include "fibers/condition_variable.hpp"

#include "sync/wait_helpers.hpp"

namespace fibers {

using detail::wake_reason;

condition_variable::~condition_variable() {
  std::lock_guard lk(mu_);
  if (!waiters_.empty()) {
    detail::fatal_misuse("fibers::condition_variable destroyed while fibers or threads wait on it");
  }
}

void condition_variable::notify_one() noexcept {
  std::unique_lock lk(mu_);
  detail::wait_node* n = waiters_.claim_front(wake_reason::ready);
  lk.unlock();
  if (n != nullptr) n->w->schedule();
}

void condition_variable::notify_all() noexcept {
  detail::wake_batch wake;
  std::unique_lock lk(mu_);
  wake.claim_all(waiters_, wake_reason::ready);
  lk.unlock();
  // `wake` schedules the claimed waiters as it goes out of scope, after the unlock.
}

// Queues on the cv, releases the user's mutex (wait_queued's after_unlock step), parks, then
// re-locks the mutex ignoring cancellation, so every caller returns or throws holding it.
wake_reason condition_variable::wait_core(std::unique_lock<mutex>& lk, clock::time_point until,
                                          const char* misuse_message) {
  if (!lk.owns_lock()) detail::fatal_misuse(misuse_message);
  mutex* m = lk.release();
  std::unique_lock ilk(mu_);
  const wake_reason r = detail::wait_queued(ilk, waiters_, until, 0, true, [m] { m->unlock(); });
  if (r != wake_reason::ready) ilk.unlock();
  m->lock_uncancelable();
  lk = std::unique_lock<mutex>(*m, std::adopt_lock);
  return r;
}

void condition_variable::wait(std::unique_lock<mutex>& lk) {
  const wake_reason r = wait_core(lk, clock::time_point::max(),
                                  "fibers::condition_variable::wait called without holding the lock");
  if (r != wake_reason::ready) detail::throw_wait_failure(r, "fibers::condition_variable::wait");
}

std::cv_status condition_variable::wait_until_impl(std::unique_lock<mutex>& lk, clock::time_point until) {
  const wake_reason r = wait_core(lk, until,
                                  "fibers::condition_variable::wait_until called without holding the lock");
  if (r == wake_reason::canceled) throw canceled("fibers::condition_variable::wait_until");
  return r == wake_reason::ready ? std::cv_status::no_timeout : std::cv_status::timeout;
}

}  // namespace fibers
