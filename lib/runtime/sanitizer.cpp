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
  sc.known = true;  // ASan reports the thread's stack bounds on the first switch away from it
#if defined(FIBERS_TSAN)
  sc.tsan_fiber = __tsan_get_current_fiber();
  sc.tsan_owned = false;
#endif
}

FIBERS_NO_TSAN_FRAME void sanitizer_switch_out(sanitizer_context& from, sanitizer_context& to, bool dying) noexcept {
#if defined(FIBERS_TSAN)
  __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
  // An ended fiber is released by the context it switches to, right after finishing the
  // switch: do not keep a pointer to it.
  switching_from = dying ? nullptr : &from;
#if defined(FIBERS_ASAN)
  if (to.known && to.bottom != nullptr) {
    __sanitizer_start_switch_fiber(dying ? nullptr : &from.fake_stack, to.bottom, to.size);
    switch_pending = true;
    return;
  }
#endif
  (void)dying;
  switch_pending = false;
}

void sanitizer_switch_in(sanitizer_context& self) noexcept {
#if defined(FIBERS_ASAN)
  if (!switch_pending) return;
  switch_pending = false;
  sanitizer_context* from = switching_from;
  const void* old_bottom = nullptr;
  std::size_t old_size = 0;
  __sanitizer_finish_switch_fiber(self.fake_stack, &old_bottom, &old_size);
  if (from != nullptr && from->bottom == nullptr) {
    from->bottom = old_bottom;  // the loop's thread stack, learned on its first switch
    from->size = old_size;
  }
#else
  (void)self;
#endif
}

}  // namespace fibers::detail

#endif
