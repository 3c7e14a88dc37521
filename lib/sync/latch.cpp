// lib/sync/latch.cpp - fibers::latch.
#include "fibers/latch.hpp"

#include "sync/wait_helpers.hpp"

namespace fibers {

using detail::wake_reason;

latch::latch(std::ptrdiff_t expected) : count_(expected) {
  if (expected < 0) detail::throw_bad_argument("fibers::latch", "the expected count must not be negative", expected);
}

latch::~latch() {
  std::lock_guard lk(mu_);
  if (!waiters_.empty()) detail::fatal_misuse("fibers::latch destroyed while fibers or threads wait on it");
}

void latch::count_down(std::ptrdiff_t n) noexcept {
  detail::wake_batch wake;
  std::unique_lock lk(mu_);
  if (n < 0) detail::fatal_misuse_f("fibers::latch::count_down(%td): n must not be negative", n);
  if (n > count_) {
    detail::fatal_misuse_f("fibers::latch::count_down(%td): counter would go negative (%td)", n, count_ - n);
  }
  count_ -= n;
  if (count_ == 0) wake.claim_all(waiters_, wake_reason::ready);
  lk.unlock();
  // `wake` schedules the claimed waiters as it goes out of scope, after the unlock.
}

bool latch::try_wait() const noexcept {
  std::lock_guard lk(mu_);
  return count_ == 0;
}

void latch::wait() const {
  std::unique_lock lk(mu_);
  if (count_ == 0) return;
  const wake_reason r = detail::wait_queued(lk, waiters_, clock::time_point::max());
  if (r == wake_reason::ready) return;
  lk.unlock();
  detail::throw_wait_failure(r, "fibers::latch::wait");
}

bool latch::wait_until_impl(clock::time_point until) const {
  std::unique_lock lk(mu_);
  if (count_ == 0) return true;
  const wake_reason r = detail::wait_queued(lk, waiters_, until);
  if (r == wake_reason::ready) return true;
  const bool open = count_ == 0;  // it may have opened just as we gave up
  lk.unlock();
  if (r == wake_reason::canceled) throw canceled("fibers::latch::wait_until");
  return open;
}

void latch::arrive_and_wait(std::ptrdiff_t n) {
  count_down(n);
  wait();
}

}  // namespace fibers
