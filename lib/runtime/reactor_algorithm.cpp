// lib/runtime/reactor_algorithm.cpp
#include "runtime/reactor_algorithm.hpp"

#include "runtime/io_thread.hpp"

namespace fibers::detail {

reactor_algorithm::reactor_algorithm(io_thread* thread) noexcept : thread_(thread) {
  thread_->set_algorithm(this);
}

boost::fibers::context* reactor_algorithm::pick_next() noexcept {
  // Only the dispatcher does housekeeping: a fiber that is suspending must never be handed
  // back to itself, and cross-thread wakes (Boost's remote queue, our tasks) are only safe to
  // act on once the fiber that published its waiter has really switched out.
  if (boost::fibers::context::active()->is_context(boost::fibers::type::dispatcher_context)) {
    thread_->on_dispatch(!ready_.empty());
  }
  if (ready_.empty()) return nullptr;
  boost::fibers::context* ctx = &ready_.front();
  ready_.pop_front();
  return ctx;
}

void reactor_algorithm::suspend_until(std::chrono::steady_clock::time_point const& tp) noexcept {
  thread_->idle_wait(std::chrono::time_point_cast<clock::duration>(tp));
}

void reactor_algorithm::notify() noexcept { thread_->notify(); }

}  // namespace fibers::detail
