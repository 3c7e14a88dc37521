// lib/runtime/watchdog.cpp
#include "runtime/watchdog.hpp"

#include <pthread.h>
#include <ucontext.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <iterator>

#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/symbolize.hpp"

namespace fibers::detail {
namespace {

int report_signal() { return SIGRTMIN + 4; }

// Runs on the stalled I/O thread, on the stack of the fiber that is hogging it. Async-signal-
// safe: it only reads memory and fills the thread's report (no backtrace(), no allocation, no
// locks). The frames are the interrupted instruction and then the frame-pointer chain, followed
// only while it stays inside the fiber's own stack (code built without frame pointers ends the
// chain early instead of sending the walk astray). The watchdog thread symbolizes them.
void record_report(void* uc_void) {
  io_thread* t = io_thread::current();
  if (t == nullptr) return;
  auto& r = t->report();
  fiber_state* st = t->running_fiber();
  r.fiber_id = st != nullptr ? st->id : 0;
  const char* name = st != nullptr && !st->name.empty() ? st->name.c_str() : "";
  std::size_t n = 0;
  for (; n + 1 < sizeof r.fiber_name && name[n] != '\0'; ++n) r.fiber_name[n] = name[n];
  r.fiber_name[n] = '\0';
  int depth = 0;
#if defined(__x86_64__)
  const auto* uc = static_cast<const ucontext_t*>(uc_void);
  r.frames[depth++] = reinterpret_cast<void*>(uc->uc_mcontext.gregs[REG_RIP]);
  if (st != nullptr && st->stack_limit != nullptr) {
    const auto* lo = static_cast<const char*>(st->stack_limit);
    depth += walk_frame_pointers(reinterpret_cast<const void*>(uc->uc_mcontext.gregs[REG_RBP]), lo,
                                 lo + st->stack_size, r.frames + depth,
                                 static_cast<int>(std::size(r.frames)) - depth);
  }
#else
  (void)uc_void;
#endif
  r.depth = depth;
  r.ready.store(true, std::memory_order_release);
}

void on_report_signal(int, siginfo_t*, void* uc_void) {
  const int saved_errno = errno;  // the interrupted code owns errno (TSan checks handlers keep it)
  record_report(uc_void);
  errno = saved_errno;
}

void install_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa{};
    sa.sa_sigaction = on_report_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    ::sigaction(report_signal(), &sa, nullptr);
  });
}

}  // namespace

std::chrono::milliseconds watchdog::resolve(std::chrono::milliseconds requested) {
  if (requested.count() >= 0) return requested;
  if (const char* env = std::getenv("FIBERS_WATCHDOG_MS")) return std::chrono::milliseconds(std::atol(env));
#if defined(NDEBUG)
  return std::chrono::milliseconds(0);  // release builds: off unless asked for
#else
  return std::chrono::milliseconds(100);  // debug builds: asyncio's debug-mode slow-callback check
#endif
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
