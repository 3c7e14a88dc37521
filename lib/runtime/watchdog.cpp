// lib/runtime/watchdog.cpp
#include "runtime/watchdog.hpp"

#include <execinfo.h>
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <boost/fiber/context.hpp>

#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/symbolize.hpp"

namespace fibers::detail {
namespace {

int report_signal() { return SIGRTMIN + 4; }

// Runs on the stalled I/O thread, on the stack of the fiber that is hogging it.
void on_report_signal(int) {
  io_thread* t = io_thread::current();
  if (t == nullptr) return;
  auto& r = t->report();
  auto* st = static_cast<fiber_state*>(boost::fibers::context::active()->get_properties());
  r.fiber_id = st != nullptr ? st->id : 0;
  const char* name = st != nullptr && !st->name.empty() ? st->name.c_str() : "";
  std::strncpy(r.fiber_name, name, sizeof r.fiber_name - 1);
  r.depth = ::backtrace(r.frames, 32);
  r.ready.store(true, std::memory_order_release);
}

void install_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    void* warm[2];
    ::backtrace(warm, 2);  // loads libgcc now, not inside the signal handler
    struct sigaction sa{};
    sa.sa_handler = on_report_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(report_signal(), &sa, nullptr);
  });
}

}  // namespace

std::chrono::milliseconds watchdog::resolve(std::chrono::milliseconds requested) {
  if (requested.count() >= 0) return requested;
  if (const char* env = std::getenv("FIBERS_WATCHDOG_MS")) return std::chrono::milliseconds(std::atol(env));
  // Off unless asked for: the report interrupts the stalled thread with a signal and unwinds
  // its stack there, which is not async-signal-safe if it lands inside the dynamic loader or
  // malloc (seen once: a glibc assertion in a test doing 4 MiB writes).
  return std::chrono::milliseconds(0);
}

watchdog::watchdog(std::vector<io_thread*> threads, std::chrono::milliseconds threshold)
    : threads_(std::move(threads)), threshold_(threshold) {
  install_handler();
  thread_ = std::thread([this] { loop(); });
}

watchdog::~watchdog() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void watchdog::loop() {
  using steady = std::chrono::steady_clock;
  const std::size_t n = threads_.size();
  std::vector<std::uint64_t> last(n, ~std::uint64_t{0});
  std::vector<steady::time_point> since(n, steady::now());
  std::vector<bool> reported(n, false);
  const auto period = std::max(std::chrono::milliseconds(1), threshold_ / 4);
  std::unique_lock lk(mu_);
  while (!cv_.wait_for(lk, period, [this] { return stop_; })) {
    const auto now = steady::now();
    for (std::size_t i = 0; i < n; ++i) {
      io_thread& t = *threads_[i];
      const std::uint64_t p = t.progress();
      if (p != last[i] || t.idle()) {
        last[i] = p;
        since[i] = now;
        reported[i] = false;
        continue;
      }
      const auto stalled = std::chrono::duration_cast<std::chrono::milliseconds>(now - since[i]);
      if (!reported[i] && stalled >= threshold_) {
        reported[i] = true;
        lk.unlock();
        report(t, stalled);
        lk.lock();
      }
    }
  }
}

void watchdog::report(io_thread& t, std::chrono::milliseconds stalled) {
  auto& r = t.report();
  r.ready.store(false, std::memory_order_relaxed);
  ::pthread_kill(t.native_handle(), report_signal());
  for (int i = 0; i < 100 && !r.ready.load(std::memory_order_acquire); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!r.ready.load(std::memory_order_acquire)) {
    std::fprintf(stderr, "libfibers watchdog: I/O thread %zu has not switched fibers for %lld ms\n",
                 t.index(), static_cast<long long>(stalled.count()));
    return;
  }
  std::fprintf(stderr,
               "libfibers watchdog: I/O thread %zu has run fiber %llu '%s' for %lld ms without "
               "switching: a blocking call or a long computation on an I/O thread stalls every "
               "fiber there (use fibers::blocking() or cpu::async()). It is at:\n",
               t.index(), static_cast<unsigned long long>(r.fiber_id), r.fiber_name,
               static_cast<long long>(stalled.count()));
  for (int i = 0; i < r.depth; ++i) {
    std::fprintf(stderr, "  #%d %s\n", i, symbolize(r.frames[i]).c_str());
  }
}

}  // namespace fibers::detail
