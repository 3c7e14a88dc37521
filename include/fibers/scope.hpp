// fibers/scope.hpp - structured concurrency: scopes of child fibers and inherited deadlines.
#pragma once

#include "fibers/detail/config.hpp"

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fibers/clock.hpp"
#include "fibers/detail/unique_function.hpp"
#include "fibers/error.hpp"
#include "fibers/fiber.hpp"

namespace fibers {

namespace detail {
class deadline_level;
struct fiber_state;
}  // namespace detail

class scope;
namespace detail {
[[noreturn]] void scope_body_failed(scope& s, std::exception_ptr body_error);
}  // namespace detail

/// A task group (asyncio.TaskGroup, Go's errgroup.WithContext): a set of child fibers that must
/// all end before the scope is left. The owner is the fiber that creates the scope; it must
/// also be the one that joins or destroys it, and the scope's members are called on its I/O
/// thread. Children run there too, or on another I/O thread with spawn_on, and inherit the
/// deadline in effect where the scope was created.
///
/// The first child to fail (throw) while the scope has not been canceled yet cancels its
/// siblings and the scope's body: the owner, if it has not reached join() yet, is canceled
/// (its current or next wait throws fibers::canceled), so a body blocked in a long wait does
/// not keep the scope alive. The body is canceled once, for as long as the scope lasts: like
/// any canceled fiber, every later wait in it fails too, even if it catches the first
/// fibers::canceled. When the scope ends (join() returns or throws, or the scope is destroyed)
/// this request is withdrawn, so the owner goes on normally after the scope (unless something
/// else canceled it as well). join() waits for every child and rethrows the first child's
/// exception; with_scope rethrows it too when the body ended with the fibers::canceled the
/// scope caused. If the owner is canceled while in join(), or its inherited deadline
/// (with_deadline) passes, the children are canceled too, join() still waits for them, then
/// throws fibers::canceled or std::system_error(timed_out).
///
///     fibers::with_scope([&](fibers::scope& s) {
///       s.spawn([&] { a = fetch(x); });
///       s.spawn([&] { b = fetch(y); });
///       wait_for_user();  // fetch(y) throws: this throws fibers::canceled...
///     });                 // ...and with_scope throws fetch(y)'s exception, once all ended
///
/// Children (any fiber of the owner's thread) may spawn more children into the scope until
/// the scope has ended, while join() or the destructor waits for the others; a child spawned
/// after the scope was canceled starts canceled. Spawning into a scope that has ended (its
/// join() has returned) throws std::logic_error. The scope never lets a child outlive it:
/// after canceling the children, it waits for them without a deadline and cannot be canceled.
///
/// A scope destroyed without join() (e.g. while an exception unwinds) cancels its remaining
/// children and waits for them; their errors are then discarded. A body written against the
/// class (not with_scope) that catches the fibers::canceled of a failed child can call join()
/// to get the child's exception.
class scope {
 public:
  /// A scope owned by the calling fiber (std::logic_error outside a runtime thread).
  scope();
  scope(const scope&) = delete;
  scope& operator=(const scope&) = delete;
  ~scope();

  /// A handle to one child (asyncio.Task as a TaskGroup creates it). Copyable; valid while
  /// its scope exists, used on the owner's I/O thread like the scope (cancel() also from a
  /// child of the scope on another thread, as scope::cancel()).
  class child {
   public:
    /// Cancels this child only: its current or next wait throws fibers::canceled. If it then
    /// ends with fibers::canceled, that is not an error of the scope (the others go on); any
    /// other exception it ends with is, as for every child. Nothing happens once it has ended.
    void cancel() { scope_->cancel_child(id_); }
    /// True until the child has ended (its fiber's end has reached the owner's thread).
    bool running() const noexcept { return scope_->child_running(id_); }
    /// Waits until this child has ended (returns at once if it has). Its exception is not
    /// rethrown here: it belongs to the scope (join() rethrows the first). A cancellation
    /// point: throws fibers::canceled if the caller is canceled, std::system_error(timed_out)
    /// when `dl` or the caller's inherited deadline passes; the child goes on either way.
    /// On the owner's thread (the owner or a sibling there); std::logic_error elsewhere.
    void join(deadline dl = {}) { scope_->join_child(id_, dl); }
    /// The child fiber's id (as fibers::fiber::id and this_fiber::id report it).
    std::uint64_t id() const noexcept { return id_; }

