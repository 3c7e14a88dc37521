// lib/signal/signal_set.cpp - signal_set: a counting handler and an eventfd on the reactor.
//
// The handler does what POSIX allows and nothing more: it increments the signal's counter
// (a lock-free atomic) and writes to an eventfd (write is async-signal-safe), keeping errno.
// Every I/O thread on which a fiber has waited for a signal watches that eventfd in its
// reactor (the same fd in each epoll set); whichever thread hears it wakes every waiter of
// every set with a pending signal, across threads (waiter::fire), and each woken fiber takes
// its signal from the counters under its set's lock (or parks again if another took it).
//
// Not signalfd: signalfd only sees signals that every thread of the process blocks, and the
// threads the user and other libraries create would have to block them too, or a SIGTERM
// delivered to one of them takes its default action. A handler catches a signal on whichever
// thread the kernel picks, with no mask to manage.
#include "fibers/signal.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "fibers/error.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/waiter.hpp"
#include "sync/wait_helpers.hpp"

namespace fibers {

namespace {

constexpr int max_signal = 65;  // Linux: 1..64
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "the handler needs lock-free counters");

std::atomic<std::uint64_t> delivered[max_signal];
std::atomic<int> wake_fd{-1};

extern "C" void on_signal(int sig) {
  const int saved = errno;
  delivered[sig].fetch_add(1, std::memory_order_release);
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t r = ::write(wake_fd.load(std::memory_order_relaxed), &one, sizeof one);
  errno = saved;
}

struct registry {
  std::mutex mu;
  std::vector<signal_set::impl*> sets;
  int users[max_signal] = {};
  struct sigaction saved[max_signal] = {};
  std::vector<std::uint64_t> watching;  // io_thread::id() of threads watching wake_fd
};

// Never destroyed: a handler or a reactor event may come during static destruction.
registry& reg() {
  static registry* r = new registry;
  return *r;
}

void dispatch(void*, detail::io_slot&, std::uint32_t) noexcept;

int make_wake_fd() {
  static const int fd = [] {
    int f = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (f < 0) throw std::system_error(errno, std::generic_category(), "fibers::signal_set: eventfd");
    wake_fd.store(f, std::memory_order_relaxed);
    return f;
  }();
  return fd;
}

const char* why_not_awaitable(int sig) {
  if (sig <= 0 || sig >= max_signal) return "is not a signal number";
  switch (sig) {
    case SIGKILL:
    case SIGSTOP: return "cannot be caught";
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
    case SIGTRAP:
    case SIGSYS: return "is raised by a fault in the thread that caused it and cannot be awaited";
    default: return nullptr;
  }
}

}  // namespace

struct signal_set::impl {
  std::vector<int> sigs;
  std::mutex mu;
  std::uint64_t seen[max_signal] = {};
  std::vector<detail::waiter*> waiters;

  // Under mu: takes one pending signal (lowest number first), or 0.
  int take() noexcept {
    for (int s : sigs) {
      if (delivered[s].load(std::memory_order_acquire) > seen[s]) {
        ++seen[s];
        return s;
      }
    }
    return 0;
  }
  bool pending() const noexcept {
    return std::any_of(sigs.begin(), sigs.end(), [&](int s) {
      return delivered[s].load(std::memory_order_acquire) > seen[s];
    });
  }
};

namespace {

void dispatch(void*, detail::io_slot&, std::uint32_t) noexcept {
  std::uint64_t v;
  while (::read(wake_fd.load(std::memory_order_relaxed), &v, sizeof v) > 0) {
  }
  registry& r = reg();
  std::lock_guard lk(r.mu);
  for (signal_set::impl* s : r.sets) {
    std::lock_guard sl(s->mu);
    if (s->waiters.empty() || !s->pending()) continue;
    // Each looks at the counters itself; those that find nothing left park again.
    for (detail::waiter* w : s->waiters) w->fire(detail::wake_reason::ready);
    s->waiters.clear();
  }
}

// Makes the calling I/O thread's reactor watch wake_fd (once per thread).
void watch_here(detail::io_thread& t) {
  registry& r = reg();
  std::lock_guard lk(r.mu);
  if (std::find(r.watching.begin(), r.watching.end(), t.id()) != r.watching.end()) return;
  std::error_code ec;
  if (t.reactor().open(make_wake_fd(), detail::io_handler{dispatch, nullptr}, ec) == nullptr) {
    throw std::system_error(ec, "fibers::signal_set::wait: watch the signal eventfd");
  }
  r.watching.push_back(t.id());
}

}  // namespace

