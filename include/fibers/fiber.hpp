// fibers/fiber.hpp - spawning fibers, joining them, and this_fiber (yield, sleep, cancel checks).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include "fibers/clock.hpp"
#include "fibers/detail/unique_function.hpp"

namespace fibers {

namespace detail {
struct fiber_state;
}

/// How to spawn a fiber; every field is optional. Use designated initializers:
///
///     fibers::spawn({.name = "parser", .stack_size = 256 * 1024}, [&] { parse(doc); });
struct spawn_options {
  /// Shown in errors, dumps and the gdb helper; empty: "fiber-<id>".
  std::string name{};
  /// Stack size of this fiber in bytes (rounded up to whole pages, at least 8 KiB); 0: the
  /// runtime's (runtime_options::stack_size). Stacks of each size are pooled per I/O thread,
  /// so a few distinct sizes cost nothing per spawn; every distinct size keeps its own pool.
  std::size_t stack_size = 0;
};

/// A handle to a fiber: a stackful task pinned to the I/O thread that spawned it.
///
/// Like std::thread, a fiber must be join()ed or detach()ed before its handle is destroyed;
/// destroying a joinable handle prints the fiber's name and aborts (it is always a bug: the
/// fiber's result and exception would be lost).
///
///     auto f = fibers::spawn("worker", [&] { handle(conn); });
///     ...
///     f.join();   // parks this fiber until `f` ends; rethrows its exception
class fiber {
 public:
  /// A handle that refers to no fiber.
  fiber() noexcept = default;
  fiber(fiber&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  fiber& operator=(fiber&& other) noexcept;
  fiber(const fiber&) = delete;
  fiber& operator=(const fiber&) = delete;
  /// Aborts with a message naming the fiber if it is still joinable.
  ~fiber();

  /// True until join() or detach() is called.
  bool joinable() const noexcept { return state_ != nullptr; }
  /// Waits (parking only the calling fiber; a plain thread blocks) until the fiber has ended,
  /// then rethrows the exception it ended with, if any. Not a cancellation point: a canceled
  /// joiner still waits, since the fiber may use the joiner's stack. Throws std::logic_error
  /// if not joinable or when a fiber joins itself.
  void join();
  /// Lets the fiber run on unobserved; an exception it ends with (other than canceled) is
  /// printed to stderr.
  void detach();
  /// Requests cancellation: the fiber's current or next blocking call fails with
  /// errc::canceled (throwing forms throw fibers::canceled). Safe from any thread.
  void cancel();
  /// The fiber's id (unique within the process, never reused); 0 for an empty handle.
  std::uint64_t id() const noexcept;
  /// The name given to spawn(), or "fiber-<id>".
  const std::string& name() const;

 private:
  friend fiber spawn_fiber(spawn_options, detail::unique_function);
  explicit fiber(detail::fiber_state* s) noexcept : state_(s) {}
  void release() noexcept;
  detail::fiber_state* state_ = nullptr;
};

/// Spawns a fiber running `fn` on the calling I/O thread (type-erased form of spawn()).
/// The new fiber runs once the caller parks or yields. Bursts do not hold back timers and I/O
/// on the thread: at most 32 new fibers that have not run yet are queued among the ready
/// ones (later ones wait their turn, in spawn order), and a caller that has run for over a
/// time slice (1 ms) without switching yields inside spawn, before the new fiber exists.
/// Throws std::logic_error when called outside a runtime thread, std::bad_alloc when no
/// stack can be mapped.
fiber spawn_fiber(spawn_options opts, detail::unique_function fn);

/// Spawns a fiber on the calling fiber's I/O thread. `fn` may be move-only.
template <class F>
fiber spawn(F&& fn) {
  return spawn_fiber({}, detail::unique_function(std::forward<F>(fn)));
}

/// Spawns a named fiber (the name shows in errors and dumps). (A template, so that a braced
/// spawn_options argument never considers std::string.)
template <class Name, class F>
  requires std::is_convertible_v<Name, std::string>
fiber spawn(Name&& name, F&& fn) {
  return spawn_fiber({.name = std::string(std::forward<Name>(name))}, detail::unique_function(std::forward<F>(fn)));
}

/// Spawns a fiber with the given name and stack size (see spawn_options).
template <class F>
fiber spawn(spawn_options opts, F&& fn) {
  return spawn_fiber(std::move(opts), detail::unique_function(std::forward<F>(fn)));
}

namespace this_fiber {

/// Lets every other ready fiber on this thread run once (in a burst of new fibers, those
/// beyond the 32 queued wait their turn: see spawn_fiber). Not a cancellation point.
void yield();

/// Parks the calling fiber until `tp` (on fibers::clock). A cancellation point: throws
/// fibers::canceled if the fiber is canceled while it sleeps. All fiber-only calls throw
/// std::logic_error when called outside a runtime thread.
void sleep_until(clock::time_point tp);
/// Non-throwing form: sets `ec` to errc::canceled when canceled (std::errc::timed_out when the
/// fiber's inherited deadline ends the sleep early), clears it otherwise.
void sleep_until(clock::time_point tp, std::error_code& ec);

/// Parks the calling fiber for `d`. A cancellation point (see sleep_until).
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) {
  sleep_until(clock::now() + std::chrono::duration_cast<clock::duration>(d));
}
/// Non-throwing form of sleep_for.
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d, std::error_code& ec) {
  sleep_until(clock::now() + std::chrono::duration_cast<clock::duration>(d), ec);
}

/// True once the calling fiber has been asked to cancel.
bool cancel_requested() noexcept;
/// The calling fiber's id (0 on a thread's main context).
std::uint64_t id() noexcept;

}  // namespace this_fiber
}  // namespace fibers
