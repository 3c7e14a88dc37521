// lib/runtime/io_thread.cpp
#include "runtime/io_thread.hpp"

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <future>
#include <string>

#include <boost/fiber/operations.hpp>

#include "runtime/fiber_state.hpp"
#include "runtime/overflow_guard.hpp"
#include "runtime/reactor_algorithm.hpp"
#include "runtime/waiter.hpp"

namespace fibers::detail {

thread_local io_thread* io_thread::current_ __attribute__((tls_model("initial-exec"))) = nullptr;

io_thread::io_thread(runtime* owner, std::size_t index, std::size_t stack_size, bool stack_canary)
    : owner_(owner),
      index_(index),
      stack_size_(stack_size),
      reactor_(reactor::create()),
      stack_canary_(stack_canary),
      stacks_(std::make_shared<stack_pool>(stack_size, this, stack_canary)) {}

const std::shared_ptr<stack_pool>& io_thread::stacks(std::size_t size) {
  if (size == 0) return stacks_;
  const std::size_t rounded = round_to_pages(size);
  if (rounded == stacks_->stack_size()) return stacks_;
  for (auto& p : other_stacks_) {
    if (p->stack_size() == rounded) return p;
  }
  auto pool = std::make_shared<stack_pool>(rounded, this, stack_canary_);
  std::lock_guard lk(stacks_mu_);
  return other_stacks_.emplace_back(std::move(pool));
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
    sanitizer_thread_main(main_san_);
    install_overflow_guard();
    boost::fibers::use_scheduling_algorithm<reactor_algorithm>(this);
    running_ = boost::fibers::context::active();  // the thread's main context
    ready.set_value();
    main();
  });
  started.get();
}

void io_thread::stop() {
  if (!thread_.joinable()) return;
  post([this] {
    stop_requested_ = true;
    if (stop_waiter_ != nullptr) stop_waiter_->fire(wake_reason::ready);
  });
  thread_.join();
}

void io_thread::main() noexcept {
  {
    waiter w;
    stop_waiter_ = &w;
    if (!stop_requested_) park(w, clock::time_point::max(), false);
    stop_waiter_ = nullptr;
  }
  // Shutdown: every fiber still alive is canceled; its blocking calls fail with
  // errc::canceled and it unwinds. A fiber that swallows cancellation and keeps waiting is
  // canceled again each round, and named on stderr after a while.
  stopping_ = true;
  const auto started = clock::now();
  bool warned = false;
  while (live_count() > 0) {
    cancel_all();
    waiter w;
    park(w, clock::now() + std::chrono::milliseconds(2), false);
    if (!warned && clock::now() - started > std::chrono::seconds(5)) {
      warned = true;
      std::fprintf(stderr, "libfibers: runtime shutdown waits for %zu fiber(s) that ignore cancellation:",
                   live_count());
      for (fiber_state* st = live_; st != nullptr; st = st->next_live) {
        std::fprintf(stderr, " '%s'", st->display_name().c_str());
      }
      std::fprintf(stderr, "\n");
    }
  }
  {
    std::lock_guard lk(registry_mu());
    auto& r = registry();
    r.erase(std::remove(r.begin(), r.end(), this), r.end());
  }
  remove_overflow_guard();
  // Returning ends the thread; Boost's thread-local scheduler then runs its dispatcher once
  // more to release terminated fibers.
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

sanitizer_context& io_thread::sanitizer_of(boost::fibers::context* ctx) noexcept {
  if (auto* st = static_cast<fiber_state*>(ctx->get_properties())) return st->san;
  if (ctx->is_context(boost::fibers::type::dispatcher_context)) return dispatcher_san_;
  return main_san_;
}

void io_thread::make_ready(boost::fibers::context* ctx) noexcept { algo_->awakened(ctx); }

void io_thread::expire_timers(clock::time_point now) noexcept {
  if (timers_.empty()) return;
  if (now == clock::time_point::min()) now = clock::now();
  coarse_now_ = now;
  while (timer* t = timers_.pop_due(now)) t->w->fire(wake_reason::timeout);
}

void io_thread::poll_reactor(clock::duration timeout) noexcept {
  const bool blocking = timeout != clock::duration::zero();
  if (blocking) idle_.store(true, std::memory_order_relaxed);
  const int events = reactor_->poll(timeout);
  if (blocking) idle_.store(false, std::memory_order_relaxed);
  // A consumed wake-up means cross-thread work may sit in Boost's remote-ready queue (drained
  // only by the dispatcher): make the next fast park fall back to it.
  if (reactor_->take_wake()) dispatcher_pending_ = true;
  bump(events_, static_cast<std::uint64_t>(events));
  bump(polls_);
  coarse_now_ = clock::now();
  expire_timers(coarse_now_);  // the clock was just read: no second read
}

clock::duration io_thread::timeout_until(clock::time_point until) const noexcept {
  const auto next = std::min(until, timers_.next());
  if (next == clock::time_point::max()) return clock::duration(-1);
  return std::max(clock::duration::zero(), next - clock::now());
}

void io_thread::on_dispatch(bool have_ready) noexcept {
  drain_tasks();
  dispatcher_pending_ = false;
  // With fibers always ready, suspend_until is never reached: look at the timers on every
  // dispatcher round (one clock read, only when timers are armed) and at the reactor every 32
  // rounds, so due deadlines and ready sockets are not starved by busy fibers.
  if (have_ready) {
    if ((++dispatch_ticks_ & 31u) == 0) poll_reactor(clock::duration::zero());
    else expire_timers();
  }
}

bool io_thread::fast_park(boost::fibers::context* self) noexcept {
  // Only when the dispatcher's next move would be exactly this epoll_wait: it is the one
  // ready context, and it has no housekeeping (tasks, Boost remote wakes, fibers to release).
  if (dispatcher_pending_ || have_tasks_.load(std::memory_order_relaxed) || !algo_->only_dispatcher_ready()) {
    return false;
  }
  poll_reactor(timeout_until(clock::time_point::max()));
  if (self->ready_is_linked()) {
    // Woken by this very poll: it never left. Take it out of the ready queue again.
    self->ready_unlink();
    return true;
  }
  return false;  // someone else is ready now: switch to them (the dispatcher is skipped)
}

void io_thread::idle_wait(clock::time_point until) noexcept {
  drain_tasks();
  if (algo_->has_ready_fibers()) return;  // a task spawned or woke a fiber
  poll_reactor(timeout_until(until));
  drain_tasks();
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
