// fibers/detail/fulfil.hpp - runs a callable into a promise (its value or its exception), for
// the pools that return futures (cpu::pool, blocking_pool).
#pragma once

#include <exception>
#include <type_traits>
#include <utility>

#include "fibers/future.hpp"

namespace fibers::detail {

/// The result type of calling a decayed copy of F with no arguments.
template <class F>
using call_result_t = std::invoke_result_t<std::decay_t<F>&>;

/// Calls `fn` and stores its result, or the exception it threw, in `p`. Never throws.
template <class R, class F>
void fulfil(promise<R>& p, F& fn) noexcept {
  try {
    if constexpr (std::is_void_v<R>) {
      fn();
      p.set_value();
    } else {
      p.set_value(fn());
    }
  } catch (...) {
    try {
      p.set_exception(std::current_exception());
    } catch (...) {
      // Only if the promise was already satisfied, which cannot happen here.
    }
  }
}

}  // namespace fibers::detail
