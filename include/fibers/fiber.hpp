// fibers/fiber.hpp - spawning fibers, joining them, and this_fiber (yield, sleep, cancel checks).
#pragma once

#include "fibers/detail/config.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include "fibers/clock.hpp"
#include "fibers/detail/sync_time.hpp"
#include "fibers/detail/unique_function.hpp"

namespace fibers {

class fiber;
struct spawn_options;

namespace detail {
struct fiber_state;
/// spawn_fiber with an explicit inherited deadline (spawn_on passes the caller's across
/// threads; time_point::max(): none).
fiber spawn_with_deadline(spawn_options&& opts, unique_function&& fn, clock::time_point inherited);
}  // namespace detail

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

/// A handle to a fiber: a stackful task that runs on the I/O thread that spawned it.
///
/// Like std::thread, a fiber must be join()ed or detach()ed before its handle is destroyed;
/// destroying a joinable handle prints the fiber's name and aborts (it is a bug: the fiber's
/// result and exception would be lost). One exception keeps cancellation safe: in a fiber that
/// has been canceled or whose inherited deadline has passed (so its own waits fail, typically
/// while it unwinds from fibers::canceled or timed_out), the destructor cancels the fiber and
/// waits for it to end, dropping its outcome, instead of aborting. A canceled parent therefore
/// never leaves a child running that may still use the parent's stack.
///
///     auto f = fibers::spawn("worker", [&] { handle(conn); });
///     ...
///     f.join();   // parks this fiber until `f` ends; rethrows its exception
///
/// Joining is a cancellation point with a deadline, like every other wait:
///
///     if (!f.join_for(2s)) { f.cancel(); f.join(); }   // give it 2 s, then stop it
class fiber {
 public:
  /// A handle that refers to no fiber.
  fiber() noexcept = default;
  /// Moves the handle; `other` is left empty.
  fiber(fiber&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  /// Assigning over a joinable handle is destroying it (see the class comment).
  fiber& operator=(fiber&& other) noexcept;
  fiber(const fiber&) = delete;
  fiber& operator=(const fiber&) = delete;
  /// Aborts with a message naming the fiber if it is still joinable, except in a canceled or
  /// expired fiber, where it cancels the fiber and waits for it (see the class comment).
  ~fiber();

  /// True until join() or detach() is called (or a timed join succeeds).
  bool joinable() const noexcept { return state_ != nullptr; }
  /// Waits (parking only the calling fiber; a plain thread blocks) until the fiber has ended,
  /// then rethrows the exception it ended with, if any, and leaves the handle empty.
  ///
  /// A cancellation point: if the calling fiber is canceled while it waits (or before), join
  /// throws fibers::canceled; when the caller's inherited deadline (with_deadline / scope)
  /// passes, std::system_error(std::errc::timed_out). Either way the handle stays joinable
  /// and the fiber goes on running: cancel it too, or join again, or detach it. Exception:
  /// once the fiber being joined has itself been asked to cancel (cancel(), its scope, runtime
  /// shutdown), it is on its way out and join waits for it regardless of the caller's own
  /// cancellation or deadline, so `f.cancel(); f.join();` also works in a canceled fiber.
  /// Plain threads cannot be canceled. Throws std::logic_error if not joinable or when a fiber
  /// joins itself.
  void join();
  /// join() that gives up when `dl` passes: returns true once the fiber has ended (rethrowing
  /// its exception, if any; the handle is then empty) and false if `dl` or the caller's
  /// inherited deadline passed first, leaving the handle joinable so that it can be joined
  /// again or detached. A default deadline waits as long as join(). Throws fibers::canceled
  /// like join() (handle still joinable), std::logic_error like join().
  bool join_until(deadline dl);
  /// join_until for a time point of any std::chrono clock.
  template <class Clock, class Duration>
  bool join_until(const std::chrono::time_point<Clock, Duration>& tp) {
    return join_until(deadline::at(detail::time_on_clock(tp)));
  }
  /// join_until(now + d): true if the fiber ended within `d` (see join_until).
  template <class Rep, class Period>
  bool join_for(std::chrono::duration<Rep, Period> d) {
    return join_until(deadline::at(detail::time_after(d)));
  }
  /// Lets the fiber run on unobserved; an exception it ends with (other than canceled) is
  /// printed to stderr.
  void detach();
  /// Requests cancellation: the fiber's current or next blocking call fails with
  /// errc::canceled (throwing forms throw fibers::canceled). Safe from any thread, and on the
  /// fiber's own handle from the fiber itself (as this_fiber::cancel()). Cancellation sticks:
  /// every later wait of that fiber fails too.
  void cancel();
  /// The fiber's id (unique within the process, never reused); 0 for an empty handle.
  std::uint64_t id() const noexcept;
  /// The name given to spawn(), or "fiber-<id>".
  const std::string& name() const;

 private:
  friend fiber detail::spawn_with_deadline(spawn_options&&, detail::unique_function&&,
                                           clock::time_point);
  explicit fiber(detail::fiber_state* s) noexcept : state_(s) {}
  void release() noexcept;
  void drop_joinable() noexcept;
  void check_joinable(const char* what) const;
  detail::fiber_state* state_ = nullptr;
};

/// Spawns a fiber running `fn` on the calling I/O thread (type-erased form of spawn()).
/// The new fiber runs once the caller parks or yields. Bursts do not hold back timers and I/O
/// on the thread: at most 32 new fibers that have not run yet are queued among the ready
/// ones (later ones wait their turn, in spawn order), and a caller that has run for over a
/// time slice (1 ms) without switching yields inside spawn, before the new fiber exists.
/// The new fiber inherits the caller's deadline (with_deadline, or a scope's): its waits fail
/// with timed_out once that passes, as the caller's would. It is not canceled with the caller
/// (scope::spawn starts children that are). Throws std::logic_error when called outside a runtime thread, std::bad_alloc when no
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
/// Cancels the calling fiber (asyncio's task.cancel() on the current task): nothing is
/// interrupted now, but its next wait - and every one after it - fails with errc::canceled
/// (throwing forms throw fibers::canceled), so the fiber unwinds from there. Throws
/// std::logic_error outside a fiber (a plain thread, or a task posted to an I/O thread).
void cancel();
/// The calling fiber's id (0 on a thread's main context).
std::uint64_t id() noexcept;

}  // namespace this_fiber
}  // namespace fibers
