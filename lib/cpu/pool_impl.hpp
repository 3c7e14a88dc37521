// lib/cpu/pool_impl.hpp - the inside of cpu::pool: workers, their deques, the injection queue
// and the idle registry through which sleeping workers and waiting threads are woken.
//
// Sleeping without lost wake-ups. A worker that found nothing to run registers in the idle
// registry (under idle_mu_, bumping idle_workers_), issues a seq_cst fence, and looks at every
// queue once more before it sleeps on its own futex word. Whoever publishes work (a deque push
// or an injection) issues a seq_cst fence after publishing and then reads idle_workers_; if it
// is non-zero it takes one worker out of the registry and wakes it. The two fences make this a
// store-buffering (Dekker) pair: either the publisher sees the registration, or the worker's
// last look sees the work (store_load_barrier in park_word.hpp is the fence). A worker is woken
// only by whoever unlinked it from the registry, and, if its last look found work after all,
// it unlinks itself or, if someone beat it to it, waits for that wake-up before going on: so a
// wake-up is never left pending for a later sleep. Stopping uses the same registry: stop()
// sets the flag, then wakes everyone registered; a worker registering later sees the flag.
//
// task_group completion. A group's state is its count of unfinished tasks plus a "waiting" bit
// that a waiter sets (with fetch_or, under idle_mu_, after registering itself) before it
// sleeps. The task that brings the count to zero sees the bit in the value its fetch_sub
// returned and then wakes the registered waiters of that group, identified by its address
// only: it never touches the group after the decrement, because the waiter may return from
// wait() and destroy the group at once.
//
// Waiting inside a task (issue 12). Every libfibers wait on a plain thread goes through
// detail::park, which on our workers calls wait_on_worker (the thread's park hook):
// - future waits (future::get/wait/wait_until, when_all, when_any) help: they run pool tasks
//   (own deque first, newest first, so usually the very task awaited) until the future is
//   ready, nested on the worker's stack, at most max_help_depth levels deep;
// - when a helping wait finds nothing to run, when it is nested too deep, and for every other
//   wait (channel, mutex, latch, ...), the worker blocks on the waiter's futex and the pool
//   compensates, as Go's runtime does for a thread in a system call: if no worker is idle
//   (registered in the idle registry) at that moment, a spare worker is started, so the
//   workers not blocked can always run the queued tasks. Spares are ordinary workers that
//   stay (sleeping when idle) until the pool is destroyed; at most max_spares are started.
//   `workers` has room for them from the start: thieves read the first `started_` entries.
//
// Guests (plain threads taking part in their own parallel loop; see cpu::pool). A pool has
// max_guests guest slots: worker records without a thread, which a plain thread claims for the
// length of a loop (tl_worker and the park hook point at the slot meanwhile). Thieves and the
// last look before sleeping scan the slots while any is claimed (guests_in_ is raised before
// the guest's first push, and a guest runs its deque empty before it leaves). Each guest takes
// one worker's place, so a pool runs at most size() threads on tasks: at joining it unlinks an
// idle worker (one waiting for nothing, not a task_group waiter) from the idle registry, which
// then sleeps on, not signalled, on the lent list; if none is idle it leaves a debt (owed_) that
// the next worker to finish a task pays by moving itself to the lent list and sleeping. Under
// idle_mu_, lent workers + owed_ == guests inside. Leaving cancels a debt if one is unpaid, else
// moves one lent worker back to the idle registry without waking it, then takes the last look
// for it (fence, then any visible work wakes an idle worker), as a publisher would.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "cpu/chase_lev.hpp"
#include "fibers/cpu.hpp"
#include "fibers/detail/wait_list.hpp"
#include "runtime/waiter.hpp"

namespace fibers::cpu::detail {

struct pool_impl;

struct worker {
  worker(pool_impl& o, std::size_t i) : owner(o), index(i), rng(0x9E3779B97F4A7C15ull * (i + 1)) {}

  pool_impl& owner;
  const std::size_t index;
  chase_lev_deque<task*> deque;
  std::atomic<std::uint32_t> signal{0};  // futex word: set to 1 by whoever unlinked us
  std::uint64_t rng;                     // victim selection (owner only)
  std::uint32_t ticks = 0;               // find_task calls, to look at injections regularly
  int help_depth = 0;                    // nested helping waits on this worker's stack
  fibers::detail::thread_park_hook hook;  // wait_on_worker, installed by worker_main
  std::thread thread;

  // Idle registry links, guarded by pool_impl::idle_mu_.
  const void* waiting_for = nullptr;  // the task_group a sleeping wait() is for, or nullptr
  worker* idle_prev = nullptr;
  worker* idle_next = nullptr;
  worker* wake_next = nullptr;
  worker* lent_next = nullptr;  // on pool_impl's lent list (idle_mu_)
  bool idle = false;

  std::atomic<bool> claimed{false};  // guest slots only: a plain thread is using this record
};

struct pool_impl {
  /// Spare workers a pool may start to stand in for blocked ones (see above).
  static constexpr std::size_t max_spares = 256;
  /// Helping waits nested deeper than this on one worker block instead (stack bound).
  static constexpr int max_help_depth = 128;
  /// Plain threads that can take part in the pool's loops at once (guest slots).
  static constexpr std::size_t max_guests = 4;

