// lib/runtime/io_thread.hpp - one I/O thread: the scheduler of its fibers (a ready queue and
// switches between Boost.Context fcontexts), its reactor, timers, cross-thread task and wake
// queues, and its live fibers.
//
// The scheduler loop (main()) runs on the OS thread's own stack. A fiber that parks or yields
// switches straight to the next ready fiber; it goes back to the loop only when nothing else is
// ready, when the loop has work (posted tasks, wakes from other threads), or after 16 switches,
// so timers and the reactor are never starved by busy fibers. Bursts of new fibers are
// bounded too (docs/DESIGN.md, "Bursts"): at most 32 never-run fibers wait in the ready
// queue (the rest in a backlog the loop admits from), and a fiber that spawns for over 1 ms
// without switching yields to the loop.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <stdexcept>
#include <string>
#include <vector>

#include "fibers/debug.hpp"

#include "fibers/clock.hpp"
#include "fibers/detail/unique_function.hpp"
#include "reactor/reactor.hpp"
#include "runtime/context.hpp"
#include "runtime/fiber_state.hpp"
#include "runtime/sanitizer.hpp"
#include "runtime/stack_pool.hpp"
#include "runtime/timer_heap.hpp"

namespace fibers {
class runtime;
}

namespace fibers::detail {

struct fiber_state;
class uring;

class io_thread {
 public:
  /// `ring_sockets`: the thread's stream sockets read and write through an io_uring ring that
  /// drives the thread (runtime_options::sockets), if this kernel allows it.
  io_thread(runtime* owner, std::size_t index, std::size_t stack_size, bool stack_canary,
            bool ring_sockets = false);
  io_thread(const io_thread&) = delete;
  io_thread& operator=(const io_thread&) = delete;
  ~io_thread();

  /// Starts the OS thread and returns once its scheduler is installed.
  void start();
  /// Cancels the thread's fibers, waits for them to end, joins the OS thread.
  void stop();

  /// The I/O thread running on the calling OS thread, or nullptr.
  static io_thread* current() noexcept { return current_; }
  /// The context running on this thread: a fiber or the scheduler loop (home thread, or its
  /// own signal handlers).
  context* running() const noexcept { return running_; }
  /// The running fiber's state, or nullptr on the scheduler loop.
  fiber_state* running_fiber() const noexcept {
    return running_->is_fiber ? static_cast<fiber_state*>(running_) : nullptr;
  }

  /// Runs `task` on this thread's scheduler loop soon (it must not wait). Any thread.
  void post(unique_function task);

  runtime* owner() const noexcept { return owner_; }
  /// A number no other io_thread of this process has had: tells a live thread from a new one
  /// allocated at the address of a dead one.
  std::uint64_t id() const noexcept { return id_; }
  /// Runs f(thread) under the registry lock if `t` (with id `id`) is still alive: its loop has
  /// not ended, so a task posted from f runs there or, if the loop ends first, is destroyed
  /// with the thread (never leaked, never run on a freed thread). Returns false otherwise.
  template <class F>
  static bool with_live(io_thread* t, std::uint64_t id, F&& f) {
    std::lock_guard lk(registry_mu());
    for (io_thread* x : registry()) {
      if (x == t && x->id_ == id) {
        f(*x);
        return true;
      }
    }
    return false;
  }
  std::size_t index() const noexcept { return index_; }
  std::size_t stack_size() const noexcept { return stack_size_; }
  /// Where this thread's fibers of `size` bytes (0: the runtime's size) get their stacks;
  /// creates the pool on first use (home thread only). The thread owns its pools and orphans
  /// them when it is destroyed (a pool with stacks still out lives until they are back).
  stack_pool& stacks(std::size_t size = 0);
  class reactor& reactor() noexcept { return *reactor_; }
  /// The ring this thread's stream sockets read and write through, or nullptr when they use
  /// the reactor's readiness (the default, or io_uring could not drive this thread). Set
  /// before start() returns.
  uring* socket_ring() const noexcept { return socket_ring_; }
  timer_heap& timers() noexcept { return timers_; }