   private:
    friend class scope;
    child(scope* s, std::uint64_t id) noexcept : scope_(s), id_(id) {}
    scope* scope_;
    std::uint64_t id_;
  };

  /// Starts a child fiber running `fn` and returns a handle to it (ignoring it is fine).
  /// std::logic_error once the scope has ended, or when called on another thread than the
  /// owner's (a child started with spawn_on included).
  template <class F>
  child spawn(F&& fn) {
    return spawn_erased({}, detail::unique_function(std::forward<F>(fn)));
  }
  /// Starts a named child fiber.
  template <class F>
  child spawn(std::string name, F&& fn) {
    return spawn_erased(std::move(name), detail::unique_function(std::forward<F>(fn)));
  }
  /// Starts a child fiber on I/O thread `thread` of the owner's runtime (std::out_of_range if
  /// there is none). It is a child like the others: it inherits the scope's deadline, the
  /// scope's cancellation reaches it, its error cancels the others and the body, and join()
  /// waits for it. The caller parks briefly (not a cancellation point) until the fiber exists.
  template <class F>
  child spawn_on(std::size_t thread, F&& fn) {
    return spawn_erased({}, detail::unique_function(std::forward<F>(fn)), thread);
  }
  /// Named form of spawn_on.
  template <class F>
  child spawn_on(std::size_t thread, std::string name, F&& fn) {
    return spawn_erased(std::move(name), detail::unique_function(std::forward<F>(fn)), thread);
  }
  /// Waits for every child, including those spawned while it waits (see the class comment);
  /// rethrows the first child's exception. Called once, by the owner, after the body.
  void join();
  /// Cancels every child still running, and those spawned later (not the owner). Called on
  /// the owner's thread, or by a child of the scope on another thread (the request is then
  /// posted to the owner's thread and takes effect soon after); any other caller on another
  /// thread is misuse and aborts with a message naming the rule.
  void cancel() noexcept;
  /// Number of children still running.
  std::size_t running() const noexcept { return running_; }

 private:
  friend void detail::scope_body_failed(scope& s, std::exception_ptr body_error);
  enum class phase : unsigned char { body, joining, ended };
  static constexpr std::size_t here = static_cast<std::size_t>(-1);  // the owner's thread
  child spawn_erased(std::string name, detail::unique_function fn, std::size_t thread = here);
  void cancel_child(std::uint64_t id);
  void join_child(std::uint64_t id, deadline dl);
  // Posts `f` to the owner's thread and returns true when called by a child of this scope on
  // another thread; false on the owner's thread; aborts (misuse) anywhere else.
  bool forward_to_owner(const char* what, detail::unique_function f);
  bool child_running(std::uint64_t id) const noexcept;
  void child_done(std::uint64_t id, std::exception_ptr e) noexcept;
  void wait_children(bool cancelable);
  void finish() noexcept;

  struct child_entry {
    fiber f;
    bool canceled_alone = false;  // child::cancel(): its fibers::canceled is no error
  };
  std::unordered_map<std::uint64_t, child_entry> children_;  // by fiber id; released as each ends
  // Children on other threads that ended before spawn_on returned their handle (rare).
  std::vector<std::uint64_t> ended_early_;
  std::size_t running_ = 0;
  std::exception_ptr first_error_;
  struct waiter_slot;
  waiter_slot* parked_ = nullptr;
  std::vector<waiter_slot*> child_joiners_;  // child::join() waits, woken by every child end
  detail::fiber_state* owner_;
  clock::time_point deadline_;
  phase phase_ = phase::body;
  bool canceled_ = false;        // cancel() ran: children spawned from now on start canceled
  bool owner_canceled_ = false;  // a child's error canceled the owner; withdrawn by finish()
};

/// Runs `body(scope&)` and joins the scope: returns the body's value, or rethrows the first
/// child error. If the body throws, the children are canceled and awaited; then the body's
/// exception is rethrown, except a fibers::canceled caused by a failing child (see scope),
/// for which that child's exception is.
template <class F>
auto with_scope(F&& body) {
  scope s;
  if constexpr (std::is_void_v<std::invoke_result_t<F&, scope&>>) {
    try {
      body(s);
    } catch (...) {
      detail::scope_body_failed(s, std::current_exception());
    }
    s.join();
  } else {
    auto r = [&]() -> std::invoke_result_t<F&, scope&> {
      try {
        return body(s);
      } catch (...) {
        detail::scope_body_failed(s, std::current_exception());
      }
    }();
    s.join();
    return r;
  }
}

/// While alive, caps the calling fiber's inherited deadline at `dl`: every wait in the fiber
/// (and in fibers it spawns) fails with std::errc::timed_out once `dl` passes.
/// Restores the previous deadline when destroyed. Nests: the earlier deadline wins.
/// Unlike with_deadline, it cannot see the exceptions leaving its block, so its expiry is
/// reported as plain timed_out everywhere (also through inner with_deadline levels).
class deadline_scope {
 public:
  /// Caps the deadline at `dl` (std::logic_error outside a fiber).
  explicit deadline_scope(deadline dl) : deadline_scope(dl, nullptr) {}
  deadline_scope(const deadline_scope&) = delete;
  deadline_scope& operator=(const deadline_scope&) = delete;
  /// Restores the deadline in effect before.
  ~deadline_scope();

