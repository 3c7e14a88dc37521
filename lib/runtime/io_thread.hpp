// lib/runtime/io_thread.hpp - one I/O thread: a Boost.Fiber scheduler whose idle wait is the
// reactor, plus the thread's timers, its cross-thread task queue and its live fibers.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/fiber/context.hpp>

#include "fibers/clock.hpp"
#include "fibers/detail/unique_function.hpp"
#include "reactor/reactor.hpp"
#include "runtime/sanitizer.hpp"
#include "runtime/stack_pool.hpp"
#include "runtime/timer_heap.hpp"

namespace fibers {
class runtime;
}

namespace fibers::detail {

struct fiber_state;
struct waiter;

class io_thread {
 public:
  io_thread(runtime* owner, std::size_t index, std::size_t stack_size);
  io_thread(const io_thread&) = delete;
  io_thread& operator=(const io_thread&) = delete;
  ~io_thread();

  /// Starts the OS thread and returns once its scheduler is installed.
  void start();
  /// Cancels the thread's fibers, waits for them to end, joins the OS thread.
  void stop();

  /// The I/O thread running on the calling OS thread, or nullptr. Our own thread_local, never
  /// a Boost.Fiber call (which would build a scheduler on foreign threads).
  static io_thread* current() noexcept { return current_; }

  /// Runs `task` on this thread's dispatcher soon. Any thread.
  void post(unique_function task);

  runtime* owner() const noexcept { return owner_; }
  std::size_t index() const noexcept { return index_; }
  std::size_t stack_size() const noexcept { return stack_size_; }
  /// Where this thread's fibers get their stacks.
  const std::shared_ptr<stack_pool>& stacks() const noexcept { return stacks_; }
  class reactor& reactor() noexcept { return *reactor_; }
  timer_heap& timers() noexcept { return timers_; }

  /// Queues a parked fiber of this thread to run (home thread only).
  void make_ready(boost::fibers::context* ctx) noexcept;

  // Live-fiber registry (home thread only).
  void add_fiber(fiber_state* st) noexcept;
  void remove_fiber(fiber_state* st) noexcept;
  bool stopping() const noexcept { return stopping_; }

  /// The sanitizer record of one of this thread's contexts.
  sanitizer_context& sanitizer_of(boost::fibers::context* ctx) noexcept;

  // Called by reactor_algorithm.
  void on_dispatch(bool have_ready) noexcept;
  void idle_wait(clock::time_point until) noexcept;
  void notify() noexcept { reactor_->wake(); }
  void set_algorithm(class reactor_algorithm* a) noexcept { algo_ = a; }

 private:
  void main() noexcept;
  void drain_tasks() noexcept;
  void expire_timers() noexcept;
  void cancel_all() noexcept;

  static thread_local io_thread* current_;

  runtime* const owner_;
  const std::size_t index_;
  const std::size_t stack_size_;
  std::unique_ptr<class reactor> reactor_;
  std::shared_ptr<stack_pool> stacks_;
  timer_heap timers_;
  class reactor_algorithm* algo_ = nullptr;
  unsigned dispatch_ticks_ = 0;

  std::mutex tasks_mu_;
  std::vector<unique_function> tasks_;
  std::atomic<bool> have_tasks_{false};

  fiber_state* live_ = nullptr;
  std::size_t live_count_ = 0;
  bool stop_requested_ = false;
  bool stopping_ = false;
  waiter* stop_waiter_ = nullptr;

  sanitizer_context main_san_;
  sanitizer_context dispatcher_san_;

  std::thread thread_;
};

}  // namespace fibers::detail
