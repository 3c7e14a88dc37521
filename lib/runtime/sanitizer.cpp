// lib/runtime/sanitizer.cpp - see sanitizer.hpp. Compiled to nothing without sanitizers.
#include "runtime/sanitizer.hpp"

#if defined(FIBERS_ASAN) || defined(FIBERS_TSAN)

#include <cstdint>

#if defined(FIBERS_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(FIBERS_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace fibers::detail {
namespace {

// The context we switched away from, whose switch the next switch_in finishes.
thread_local sanitizer_context* switching_from = nullptr;
thread_local bool switch_pending = false;

}  // namespace

void sanitizer_fiber_created(sanitizer_context& sc, const void* bottom, std::size_t size) noexcept {
  sc.bottom = bottom;
  sc.size = size;
  sc.known = true;
#if defined(FIBERS_TSAN)
  sc.tsan_fiber = __tsan_create_fiber(0);
  sc.tsan_owned = true;
#endif
}

void sanitizer_fiber_destroyed(sanitizer_context& sc) noexcept {
#if defined(FIBERS_TSAN)
  if (sc.tsan_owned && sc.tsan_fiber != nullptr) __tsan_destroy_fiber(sc.tsan_fiber);
  sc.tsan_fiber = nullptr;
#else
  (void)sc;
#endif
}

void sanitizer_thread_main(sanitizer_context& sc) noexcept {
  sc.known = true;  // ASan already tracks the thread's own stack; bounds arrive on first switch
#if defined(FIBERS_TSAN)
  sc.tsan_fiber = __tsan_get_current_fiber();
  sc.tsan_owned = false;
  // Boost's scheduler returns to the thread's main context at thread exit without going
  // through pick_next(), so TSan would end the thread "on" the dispatcher's fiber (and hang in
  // join). This thread_local is constructed before Boost's scheduler, hence destroyed after
  // it: it switches TSan back to the thread's own fiber last.
  struct restore_main {
    void* fiber;
    ~restore_main() { __tsan_switch_to_fiber(fiber, 0); }
  };
  thread_local restore_main restore{sc.tsan_fiber};
  (void)restore;
#endif
}

FIBERS_NO_TSAN_FRAME void sanitizer_switch_out(sanitizer_context& from, sanitizer_context& to, bool dying) noexcept {
#if defined(FIBERS_TSAN)
  if (to.tsan_fiber == nullptr) {  // the dispatcher, first time
    to.tsan_fiber = __tsan_create_fiber(0);
    to.tsan_owned = true;
  }
  __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
  // A dying context is released (by the dispatcher) before anyone finishes the switch: do
  // not keep a pointer to it.
  switching_from = dying ? nullptr : &from;
#if defined(FIBERS_ASAN)
  if (to.known && to.bottom != nullptr) {
    __sanitizer_start_switch_fiber(dying ? nullptr : &from.fake_stack, to.bottom, to.size);
    switch_pending = true;
    return;
  }
#endif
  (void)dying;
  switch_pending = false;  // entered unannotated; `to` relabels itself in switch_in
}

void sanitizer_switch_in(sanitizer_context& self, bool is_dispatcher) noexcept {
#if defined(FIBERS_ASAN)
  sanitizer_context* from = switching_from;
  if (switch_pending) {
    switch_pending = false;
    const void* old_bottom = nullptr;
    std::size_t old_size = 0;
    __sanitizer_finish_switch_fiber(self.fake_stack, &old_bottom, &old_size);
    if (from != nullptr && !from->known && old_bottom != nullptr) {
      from->bottom = old_bottom;
      from->size = old_size;
      from->known = true;
    } else if (from != nullptr && from->bottom == nullptr) {
      from->bottom = old_bottom;  // a thread's main stack, learned on its first switch
      from->size = old_size;
    }
    return;
  }
  if (is_dispatcher && self.bottom == nullptr) {
    // First code of ours on Boost's dispatcher stack (allocated inside Boost): estimate its
    // bounds from the stack pointer - it sits near the top and the dispatcher never runs
    // deep - and relabel the current stack so ASan stops treating it as the previous one.
    char here = 0;
    const auto sp = reinterpret_cast<std::uintptr_t>(&here);
    const std::size_t below = 48 * 1024;
    const std::size_t above = 2 * 1024;
    self.bottom = reinterpret_cast<const void*>(sp - below);
    self.size = below + above;
    self.known = true;
    void* unused_fake = nullptr;
    __sanitizer_start_switch_fiber(from != nullptr ? &from->fake_stack : &unused_fake, self.bottom, self.size);
    const void* old_bottom = nullptr;
    std::size_t old_size = 0;
    __sanitizer_finish_switch_fiber(self.fake_stack, &old_bottom, &old_size);
    if (from != nullptr && from->bottom == nullptr) {
      from->bottom = old_bottom;
      from->size = old_size;
    }
  }
#else
  (void)self;
  (void)is_dispatcher;
#endif
}

}  // namespace fibers::detail

#endif
