// lib/runtime/io_thread.hpp - one I/O thread: a Boost.Fiber scheduler whose idle wait is the
// reactor, plus the thread's timers, its cross-thread task queue and its live fibers.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include <boost/fiber/context.hpp>

#include "fibers/debug.hpp"

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
  io_thread(runtime* owner, std::size_t index, std::size_t stack_size, bool stack_canary);
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
  /// The context running on this thread (tracked by reactor_algorithm::pick_next, so the hot
  /// path need not ask Boost, whose context::active() costs a TLS lookup through the PLT).
  boost::fibers::context* running() const noexcept { return running_; }

  /// Runs `task` on this thread's dispatcher soon. Any thread.
  void post(unique_function task);

  runtime* owner() const noexcept { return owner_; }
  std::size_t index() const noexcept { return index_; }
  std::size_t stack_size() const noexcept { return stack_size_; }
  /// Where this thread's fibers of `size` bytes (0: the runtime's size) get their stacks;
  /// creates the pool on first use (home thread only).
  const std::shared_ptr<stack_pool>& stacks(std::size_t size = 0);
  class reactor& reactor() noexcept { return *reactor_; }
  timer_heap& timers() noexcept { return timers_; }

  /// Queues a parked fiber of this thread to run (home thread only).
  void make_ready(boost::fibers::context* ctx) noexcept;

  /// Time of the last reactor poll: a clock read per poll, not per park.
  clock::time_point coarse_now() const noexcept { return coarse_now_; }
  void count_park() noexcept { bump(parks_); }
  /// Counters (any thread).
  thread_stats stats() const noexcept;
  /// Appends a description of every fiber of this thread (home thread only).
  void describe_fibers(std::string& out);
  /// Every I/O thread alive in the process (for dump()); the callback runs under a lock.
  template <class F>
  static void for_each(F&& f) {
    std::lock_guard lk(registry_mu());
    for (io_thread* t : registry()) f(*t);
  }
  pthread_t native_handle() noexcept { return thread_.native_handle(); }

  // Watchdog support: a sample of progress, and the report the thread writes about itself when
  // the watchdog signals it.
  std::uint64_t progress() const noexcept {
    return switches_.load(std::memory_order_relaxed) + polls_.load(std::memory_order_relaxed);
  }
  bool idle() const noexcept { return idle_.load(std::memory_order_relaxed); }
  struct blocked_report {
    std::atomic<bool> ready{false};
    std::uint64_t fiber_id = 0;
    char fiber_name[48] = {};
    void* frames[32] = {};
    int depth = 0;
  };
  blocked_report& report() noexcept { return report_; }

  // Live-fiber registry (home thread only).
  void add_fiber(fiber_state* st) noexcept;
  void remove_fiber(fiber_state* st) noexcept;
  bool stopping() const noexcept { return stopping_; }
  std::size_t live_count() const noexcept { return alive_.load(std::memory_order_relaxed); }

  /// The sanitizer record of one of this thread's contexts.
  sanitizer_context& sanitizer_of(boost::fibers::context* ctx) noexcept;

  // Called by reactor_algorithm.
  void on_dispatch(bool have_ready) noexcept;
  void idle_wait(clock::time_point until) noexcept;
  /// Boost calls this after queueing a remote wake (and on shutdown): the dispatcher has work.
  void notify() noexcept {
    dispatcher_pending_ = true;
    reactor_->wake();
  }
  /// A fiber of this thread has ended: the dispatcher must release it.
  void fiber_ended() noexcept { dispatcher_pending_ = true; }
  /// DESIGN.md "Fast park": called by a fiber about to park; if the dispatcher would do nothing
  /// but wait in the reactor, waits right here. True if the fiber itself was woken by that
  /// wait (then it must not suspend); false: suspend as usual.
  bool fast_park(boost::fibers::context* self) noexcept;
  void set_algorithm(class reactor_algorithm* a) noexcept { algo_ = a; }

 private:
  void main() noexcept;
  void drain_tasks() noexcept;
  /// Fires the timers due at `now` (min: read the clock, only if a timer is armed).
  void expire_timers(clock::time_point now = clock::time_point::min()) noexcept;
  void cancel_all() noexcept;
  void poll_reactor(clock::duration timeout) noexcept;
  clock::duration timeout_until(clock::time_point until) const noexcept;
  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);  // one writer
  }
  static std::mutex& registry_mu();
  static std::vector<io_thread*>& registry();
  friend class reactor_algorithm;

  // initial-exec: a plain %fs-relative load instead of __tls_get_addr on every call (a few
  // bytes of static TLS; fine for a library loaded at start-up or dlopen'ed early).
  static thread_local io_thread* current_ __attribute__((tls_model("initial-exec")));

  runtime* const owner_;
  const std::size_t index_;
  const std::size_t stack_size_;
  std::unique_ptr<class reactor> reactor_;
  const bool stack_canary_;
  std::shared_ptr<stack_pool> stacks_;              // the runtime's size
  std::vector<std::shared_ptr<stack_pool>> other_stacks_;  // sizes asked for by spawn_options
  mutable std::mutex stacks_mu_;                    // other_stacks_ may grow while stats() reads
  timer_heap timers_;
  class reactor_algorithm* algo_ = nullptr;
  boost::fibers::context* running_ = nullptr;
  unsigned dispatch_ticks_ = 0;

  std::mutex tasks_mu_;
  std::vector<unique_function> tasks_;
  std::atomic<bool> have_tasks_{false};
  // Set from any thread by notify(), cleared by the dispatcher: it has something to do.
  std::atomic<bool> dispatcher_pending_{false};

  fiber_state* live_ = nullptr;
  clock::time_point coarse_now_ = clock::now();
  std::atomic<std::size_t> alive_{0};  // live fibers; written by this thread, read by any
  std::atomic<std::uint64_t> spawned_{0};
  std::atomic<std::uint64_t> switches_{0};
  std::atomic<std::uint64_t> parks_{0};
  std::atomic<std::uint64_t> polls_{0};
  std::atomic<std::uint64_t> events_{0};
  std::atomic<bool> idle_{false};
  blocked_report report_;
  bool stop_requested_ = false;
  bool stopping_ = false;
  waiter* stop_waiter_ = nullptr;

  sanitizer_context main_san_;
  sanitizer_context dispatcher_san_;

  std::thread thread_;
};

}  // namespace fibers::detail