 private:
  friend class detail::deadline_level;
  // `level`: the with_deadline level (a detail::deadline_level) that owns the deadline if this
  // one lowers it, or nullptr.
  deadline_scope(deadline dl, const void* level);
  clock::time_point saved_;
  const void* saved_level_;
};

/// Thrown out of a with_deadline level when the deadline that expired inside it belongs to an
/// enclosing with_deadline (asyncio.timeout semantics): to the code between the two levels the
/// expiry is a cancellation (code errc::canceled), not a timeout of the inner operation, and
/// code written to let fibers::canceled pass lets it pass. The enclosing level that owns the
/// deadline turns it back into the original std::system_error(std::errc::timed_out).
class deadline_expired : public canceled {
 public:
  /// Used by with_deadline: `owner` is the level whose deadline passed, `original` the
  /// timed_out exception thrown by the wait.
  deadline_expired(const void* owner, std::exception_ptr original);
  /// The timed_out exception the expired wait threw.
  std::exception_ptr original() const noexcept { return original_; }

 private:
  friend class detail::deadline_level;
  const void* owner_;  // the detail::deadline_level whose deadline passed
  std::exception_ptr original_;
};

namespace detail {
/// The level with_deadline opens: a deadline_scope that can tell, for an exception leaving it,
/// whose deadline expired.
class deadline_level {
 public:
  /// Caps the deadline at `dl`, as this level's own (std::logic_error outside a fiber).
  explicit deadline_level(deadline dl);
  deadline_level(const deadline_level&) = delete;
  deadline_level& operator=(const deadline_level&) = delete;
  /// From a catch handler of the level's block: rethrows the exception being handled, as seen
  /// from outside this level (see with_deadline).
  [[noreturn]] void rethrow_current() const;

 private:
  deadline_scope scope_;
};
}  // namespace detail

/// Runs `fn` with the calling fiber's deadline capped at `dl` (asyncio.wait_for): waits inside
/// fail with std::errc::timed_out (std::system_error in throwing forms) once it passes.
///
///     auto reply = fibers::with_deadline(2s, [&] { return client.call(req); });
///
/// Nested levels know whose deadline expired (asyncio.timeout). A timed_out exception leaving
/// `fn` because of this level's own deadline leaves with_deadline as it is: this level timed
/// out. One caused by an enclosing with_deadline's earlier deadline leaves as
/// fibers::deadline_expired (a fibers::canceled), passes through the levels in between, and
/// becomes the original timed_out again at the level that owns the deadline:
///
///     fibers::with_deadline(1s, [&] {
///       try {
///         fibers::with_deadline(200ms, [&] { primary(); });
///       } catch (const std::system_error& e) {
///         if (e.code() != std::errc::timed_out) throw;  // the 1 s expiry: errc::canceled
///         fallback();                                  // primary() took over 200 ms
///       }
///     });  // the 1 s passed (in primary() or fallback()): the wait's timed_out, rethrown
///
/// A wait's own timeout (a socket call's deadline, say) is not an inherited deadline and
/// passes through unchanged, as does everything else. error_code forms inside `fn` report
/// timed_out either way; the rule is about exceptions leaving a level. Deadlines that a scope
/// child inherits from its scope, or that a deadline_scope sets, have no owning level and are
/// reported as plain timed_out.
template <class F>
auto with_deadline(deadline dl, F&& fn) {
  detail::deadline_level level(dl);
  try {
    return fn();
  } catch (...) {
    level.rethrow_current();
  }
}

/// The calling fiber's inherited deadline (time_point::max() when none).
clock::time_point current_deadline() noexcept;

}  // namespace fibers
