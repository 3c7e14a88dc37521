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

namespace {

// Releases `lk`'s mutex, waits on `list`, re-locks the mutex whatever happened (uncancelable:
// the caller must hold it again before it returns or throws).
wake_reason wait_releasing(std::mutex& mu, detail::wait_list& list, std::unique_lock<mutex>& lk,
                           clock::time_point until, mutex*& relock) noexcept {
  std::unique_lock ilk(mu);
  const wake_reason r = detail::wait_queued(ilk, list, until, 0, true, [&lk] { lk.unlock(); });
  if (r != wake_reason::ready) ilk.unlock();
  relock = lk.release();
  return r;
}

}  // namespace

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

}  // namespace fibers

namespace fibers {

namespace {

mutex* checked_mutex(std::unique_lock<mutex>& lk, const char* what) noexcept {
  if (!lk.owns_lock()) detail::fatal_misuse(what);
  return lk.mutex();
}

}  // namespace

// Both waits: queue on the cv, then release the user's mutex (after_unlock of wait_queued),
// park, re-lock the mutex ignoring cancellation, and only then report what happened.
void condition_variable::wait(std::unique_lock<mutex>& lk) {
  mutex* m = checked_mutex(lk, "fibers::condition_variable::wait called without holding the lock");
  lk.release();
  std::unique_lock ilk(mu_);
  const wake_reason r = detail::wait_queued(ilk, waiters_, clock::time_point::max(), 0, true,
                                            [m] { m->unlock(); });
  if (r != wake_reason::ready) ilk.unlock();
  m->lock_uncancelable();
  lk = std::unique_lock<mutex>(*m, std::adopt_lock);
  if (r != wake_reason::ready) detail::throw_wait_failure(r, "fibers::condition_variable::wait");
}

std::cv_status condition_variable::wait_until_impl(std::unique_lock<mutex>& lk, clock::time_point until) {
  mutex* m = checked_mutex(lk, "fibers::condition_variable::wait_until called without holding the lock");
  lk.release();
  std::unique_lock ilk(mu_);
  const wake_reason r = detail::wait_queued(ilk, waiters_, until, 0, true, [m] { m->unlock(); });
  if (r != wake_reason::ready) ilk.unlock();
  m->lock_uncancelable();
  lk = std::unique_lock<mutex>(*m, std::adopt_lock);
  if (r == wake_reason::canceled) throw canceled("fibers::condition_variable::wait_until");
  return r == wake_reason::ready ? std::cv_status::no_timeout : std::cv_status::timeout;
}

}  // namespace fibers
