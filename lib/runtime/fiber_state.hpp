// lib/runtime/fiber_state.hpp - what libfibers keeps per fiber.
//
// Stored as the Boost.Fiber context's fiber_properties, so the context owns it and
// `io_thread::running()->get_properties()` finds the running fiber's state without a map. It
// lives at the top of the fiber's own stack, above Boost's context record (spawn allocates
// nothing else for it, and a parked fiber's state shares the stack's one resident page).
// Boost's ~context deletes it before the stack goes back to its pool; our operator delete frees
// nothing. A fibers::fiber handle keeps the context (and so this state) alive by holding a
// reference on the context.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include <boost/fiber/properties.hpp>

#include "fibers/clock.hpp"
#include "fibers/detail/unique_function.hpp"
#include "runtime/sanitizer.hpp"

namespace fibers::detail {

class io_thread;
struct waiter;

struct fiber_state final : boost::fibers::fiber_properties {
  fiber_state(std::string name, unique_function fn, io_thread* home);
  ~fiber_state() override { sanitizer_fiber_destroyed(san); }
  /// Placed on the fiber's stack by spawn; the stack is released after Boost destroys us.
  static void* operator new(std::size_t, void* where) noexcept { return where; }
  static void operator delete(void*) noexcept {}

  /// The fiber body: runs fn, records the outcome, wakes the joiner.
  void run() noexcept;
  /// The name given to spawn(), or "fiber-<id>".
  const std::string& display_name();
  /// Requests cancellation. Only on the home thread (fiber::cancel posts it there).
  void cancel_here() noexcept;
  boost::fibers::context* context() const noexcept { return ctx_; }

  unique_function fn;
  std::string name;  // empty: "fiber-<id>", made on first use (spawn stays allocation-light)
  const std::uint64_t id;
  io_thread* const home;
  const void* stack_limit = nullptr;  // lowest address of the stack
  std::size_t stack_size = 0;         // bytes from stack_limit to the top of the stack
  bool stack_canary = false;          // a canary sits at stack_limit (no guard page below)
  sanitizer_context san;               // ASan/TSan bookkeeping (empty without sanitizers)

  // Cancellation and waits (home thread only, except the flag).
  std::atomic<bool> cancel_requested{false};
  waiter* current_wait = nullptr;  // set while parked in a cancelable wait
  // What the fiber waits for, for fibers::dump() (home thread writes, dumps read there too).
  const char* wait_what = nullptr;  // nullptr: not parked
  int wait_fd = -1;
  clock::time_point wait_since;
  clock::time_point wait_deadline;
  void* park_frame = nullptr;  // frame pointer of park() while parked: where a dump starts
  clock::time_point inherited_deadline = clock::time_point::max();

  // Completion: one word, so spawn+join takes no lock. Bit 0: done (run() returned); bit 1:
  // detached; the rest: the joiner's waiter (a fiber or a plain thread), if one waits.
  static constexpr std::uintptr_t done_bit = 1, detached_bit = 2;
  std::atomic<std::uintptr_t> completion{0};
  bool finished = false;  // home thread only: run() returned, the next switch away is the last
  std::exception_ptr error;  // written before done_bit is set, read after it is seen

  // The home thread's list of live fibers (for shutdown and dumps).
  fiber_state* prev_live = nullptr;
  fiber_state* next_live = nullptr;
};

/// The calling thread's I/O thread; throws std::logic_error naming `what` on other threads.
io_thread& require_io_thread(const char* what);

/// Aborts with a message naming the fiber if its stack canary was overwritten.
void check_stack(const fiber_state& st) noexcept;

/// Reports an exception that ended a detached fiber (canceled is not reported).
void report_detached_error(fiber_state& st, std::exception_ptr e) noexcept;

}  // namespace fibers::detail
