// lib/runtime/reactor_algorithm.cpp
#include "runtime/reactor_algorithm.hpp"

#include <cassert>

#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"

namespace fibers::detail {

reactor_algorithm::reactor_algorithm(io_thread* thread) noexcept : thread_(thread) {
  thread_->set_algorithm(this);
}

FIBERS_NO_TSAN_FRAME boost::fibers::context* reactor_algorithm::pick_next() noexcept {
  // Every switch of Boost's scheduler goes through here (the dispatcher's final return to the
  // main context at thread exit aside), so the thread can track what runs without asking
  // Boost. A null pick leaves the dispatcher running (it then waits in suspend_until).
  boost::fibers::context* self = thread_->running_;
  assert(self == boost::fibers::context::active());
  if constexpr (sanitizers_on) {
    sanitizer_switch_in(thread_->sanitizer_of(self),
                        self->is_context(boost::fibers::type::dispatcher_context));
  }
  boost::fibers::context* next = pick(self);
  if (next != nullptr) thread_->running_ = next;
  io_thread::bump(thread_->switches_);
  if constexpr (sanitizers_on) {
    if (next != nullptr) {
      auto* st = static_cast<fiber_state*>(self->get_properties());
      sanitizer_switch_out(thread_->sanitizer_of(self), thread_->sanitizer_of(next),
                           st != nullptr && st->finished);
    }
  }
  return next;
}

boost::fibers::context* reactor_algorithm::pick(boost::fibers::context* self) noexcept {
  // The fiber switching away is checked for stack overflow while its frames are still there.
  if (auto* st = static_cast<fiber_state*>(self->get_properties())) check_stack(*st);
  // Only the dispatcher does housekeeping: a fiber that is suspending must never be handed
  // back to itself, and cross-thread wakes (Boost's remote queue, our tasks) are only safe to
  // act on once the fiber that published its waiter has really switched out.
  if (self->is_context(boost::fibers::type::dispatcher_context)) {
    thread_->on_dispatch(!ready_.empty());
  }
  if (ready_.empty()) return nullptr;
  boost::fibers::context* ctx = &ready_.front();
  ready_.pop_front();
  // A worker switching away would hand control to the dispatcher every other switch (it
  // re-queues itself whenever it resumes someone). When other fibers are ready and the
  // dispatcher ran within the last 16 picks, go straight to them: the dispatcher (releasing
  // terminated fibers and their stacks, remote wakes, timers, reactor poll) still runs at
  // least once per round of the ready queue and once per 16 switches, and a yield costs one
  // switch instead of two.
  if (ctx->is_context(boost::fibers::type::dispatcher_context)) {
    if (!ready_.empty() && picks_since_dispatch_ < 16) {
      ready_.push_back(*ctx);
      ctx = &ready_.front();
      ready_.pop_front();
      ++picks_since_dispatch_;
    } else {
      picks_since_dispatch_ = 0;
    }
  } else {
    ++picks_since_dispatch_;
  }
  return ctx;
}

void reactor_algorithm::suspend_until(std::chrono::steady_clock::time_point const& tp) noexcept {
  thread_->idle_wait(std::chrono::time_point_cast<clock::duration>(tp));
}

void reactor_algorithm::notify() noexcept { thread_->notify(); }

}  // namespace fibers::detail