signal_set::signal_set(std::initializer_list<int> signals) : impl_(std::make_unique<impl>()) {
  if (signals.size() == 0) throw std::invalid_argument("fibers::signal_set: no signals given");
  for (int s : signals) {
    if (const char* why = why_not_awaitable(s)) {
      throw std::invalid_argument("fibers::signal_set: signal " + std::to_string(s) + " " + why);
    }
    if (std::find(impl_->sigs.begin(), impl_->sigs.end(), s) == impl_->sigs.end()) impl_->sigs.push_back(s);
  }
  std::sort(impl_->sigs.begin(), impl_->sigs.end());
  make_wake_fd();
  registry& r = reg();
  std::lock_guard lk(r.mu);
  for (int s : impl_->sigs) {
    if (r.users[s] == 0) {
      struct sigaction sa = {};
      sa.sa_handler = on_signal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESTART;
      if (::sigaction(s, &sa, &r.saved[s]) != 0) {
        const int e = errno;
        for (int done : impl_->sigs) {
          if (done == s) break;
          if (--r.users[done] == 0) ::sigaction(done, &r.saved[done], nullptr);
        }
        throw std::system_error(e, std::generic_category(), "fibers::signal_set: sigaction");
      }
    }
    ++r.users[s];
    impl_->seen[s] = delivered[s].load(std::memory_order_acquire);
  }
  r.sets.push_back(impl_.get());
}

signal_set::signal_set(signal_set&&) noexcept = default;

signal_set& signal_set::operator=(signal_set&& o) noexcept {
  if (this != &o) {
    signal_set gone(std::move(*this));
    impl_ = std::move(o.impl_);
  }
  return *this;
}

signal_set::~signal_set() {
  if (!impl_) return;
  registry& r = reg();
  std::lock_guard lk(r.mu);
  {
    std::lock_guard sl(impl_->mu);
    if (!impl_->waiters.empty()) {
      detail::fatal_misuse("fibers::signal_set destroyed while fibers wait on it");
    }
  }
  std::erase(r.sets, impl_.get());
  for (int s : impl_->sigs) {
    if (--r.users[s] == 0) ::sigaction(s, &r.saved[s], nullptr);
  }
}

int signal_set::wait(std::error_code& ec, deadline dl) {
  ec.clear();
  detail::io_thread& t = detail::require_fiber("fibers::signal_set::wait");
  watch_here(t);
  impl& s = *impl_;
  for (;;) {
    detail::waiter w;
    {
      std::lock_guard lk(s.mu);
      if (int sig = s.take()) return sig;
      s.waiters.push_back(&w);
    }
    const detail::wake_reason why = detail::park(w, dl.when(), true, "signal wait");
    {
      std::lock_guard lk(s.mu);
      std::erase(s.waiters, &w);
    }
    if (why == detail::wake_reason::canceled) {
      ec = make_error_code(errc::canceled);
      return 0;
    }
    if (why == detail::wake_reason::timeout) {
      ec = std::make_error_code(std::errc::timed_out);
      return 0;
    }
  }
}

int signal_set::wait(deadline dl) {
  std::error_code ec;
  const int sig = wait(ec, dl);
  if (ec) throw_error(ec, "signal wait");
  return sig;
}

int signal_set::try_wait() noexcept {
  std::lock_guard lk(impl_->mu);
  return impl_->take();
}

const std::vector<int>& signal_set::signals() const noexcept { return impl_->sigs; }

}  // namespace fibers
