// lib/runtime/fiber_state.hpp - what libfibers keeps per fiber.
//
// A fiber_state is the fiber's context (what the I/O thread switches to) plus everything else
// the runtime knows about the fiber. It lives at the top of the fiber's own stack (spawn
// allocates nothing else, and a parked fiber's state shares the stack's one resident page).
// Two references keep it and the stack alive: the fiber's own, dropped by the first context
// that runs after the fiber's last switch, and the fibers::fiber handle's, dropped by join()
// or detach(). The last one destroys the state and returns the stack to its pool.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include <boost/context/stack_context.hpp>

#include "fibers/clock.hpp"
#include "fibers/detail/unique_function.hpp"
#include "fibers/detail/waiter.hpp"
#include "runtime/context.hpp"
#include "runtime/sanitizer.hpp"
#include "runtime/stack_pool.hpp"
#include "runtime/timer_heap.hpp"

namespace fibers::detail {

class io_thread;
struct fiber_state;

/// A fiber's own deadline timer (park, waiter.cpp): knows its fiber.
struct fiber_timer : timer {
  fiber_state* fiber = nullptr;
};

struct fiber_state final : context {
  /// Takes `name` and `fn` (moved from: spawn moves each only once).
  fiber_state(std::string&& name, unique_function&& fn, io_thread* home);
  ~fiber_state() { sanitizer_fiber_destroyed(san); }
  fiber_state(const fiber_state&) = delete;
  fiber_state& operator=(const fiber_state&) = delete;