  /// Queues a parked fiber of this thread to run (home thread only).
  void make_ready(context* ctx) noexcept { ready_.push_back(ctx); }
  /// Queues a new fiber (home thread only). At most max_unstarted fibers that have never run
  /// are in the ready queue, so a fiber woken by a timer or the reactor never waits behind
  /// more of them; the others wait in a FIFO backlog, which the loop admits max_unstarted at a
  /// time, once the last batch has all started, after the wakes of its round.
  void make_ready_new(context* ctx) noexcept {
    if (unstarted_ < max_unstarted && backlog_.empty()) {
      ++unstarted_;
      ready_.push_back(ctx);
    } else {
      backlog_.push_back(ctx);
    }
  }
  /// Called by spawn before it makes a fiber: every 16th call, if the running fiber has not
  /// switched for about a time slice, it yields to the loop first (a spawning loop costs
  /// 13-28 µs per spawn on fresh stacks here, and would otherwise hold timers and the reactor
  /// for as long as it runs). The new fiber is made after that, so it still runs only once
  /// its spawner parks or yields.
  void spawn_checkpoint() noexcept {
    if ((++spawn_ticks_ & 15u) == 0) [[unlikely]] end_slice_if_due();
  }
  /// Queues a parked fiber of this thread to run, from any other thread. Once the context is
  /// pushed, the fiber may run, end, and the runtime may be shut down before notify() has
  /// returned: the count of wakers in flight keeps this thread (its reactor and eventfd)
  /// alive until they are out (main() waits for it before the thread ends).
  void make_ready_remote(context* ctx) noexcept {
    remote_wakers_.fetch_add(1, std::memory_order_relaxed);  // ordered before the push's release
    remote_.push(ctx);
    notify();
    remote_wakers_.fetch_sub(1, std::memory_order_release);
  }
  /// Switches away from the running fiber, which is parked (or queued, for a yield) and comes
  /// back here when it is next picked. DESIGN.md "Fast park": when the loop would do nothing
  /// but wait in the reactor, the parking fiber waits right here, and does not switch at all if
  /// it is the one woken. `self` must be running() and a fiber.
  void park_running(context* self) noexcept {
    if (!fast_park(self)) suspend(self);
  }
  /// Queues the running fiber behind the ready ones and runs them first.
  void yield_running() noexcept {
    ready_.push_back(running_);
    suspend(running_);
  }
  /// The end of a fiber (runs on it, as the last thing fiber_entry does): switches away for
  /// good and never returns; the next context to run releases the fiber's reference on its
  /// stack.
  void exit_running(fiber_state* self) noexcept;
  /// Where a new fiber starts (make_fcontext's entry).
  static void fiber_entry(boost::context::detail::transfer_t from) noexcept;

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
  /// The CPU this thread ran on when it started or at its last reactor poll since (-1 if
  /// sched_getcpu failed).
  int cpu() const noexcept { return cpu_.load(std::memory_order_relaxed); }
  struct blocked_report {
    std::atomic<bool> ready{false};
    std::uint64_t fiber_id = 0;
    char fiber_name[48] = {};
    void* frames[32] = {};
    int depth = 0;
  };
  blocked_report& report() noexcept { return report_; }

  /// A fiber id no other fiber of the process has had (home thread only). Ids are taken from
  /// the process-wide counter a block at a time, so a spawn takes no locked instruction.
  std::uint64_t take_fiber_id() noexcept {
    if (fiber_ids_next_ == fiber_ids_end_) [[unlikely]] refill_fiber_ids();
    return fiber_ids_next_++;
  }

  // Live-fiber registry (home thread only).
  void add_fiber(fiber_state* st) noexcept;
  void remove_fiber(fiber_state* st) noexcept;
  bool stopping() const noexcept { return stopping_; }
  std::size_t live_count() const noexcept { return alive_.load(std::memory_order_relaxed); }

  /// Another thread queued work for the loop (a task, a remote wake): make the loop run soon,
  /// waking the thread if it waits in the reactor.
  void notify() noexcept {
    loop_pending_.store(true, std::memory_order_relaxed);
    reactor_->wake();
  }

 private:
  /// The scheduler loop, on the OS thread's stack, until stop() and the last fiber's end.
  void main() noexcept;
  /// What runs next after a fiber parks, yields or ends: the first ready fiber, or the loop.
  context* pick_next() noexcept;
  /// Picks what runs after `self` (parked or queued) and switches to it.
  void suspend(context* self) noexcept;
  /// True if `self` was woken by a reactor wait made right here (it must not switch then).
  bool fast_park(context* self) noexcept;
  void refill_fiber_ids() noexcept;
  /// Moves the next batch (max_unstarted) of new fibers from the backlog to the ready queue.
  void admit_new() noexcept;
  /// spawn_checkpoint's slow part: yields the running fiber to the loop if its slice is over.
  void end_slice_if_due() noexcept;
  /// Every switch goes through here, and through its one call of jump_context: a switch then
  /// resumes the other side at the very return address the CPU's return predictor has for it
  /// (switch.cpp). Hence never inlined; an ending fiber tail-calls it (exit_running), leaving
  /// no entry of its own on the predictor.
  [[gnu::noinline]] void switch_to(context* self, context* next) noexcept;
  /// First thing on a context after a switch into it: records the left context's registers,
  /// finishes the sanitizer switch, releases a fiber that has just ended.
  void after_resume(boost::context::detail::transfer_t from) noexcept;
  void release_ended() noexcept;
  /// Shutdown step of the loop: cancels live fibers (every 2 ms), names stragglers after 5 s.
  /// Returns the time of the next step.
  clock::time_point shutdown_step() noexcept;
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

