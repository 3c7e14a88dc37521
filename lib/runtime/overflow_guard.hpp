// lib/runtime/overflow_guard.hpp - naming the fiber whose stack overflowed into a guard page.
#pragma once

namespace fibers::detail {

/// On the calling I/O thread: an alternate signal stack, and (once per process) a SIGSEGV
/// handler that, when the faulting address lies in the guard page below the running fiber's
/// stack, prints "stack overflow in fiber '<name>'" before the default action kills the
/// process. Other faults go to the previous handler. Not installed under sanitizers (they
/// handle SIGSEGV themselves).
void install_overflow_guard();
/// Frees the calling thread's alternate signal stack.
void remove_overflow_guard();

}  // namespace fibers::detail
