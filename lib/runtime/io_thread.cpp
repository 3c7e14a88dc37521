// lib/runtime/io_thread.cpp
#include "runtime/io_thread.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <future>
#include <string>

#include "reactor/completion.hpp"
#include "runtime/fiber_state.hpp"
#include "runtime/overflow_guard.hpp"
#include "runtime/waiter.hpp"

namespace fibers::detail {

constinit thread_local io_thread* io_thread::current_ __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {
std::uint64_t next_thread_id() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

io_thread::io_thread(runtime* owner, std::size_t index, std::size_t stack_size, bool stack_canary,
                     bool ring_sockets)
    : owner_(owner),
      id_(next_thread_id()),
      index_(index),
      stack_size_(stack_size),
      reactor_(reactor::create()),
      stack_canary_(stack_canary),
      want_ring_sockets_(ring_sockets),
      stacks_(stack_pool::create(stack_size, id_, stack_canary)) {}

stack_pool& io_thread::stacks(std::size_t size) {
  if (size == 0) return *stacks_;
  const std::size_t rounded = round_to_pages(size);
  if (rounded == stacks_->stack_size()) return *stacks_;
  for (auto& p : other_stacks_) {
    if (p->stack_size() == rounded) return *p;
  }
  owned_stack_pool pool = stack_pool::create(rounded, id_, stack_canary_);
  std::lock_guard lk(stacks_mu_);
  return *other_stacks_.emplace_back(std::move(pool));
}

io_thread::~io_thread() {
  if (thread_.joinable()) stop();
}

void io_thread::start() {
  std::promise<void> ready;
  auto started = ready.get_future();
  thread_ = std::thread([this, &ready] {
    std::string name = "fibers-io-" + std::to_string(index_);
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    current_ = this;
    {
      std::lock_guard lk(registry_mu());
      registry().push_back(this);
    }
    sanitizer_thread_main(loop_ctx_.san);
    install_overflow_guard();
    running_ = &loop_ctx_;
    cpu_.store(::sched_getcpu(), std::memory_order_relaxed);
    // DEFER_TASKRUN binds the ring to the thread that sets it up: this one.
    if (want_ring_sockets_) socket_ring_ = uring::start_driving(*this);
    ready.set_value();
    main();
  });
  started.get();
}

void io_thread::stop() {
  if (!thread_.joinable()) return;
  post([this] { stop_requested_ = true; });
  thread_.join();
}

void io_thread::main() noexcept {
  clock::time_point next_shutdown_step = clock::time_point::max();
  for (;;) {
    loop_pending_.store(false, std::memory_order_relaxed);
    drain_tasks();
    remote_.drain_into(ready_);
    if (stop_requested_) {
      if (live_count() == 0) break;
      if (!stopping_ || clock::now() >= next_shutdown_step) next_shutdown_step = shutdown_step();
    }
    picks_since_loop_ = 0;
    if (!ready_.empty() || !backlog_.empty() || preempted_ != nullptr) {
      // Fibers are always ready under load, so the blocking wait below is not reached: look at
      // the timers on every round (one clock read, only when timers are armed) and at the
      // reactor every 128 rounds (2,048 switches: a syscall here costs ~1 µs), so due deadlines
      // and ready sockets are not starved.
      if ((++loop_rounds_ & 127u) == 0) poll_reactor(clock::duration::zero());
      else expire_timers();
      // What a timer or the reactor woke goes first; then a fiber whose slice ended, and new
      // fibers from the backlog, a batch once the last batch has all started (batches rather
      // than a few each round: a fiber that joins them parks once per batch).
      if (preempted_ != nullptr) {
        ready_.push_back(preempted_);
        preempted_ = nullptr;
      }
      if (unstarted_ == 0 && !backlog_.empty()) admit_new();
      // Not empty: a backlog left behind means never-run fibers in ready_ (unstarted_ > 0).
      switch_to(&loop_ctx_, ready_.pop_front());  // back here when a fiber picks the loop
      continue;
    }
    poll_reactor(timeout_until(next_shutdown_step));
  }
  // No fiber is left, so no operation is in flight on a completion source (each waits for its
  // completion): the io_uring ring goes with the thread, while the reactor it is registered in
  // is still there.
  socket_ring_ = nullptr;
  reactor_->completions.reset();
  // A thread that woke one of our (now ended) fibers may still be on its way out of notify().
  while (remote_wakers_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  {
    std::lock_guard lk(registry_mu());
    auto& r = registry();
    r.erase(std::remove(r.begin(), r.end(), this), r.end());
  }
  remove_overflow_guard();
}

clock::time_point io_thread::shutdown_step() noexcept {
  // Every fiber still alive is canceled; its blocking calls fail with errc::canceled and it
  // unwinds. A fiber that swallows cancellation and keeps waiting is canceled again each
  // step, and named on stderr after a while.
  const auto now = clock::now();
  if (!stopping_) {
    stopping_ = true;
    stop_started_ = now;
  }
  cancel_all();
  if (!stop_warned_ && now - stop_started_ > std::chrono::seconds(5)) {
    stop_warned_ = true;
    std::fprintf(stderr, "libfibers: runtime shutdown waits for %zu fiber(s) that ignore cancellation:",
                 live_count());
    for (fiber_state* st = live_; st != nullptr; st = st->next_live) {
      std::fprintf(stderr, " '%s'", st->display_name().c_str());
    }
    std::fprintf(stderr, "\n");
  }
  return now + std::chrono::milliseconds(2);
}

std::mutex& io_thread::registry_mu() {
  static std::mutex mu;
  return mu;
}

std::vector<io_thread*>& io_thread::registry() {
  static std::vector<io_thread*> threads;
  return threads;
}

thread_stats io_thread::stats() const noexcept {
  thread_stats s;
  s.fibers_alive = alive_.load(std::memory_order_relaxed);
  s.fibers_spawned = spawned_.load(std::memory_order_relaxed);
  s.switches = switches_.load(std::memory_order_relaxed);
  s.parks = parks_.load(std::memory_order_relaxed);
  s.reactor_polls = polls_.load(std::memory_order_relaxed);
  s.reactor_events = events_.load(std::memory_order_relaxed);
  s.stacks_carved = stacks_->carved();
  std::lock_guard lk(stacks_mu_);
  for (auto& p : other_stacks_) s.stacks_carved += p->carved();
  return s;
}

void io_thread::post(unique_function task) {
  {
    std::lock_guard lk(tasks_mu_);
    tasks_.push_back(std::move(task));
    have_tasks_.store(true, std::memory_order_release);
  }
  notify();
}

void io_thread::drain_tasks() noexcept {
  if (!have_tasks_.load(std::memory_order_acquire)) return;
  std::vector<unique_function> batch;
  {
    std::lock_guard lk(tasks_mu_);
    batch.swap(tasks_);
    have_tasks_.store(false, std::memory_order_relaxed);
  }
  for (auto& task : batch) {
    try {
      task();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "libfibers: task posted to I/O thread %zu failed: %s\n", index_, e.what());
    } catch (...) {
      std::fprintf(stderr, "libfibers: task posted to I/O thread %zu failed\n", index_);
    }
  }
}

void io_thread::expire_timers(clock::time_point now) noexcept {
  if (timers_.empty()) return;
  if (now == clock::time_point::min()) now = clock::now();
  coarse_now_ = now;
  while (timer* t = timers_.pop_due(now)) {
    if (t->expire != nullptr) t->expire(*t);
    else t->w->fire(wake_reason::timeout);
  }
}

void io_thread::poll_reactor(clock::duration timeout) noexcept {
  const bool blocking = timeout != clock::duration::zero();
  // Work a completion source (io_uring) queued while fibers parked goes to the kernel in one
  // batch, before the wait that may then report its completions.
  completion_source* c = reactor_->completions.get();
  const bool drives = c != nullptr && c->drives();
  if (c != nullptr && !drives) c->before_poll();
  if (blocking) idle_.store(true, std::memory_order_relaxed);
  // A ring that drives the thread waits for its completions and the reactor's fd in one call.
  const int events = drives ? c->drive(*reactor_, timeout) : reactor_->poll(timeout);
  if (blocking) idle_.store(false, std::memory_order_relaxed);
  // A consumed wake-up means cross-thread work may wait for the loop (tasks, remote wakes):
  // make the next fast park fall back to it.
  if (reactor_->take_wake()) loop_pending_.store(true, std::memory_order_relaxed);
  bump(events_, static_cast<std::uint64_t>(events));
  bump(polls_);
  // Where this thread runs, for runtime::thread_on_cpu (glibc reads it from the rseq area:
  // no system call). Stored only when it changes, so readers' cache lines stay shared.
  if (const int cpu = ::sched_getcpu(); cpu != cpu_.load(std::memory_order_relaxed)) {
    cpu_.store(cpu, std::memory_order_relaxed);
  }
  coarse_now_ = clock::now();
  expire_timers(coarse_now_);  // the clock was just read: no second read
}

clock::duration io_thread::timeout_until(clock::time_point until) const noexcept {
  const auto next = std::min(until, timers_.next());
  if (next == clock::time_point::max()) return clock::duration(-1);
  return std::max(clock::duration::zero(), next - clock::now());
}

bool io_thread::fast_park(context* self) noexcept {
  // Only when the loop's next move would be exactly this wait: nothing else is ready, and the
  // loop has no work (tasks, remote wakes). Not during shutdown, whose steps (re-cancel, name
  // stragglers) are timed by the loop, not by the timer heap.
  if (!ready_.empty() || loop_pending_.load(std::memory_order_relaxed) || stopping_) return false;
  poll_reactor(timeout_until(clock::time_point::max()));
  if (ready_.front() == self) {
    // Woken first by this very poll: it never left. Take it out of the ready queue again.
    ready_.pop_front();
    return true;
  }
  return false;  // others are ready first (self, if woken, stays queued behind them)
}

void io_thread::admit_new() noexcept { unstarted_ += backlog_.pop_batch_into(ready_); }

void io_thread::end_slice_if_due() noexcept {
  if (!running_->is_fiber) return;  // a task on the loop spawns: the loop is running anyway
  // A fiber that has switched since the last check needs no slice (the loop runs at least
  // every 16 switches): no clock read, so spawn+join pays nothing here. Otherwise the slice
  // is timed from the first check that found no switch, one clock read per 16 spawns.
  const std::uint64_t switches = switches_.load(std::memory_order_relaxed);
  if (switches != slice_switches_) {
    slice_switches_ = switches;
    slice_start_ = clock::time_point::max();
    return;
  }
  const auto now = clock::now();
  if (slice_start_ == clock::time_point::max()) {
    slice_start_ = now;
    return;
  }
  if (now - slice_start_ < time_slice) return;
  // Straight to the loop (a plain yield could run 16 fibers before it), which queues the
  // fiber again behind the fibers its timers and reactor poll wake.
  preempted_ = running_;
  switch_to(running_, &loop_ctx_);
}

context* io_thread::pick_next() noexcept {
  // The loop runs when nothing else is ready, when it has work, and at least every 16 picks.
  if (ready_.empty() || loop_pending_.load(std::memory_order_relaxed) || ++picks_since_loop_ > 16) {
    return &loop_ctx_;
  }
  return ready_.pop_front();
}

void io_thread::suspend(context* self) noexcept {
  context* next = pick_next();
  if (next == self) return;  // a yield with nobody else ready, or woken before it switched
  switch_to(self, next);
}

void io_thread::switch_to(context* self, context* next) noexcept {
  // The fiber switching away is checked for stack overflow while its frames are still there.
  if (self->is_fiber) check_stack(*static_cast<fiber_state*>(self));
  running_ = next;
  bump(switches_);
  // An ended fiber (exit_running) never runs again.
  if constexpr (sanitizers_on) sanitizer_switch_out(self->san, next->san, self == static_cast<context*>(ended_));
  after_resume(jump_context(next->fctx, self));
}

void io_thread::after_resume(boost::context::detail::transfer_t from) noexcept {
  static_cast<context*>(from.data)->fctx = from.fctx;
  if constexpr (sanitizers_on) sanitizer_switch_in(running_->san);
  if (ended_ != nullptr) release_ended();
}

void io_thread::release_ended() noexcept {
  // The ended fiber's stack is no longer in use: drop the fiber's own reference on it (the
  // handle may still hold one).
  fiber_state* st = ended_;
  ended_ = nullptr;
  st->unref_ended();
}

// Inlined into fiber_entry, which was entered without a call (make_fcontext's trampoline jumps
// to it), and its switch_to is a tail call: the fiber ends with no entry of its own on the CPU's
// return predictor, and its jump returns where the predictor says, into the resumed side's
// switch_to (switch.cpp). switch_to does not return here: nothing resumes an ended fiber.
[[gnu::always_inline]] inline void io_thread::exit_running(fiber_state* self) noexcept {
  context* next = pick_next();  // never self: an ending fiber is not queued
  ended_ = self;
  switch_to(self, next);
}

void io_thread::fiber_entry(boost::context::detail::transfer_t from) noexcept {
  io_thread* t = current_;
  t->after_resume(from);
  // Once the admitted new fibers have all started, the loop admits the next batch: make the
  // next pick go to the loop (and keep a fast park from sleeping past the backlog).
  if (--t->unstarted_ == 0 && !t->backlog_.empty()) {
    t->loop_pending_.store(true, std::memory_order_relaxed);
  }
  auto* st = static_cast<fiber_state*>(t->running_);
  st->run();
  t->exit_running(st);
}

void io_thread::refill_fiber_ids() noexcept {
  // 1,024 ids a block: a 64-bit counter does not run out however many threads come and go.
  static std::atomic<std::uint64_t> next_block{1};  // 0 means "no fiber"
  constexpr std::uint64_t block = 1024;
  fiber_ids_next_ = next_block.fetch_add(block, std::memory_order_relaxed);
  fiber_ids_end_ = fiber_ids_next_ + block;
}

void io_thread::add_fiber(fiber_state* st) noexcept {
  st->next_live = live_;
  st->prev_live = nullptr;
  if (live_ != nullptr) live_->prev_live = st;
  live_ = st;
  alive_.store(live_count() + 1, std::memory_order_relaxed);  // one writer: this thread
  bump(spawned_);
}

void io_thread::remove_fiber(fiber_state* st) noexcept {
  if (st->prev_live != nullptr) st->prev_live->next_live = st->next_live;
  else live_ = st->next_live;
  if (st->next_live != nullptr) st->next_live->prev_live = st->prev_live;
  st->prev_live = st->next_live = nullptr;
  alive_.store(live_count() - 1, std::memory_order_relaxed);
}

void io_thread::cancel_all() noexcept {
  for (fiber_state* st = live_; st != nullptr;) {
    fiber_state* next = st->next_live;  // cancel only schedules; the list is stable here
    st->cancel_here();
    st = next;
  }
}

}  // namespace fibers::detail
