// lib/runtime/sanitizer.hpp - telling ASan and TSan about fiber switches.
//
// Debian's Boost.Context switches stacks with fcontext (assembly), which does not annotate, so
// the scheduling algorithm does it: pick_next() knows the context being left and the one being
// entered, and every place where a context resumes into our code (park, yield, a new fiber's
// first instruction, the dispatcher's next pick_next) finishes the switch. In builds without
// sanitizers every function here is an empty inline.
//
// The dispatcher's stack is allocated inside Boost, so its bounds are unknown until it first
// runs our code: the switch into it is left unannotated, and on its first pick_next it
// relabels the current stack (start+finish back to back), with bounds estimated from its stack
// pointer (DESIGN.md notes the approximation).
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
// underflows, and TSan later crashes walking it). The functions between that call and Boost's
// real switch (pick_next, sanitizer_switch_out) are therefore left uninstrumented: they emit
// no function entry/exit. Their memory accesses are home-thread only. (Boost.Context's fiber
// entry/exit templates have the same problem: lib/runtime/spawn.cpp, which instantiates them,
// is compiled without TSan.)
#define FIBERS_NO_TSAN_FRAME __attribute__((no_sanitize("thread")))

namespace fibers::detail {

/// What the sanitizers need per execution context (fiber, dispatcher or thread main).
struct sanitizer_context {
  const void* bottom = nullptr;  // lowest address of the stack
  std::size_t size = 0;
  bool known = false;           // bounds known (always for our fibers; learned for the others)
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
/// The thread's main context (call once on the thread, before any switch).
void sanitizer_thread_main(sanitizer_context& sc) noexcept;
/// About to switch from `from` to `to` (`dying`: `from` never runs again).
FIBERS_NO_TSAN_FRAME void sanitizer_switch_out(sanitizer_context& from, sanitizer_context& to,
                                               bool dying) noexcept;
/// First instrumented code on `self` after a switch.
void sanitizer_switch_in(sanitizer_context& self, bool is_dispatcher) noexcept;
#else
inline constexpr bool sanitizers_on = false;
inline void sanitizer_fiber_created(sanitizer_context&, const void*, std::size_t) noexcept {}
inline void sanitizer_fiber_destroyed(sanitizer_context&) noexcept {}
inline void sanitizer_thread_main(sanitizer_context&) noexcept {}
inline void sanitizer_switch_out(sanitizer_context&, sanitizer_context&, bool) noexcept {}
inline void sanitizer_switch_in(sanitizer_context&, bool) noexcept {}
#endif

}  // namespace fibers::detail