  // initial-exec: a plain %fs-relative load instead of __tls_get_addr on every call (a few
  // bytes of static TLS; fine for a library loaded at start-up or dlopen'ed early).
  static constinit thread_local io_thread* current_ __attribute__((tls_model("initial-exec")));

  runtime* const owner_;
  const std::uint64_t id_;
  const std::size_t index_;
  const std::size_t stack_size_;
  std::unique_ptr<class reactor> reactor_;
  const bool stack_canary_;
  const bool want_ring_sockets_;
  uring* socket_ring_ = nullptr;  // owned by reactor_->completions
  owned_stack_pool stacks_;                         // the runtime's size
  std::vector<owned_stack_pool> other_stacks_;      // sizes asked for by spawn_options
  mutable std::mutex stacks_mu_;                    // other_stacks_ may grow while stats() reads
  timer_heap timers_;
  context loop_ctx_;                // the scheduler loop (the OS thread's own stack)
  context* running_ = nullptr;
  ready_queue ready_;
  remote_queue remote_;
  std::atomic<int> remote_wakers_{0};  // other threads inside make_ready_remote
  fiber_state* ended_ = nullptr;    // a fiber that switched away for the last time
  unsigned picks_since_loop_ = 0;
  unsigned loop_rounds_ = 0;
  // Bursts of new fibers (docs/DESIGN.md, "Bursts"). 32 never-run fibers ahead of a
  // woken one cost it about a millisecond when each starts with a syscall or two; 32 gave
  // the shortest heartbeat gaps of 16, 32, 64 and 128 in the burst test.
  static constexpr unsigned max_unstarted = 32;
  static constexpr clock::duration time_slice = std::chrono::milliseconds(1);
  backlog_queue backlog_{max_unstarted};  // new fibers not admitted to ready_ yet
  context* preempted_ = nullptr;  // ended its slice in spawn; the loop queues it again
  unsigned unstarted_ = 0;     // fibers in ready_ that have never run
  unsigned spawn_ticks_ = 0;   // spawns, for spawn_checkpoint's every-16th check
  std::uint64_t fiber_ids_next_ = 0;  // take_fiber_id's block: [next, end)
  std::uint64_t fiber_ids_end_ = 0;
  std::uint64_t slice_switches_ = ~std::uint64_t{0};  // switches_ at the last check
  clock::time_point slice_start_ = clock::time_point::max();  // max: not timed yet

  std::mutex tasks_mu_;
  std::vector<unique_function> tasks_;
  std::atomic<bool> have_tasks_{false};
  // Set from any thread by notify(), cleared by the loop: it has something to do.
  std::atomic<bool> loop_pending_{false};

  fiber_state* live_ = nullptr;
  clock::time_point coarse_now_ = clock::now();
  std::atomic<std::size_t> alive_{0};  // live fibers; written by this thread, read by any
  std::atomic<std::uint64_t> spawned_{0};
  std::atomic<std::uint64_t> switches_{0};
  std::atomic<std::uint64_t> parks_{0};
  std::atomic<std::uint64_t> polls_{0};
  std::atomic<std::uint64_t> events_{0};
  std::atomic<bool> idle_{false};
  std::atomic<int> cpu_{-1};  // written by this thread only when it changes; read by any
  blocked_report report_;
  bool stop_requested_ = false;
  bool stopping_ = false;
  clock::time_point stop_started_;
  bool stop_warned_ = false;

  std::thread thread_;
};

/// The calling thread's I/O thread; throws std::logic_error naming `what` on other threads.
inline io_thread& require_io_thread(const char* what) {
  io_thread* t = io_thread::current();
  if (t == nullptr) [[unlikely]] throw_not_io_thread(what);
  return *t;
}

/// The calling fiber's I/O thread, for waits that park a fiber: std::logic_error naming
/// `what` on other threads and on an I/O thread's loop (a posted task).
inline io_thread& require_fiber(const char* what) {
  io_thread& t = require_io_thread(what);
  if (t.running_fiber() == nullptr) [[unlikely]] {
    throw std::logic_error(std::string(what) + ": must be called on a fiber, not a posted task");
  }
  return t;
}

}  // namespace fibers::detail
