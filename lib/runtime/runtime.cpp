// lib/runtime/runtime.cpp - runtime: owns the I/O threads.
#include "fibers/runtime.hpp"

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "fibers/debug.hpp"
#include "fibers/future.hpp"
#include "fibers/scope.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/watchdog.hpp"

#ifndef FIBERS_DEFAULT_STACK_KIB
#define FIBERS_DEFAULT_STACK_KIB 64
#endif

namespace fibers {

struct runtime::impl {
  std::vector<std::unique_ptr<detail::io_thread>> threads;
  std::unique_ptr<detail::watchdog> watchdog;
};

namespace {
socket_io resolve_socket_io(socket_io asked) {
  if (asked != socket_io::by_environment) return asked;
  const char* e = std::getenv("FIBERS_SOCKET_IO");
  if (e == nullptr || *e == '\0' || std::strcmp(e, "epoll") == 0) return socket_io::epoll;
  if (std::strcmp(e, "io_uring") == 0) return socket_io::io_uring;
  throw std::invalid_argument(std::string("fibers::runtime: FIBERS_SOCKET_IO=") + e +
                              ": expected \"epoll\" or \"io_uring\"");
}
}  // namespace

runtime::runtime(std::size_t io_threads) : runtime([io_threads] {
  runtime_options o;
  o.io_threads = io_threads;
  return o;
}()) {}

runtime::runtime(const runtime_options& opts) : impl_(std::make_unique<impl>()) {
  if (opts.io_threads == 0) throw std::invalid_argument("fibers::runtime: io_threads must be >= 1");
  if (detail::io_thread::current() != nullptr) {
    // Its destructor would block an I/O thread of the enclosing runtime.
    throw std::logic_error("fibers::runtime: cannot be created on a runtime thread");
  }
  const std::size_t stack =
      opts.stack_size != 0 ? opts.stack_size : std::size_t{FIBERS_DEFAULT_STACK_KIB} * 1024;
  const bool ring_sockets = resolve_socket_io(opts.sockets) == socket_io::io_uring;
  impl_->threads.reserve(opts.io_threads);
  for (std::size_t i = 0; i < opts.io_threads; ++i) {
    impl_->threads.push_back(
        std::make_unique<detail::io_thread>(this, i, stack, opts.stack_canary, ring_sockets));
    impl_->threads.back()->start();
  }
  if (auto threshold = detail::watchdog::resolve(opts.watchdog); threshold.count() > 0) {
    std::vector<detail::io_thread*> threads;
    for (auto& t : impl_->threads) threads.push_back(t.get());
    impl_->watchdog = std::make_unique<detail::watchdog>(std::move(threads), threshold);
  }
}

runtime::~runtime() {
  impl_->watchdog.reset();
  for (auto& t : impl_->threads) t->stop();
}

void runtime::run_erased(detail::unique_function fn) {
  if (detail::io_thread::current() != nullptr) {
    throw std::logic_error(
        "fibers::runtime::run called on a runtime thread (it would block the thread; use "
        "spawn() and join() inside fibers)");
  }
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;
  impl_->threads.front()->post([&] {
    spawn("main", [&] {
      try {
        fn();
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard lk(mu);
      done = true;
      cv.notify_one();
    }).detach();
  });
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return done; });
  if (error) std::rethrow_exception(error);
}

void runtime::post(detail::unique_function fn, std::size_t thread) {
  if (thread >= impl_->threads.size()) {
    throw std::out_of_range("fibers::runtime::post: no I/O thread " + std::to_string(thread) +
                            " (runtime has " + std::to_string(impl_->threads.size()) + ")");
  }
  impl_->threads[thread]->post(
      [fn = std::move(fn)]() mutable { spawn(std::move(fn)).detach(); });
}

fiber runtime::spawn_on_erased(std::size_t thread, spawn_options opts, detail::unique_function fn) {
  if (thread >= impl_->threads.size()) {
    throw std::out_of_range("fibers::runtime::spawn_on: no I/O thread " + std::to_string(thread) +
                            " (runtime has " + std::to_string(impl_->threads.size()) + ")");
  }
  detail::io_thread* target = impl_->threads[thread].get();
  if (detail::io_thread::current() == target) return spawn_fiber(std::move(opts), std::move(fn));
  // The caller's deadline goes with the fiber (spawn_fiber on the target's loop sees none).
  const clock::time_point dl = current_deadline();
  promise<fiber> created;
  future<fiber> handle = created.get_future();
  target->post([created = std::move(created), opts = std::move(opts), fn = std::move(fn), dl]() mutable {
    try {
      created.set_value(detail::spawn_with_deadline(std::move(opts), std::move(fn), dl));
    } catch (...) {
      created.set_exception(std::current_exception());  // e.g. no memory for the stack
    }
  });
  // Not a cancellation point: once posted, the fiber exists and its handle must not be lost.
  state_of(handle)->wait_until(clock::time_point::max(), "spawn_on", false);
  return handle.get();
}

std::size_t runtime::io_threads() const noexcept { return impl_->threads.size(); }

socket_io runtime::sockets() const noexcept {
  for (auto& t : impl_->threads) {
    if (t->socket_ring() == nullptr) return socket_io::epoll;
  }
  return socket_io::io_uring;
}

std::vector<thread_stats> stats(const runtime& rt) {
  std::vector<thread_stats> out;
  for (auto& t : rt.impl_->threads) out.push_back(t->stats());
  return out;
}

runtime* runtime::current() noexcept {
  detail::io_thread* t = detail::io_thread::current();
  return t != nullptr ? t->owner() : nullptr;
}

std::optional<std::size_t> runtime::thread_on_cpu(int cpu) const noexcept {
  if (cpu < 0) return std::nullopt;  // -1 is also what a thread whose sched_getcpu failed noted
  for (auto& t : impl_->threads) {
    if (t->cpu() == cpu) return t->index();
  }
  return std::nullopt;
}

std::size_t runtime::current_thread_index() {
  detail::io_thread* t = detail::io_thread::current();
  if (t == nullptr) throw std::logic_error("fibers::runtime::current_thread_index: not on a runtime thread");
  return t->index();
}

}  // namespace fibers
