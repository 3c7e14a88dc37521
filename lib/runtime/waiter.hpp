// lib/runtime/waiter.hpp - internal side of fibers/detail/waiter.hpp.
#pragma once

#include "fibers/detail/waiter.hpp"

namespace fibers::detail {

struct fiber_state;

/// The fibers::fiber state of the running fiber, or nullptr on an I/O thread's scheduler loop
/// (posted tasks). Only on runtime threads.
fiber_state* current_fiber_state() noexcept;

}  // namespace fibers::detail