  pool_impl(pool& self, std::size_t threads);
  pool_impl(const pool_impl&) = delete;
  pool_impl& operator=(const pool_impl&) = delete;

  void start();
  /// Lets the workers drain every queue, then joins them.
  void stop() noexcept;

  /// Queues `t` (local deque on one of our workers, injection queue elsewhere), wakes a worker.
  void post(task* t) noexcept;

  /// Something to run for `w`: own deque, injections, then stealing. nullptr if none visible.
  task* find_task(worker& w) noexcept;
  /// find_task, spinning a little before giving up.
  task* find_task_spinning(worker& w) noexcept;

  /// Registers `w` as idle (waiting for new work or, if `g`, for g's completion), then sleeps
  /// unless work, stop or g's completion is already visible. Returns when woken or at once.
  void park(worker& w, task_group* g) noexcept;

  /// Wakes one idle worker if any (call after publishing work and a seq_cst fence).
  void wake_one() noexcept;
  /// Wakes every worker and external waiter sleeping for the group at address `key`.
  void group_done(const void* key) noexcept;

  /// task_group::wait on one of our workers: run tasks until `g` is done.
  void wait_helping(worker& w, task_group& g) noexcept;
  /// task_group::wait anywhere else: park the fiber / block the thread until `g` is done.
  /// Returns wake_reason::canceled or ::timeout if the fiber was canceled or its inherited
  /// deadline passed meanwhile (the group was then told to skip tasks not started), else ready.
  fibers::detail::wake_reason wait_external(task_group& g) noexcept;

  /// A libfibers wait (park) on worker `w`: helps if `help` (see above), else blocks with
  /// compensation.
  fibers::detail::wake_reason wait_on_worker(worker& w, fibers::detail::waiter& wt, clock::time_point until,
                                             bool help) noexcept;

  void worker_main(worker& w) noexcept;

  /// Claims a guest slot for the calling plain thread and takes a worker's place (see above);
  /// nullptr if the caller is not a plain thread (an I/O thread, a pool worker), every slot is
  /// taken or the pool is stopping.
  worker* join_as_guest() noexcept;
  /// Runs the guest's deque empty, gives the place back and frees the slot.
  void leave_as_guest(worker& g) noexcept;

  pool& self;
  const std::size_t size;  // workers started with the pool; spares come after them
  std::vector<std::unique_ptr<worker>> workers;  // size + max_spares slots; see started_
  std::atomic<std::size_t> started_{0};          // entries of `workers` that exist
  std::unique_ptr<worker> guests[max_guests];    // guest slots, made with the pool

 private:
  bool work_visible() const noexcept;
  task* take_injected() noexcept;  // the oldest injected task, or nullptr
  void link_idle(worker& w, const void* key) noexcept;    // idle_mu_ held
  void unlink_idle(worker& w) noexcept;                   // idle_mu_ held
  /// The first idle worker that waits for no task_group (only for work), or nullptr.
  worker* first_idle_for_nothing() const noexcept;        // idle_mu_ held
  static void signal(worker& w) noexcept;
  /// The caller is about to block: starts a spare worker unless one is idle.
  void compensate() noexcept;
  fibers::detail::wake_reason block(fibers::detail::waiter& wt, clock::time_point until) noexcept;
  void start_thread(worker& w);
  /// Routes the calling thread's libfibers waits to wait_on_worker(w) (worker or guest).
  static void install_park_hook(worker& w) noexcept;
  /// A worker pays an outstanding guest debt: moves itself to the lent list and sleeps (a
  /// leaving guest moves it back to the idle registry, from which work wakes it as any idle
  /// worker); true once woken. False, at once, if no debt is owed or its own deque has tasks.
  bool pay_guest_debt(worker& w) noexcept;

  std::mutex spare_mu_;  // serializes starting spares

  alignas(64) std::mutex inject_mu_;
  task* inject_head_ = nullptr;
  task* inject_tail_ = nullptr;
  std::atomic<std::size_t> injected_{0};  // queue length; read without the lock as a hint

  alignas(64) std::mutex idle_mu_;
  worker* idle_head_ = nullptr;
  std::atomic<std::size_t> idle_workers_{0};
  fibers::detail::wait_list external_;  // non-worker task_group::wait callers; node.data = group
  worker* lent_head_ = nullptr;           // workers asleep in a guest's place
  std::atomic<std::size_t> owed_{0};      // places guests took that no worker gave yet (written
                                          // under idle_mu_; read without it as a hint)
  std::atomic<std::size_t> guests_in_{0};  // claimed guest slots (a hint for thieves)

  std::atomic<bool> stopping_{false};
  std::atomic<std::uint32_t> barrier_{0};  // used only under ThreadSanitizer: see park_word.hpp
};

/// The worker running on the calling thread (of any pool), or nullptr.
worker* current_worker() noexcept;

}  // namespace fibers::cpu::detail
