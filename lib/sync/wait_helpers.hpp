// lib/sync/wait_helpers.hpp - the one wait step every lock-like primitive in lib/sync/ shares.
//
// Each primitive (mutex, shared_mutex, condition_variable, semaphore, latch, wait_group) keeps
// a wait_list, and its state, under one internal std::mutex that is never held across a park
// (mutex, shared_mutex and semaphore add a lock-free fast path for when nobody waits: the
// gated state word below). A caller that must wait queues a node, drops the lock, parks, and
// - unless a waker claimed it - takes the lock again to unlink the node. Wakers claim nodes under the same lock (wait_list::claim_front) and do the
// primitive's bookkeeping for the claimed waiter (hand over the lock, a permit, ...) before
// scheduling it after the unlock. Because claiming is a CAS on the waiter's reason, a waiter
// that timed out or was canceled can never also be handed anything: the waker's claim fails
// and it moves on to the next node.
#pragma once

#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>

#include "fibers/clock.hpp"
#include "fibers/detail/wait_list.hpp"
#include "fibers/error.hpp"

namespace fibers::detail {

struct no_after_unlock {
  void operator()() const noexcept {}
};

/// Waits on `list` of a primitive whose internal lock `lk` holds. Queues a node (with `tag`,
/// for wakers that need to know what kind of wait it is), unlocks `lk`, runs `after_unlock()`
/// (condition_variable releases the user's mutex there), then parks until a waker claims the
/// node with wake_reason::ready, `until` passes, or - when `cancelable` - the fiber is canceled.
///
/// Returns wake_reason::ready with `lk` unlocked: the waker already did the bookkeeping for
/// this waiter. Returns any other reason with `lk` locked again and the node no longer queued;
/// nothing was handed to this waiter. The node lives on this frame, so a waker can only touch
/// it while it holds the lock or, once it has claimed it, until it schedules the waiter.
template <class AfterUnlock = no_after_unlock>
wake_reason wait_queued(std::unique_lock<std::mutex>& lk, wait_list& list, clock::time_point until,
                        std::size_t tag = 0, bool cancelable = true,
                        AfterUnlock&& after_unlock = {}) noexcept {
  waiter w;
  wait_node n(w, nullptr, tag);
  list.push_back(n);
  lk.unlock();
  after_unlock();
  const wake_reason r = park(w, until, cancelable);
  if (r != wake_reason::ready) {
    lk.lock();
    list.remove(n);  // false if a waker dropped it after its claim failed
  }
  return r;
}

// A primitive's "gated" state word, for a fast path that does not take the internal lock.
//
// Why: with every operation under the internal std::mutex, a fiber or thread re-locking in a
// tight loop starves a waiter on another thread of that *internal* lock (std::mutex does not
// hand off), before the waiter has even queued - measured: 100,000+ of the looper's iterations.
// With a fast path the looper never touches the internal lock while nobody waits, and the
// waiter's first step, freeze(), is a single fetch_or that no one can hold up.
//
// Bit 0 (`gate_queued`) is set while the wait list may be non-empty or a slow path is running.
// Fast paths (gate_try_fast: one CAS) only succeed while it is clear. A slow path calls
// gate_freeze() first thing under the internal lock: from then on every fast path fails and
// goes slow (to the lock), so the word cannot change under the slow path. Before it drops the
// lock - including inside wait_queued, which is fine: the waiter's node keeps the list
// non-empty - the slow path stores the new value with gate_publish(), which sets bit 0 again
// iff nodes remain queued. The value itself uses bits 1 and up.
inline constexpr std::uint64_t gate_queued = 1;
inline constexpr std::uint64_t gate_no_change = ~std::uint64_t{0};

/// Fast path: while bit 0 is clear, replaces value v with next(v) (CAS loop); fails if bit 0
/// is set or next(v) returns gate_no_change.
template <class Next>
bool gate_try_fast(std::atomic<std::uint64_t>& word, Next next) noexcept {
  std::uint64_t v = word.load(std::memory_order_relaxed);
  for (;;) {
    if ((v & gate_queued) != 0) return false;
    const std::uint64_t n = next(v);
    if (n == gate_no_change) return false;
    if (word.compare_exchange_weak(v, n, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      return true;
    }
  }
}

/// Slow path, under the internal lock: stops the fast paths and returns the current value.
inline std::uint64_t gate_freeze(std::atomic<std::uint64_t>& word) noexcept {
  return word.fetch_or(gate_queued, std::memory_order_acq_rel) & ~gate_queued;
}

/// Slow path, under the internal lock: stores `value`, re-opening the fast paths iff `list`
/// is empty.
inline void gate_publish(std::atomic<std::uint64_t>& word, std::uint64_t value, const wait_list& list) noexcept {
  word.store(value | (list.empty() ? 0 : gate_queued), std::memory_order_release);
}

/// Turns a wait that ended without the resource into the throwing-form error: fibers::canceled
/// for a canceled fiber, std::system_error(std::errc::timed_out) when a wait without its own
/// deadline was ended by the fiber's inherited deadline (with_deadline / scope).
[[noreturn]] inline void throw_wait_failure(wake_reason r, const char* what) {
  if (r == wake_reason::canceled) throw canceled(what);
  throw std::system_error(std::make_error_code(std::errc::timed_out), what);
}

/// Reports API misuse (unlocking a mutex nobody holds, done() too often, ...) and aborts:
/// continuing would silently corrupt the primitive. The message names the object, the call
/// and the rule broken.
[[noreturn]] inline void fatal_misuse(const char* message) noexcept {
  std::fprintf(stderr, "libfibers: %s\n", message);
  std::fflush(stderr);
  std::abort();
}

/// fatal_misuse with a printf-style message, for misuse worth showing values for
/// ("fibers::wait_group::done(): counter would go negative (-1)").
[[noreturn]] __attribute__((format(printf, 1, 2))) inline void fatal_misuse_f(const char* format, ...) noexcept {
  char message[256];
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof message, format, args);
  va_end(args);
  fatal_misuse(message);
}

/// Throws std::invalid_argument("<what>: <rule> (got <value>)") for a bad constructor argument.
[[noreturn]] inline void throw_bad_argument(const char* what, const char* rule, long long value) {
  throw std::invalid_argument(std::string(what) + ": " + rule + " (got " + std::to_string(value) + ")");
}

}  // namespace fibers::detail
