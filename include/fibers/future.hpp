// fibers/future.hpp - future/promise across fibers, I/O threads and plain threads; async,
// when_all, when_any.
#pragma once

#include "fibers/detail/config.hpp"

#include <chrono>
#include <cstddef>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "fibers/clock.hpp"
#include "fibers/detail/spin_lock.hpp"
#include "fibers/detail/wait_list.hpp"
#include "fibers/error.hpp"
#include "fibers/fiber.hpp"

namespace fibers {

namespace detail {

/// What every future's shared state has, whatever its value type.
class future_base {
 public:
  /// Waits until ready or `until`; returns true if ready. Throws fibers::canceled if the
  /// waiting fiber is canceled and `cancelable` (plain threads cannot be canceled).
  bool wait_until(clock::time_point until, const char* what, bool cancelable = true);
  bool ready() const {
    std::lock_guard lk(mu_);
    return ready_;
  }
  /// Marks the state ready (the value or error was stored under lock()) and wakes waiters.
  void publish(std::unique_lock<detail::spin_lock>& lk) noexcept;
  /// Throws std::future_error(promise_already_satisfied) if ready.
  std::unique_lock<detail::spin_lock> lock_unset();
  void set_exception(std::exception_ptr e);
  std::exception_ptr error() const noexcept { return error_; }

  // For when_any: queue / dequeue an external waiter node.
  bool add_waiter(wait_node& n);     // false if already ready (node not queued)
  void remove_waiter(wait_node& n);

 protected:
  mutable spin_lock mu_;
  bool ready_ = false;
  std::exception_ptr error_;
  wait_list waiters_;
};

template <class T>
class future_state : public future_base {
 public:
  template <class... A>
  void set_value(A&&... a) {
    auto lk = lock_unset();
    value_.emplace(std::forward<A>(a)...);
    publish(lk);
  }
  T take() {
    if (error_) std::rethrow_exception(error_);
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <>
class future_state<void> : public future_base {
 public:
  void set_value() {
    auto lk = lock_unset();
    publish(lk);
  }
  void take() {
    if (error_) std::rethrow_exception(error_);
  }
};

}  // namespace detail

template <class T>
class promise;

/// The result of an asynchronous computation: a value of type T or an exception.
///
/// get() parks only the calling fiber (a plain thread blocks), so a fiber on an I/O thread can
/// wait for work on the CPU pool, another I/O thread or a plain thread without stalling its
/// thread. Waits are cancellation points (fibers::canceled) and have deadline forms. On a
/// worker of a cpu::pool the waits (get, wait*, when_all, when_any) run other pool tasks until
/// the result is there, so a CPU task can wait for the tasks it spawned (see cpu::pool).
///
///     fibers::promise<int> p;
///     auto f = p.get_future();
///     std::thread([&p] { p.set_value(42); }).detach();
///     int v = f.get();
template <class T>
class future {
 public:
  /// An invalid future (valid() == false).
  future() noexcept = default;
  /// True if the future refers to a shared state (not default-constructed, not consumed).
  bool valid() const noexcept { return state_ != nullptr; }
  /// True if the result is available (get() will not wait).
  bool ready() const { return check("ready")->ready(); }
  /// Waits for the result and returns it (moving it out: get() consumes the future) or
  /// rethrows the stored exception. Throws fibers::canceled if the waiting fiber is canceled.
  /// Only the fiber's inherited deadline (with_deadline) can end the wait early: then it
  /// throws std::system_error(timed_out) and the future stays valid.
  T get() {
    wait();
    auto s = std::move(state_);
    return s->take();
  }
  /// Waits until the result is available (does not consume it). Throws like get().
  void wait() const {
    if (!check("wait")->wait_until(clock::time_point::max(), "future::wait")) {
      throw std::system_error(std::make_error_code(std::errc::timed_out), "future::wait");
    }
  }
  /// Waits until ready or `tp`; true if ready.
  bool wait_until(clock::time_point tp) const { return check("wait_until")->wait_until(tp, "future::wait_until"); }
  /// Waits until ready or `d` has passed; true if ready.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) const {
    return wait_until(deadline(d).when());
  }

 private:
  friend class promise<T>;
  template <class U>
  friend detail::future_base* state_of(const future<U>& f);
  explicit future(std::shared_ptr<detail::future_state<T>> s) noexcept : state_(std::move(s)) {}
  detail::future_state<T>* check(const char* op) const {
    if (!state_) throw std::future_error(std::future_errc::no_state);
    (void)op;
    return state_.get();
  }
  std::shared_ptr<detail::future_state<T>> state_;
};

/// The producing side of a future. Usable from any thread. A promise destroyed without a
/// value makes get() throw std::future_error(broken_promise).
template <class T>
class promise {
 public:
  /// A promise with a fresh shared state.
  promise() : state_(std::make_shared<detail::future_state<T>>()) {}
  /// Moves the promise; the moved-from one is empty.
  promise(promise&&) noexcept = default;
  /// Abandons this promise's state (its future sees broken_promise) and takes `other`'s.
  promise& operator=(promise&& other) noexcept {
    abandon();
    state_ = std::move(other.state_);
    retrieved_ = other.retrieved_;
    return *this;
  }
  ~promise() { abandon(); }

