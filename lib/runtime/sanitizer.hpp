// lib/runtime/sanitizer.hpp - telling ASan and TSan about fiber switches.
//
// Switches are fcontext jumps (assembly: switch.cpp's on x86-64, else Boost.Context's), which
// do not annotate, so the I/O thread does it around each jump (io_thread::switch_to, also for
// an ending fiber's last switch, which exit_running makes through it): switch_out right
// before the jump, switch_in first thing on the resumed context (io_thread::after_resume, also
// a new fiber's first step). In builds without sanitizers every function here is an empty
// inline. The scheduler loop runs on the OS thread's own stack, whose bounds ASan reports on
// the first switch away from it.
#pragma once

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define FIBERS_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define FIBERS_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FIBERS_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define FIBERS_TSAN 1
#endif
#endif

// TSan keeps a shadow call stack per fiber: a function that enters on one fiber and, after
// __tsan_switch_to_fiber, returns on another pops the other's stack (a new fiber's empty one
// underflows, and TSan later crashes walking it). sanitizer_switch_out, which makes that call
// and returns afterwards, is therefore left uninstrumented: it emits no function entry/exit.
// The function that then jumps (io_thread::switch_to) entered on the fiber that leaves and
// returns on it once resumed, so its entry and exit stay balanced.
#define FIBERS_NO_TSAN_FRAME __attribute__((no_sanitize("thread")))

namespace fibers::detail {

/// What the sanitizers need per execution context (a fiber or an I/O thread's scheduler loop).
struct sanitizer_context {
  const void* bottom = nullptr;  // lowest address of the stack
  std::size_t size = 0;
  bool known = false;           // bounds known (always for fibers; learned for the loop)
  void* fake_stack = nullptr;   // ASan's fake-stack save slot
  void* tsan_fiber = nullptr;   // TSan's fiber handle
  bool tsan_owned = false;      // created by us (destroy it with the context)
};

#if defined(FIBERS_ASAN) || defined(FIBERS_TSAN)
inline constexpr bool sanitizers_on = true;
/// A fiber stack [bottom, bottom+size) is about to run for the first time later.
void sanitizer_fiber_created(sanitizer_context& sc, const void* bottom, std::size_t size) noexcept;
/// The context is gone (after its last switch).
void sanitizer_fiber_destroyed(sanitizer_context& sc) noexcept;
/// The I/O thread's scheduler loop, on the thread's own stack (once, before any switch).
void sanitizer_thread_main(sanitizer_context& sc) noexcept;
/// About to switch from `from` to `to` (`dying`: `from` never runs again).
FIBERS_NO_TSAN_FRAME void sanitizer_switch_out(sanitizer_context& from, sanitizer_context& to,
                                               bool dying) noexcept;
/// First instrumented code on `self` after a switch.
void sanitizer_switch_in(sanitizer_context& self) noexcept;
#else
inline constexpr bool sanitizers_on = false;
inline void sanitizer_fiber_created(sanitizer_context&, const void*, std::size_t) noexcept {}
inline void sanitizer_fiber_destroyed(sanitizer_context&) noexcept {}
inline void sanitizer_thread_main(sanitizer_context&) noexcept {}
inline void sanitizer_switch_out(sanitizer_context&, sanitizer_context&, bool) noexcept {}
inline void sanitizer_switch_in(sanitizer_context&) noexcept {}
#endif

}  // namespace fibers::detail
