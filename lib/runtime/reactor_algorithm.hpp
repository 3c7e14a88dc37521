// lib/runtime/reactor_algorithm.hpp - the Boost.Fiber scheduling algorithm of an I/O thread.
//
// A FIFO ready queue like round_robin, except that instead of sleeping on a condition variable
// when idle, suspend_until() waits in the thread's reactor (epoll), and notify() writes the
// reactor's eventfd. When the dispatcher picks the next fiber it also drains cross-thread tasks
// and, every few rounds, polls the reactor without blocking, so busy fibers cannot starve
// sockets that became ready.
#pragma once

#include <chrono>

#include <boost/fiber/algo/algorithm.hpp>
#include <boost/fiber/context.hpp>
#include <boost/fiber/scheduler.hpp>

namespace fibers::detail {

class io_thread;

class reactor_algorithm final : public boost::fibers::algo::algorithm {
 public:
  explicit reactor_algorithm(io_thread* thread) noexcept;

  void awakened(boost::fibers::context* ctx) noexcept override { ctx->ready_link(ready_); }
  boost::fibers::context* pick_next() noexcept override;
  bool has_ready_fibers() const noexcept override { return !ready_.empty(); }
  /// True if the ready queue holds exactly the dispatcher.
  bool only_dispatcher_ready() const noexcept {
    return !ready_.empty() && std::next(ready_.begin()) == ready_.end() &&
           ready_.front().is_context(boost::fibers::type::dispatcher_context);
  }
  void suspend_until(std::chrono::steady_clock::time_point const& tp) noexcept override;
  void notify() noexcept override;

 private:
  boost::fibers::context* pick(boost::fibers::context* self) noexcept;

  boost::fibers::scheduler::ready_queue_type ready_;
  io_thread* thread_;
  unsigned picks_since_dispatch_ = 0;
};

}  // namespace fibers::detail
