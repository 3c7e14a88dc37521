// lib/cpu/blocking_pool.cpp - blocking_pool: a bounded queue of calls and threads started on
// demand that exit after idling.
#include "fibers/blocking.hpp"

#include <pthread.h>

#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace fibers {

struct blocking_pool::impl {
  explicit impl(const blocking_options& o) : opts(o) {
    // A pool with no thread, or no room for a single call, would fail every call.
    if (opts.max_threads == 0) {
      throw std::invalid_argument("fibers::blocking_pool: max_threads must be at least 1 (got 0)");
    }
    if (opts.max_queue == 0) {
      throw std::invalid_argument("fibers::blocking_pool: max_queue must be at least 1 (got 0)");
    }
  }

  void thread_main(std::list<std::thread>::iterator self) noexcept;
  void start_thread();  // mu held
  std::vector<std::thread> take_exited() {  // mu held
    std::vector<std::thread> v;
    v.swap(exited);
    return v;
  }

  blocking_options opts;
  mutable std::mutex mu;
  std::condition_variable work_cv;  // a call was queued, or stopping
  std::condition_variable gone_cv;  // the last thread left (for the destructor)
  std::deque<detail::unique_function> queue;
  std::list<std::thread> threads;   // alive
  std::vector<std::thread> exited;  // left after idling; joined by the next enqueue/destructor
  std::size_t idle = 0;
  bool stopping = false;
};

void blocking_pool::impl::start_thread() {
  auto it = threads.emplace(threads.end());
  try {
    // The new thread starts by taking `mu`, which we hold: it sees `*it` assigned.
    *it = std::thread([this, it] { thread_main(it); });
  } catch (...) {
    threads.erase(it);
    throw;
  }
}

void blocking_pool::impl::thread_main(std::list<std::thread>::iterator self) noexcept {
  ::pthread_setname_np(::pthread_self(), "fibers-blocking");
  std::unique_lock lk(mu);
  for (;;) {
    if (!queue.empty()) {
      detail::unique_function call = std::move(queue.front());
      queue.pop_front();
      lk.unlock();
      call();                        // fulfil() catches everything
      call = detail::unique_function{};  // the call's captures die outside the lock
      lk.lock();
      continue;
    }
    if (stopping) break;
    ++idle;
    // Idle threads are real threads waiting in real time: steady_clock, not the runtime clock.
    const bool woken = work_cv.wait_for(lk, opts.idle_timeout, [this] { return !queue.empty() || stopping; });
    --idle;
    if (!woken) break;  // idle for idle_timeout: give the thread back
  }
  exited.push_back(std::move(*self));
  threads.erase(self);
  if (threads.empty()) gone_cv.notify_all();
}

blocking_pool::blocking_pool(const blocking_options& opts) : impl_(std::make_unique<impl>(opts)) {}

blocking_pool::~blocking_pool() {
  std::vector<std::thread> exited;
  {
    std::unique_lock lk(impl_->mu);
    impl_->stopping = true;
    impl_->work_cv.notify_all();
    impl_->gone_cv.wait(lk, [this] { return impl_->threads.empty(); });
    exited = impl_->take_exited();
  }
  for (auto& t : exited) t.join();
}

void blocking_pool::enqueue(detail::unique_function call) {
  std::vector<std::thread> exited;
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->queue.size() >= impl_->opts.max_queue) {
      throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                              "fibers::blocking: queue full (" + std::to_string(impl_->queue.size()) + " pending)");
    }
    impl_->queue.push_back(std::move(call));
    if (impl_->idle > 0) impl_->work_cv.notify_one();
    // More calls queued than idle threads to take them: start one more, up to the limit.
    if (impl_->queue.size() > impl_->idle && impl_->threads.size() < impl_->opts.max_threads) {
      try {
        impl_->start_thread();
      } catch (const std::system_error& e) {
        if (impl_->threads.empty()) {  // no thread will ever run it
          impl_->queue.pop_back();
          throw std::system_error(e.code(), "fibers::blocking: cannot start a thread");
        }
        // Otherwise the running threads will get to it.
      } catch (...) {
        if (impl_->threads.empty()) {
          impl_->queue.pop_back();
          throw;
        }
      }
    }
    exited = impl_->take_exited();
  }
  for (auto& t : exited) t.join();  // threads that left after idling: just their last steps
}

std::size_t blocking_pool::threads() const {
  std::lock_guard lk(impl_->mu);
  return impl_->threads.size();
}

std::size_t blocking_pool::pending() const {
  std::lock_guard lk(impl_->mu);
  return impl_->queue.size();
}

blocking_pool& default_blocking_pool() {
  static blocking_pool p;
  return p;
}

}  // namespace fibers
