// lib/cpu/task_group.cpp - task_group: counting tasks, and waiting for them by helping (on a
// worker) or by parking (fibers, plain threads).
#include <system_error>
#include <utility>

#include "cpu/park_word.hpp"
#include "cpu/pool_impl.hpp"
#include "fibers/error.hpp"

namespace fibers::cpu {
namespace detail {
namespace {

constexpr int wait_spins = 64;  // failed looks for work before a helping waiter sleeps

}  // namespace

void pool_impl::wait_helping(worker& w, task_group& g) noexcept {
  int spins = 0;
  while ((g.state_.load(std::memory_order_acquire) & task_group::count_mask) != 0) {
    if (task* t = find_task(w)) {
      t->invoke(t);
      spins = 0;
      continue;
    }
    if (++spins < wait_spins) {
      // The group's last tasks are running on other workers: they usually end soon.
      for (int k = 0; k < 16; ++k) cpu_relax();
      continue;
    }
    park(w, &g);  // until the group is done or there is work to help with
    spins = 0;
  }
}

fibers::detail::wake_reason pool_impl::wait_on_worker(worker& w, fibers::detail::waiter& wt,
                                                      clock::time_point until, bool help) noexcept {
  using fibers::detail::wake_reason;
  if (help && w.help_depth < max_help_depth) {
    // The helping loop of wait_helping, with the waiter's wake-up as the end condition: run
    // tasks (nested on this stack) until the future is ready, or the deadline passes.
    ++w.help_depth;
    int spins = 0;
    while (wt.woken.load(std::memory_order_acquire) == 0) {
      if (until != clock::time_point::max() && clock::now() >= until) {
        if (wt.claim(wake_reason::timeout)) {
          --w.help_depth;
          return wake_reason::timeout;
        }
        until = clock::time_point::max();  // claimed by a waker: its schedule() follows
      }
      if (task* t = find_task(w)) {
        t->invoke(t);
        spins = 0;
        continue;
      }
      if (++spins >= wait_spins) break;  // nothing to run: block (below)
      for (int k = 0; k < 16; ++k) cpu_relax();
    }
    --w.help_depth;
  }
  return block(wt, until);
}

fibers::detail::wake_reason pool_impl::block(fibers::detail::waiter& wt, clock::time_point until) noexcept {
  if (wt.woken.load(std::memory_order_acquire) != 0) return wt.reason.load(std::memory_order_acquire);
  compensate();  // this worker stops running tasks for a while: keep the pool going
  return fibers::detail::park_thread(wt, until);
}

fibers::detail::wake_reason pool_impl::wait_external(task_group& g) noexcept {
  using fibers::detail::wake_reason;
  wake_reason interrupted = wake_reason::ready;  // ready: neither canceled nor timed out
  while ((g.state_.load(std::memory_order_acquire) & task_group::count_mask) != 0) {
    fibers::detail::waiter wt;
    fibers::detail::wait_node node(wt, &g);
    {
      std::lock_guard lk(idle_mu_);
      if ((g.state_.fetch_or(task_group::waiting_bit, std::memory_order_acq_rel) & task_group::count_mask) == 0) {
        break;
      }
      external_.push_back(node);
    }
    // Cancelable (and bound by the fiber's inherited deadline) until the first interruption;
    // after that the wait only waits for the tasks still running.
    const bool cancelable = interrupted == wake_reason::ready;
    const wake_reason r = fibers::detail::park(wt, clock::time_point::max(), cancelable, "cpu::task_group::wait");
    if (r != wake_reason::ready) {
      {
        std::lock_guard lk(idle_mu_);
        external_.remove(node);
      }
      if (interrupted == wake_reason::ready) {
        // Skip what has not started; what runs may use this fiber's stack: wait for it.
        interrupted = r;
        g.cancel();
      }
    }
  }
  return interrupted;
}

}  // namespace detail

task_group::~task_group() {
  if ((state_.load(std::memory_order_acquire) & count_mask) != 0) {
    try {
      wait();
    } catch (...) {
      // Errors of an abandoned group are dropped: the owner is already unwinding or chose
      // not to wait.
    }
  }
}

void task_group::spawn(detail::task* t) noexcept {
  state_.fetch_add(1, std::memory_order_relaxed);  // published to the task by the queue
  pool_->post(t);
}

void task_group::task_done(std::exception_ptr error) noexcept {
  if (error) {
    failed_.store(true, std::memory_order_relaxed);
    if (!error_claimed_.exchange(true, std::memory_order_relaxed)) error_ = std::move(error);
  }
  detail::pool_impl& impl = *pool_->impl_;  // read now: after the decrement *this may be gone
  const std::uint64_t old = state_.fetch_sub(1, std::memory_order_acq_rel);
  if (old == (waiting_bit | 1)) impl.group_done(this);  // `this` only as a key from here on
}

void task_group::wait() {
  using fibers::detail::wake_reason;
  wake_reason interrupted = wake_reason::ready;
  if ((state_.load(std::memory_order_acquire) & count_mask) != 0) {
    detail::pool_impl& impl = *pool_->impl_;
    detail::worker* w = detail::current_worker();
    if (w != nullptr && &w->owner == &impl) {
      impl.wait_helping(*w, *this);
    } else if (detail::worker* guest = impl.join_as_guest()) {
      // A plain thread: it takes part until the group is done, as in a parallel loop.
      impl.wait_helping(*guest, *this);
      impl.leave_as_guest(*guest);
    } else {
      interrupted = impl.wait_external(*this);
    }
  }
  // Every task has finished: nothing else touches the group now.
  state_.store(0, std::memory_order_relaxed);
  failed_.store(false, std::memory_order_relaxed);
  error_claimed_.store(false, std::memory_order_relaxed);
  std::exception_ptr error = std::exchange(error_, nullptr);
  if (interrupted == wake_reason::canceled) throw fibers::canceled("cpu::task_group::wait");
  if (interrupted == wake_reason::timeout) {
    throw std::system_error(std::make_error_code(std::errc::timed_out), "cpu::task_group::wait");
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace fibers::cpu
