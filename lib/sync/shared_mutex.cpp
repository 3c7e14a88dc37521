// lib/sync/shared_mutex.cpp - fibers::shared_mutex: one FIFO of readers and writers, with a
// lock-free fast path while nobody waits.
//
// A newcomer enters at once only if the lock is compatible *and* nobody is queued; otherwise
// it queues (the queued bit of the state word sends every operation through mu_ meanwhile).
// grant() admits from the front of the queue: a writer when the lock is free, or the run of
// readers up to the next writer when no writer holds it. It runs after every change that may
// let the front in: an unlock, and a waiter giving up (a writer that timed out at the front
// may have been all that held back the readers behind it).
//
// Queued nodes whose waiter already gave up (claimed by its timer or canceller, about to
// unlink itself) are dropped when they reach the front, so they never hold the queue up.
#include "fibers/shared_mutex.hpp"

#include "sync/wait_helpers.hpp"

namespace fibers {

using detail::wake_reason;

namespace {

constexpr std::uint64_t writer = 2;
constexpr std::uint64_t reader = 4;  // one reader in the state word

std::uint64_t readers(std::uint64_t state) noexcept { return state / reader; }

}  // namespace

shared_mutex::~shared_mutex() {
  std::lock_guard lk(mu_);
  if (!waiters_.empty()) detail::fatal_misuse("fibers::shared_mutex destroyed while fibers or threads wait for it");
}

void shared_mutex::drop_abandoned_front() noexcept {
  while (detail::wait_node* n = waiters_.front()) {
    if (n->w->reason.load(std::memory_order_acquire) == wake_reason::none) return;
    waiters_.remove(*n);  // gave up; its owner's remove() will find it unlinked
  }
}

bool shared_mutex::can_enter_now(kind k, std::uint64_t state) noexcept {
  drop_abandoned_front();
  if (!waiters_.empty() || (state & writer) != 0) return false;
  return k == shared || readers(state) == 0;
}

void shared_mutex::grant(std::uint64_t& state, detail::wake_batch& wake) noexcept {
  for (;;) {
    drop_abandoned_front();
    detail::wait_node* n = waiters_.front();
    if (n == nullptr) return;
    const auto k = static_cast<kind>(n->tag);
    if ((state & writer) != 0 || (k == exclusive && readers(state) > 0)) return;
    waiters_.remove(*n);
    if (!n->w->claim(wake_reason::ready)) continue;  // gave up just now
    state += k == exclusive ? writer : reader;
    wake.add(n);
    if (k == exclusive) return;
  }
}

bool shared_mutex::try_fast(kind k) noexcept {
  if (k == exclusive) {
    return detail::gate_try_fast(state_, [](std::uint64_t v) { return v == 0 ? writer : detail::gate_no_change; });
  }
  return detail::gate_try_fast(state_, [](std::uint64_t v) {
    return (v & writer) == 0 ? v + reader : detail::gate_no_change;
  });
}

wake_reason shared_mutex::lock_slow(kind k, clock::time_point until) {
  std::unique_lock lk(mu_);
  std::uint64_t state = detail::gate_freeze(state_);
  if (can_enter_now(k, state)) {
    detail::gate_publish(state_, state + (k == exclusive ? writer : reader), waiters_);
    return wake_reason::ready;
  }
  const wake_reason r = detail::wait_queued(lk, waiters_, until, k);
  if (r == wake_reason::ready) return r;  // admitted by grant(), which counted us in
  state = detail::gate_freeze(state_);
  detail::wake_batch wake;
  grant(state, wake);
  detail::gate_publish(state_, state, waiters_);
  lk.unlock();
  wake.run();
  return r;
}

void shared_mutex::lock() {
  if (try_fast(exclusive)) return;
  const wake_reason r = lock_slow(exclusive, clock::time_point::max());
  if (r != wake_reason::ready) detail::throw_wait_failure(r, "fibers::shared_mutex::lock");
}

void shared_mutex::lock_shared() {
  if (try_fast(shared)) return;
  const wake_reason r = lock_slow(shared, clock::time_point::max());
  if (r != wake_reason::ready) detail::throw_wait_failure(r, "fibers::shared_mutex::lock_shared");
}

bool shared_mutex::lock_until_impl(clock::time_point until, kind k) {
  if (try_fast(k)) return true;
  const wake_reason r = lock_slow(k, until);
  if (r == wake_reason::canceled) {
    throw canceled(k == exclusive ? "fibers::shared_mutex::lock_until" : "fibers::shared_mutex::lock_shared_until");
  }
  return r == wake_reason::ready;
}

bool shared_mutex::try_lock() noexcept {
  if (try_fast(exclusive)) return true;
  if ((state_.load(std::memory_order_relaxed) & detail::gate_queued) == 0) return false;
  // Queued nodes may all belong to waiters that gave up: look under the lock.
  std::lock_guard lk(mu_);
  std::uint64_t state = detail::gate_freeze(state_);
  const bool got = can_enter_now(exclusive, state);
  if (got) state += writer;
  detail::gate_publish(state_, state, waiters_);
  return got;
}

bool shared_mutex::try_lock_shared() noexcept {
  if (try_fast(shared)) return true;
  if ((state_.load(std::memory_order_relaxed) & detail::gate_queued) == 0) return false;
  std::lock_guard lk(mu_);
  std::uint64_t state = detail::gate_freeze(state_);
  const bool got = can_enter_now(shared, state);
  if (got) state += reader;
  detail::gate_publish(state_, state, waiters_);
  return got;
}

void shared_mutex::unlock() noexcept {
  if (detail::gate_try_fast(state_, [](std::uint64_t v) { return v == writer ? 0 : detail::gate_no_change; })) {
    return;
  }
  detail::wake_batch wake;
  std::unique_lock lk(mu_);
  std::uint64_t state = detail::gate_freeze(state_);
  if ((state & writer) == 0) {
    detail::fatal_misuse("fibers::shared_mutex::unlock called without holding the lock exclusively");
  }
  state -= writer;
  grant(state, wake);
  detail::gate_publish(state_, state, waiters_);
  lk.unlock();
  // `wake` schedules the admitted waiters as it goes out of scope, after the unlock.
}

void shared_mutex::unlock_shared() noexcept {
  if (detail::gate_try_fast(state_, [](std::uint64_t v) {
        return (v & writer) == 0 && v >= reader ? v - reader : detail::gate_no_change;
      })) {
    return;
  }
  detail::wake_batch wake;
  std::unique_lock lk(mu_);
  std::uint64_t state = detail::gate_freeze(state_);
  if ((state & writer) != 0 || readers(state) == 0) {
    detail::fatal_misuse("fibers::shared_mutex::unlock_shared called without a shared lock held");
  }
  state -= reader;
  if (readers(state) == 0) grant(state, wake);
  detail::gate_publish(state_, state, waiters_);
  lk.unlock();
  // `wake` schedules the admitted writer (if any) as it goes out of scope, after the unlock.
}

}  // namespace fibers
