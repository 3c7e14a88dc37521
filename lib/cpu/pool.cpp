// lib/cpu/pool.cpp - cpu::pool: worker threads, finding work (own deque, injection queue,
// stealing) and sleeping without lost wake-ups (see pool_impl.hpp for the protocol).
#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>

#include "cpu/park_word.hpp"
#include "cpu/pool_impl.hpp"
#include "runtime/io_thread.hpp"

namespace fibers::cpu {
namespace detail {
namespace {

thread_local worker* tl_worker = nullptr;

constexpr int spin_rounds = 32;  // find_task attempts before sleeping (the last few yield)

std::uint64_t next_random(std::uint64_t& s) noexcept {  // xorshift64
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

[[noreturn]] void fatal(const char* message) noexcept {
  std::fprintf(stderr, "libfibers: %s\n", message);
  std::fflush(stderr);
  std::abort();
}

}  // namespace

worker* current_worker() noexcept { return tl_worker; }

void submit_task_threw() noexcept {
  std::string what = "unknown exception";
  try {
    throw;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  std::fprintf(stderr, "libfibers: exception escaped a cpu::pool::submit() task: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

std::size_t auto_grain(std::size_t n, const pool& p) noexcept {
  return std::max<std::size_t>(1, n / (8 * p.size()));
}

pool_impl::pool_impl(pool& s, std::size_t threads) : self(s), size(threads) {
  workers.resize(threads + max_spares);  // never resized again: thieves index it without a lock
  for (std::size_t i = 0; i < threads; ++i) workers[i] = std::make_unique<worker>(*this, i);
  started_.store(threads, std::memory_order_relaxed);
  for (std::size_t i = 0; i < max_guests; ++i) guests[i] = std::make_unique<worker>(*this, workers.size() + i);
}

void pool_impl::start_thread(worker& w) {
  worker* wp = &w;
  w.thread = std::thread([this, wp] { worker_main(*wp); });
}

void pool_impl::start() {
  // The first `size` workers exist before any thread runs; compensate() adds the spares.
  try {
    for (std::size_t i = 0; i < size; ++i) start_thread(*workers[i]);
  } catch (...) {
    stop();
    throw;
  }
}

void pool_impl::stop() noexcept {
  worker* self_worker = tl_worker;
  if (self_worker != nullptr && &self_worker->owner == this) {
    fatal("cpu::pool destroyed from one of its own workers (it would wait for itself)");
  }
  stopping_.store(true, std::memory_order_seq_cst);
  worker* wake = nullptr;
  {
    std::lock_guard lk(idle_mu_);
    while (idle_head_ != nullptr) {
      worker* w = idle_head_;
      unlink_idle(*w);
      w->wake_next = wake;
      wake = w;
    }
  }
  while (wake != nullptr) {
    worker* next = wake->wake_next;
    signal(*wake);
    wake = next;
  }
  // Re-read started_ each time: a worker still running may start a spare (it has a higher
  // index than its starter, which is not joined yet).
  for (std::size_t i = 0; i < started_.load(std::memory_order_acquire); ++i) {
    if (workers[i]->thread.joinable()) workers[i]->thread.join();
  }
}

void pool_impl::compensate() noexcept {
  {
    std::lock_guard lk(idle_mu_);
    if (idle_head_ != nullptr) return;  // an idle worker will take the queued work
  }
  std::lock_guard lk(spare_mu_);
  const std::size_t n = started_.load(std::memory_order_relaxed);
  if (n == workers.size()) return;  // at the bound: the pool goes on with fewer threads
  try {
    workers[n] = std::make_unique<worker>(*this, n);
    start_thread(*workers[n]);
  } catch (...) {
    workers[n].reset();  // no thread: go on without a spare
    return;
  }
  started_.store(n + 1, std::memory_order_release);
}

void pool_impl::post(task* t) noexcept {
  worker* w = tl_worker;
  if (w != nullptr && &w->owner == this) {
    w->deque.push(t);
  } else {
    if (stopping_.load(std::memory_order_relaxed)) {
      fatal("cpu::pool: task submitted from outside the pool while the pool is being destroyed");
    }
    std::lock_guard lk(inject_mu_);
    if (inject_tail_ != nullptr) inject_tail_->next = t;
    else inject_head_ = t;
    inject_tail_ = t;
    injected_.fetch_add(1, std::memory_order_relaxed);
  }
  // Publish, then look for sleepers: pairs with the fence in park().
  store_load_barrier(barrier_);
  if (idle_workers_.load(std::memory_order_relaxed) != 0) wake_one();
}

task* pool_impl::take_injected() noexcept {
  // One task at a time, always the oldest: submissions from outside the pool start in
  // submission order (a batch moved to our deque would run newest first, as the owner pops
  // LIFO), so a chain of stages that wait on each other never starves its earliest stage.
  if (injected_.load(std::memory_order_relaxed) == 0) return nullptr;
  std::lock_guard lk(inject_mu_);
  task* first = inject_head_;
  if (first == nullptr) return nullptr;
  inject_head_ = first->next;
  if (inject_head_ == nullptr) inject_tail_ = nullptr;
  first->next = nullptr;
  injected_.fetch_sub(1, std::memory_order_relaxed);
  return first;
}

task* pool_impl::find_task(worker& w) noexcept {
  // Every 64th look starts at the injection queue, so a worker busy with a deep local
  // recursion does not starve submissions from I/O threads.
  if ((++w.ticks & 63) == 0) {
    if (task* t = take_injected()) return t;
  }
  if (task* t = w.deque.pop()) return t;
  if (task* t = take_injected()) return t;
  // Victims: the workers, then the guest slots while any is claimed.
  const std::size_t n = started_.load(std::memory_order_acquire);
  const std::size_t m = n + (guests_in_.load(std::memory_order_relaxed) != 0 ? max_guests : 0);
  if (m < 2) return nullptr;
  for (int round = 0; round < 4; ++round) {
    bool contended = false;
    const std::size_t start = static_cast<std::size_t>(next_random(w.rng) % m);
    for (std::size_t i = 0; i < m; ++i) {
      const std::size_t k = (start + i) % m;
      worker& victim = k < n ? *workers[k] : *guests[k - n];
      if (&victim == &w) continue;
      bool lost = false;
      if (task* t = victim.deque.steal(lost)) {
        // The victim has more: get another sleeper going too (wake chaining), so one wake-up
        // per burst of pushes is enough to spread the burst over every idle worker.
        if (victim.deque.maybe_nonempty()) {
          store_load_barrier(barrier_);
          if (idle_workers_.load(std::memory_order_relaxed) != 0) wake_one();
        }
        return t;
      }
      contended = contended || lost;
    }
    if (!contended) break;  // everything looked empty; a lost race is worth another round
  }
  return nullptr;
}

task* pool_impl::find_task_spinning(worker& w) noexcept {
  for (int i = 0; i < spin_rounds; ++i) {
    if (owed_.load(std::memory_order_relaxed) != 0 && !w.deque.maybe_nonempty()) return nullptr;  // to pay
    if (task* t = find_task(w)) return t;
    if (i < spin_rounds - 4) {
      for (int k = 0; k < 16; ++k) cpu_relax();
    } else {
      std::this_thread::yield();  // on a loaded machine, let the thread with the work run
    }
  }
  return nullptr;
}

bool pool_impl::work_visible() const noexcept {
  if (injected_.load(std::memory_order_relaxed) != 0) return true;
  const std::size_t n = started_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < n; ++i) {
    if (workers[i]->deque.maybe_nonempty()) return true;
  }
  if (guests_in_.load(std::memory_order_relaxed) != 0) {
    for (const auto& g : guests) {
      if (g->deque.maybe_nonempty()) return true;
    }
  }
  return false;
}

void pool_impl::link_idle(worker& w, const void* key) noexcept {
  w.waiting_for = key;
  w.idle_prev = nullptr;
  w.idle_next = idle_head_;
  if (idle_head_ != nullptr) idle_head_->idle_prev = &w;
  idle_head_ = &w;
  w.idle = true;
  idle_workers_.fetch_add(1, std::memory_order_relaxed);
}

void pool_impl::unlink_idle(worker& w) noexcept {
  if (w.idle_prev != nullptr) w.idle_prev->idle_next = w.idle_next;
  else idle_head_ = w.idle_next;
  if (w.idle_next != nullptr) w.idle_next->idle_prev = w.idle_prev;
  w.idle_prev = w.idle_next = nullptr;
  w.waiting_for = nullptr;
  w.idle = false;
  idle_workers_.fetch_sub(1, std::memory_order_relaxed);
}

worker* pool_impl::first_idle_for_nothing() const noexcept {
  worker* x = idle_head_;
  while (x != nullptr && x->waiting_for != nullptr) x = x->idle_next;
  return x;
}

void pool_impl::signal(worker& w) noexcept {
  w.signal.store(1, std::memory_order_release);
  unpark_one(w.signal);  // pool-owned word: valid even if the worker is already awake
}

void pool_impl::park(worker& w, task_group* g) noexcept {
  w.signal.store(0, std::memory_order_relaxed);  // no wake-up can be pending: see pool_impl.hpp
  {
    std::lock_guard lk(idle_mu_);
    link_idle(w, g);
    if (g != nullptr &&
        (g->state_.fetch_or(task_group::waiting_bit, std::memory_order_acq_rel) & task_group::count_mask) == 0) {
      unlink_idle(w);
      return;
    }
  }
  // Registered, then look again: pairs with the fence in post() (store-buffering).
  store_load_barrier(barrier_);
  if (work_visible() || (g == nullptr && stopping_.load(std::memory_order_relaxed))) {
    std::lock_guard lk(idle_mu_);
    if (w.idle) {
      unlink_idle(w);
      return;
    }
    // Someone unlinked us already and is about to signal: consume that wake-up below.
  }
  while (w.signal.load(std::memory_order_acquire) == 0) park_on(w.signal, 0);
}

void pool_impl::wake_one() noexcept {
  worker* target = nullptr;
  {
    std::lock_guard lk(idle_mu_);
    // Prefer a worker that is only idle over one sleeping in task_group::wait(), which would
    // return later for having picked up unrelated work.
    target = first_idle_for_nothing();
    if (target == nullptr) target = idle_head_;
    if (target == nullptr) return;
    unlink_idle(*target);
  }
  signal(*target);
}

void pool_impl::group_done(const void* key) noexcept {
  worker* wake = nullptr;
  fibers::detail::wake_batch external;  // schedules after the unlock (declared before lk)
  {
    std::lock_guard lk(idle_mu_);
    for (worker* x = idle_head_; x != nullptr;) {
      worker* next = x->idle_next;
      if (x->waiting_for == key) {
        unlink_idle(*x);
        x->wake_next = wake;
        wake = x;
      }
      x = next;
    }
    for (fibers::detail::wait_node* n = external_.front(); n != nullptr;) {
      fibers::detail::wait_node* next = n->next;
      if (n->data == key) {
        external_.remove(*n);
        if (n->w->claim(fibers::detail::wake_reason::ready)) external.add(n);
      }
      n = next;
    }
  }
  while (wake != nullptr) {
    worker* next = wake->wake_next;  // read before the signal: then it may park again
    signal(*wake);
    wake = next;
  }
}

void pool_impl::install_park_hook(worker& w) noexcept {
  tl_worker = &w;
  w.hook.park = [](void* ctx, fibers::detail::waiter& wt, clock::time_point until, bool help) noexcept {
    auto* self_worker = static_cast<worker*>(ctx);
    return self_worker->owner.wait_on_worker(*self_worker, wt, until, help);
  };
  w.hook.ctx = &w;
  fibers::detail::set_thread_park_hook(&w.hook);
}

void pool_impl::worker_main(worker& w) noexcept {
  install_park_hook(w);
  const std::string name = "fibers-cpu-" + std::to_string(w.index);
  ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
  for (;;) {
    // A guest took a place and no idle worker gave one up: the first worker between tasks does.
    if (owed_.load(std::memory_order_relaxed) != 0 && pay_guest_debt(w)) continue;
    if (task* t = find_task_spinning(w)) {
      t->invoke(t);
      continue;
    }
    if (owed_.load(std::memory_order_relaxed) != 0) continue;  // find_task_spinning stopped to pay
    // Leave only when stopping and nothing is queued anywhere: tasks still running elsewhere
    // push only onto their own worker's deque, which that worker drains itself.
    if (stopping_.load(std::memory_order_acquire) && !work_visible()) break;
    park(w, nullptr);
  }
  fibers::detail::set_thread_park_hook(nullptr);
  tl_worker = nullptr;
}

worker* pool_impl::join_as_guest() noexcept {
  // Only a plain thread: an I/O thread must not compute (its fibers park instead), and a worker
  // of another pool keeps its own record.
  if (tl_worker != nullptr || fibers::detail::io_thread::current() != nullptr) return nullptr;
  if (stopping_.load(std::memory_order_relaxed)) return nullptr;
  for (const auto& slot : guests) {
    bool free = false;
    if (slot->claimed.load(std::memory_order_relaxed) ||
        !slot->claimed.compare_exchange_strong(free, true, std::memory_order_acquire)) {
      continue;
    }
    guests_in_.fetch_add(1, std::memory_order_relaxed);  // before our first push (see find_task)
    {
      std::lock_guard lk(idle_mu_);
      if (worker* idle = first_idle_for_nothing()) {
        unlink_idle(*idle);  // nobody signals it now: it sleeps on in our place
        idle->lent_next = lent_head_;
        lent_head_ = idle;
      } else {
        owed_.fetch_add(1, std::memory_order_relaxed);  // the next worker done with a task pays
      }
    }
    install_park_hook(*slot);
    return slot.get();
  }
  return nullptr;
}

void pool_impl::leave_as_guest(worker& g) noexcept {
  // Tasks still on our deque (fire-and-forget ones that our tasks submitted): run them here,
  // so that a free slot is always empty and thieves may skip the slots when none is claimed.
  while (task* t = g.deque.pop()) t->invoke(t);
  fibers::detail::set_thread_park_hook(nullptr);
  tl_worker = nullptr;
  {
    std::lock_guard lk(idle_mu_);
    if (owed_.load(std::memory_order_relaxed) != 0) {
      owed_.fetch_sub(1, std::memory_order_relaxed);  // a place not given yet: nobody to give back
    } else {
      // Give the place back: the lent worker (non-null: lent workers + owed_ == guests inside,
      // we among them) goes back to the idle registry, still asleep, to be woken as any idle
      // worker when there is work: back-to-back loops of one thread then cost it no wake-up.
      worker* lent = lent_head_;
      lent_head_ = lent->lent_next;
      lent->lent_next = nullptr;
      link_idle(*lent, nullptr);
    }
  }
  guests_in_.fetch_sub(1, std::memory_order_relaxed);
  g.claimed.store(false, std::memory_order_release);
  // The lent worker skipped the last look an idle worker takes after registering: take it for
  // it, as a publisher does (work queued while it was lent woke nobody if nobody was idle).
  store_load_barrier(barrier_);
  if (idle_workers_.load(std::memory_order_relaxed) != 0 && work_visible()) wake_one();
}

bool pool_impl::pay_guest_debt(worker& w) noexcept {
  if (w.deque.maybe_nonempty()) return false;  // its own tasks first
  w.signal.store(0, std::memory_order_relaxed);  // no wake-up is pending here (see park)
  {
    std::lock_guard lk(idle_mu_);
    if (owed_.load(std::memory_order_relaxed) == 0) return false;
    owed_.fetch_sub(1, std::memory_order_relaxed);
    w.lent_next = lent_head_;
    lent_head_ = &w;
  }
  while (w.signal.load(std::memory_order_acquire) == 0) park_on(w.signal, 0);
  return true;
}

pool_guest::pool_guest(pool& p) noexcept : impl_(p.impl_.get()), slot_(impl_->join_as_guest()) {}

pool_guest::~pool_guest() {
  if (slot_ != nullptr) impl_->leave_as_guest(*slot_);
}

}  // namespace detail

pool::pool(std::size_t threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  impl_ = std::make_unique<detail::pool_impl>(*this, threads);
  impl_->start();
}

pool::~pool() { impl_->stop(); }

std::size_t pool::size() const noexcept { return impl_->size; }

void pool::post(detail::task* t) noexcept { impl_->post(t); }

pool* pool::current() noexcept {
  detail::worker* w = detail::current_worker();
  return w != nullptr ? &w->owner.self : nullptr;
}

pool& default_pool() {
  static pool p;
  return p;
}

pool& current_pool() {
  if (pool* p = pool::current()) return *p;
  return default_pool();
}

}  // namespace fibers::cpu
