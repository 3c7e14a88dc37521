// lib/sync/semaphore.cpp - fibers::semaphore: FIFO with direct handoff of permits, and a
// lock-free fast path while nobody waits.
//
// release() gives permits to claimable waiters before adding what is left to the count, so a
// positive count implies every node still queued belongs to a waiter that already gave up (it
// is about to unlink itself). Once anyone queues, the queued bit sends every acquire() and
// release() through mu_, so a newcomer cannot take a permit meant for a waiter.
#include "fibers/semaphore.hpp"

#include "sync/wait_helpers.hpp"

namespace fibers {

using detail::wake_reason;

namespace {
constexpr std::uint64_t one = 2;  // one permit in the state word
}  // namespace

semaphore::semaphore(std::ptrdiff_t initial) : state_(static_cast<std::uint64_t>(initial) * one) {
  if (initial < 0) detail::throw_bad_argument("fibers::semaphore", "the initial count must not be negative", initial);
}

semaphore::~semaphore() {
  std::lock_guard lk(mu_);
  if (!waiters_.empty()) detail::fatal_misuse("fibers::semaphore destroyed while fibers or threads wait on it");
}

bool semaphore::try_acquire() noexcept {
  if (detail::gate_try_fast(state_, [](std::uint64_t v) { return v >= one ? v - one : detail::gate_no_change; })) {
    return true;
  }
  if ((state_.load(std::memory_order_relaxed) & detail::gate_queued) == 0) return false;  // none left
  // Waiters are queued; the count is then 0 unless they all just gave up.
  std::lock_guard lk(mu_);
  const std::uint64_t v = detail::gate_freeze(state_);
  const bool got = v >= one;
  detail::gate_publish(state_, got ? v - one : v, waiters_);
  return got;
}

wake_reason semaphore::acquire_slow(clock::time_point until) {
  std::unique_lock lk(mu_);
  const std::uint64_t v = detail::gate_freeze(state_);
  if (v >= one) {
    detail::gate_publish(state_, v - one, waiters_);
    return wake_reason::ready;
  }
  const wake_reason r = detail::wait_queued(lk, waiters_, until);
  if (r == wake_reason::ready) return r;  // release() handed us a permit
  detail::gate_publish(state_, detail::gate_freeze(state_), waiters_);
  return r;
}

void semaphore::acquire() {
  if (detail::gate_try_fast(state_, [](std::uint64_t v) { return v >= one ? v - one : detail::gate_no_change; })) {
    return;
  }
  const wake_reason r = acquire_slow(clock::time_point::max());
  if (r != wake_reason::ready) detail::throw_wait_failure(r, "fibers::semaphore::acquire");
}

bool semaphore::acquire_until_impl(clock::time_point until) {
  if (detail::gate_try_fast(state_, [](std::uint64_t v) { return v >= one ? v - one : detail::gate_no_change; })) {
    return true;
  }
  const wake_reason r = acquire_slow(until);
  if (r == wake_reason::canceled) throw canceled("fibers::semaphore::acquire_until");
  return r == wake_reason::ready;
}

void semaphore::release(std::ptrdiff_t n) noexcept {
  if (n < 0) detail::fatal_misuse_f("fibers::semaphore::release(%td): n must not be negative", n);
  const auto add = static_cast<std::uint64_t>(n) * one;
  if (detail::gate_try_fast(state_, [add](std::uint64_t v) { return v + add; })) return;
  detail::wake_batch wake;
  std::unique_lock lk(mu_);
  const std::uint64_t v = detail::gate_freeze(state_);
  for (; n > 0; --n) {
    detail::wait_node* w = waiters_.claim_front(wake_reason::ready);
    if (w == nullptr) break;
    wake.add(w);  // that waiter's permit
  }
  detail::gate_publish(state_, v + static_cast<std::uint64_t>(n) * one, waiters_);
  lk.unlock();
  // `wake` schedules the claimed waiters as it goes out of scope, after the unlock.
}

std::ptrdiff_t semaphore::available() const noexcept {
  return static_cast<std::ptrdiff_t>((state_.load(std::memory_order_acquire) & ~detail::gate_queued) / one);
}

}  // namespace fibers