  /// The future; callable once (std::future_error(future_already_retrieved) after).
  future<T> get_future() {
    if (!state_) throw std::future_error(std::future_errc::no_state);
    if (retrieved_) throw std::future_error(std::future_errc::future_already_retrieved);
    retrieved_ = true;
    return future<T>(state_);
  }
  /// Stores the value and wakes the waiter (std::future_error if already satisfied).
  template <class... A>
  void set_value(A&&... a) {
    state_->set_value(std::forward<A>(a)...);
  }
  /// Stores an exception for get() to rethrow.
  void set_exception(std::exception_ptr e) { state_->set_exception(std::move(e)); }

 private:
  void abandon() noexcept {
    if (state_ && !state_->ready()) {
      try {
        state_->set_exception(std::make_exception_ptr(std::future_error(std::future_errc::broken_promise)));
      } catch (...) {
      }
    }
  }
  std::shared_ptr<detail::future_state<T>> state_;
  bool retrieved_ = false;
};

/// @cond internal
template <class U>
detail::future_base* state_of(const future<U>& f) {
  if (!f.valid()) throw std::future_error(std::future_errc::no_state);
  return f.state_.get();
}
/// @endcond

namespace detail {

/// The result type of calling a decayed copy of F with no arguments.
template <class F>
using call_result_t = std::invoke_result_t<std::decay_t<F>&>;

/// Calls `fn` and stores its result, or the exception it threw, in `p`. Never throws. (Used by
/// async() and by the pools that return futures.)
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

}  // namespace detail

/// Runs `fn` in a new fiber on the calling I/O thread and returns a future for its result
/// (asyncio.create_task). The fiber is detached; the future carries its exception.
template <class F>
auto async(F fn) -> future<std::invoke_result_t<F&>> {
  using R = std::invoke_result_t<F&>;
  promise<R> p;
  auto f = p.get_future();
  spawn([p = std::move(p), fn = std::move(fn)]() mutable { detail::fulfil(p, fn); }).detach();
  return f;
}

namespace detail {
/// Waits for the first of `states` to become ready or `until`; returns its index.
std::optional<std::size_t> wait_any(future_base* const* states, std::size_t n, clock::time_point until);
}  // namespace detail

/// Waits until every future is ready (or the deadline passes: false). Does not consume them.
template <class... F>
bool when_all(deadline dl, const F&... futures) {
  const auto until = dl.when();
  return (state_of(futures)->wait_until(until, "when_all") && ...);
}

/// Waits for every future and returns their values as a tuple (void results become
/// std::monostate-free: use when_all(deadline, ...) for void futures). Rethrows the first
/// stored exception in argument order.
template <class... T>
std::tuple<T...> when_all(future<T>&... futures) {
  (futures.wait(), ...);
  return std::tuple<T...>(futures.get()...);
}

/// Waits for every future in `futures` and returns the values in order.
template <class T>
std::vector<T> when_all(std::vector<future<T>>& futures) {
  std::vector<T> out;
  out.reserve(futures.size());
  for (auto& f : futures) f.wait();
  for (auto& f : futures) out.push_back(f.get());
  return out;
}

/// Waits until one of the futures is ready; returns the index of the first ready one
/// (lowest index if several), or nullopt when the deadline passes first.
template <class... F>
std::optional<std::size_t> when_any(deadline dl, const F&... futures) {
  detail::future_base* states[] = {state_of(futures)...};
  return detail::wait_any(states, sizeof...(F), dl.when());
}

/// when_any without a deadline (the fiber's inherited deadline still applies).
template <class... F>
  requires(sizeof...(F) > 0 && !(std::is_same_v<std::decay_t<F>, deadline> || ...))
std::size_t when_any(const F&... futures) {
  auto r = when_any(deadline::never(), futures...);
  if (!r) throw std::system_error(std::make_error_code(std::errc::timed_out), "when_any");
  return *r;
}

/// Index of the first ready future in `futures`, or nullopt at the deadline.
template <class T>
std::optional<std::size_t> when_any(std::vector<future<T>>& futures, deadline dl = deadline::never()) {
  std::vector<detail::future_base*> states;
  states.reserve(futures.size());
  for (auto& f : futures) states.push_back(state_of(f));
  return detail::wait_any(states.data(), states.size(), dl.when());
}

}  // namespace fibers
