// lib/hook/epoll.cpp - epoll_wait, epoll_pwait and epoll_pwait2 on a user's epoll fd, and the
// epoll fd creators.
//
// On a fiber with a nonzero timeout: one epoll_wait with timeout 0 first (most calls end
// there); otherwise the fiber parks until the epoll fd itself is readable - an epoll fd is
// pollable: readable while its ready list is not empty - or the timeout passes, then the
// zero-timeout call is repeated to collect the events. Its registration with the thread's
// reactor is kept between waits, like any fd the hook waits on. Off a fiber, libc.
//
// The signal mask of epoll_pwait(2) is not applied on the fiber path: it belongs to the
// thread, which runs other fibers while this one waits (as for ppoll).
#include <sys/epoll.h>

#include <cstdint>

#include "hook/hook_internal.hpp"

namespace fibers::hook::detail {
namespace {

using fibers::clock;
namespace rt = fibers::detail;

using pwait2_fn = int (*)(int, epoll_event*, int, const timespec*, const sigset_t*);
// Not in the resolve-all table: a glibc older than 2.35 has none, and the hook must still load.
std::atomic<pwait2_fn> real_pwait2{nullptr};
std::atomic<bool> pwait2_looked_up{false};

pwait2_fn pwait2() noexcept {
  if (!pwait2_looked_up.load(std::memory_order_acquire)) {
    real_pwait2.store(reinterpret_cast<pwait2_fn>(::dlsym(RTLD_NEXT, "epoll_pwait2")), std::memory_order_relaxed);
    pwait2_looked_up.store(true, std::memory_order_release);
  }
  return real_pwait2.load(std::memory_order_relaxed);
}

/// The remaining time until `until` in whole milliseconds, rounded up; -1 without limit.
int ms_until(clock::time_point until) noexcept {
  if (until == clock::time_point::max()) return -1;
  const auto left = until - clock::now();
  if (left <= clock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return ms > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(ms);
}

/// epoll_wait on a fiber; `timeout_ns` < 0 waits without limit, > 0 (zero is libc's).
int fiber_epoll_wait(int epfd, epoll_event* events, int max, std::int64_t timeout_ns) noexcept {
  const int saved = errno;
  int r = real.epoll_wait.get()(epfd, events, max, 0);
  if (r != 0) return r;  // events, or an error (EBADF, EINVAL, EFAULT) the real call reports
  const clock::time_point until =
      timeout_ns < 0 ? clock::time_point::max() : clock::now() + std::chrono::nanoseconds(timeout_ns);
  const rt::fd_interest in{epfd, rt::io_readable};
  for (;;) {
    int err = 0;
    count_park(call::epoll_wait);
    switch (rt::wait_fds(&in, 1, until, "epoll_wait", &err)) {
      case rt::fd_wait_result::ready:
        r = real.epoll_wait.get()(epfd, events, max, 0);
        if (r == 0) continue;  // consumed meanwhile (another waiter on the same epoll fd)
        if (r > 0) errno = saved;
        return r;
      case rt::fd_wait_result::timeout: return poll_timeout_result(until, saved);
      case rt::fd_wait_result::closed: errno = EBADF; return -1;
      case rt::fd_wait_result::canceled: errno = ECANCELED; return -1;
      case rt::fd_wait_result::unsupported:
        // The reactor refused the epoll fd (e.g. it would close a loop of epoll instances):
        // block the thread in libc for the rest of the timeout.
        return real.epoll_wait.get()(epfd, events, max, ms_until(until));
    }
  }
}

std::int64_t ns_of(const timespec& ts) noexcept {
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace
}  // namespace fibers::hook::detail

using namespace fibers::hook::detail;

extern "C" {

int epoll_wait(int epfd, epoll_event* events, int max, int timeout_ms) {
  if (timeout_ms == 0 || parking_fiber() == nullptr) return real.epoll_wait.get()(epfd, events, max, timeout_ms);
  return fiber_epoll_wait(epfd, events, max, timeout_ms < 0 ? -1 : std::int64_t{timeout_ms} * 1'000'000);
}

int epoll_pwait(int epfd, epoll_event* events, int max, int timeout_ms, const sigset_t* mask) {
  if (timeout_ms == 0 || parking_fiber() == nullptr) {
    return real.epoll_pwait.get()(epfd, events, max, timeout_ms, mask);
  }
  return fiber_epoll_wait(epfd, events, max, timeout_ms < 0 ? -1 : std::int64_t{timeout_ms} * 1'000'000);
}

int epoll_pwait2(int epfd, epoll_event* events, int max, const timespec* ts, const sigset_t* mask) {
  pwait2_fn real_fn = pwait2();
  if (real_fn == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  if (parking_fiber() == nullptr || (ts != nullptr && ts->tv_sec == 0 && ts->tv_nsec == 0)) {
    return real_fn(epfd, events, max, ts, mask);
  }
  if (ts != nullptr && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1'000'000'000)) {
    errno = EINVAL;
    return -1;
  }
  return fiber_epoll_wait(epfd, events, max, ts == nullptr ? -1 : ns_of(*ts));
}

// A new epoll fd number forgets what the hook knew about an older file with it.
int epoll_create(int size) noexcept {
  const int r = real.epoll_create.get()(size);
  if (r >= 0 && globally_on()) forget(r);
  return r;
}

int epoll_create1(int flags) noexcept {
  const int r = real.epoll_create1.get()(flags);
  if (r >= 0 && globally_on()) forget(r);
  return r;
}

}  // extern "C"
