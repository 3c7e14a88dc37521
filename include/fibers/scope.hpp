// fibers/scope.hpp - structured concurrency: scopes of child fibers and inherited deadlines.
#pragma once

#include <cstddef>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fibers/clock.hpp"
#include "fibers/detail/unique_function.hpp"
#include "fibers/fiber.hpp"

namespace fibers {

/// A set of child fibers that must all end before the scope is left (asyncio.TaskGroup, Go's
/// errgroup). Children run on the scope owner's I/O thread and inherit its deadline.
///
/// The first child to fail (throw) cancels its siblings; join() waits for every child and
/// rethrows that first exception. If the owner is canceled while in join(), or its inherited
/// deadline (with_deadline) passes, the children are canceled too, join() still waits for
/// them, then throws fibers::canceled or std::system_error(timed_out).
///
///     fibers::scope s;
///     s.spawn([&] { a = fetch(x); });
///     s.spawn([&] { b = fetch(y); });
///     s.join();   // both done, or the first error
///
/// A scope destroyed without join() (e.g. while an exception unwinds) cancels its remaining
/// children and waits for them; their errors are then discarded.
class scope {
 public:
  /// A scope owned by the calling fiber (std::logic_error outside a runtime thread).
  scope();
  scope(const scope&) = delete;
  scope& operator=(const scope&) = delete;
  ~scope();

  /// Starts a child fiber running `fn`.
  template <class F>
  void spawn(F&& fn) {
    spawn_erased({}, detail::unique_function(std::forward<F>(fn)));
  }
  /// Starts a named child fiber.
  template <class F>
  void spawn(std::string name, F&& fn) {
    spawn_erased(std::move(name), detail::unique_function(std::forward<F>(fn)));
  }
  /// Waits for every child (see the class comment); rethrows the first child's exception.
  void join();
  /// Cancels every child still running.
  void cancel() noexcept;
  /// Number of children still running.
  std::size_t running() const noexcept { return running_; }

 private:
  void spawn_erased(std::string name, detail::unique_function fn);
  void child_done(std::exception_ptr e) noexcept;
  void wait_children(bool cancelable);

  std::vector<fiber> children_;
  std::size_t running_ = 0;
  std::exception_ptr first_error_;
  struct waiter_slot;
  waiter_slot* parked_ = nullptr;
  clock::time_point deadline_;
  bool joined_ = false;
};

/// Runs `body(scope&)` and joins the scope (rethrowing the first child error).
template <class F>
auto with_scope(F&& body) {
  scope s;
  if constexpr (std::is_void_v<std::invoke_result_t<F&, scope&>>) {
    body(s);
    s.join();
  } else {
    auto r = body(s);
    s.join();
    return r;
  }
}

/// While alive, caps the calling fiber's inherited deadline at `dl`: every wait in the fiber
/// (and in scope children it spawns) fails with std::errc::timed_out once `dl` passes.
/// Restores the previous deadline when destroyed. Nests: the earlier deadline wins.
class deadline_scope {
 public:
  explicit deadline_scope(deadline dl);
  deadline_scope(const deadline_scope&) = delete;
  deadline_scope& operator=(const deadline_scope&) = delete;
  ~deadline_scope();

 private:
  clock::time_point saved_;
};

/// Runs `fn` with the calling fiber's deadline capped at `dl` (asyncio.wait_for): waits inside
/// fail with std::errc::timed_out (std::system_error in throwing forms) once it passes.
///
///     auto reply = fibers::with_deadline(2s, [&] { return client.call(req); });
template <class F>
auto with_deadline(deadline dl, F&& fn) {
  deadline_scope guard(dl);
  return fn();
}

/// The calling fiber's inherited deadline (time_point::max() when none).
clock::time_point current_deadline() noexcept;

}  // namespace fibers
