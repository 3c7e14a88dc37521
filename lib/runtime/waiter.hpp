// lib/runtime/waiter.hpp - internal side of fibers/detail/waiter.hpp.
#pragma once

#include <utility>

#include "fibers/detail/waiter.hpp"

namespace fibers::detail {

struct fiber_state;

/// The fibers::fiber state of the running fiber, or nullptr on an I/O thread's scheduler loop
/// (posted tasks). Only on runtime threads.
fiber_state* current_fiber_state() noexcept;

/// Takes the waiter out of a registration (a socket slot's reader/writer) and fires it with
/// `r`; nothing if none is registered.
inline void take_and_fire(waiter*& w, wake_reason r) noexcept {
  if (w != nullptr) std::exchange(w, nullptr)->fire(r);
}

/// How a plain thread that belongs to a CPU pool waits instead of just blocking (see
/// lib/cpu/pool_impl.hpp). `help`: the wait may run other pool tasks meanwhile (future waits);
/// otherwise the thread blocks and the pool lets another worker take its place.
struct thread_park_hook {
  wake_reason (*park)(void* ctx, waiter& w, clock::time_point until, bool help) noexcept = nullptr;
  void* ctx = nullptr;
};

/// Installs `h` for the calling plain thread (nullptr: none). The CPU pool's workers do.
void set_thread_park_hook(const thread_park_hook* h) noexcept;

/// park() for waits that may run other CPU pool tasks while they wait, when called on a pool
/// worker (future::get/wait, when_all, when_any). Elsewhere the same as park().
wake_reason park_helping(waiter& w, clock::time_point until, bool cancelable, const char* what) noexcept;

/// Blocks the plain thread until `w` is scheduled or `until` passes (the thread side of park,
/// without the hook).
wake_reason park_thread(waiter& w, clock::time_point until) noexcept;

}  // namespace fibers::detail
