// lib/sync/wait_group.cpp - fibers::wait_group.
#include "fibers/wait_group.hpp"

#include <cstdio>

#include "sync/wait_helpers.hpp"

namespace fibers {

using detail::wake_reason;

wait_group::wait_group(std::ptrdiff_t initial) : count_(initial) {
  if (initial < 0) detail::throw_bad_argument("fibers::wait_group", "the initial counter must not be negative", initial);
}

wait_group::~wait_group() {
  std::lock_guard lk(mu_);
  if (!waiters_.empty()) detail::fatal_misuse("fibers::wait_group destroyed while fibers or threads wait on it");
}

void wait_group::add_checked(std::ptrdiff_t n, const char* call) noexcept {
  detail::wake_batch wake;
  std::unique_lock lk(mu_);
  if (n < 0 && -n > count_) {
    detail::fatal_misuse_f("fibers::wait_group::%s: counter would go negative (%td)", call, count_ + n);
  }
  count_ += n;
  if (count_ == 0) wake.claim_all(waiters_, wake_reason::ready);
  lk.unlock();
  // `wake` schedules the claimed waiters as it goes out of scope, after the unlock.
}

void wait_group::add(std::ptrdiff_t n) noexcept {
  if (n >= 0) {
    add_checked(n, "add()");
    return;
  }
  char call[32];
  std::snprintf(call, sizeof call, "add(%td)", n);
  add_checked(n, call);
}

void wait_group::done() noexcept { add_checked(-1, "done()"); }

void wait_group::wait() const {
  std::unique_lock lk(mu_);
  if (count_ == 0) return;
  const wake_reason r = detail::wait_queued(lk, waiters_, clock::time_point::max());
  if (r == wake_reason::ready) return;
  lk.unlock();
  detail::throw_wait_failure(r, "fibers::wait_group::wait");
}

bool wait_group::wait_until_impl(clock::time_point until) const {
  std::unique_lock lk(mu_);
  if (count_ == 0) return true;
  const wake_reason r = detail::wait_queued(lk, waiters_, until);
  if (r == wake_reason::ready) return true;
  const bool zero = count_ == 0;  // it may have reached zero just as we gave up
  lk.unlock();
  if (r == wake_reason::canceled) throw canceled("fibers::wait_group::wait_until");
  return zero;
}

}  // namespace fibers