  /// Takes one more reference (a cross-thread cancel keeps the state alive until it has run).
  void add_ref() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  /// Drops a reference; the last one destroys the state and returns the stack (any thread).
  /// The last one needs no locked instruction: with the count at 1 nobody else holds a
  /// reference, and only a holder (the handle, for cancel) can take another.
  void unref() noexcept {
    if (refs.load(std::memory_order_acquire) == 1 || refs.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy();
  }
  /// Drops the fiber's own reference after its last switch, on its home thread.
  void unref_ended() noexcept {
    if (joiner_here) {
      // The handle is with a fiber of this thread, woken from join() and not yet run, so every
      // reference is dropped on this thread until it runs (a cross-thread cancel's posted task
      // too): a plain decrement, and the handle's reference keeps the count above zero.
      refs.store(refs.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
      return;
    }
    unref();
  }

  /// The fiber body: runs fn, records the outcome, wakes the joiner.
  void run() noexcept;
  /// Destroys the state and returns the stack to its pool (the last reference is gone).
  void destroy() noexcept;
  /// The name given to spawn(), or "fiber-<id>".
  const std::string& display_name();
  /// Requests cancellation. Only on the home thread (fiber::cancel posts it there).
  void cancel_here() noexcept;
  /// A scope's request to cancel the fiber that owns it (a child failed while the owner ran the
  /// scope's body). Home thread only. Unlike cancel_here it can be withdrawn: the scope calls
  /// withdraw_scope_cancel() when it ends, and the fiber stays canceled only if something else
  /// canceled it too.
  void scope_cancel() noexcept;
  void withdraw_scope_cancel() noexcept {
    cancel_requested.fetch_sub(cancel_scope_unit, std::memory_order_relaxed);
  }

  unique_function fn;
  std::string name;  // empty: "fiber-<id>", made on first use (spawn stays allocation-light)
  const std::uint64_t id;
  io_thread* const home;
  std::atomic<std::uint32_t> refs{2};  // the fiber's own and its handle's
  // Where the stack goes back to. A plain pointer: an orphaned pool lives until its last
  // stack is back (stack_pool.hpp), so spawn and the last release count no references.
  stack_pool* pool = nullptr;
  boost::context::stack_context stack;  // as the pool gave it
  const void* stack_limit = nullptr;  // lowest address of the stack
  std::size_t stack_size = 0;         // bytes from stack_limit to the top of the stack
  bool stack_canary = false;          // a canary sits at stack_limit (no guard page below)

  // Cancellation and waits (home thread only, except the flag).
  // Non-zero: cancellation requested. Bit 0 (cancel_external): fiber::cancel, this_fiber::cancel
  // or shutdown, never withdrawn. The bits above count the scopes that canceled this fiber as
  // their owner (cancel_scope_unit each), withdrawn when each scope ends.
  static constexpr std::uint32_t cancel_external = 1, cancel_scope_unit = 2;
  std::atomic<std::uint32_t> cancel_requested{0};
  waiter* current_wait = nullptr;  // set while parked in a cancelable wait
  // What the fiber waits for, for fibers::dump() (home thread writes, dumps read there too).
  const char* wait_what = nullptr;  // nullptr: not parked
  int wait_fd = -1;
  clock::time_point wait_since;
  clock::time_point wait_deadline;
  void* park_frame = nullptr;  // frame pointer of park() while parked: where a dump starts
  // The deadline of a park (waiter.cpp). The timer stays in the thread's heap when the park
  // ends before it: the next park with a deadline no earlier reuses it, and when it fires
  // early it moves itself to that park's deadline. So a fiber that waits with a fresh idle
  // timeout on every read touches the heap about once per timeout, not twice per read.
  // deadline_park: the waiter of the park in progress that has a deadline, else nullptr; that
  // park's deadline is wait_deadline above.
  fiber_timer deadline_timer;
  waiter* deadline_park = nullptr;
  clock::time_point inherited_deadline = clock::time_point::max();
  // The with_deadline level (fibers::detail::deadline_level) that set inherited_deadline, or
  // nullptr: none did (no deadline, a deadline_scope, or one inherited from a scope).
  const void* deadline_owner = nullptr;
  // The fibers::scope this fiber is a child of, or nullptr: lets a child on another thread
  // cancel its scope (the request is posted to the scope's thread, see scope::cancel).
  const void* group = nullptr;
  // libfibers-hook (lib/hook/): non-zero while the fiber's interposed libc calls are plain
  // libc (hook::disable and disable_scope nest).
  std::uint32_t hook_off = 0;

  // Completion: one word, so spawn+join takes no lock. Bit 0: done (run() returned); bit 1:
  // detached; bit 2 (here_bit): the joiner is a fiber of this fiber's home thread; the rest:
  // the joiner's waiter (a fiber or a plain thread), if one waits.
  // Only run() (home thread) and the handle's owner write it. So the handle's owner on the home
  // thread, which cannot run at the same time as run(), uses plain loads and stores, and so
  // does run() when the handle's owner is parked on its thread (here_bit) or gone (detached):
  // the same-thread spawn+join takes no locked instruction. Elsewhere they are CAS/fetch_or.
  static constexpr std::uintptr_t done_bit = 1, detached_bit = 2, here_bit = 4;
  static constexpr std::uintptr_t flag_bits = done_bit | detached_bit | here_bit;
  std::atomic<std::uintptr_t> completion{0};
  bool joiner_here = false;  // run() woke a joiner of this thread (home thread only)
  // The joiner's waiter lives here, not on the joiner's stack: a join that gives up (deadline,
  // cancellation) may find that run() has already taken the waiter from `completion` and is
  // about to fire it. That fire then fails to claim, and touches memory this state's own
  // reference keeps alive until after the fiber's last switch. Written only by the handle's
  // owner, and re-armed only after the waiter is back out of `completion`.
  std::optional<waiter> joiner;
  std::exception_ptr error;  // written before done_bit is set, read after it is seen

  // The home thread's list of live fibers (for shutdown and dumps).
  fiber_state* prev_live = nullptr;
  fiber_state* next_live = nullptr;
};

/// Throws the std::logic_error of require_io_thread (io_thread.hpp).
[[noreturn]] void throw_not_io_thread(const char* what);

/// Reports a stack overflow of `st` and aborts.
[[noreturn]] void report_stack_overflow(const fiber_state& st) noexcept;

/// Aborts with a message naming the fiber if its stack is exhausted: the caller's frame is
/// within 256 bytes of the limit (even where no canary or guard page watches) or the canary
/// is overwritten. Runs at every switch away from a fiber: reads only what is already there.
inline void check_stack(const fiber_state& st) noexcept {
  const auto* frame = static_cast<const char*>(__builtin_frame_address(0));
  const auto* limit = static_cast<const char*>(st.stack_limit);
  if (frame < limit + 256 ||
      (st.stack_canary && *reinterpret_cast<const volatile std::uint64_t*>(limit) != stack_pool::canary)) {
    report_stack_overflow(st);
  }
}

/// Reports an exception that ended a detached fiber (canceled is not reported).
void report_detached_error(fiber_state& st, std::exception_ptr e) noexcept;

}  // namespace fibers::detail
