// tools/fibers-echo/post_future.hpp - run a function as a fiber on a chosen I/O thread and get
// its result on a plain thread (runtime::run only targets thread 0).
#pragma once

#include <cstddef>
#include <exception>
#include <future>
#include <type_traits>
#include <utility>

#include <fibers/runtime.hpp>

namespace fibers_echo {

/// Posts `fn` to I/O thread `thread` of `rt`; the future holds its result or exception.
/// Wait on the future only from a thread that is not one of the runtime's.
template <class F>
std::future<std::invoke_result_t<F&>> post_future(fibers::runtime& rt, std::size_t thread, F fn) {
  using R = std::invoke_result_t<F&>;
  std::promise<R> promise;
  auto result = promise.get_future();
  rt.post(
      [promise = std::move(promise), fn = std::move(fn)]() mutable {
        try {
          if constexpr (std::is_void_v<R>) {
            fn();
            promise.set_value();
          } else {
            promise.set_value(fn());
          }
        } catch (...) {
          promise.set_exception(std::current_exception());
        }
      },
      thread);
  return result;
}

}  // namespace fibers_echo
