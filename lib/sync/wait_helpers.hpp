// lib/sync/wait_helpers.hpp - the one wait step every lock-like primitive in lib/sync/ shares.
//
// Each primitive (mutex, shared_mutex, condition_variable, semaphore, latch, wait_group) keeps
// its state and a wait_list under one internal std::mutex. A caller that must wait queues a
// node, drops the lock, parks, and - unless a waker claimed it - takes the lock again to
// unlink the node. Wakers claim nodes under the same lock (wait_list::claim_front) and do the
// primitive's bookkeeping for the claimed waiter (hand over the lock, a permit, ...) before
// scheduling it after the unlock. Because claiming is a CAS on the waiter's reason, a waiter
// that timed out or was canceled can never also be handed anything: the waker's claim fails
// and it moves on to the next node.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <mutex>
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

/// Turns a wait that ended without the resource into the throwing-form error: fibers::canceled
/// for a canceled fiber, std::system_error(std::errc::timed_out) when a wait without its own
/// deadline was ended by the fiber's inherited deadline (with_deadline / scope).
[[noreturn]] inline void throw_wait_failure(wake_reason r, const char* what) {
  if (r == wake_reason::canceled) throw canceled(what);
  throw std::system_error(std::make_error_code(std::errc::timed_out), what);
}

/// Reports API misuse (unlocking a mutex nobody holds, done() too often, ...) and aborts:
/// continuing would silently corrupt the primitive.
[[noreturn]] inline void fatal_misuse(const char* message) noexcept {
  std::fprintf(stderr, "libfibers: %s\n", message);
  std::fflush(stderr);
  std::abort();
}

}  // namespace fibers::detail
