// lib/hook/poll.cpp - the interposed waits: poll, ppoll, select, pselect, sleep, usleep,
// nanosleep, clock_nanosleep.
//
// poll on a fiber: one non-blocking poll first (most calls end there); otherwise every fd is
// registered with the thread's reactor for what it asks, the fiber parks until one of them
// reports something or the timeout passes, and the non-blocking poll is repeated to fill in
// revents exactly as the kernel sees them. Any fd poll accepts works: sockets, pipes,
// eventfds, timerfds, a user's epoll fd.
#include <poll.h>
#include <sys/select.h>
#include <time.h>

#include <cstdint>
#include <vector>

#include "hook/hook_internal.hpp"

namespace fibers::hook::detail {
namespace {

using fibers::clock;
namespace rt = fibers::detail;

clock::time_point after(std::int64_t ns) noexcept {
  if (ns < 0) return clock::time_point::max();
  return clock::now() + std::chrono::nanoseconds(ns);
}

std::int64_t to_ns(const timespec& ts) noexcept {
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

timespec to_timespec(clock::duration d) noexcept {
  if (d < clock::duration::zero()) d = clock::duration::zero();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  return timespec{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

/// poll() on a fiber: `timeout_ns` < 0 waits without limit. nullopt-like: returns false when
/// the fds cannot be waited for by the reactor (then the caller blocks in libc).
int fiber_poll(pollfd* fds, nfds_t n, std::int64_t timeout_ns, call c, bool& fallback) noexcept {
  const int saved = errno;
  int r = real.poll.get()(fds, n, 0);
  if (r != 0 || timeout_ns == 0) return r;
  const clock::time_point until = after(timeout_ns);
  constexpr std::size_t inline_max = 16;
  rt::fd_interest inline_buf[inline_max];
  std::vector<rt::fd_interest> heap_buf;
  rt::fd_interest* in = inline_buf;
  std::size_t count = 0;
  for (nfds_t i = 0; i < n; ++i) count += fds[i].fd >= 0 ? 1 : 0;
  if (count > inline_max) {
    try {
      heap_buf.resize(count);
    } catch (...) {
      fallback = true;
      return 0;
    }
    in = heap_buf.data();
  }
  std::size_t k = 0;
  for (nfds_t i = 0; i < n; ++i) {
    if (fds[i].fd < 0) continue;
    std::uint32_t ev = 0;
    if ((fds[i].events & (POLLIN | POLLPRI | POLLRDNORM | POLLRDBAND | POLLRDHUP)) != 0) ev |= rt::io_readable;
    if ((fds[i].events & (POLLOUT | POLLWRNORM | POLLWRBAND)) != 0) ev |= rt::io_writable;
    in[k++] = rt::fd_interest{fds[i].fd, ev};
  }
  for (;;) {
    int err = 0;
    count_park(c);
    const auto res = rt::wait_fds(in, k, until, name(c), &err);
    switch (res) {
      case rt::fd_wait_result::ready:
      case rt::fd_wait_result::closed:  // the next poll reports POLLNVAL for it
        r = real.poll.get()(fds, n, 0);
        if (r == 0) continue;  // an edge for something not asked for (e.g. writable)
        if (r > 0) errno = saved;
        return r;
      case rt::fd_wait_result::timeout: return poll_timeout_result(until, saved);
      case rt::fd_wait_result::canceled: errno = ECANCELED; return -1;
      case rt::fd_wait_result::unsupported: fallback = true; return 0;
    }
  }
}

/// The remaining time of a libc poll fallback, in ms (rounded up), -1 without limit.
int remaining_ms(std::int64_t timeout_ns, clock::time_point start) noexcept {
  if (timeout_ns < 0) return -1;
  const auto left = std::chrono::nanoseconds(timeout_ns) - (clock::now() - start);
  if (left <= clock::duration::zero()) return 0;
  return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
}

int do_poll(pollfd* fds, nfds_t n, std::int64_t timeout_ns, call c) noexcept {
  const auto start = clock::now();
  bool fallback = false;
  const int r = fiber_poll(fds, n, timeout_ns, c, fallback);
  if (!fallback) return r;
  return real.poll.get()(fds, n, remaining_ms(timeout_ns, start));  // blocks the thread
}

/// select/pselect through poll. Returns the count or -1 (EBADF for a closed fd, as select).
int do_select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, std::int64_t timeout_ns) noexcept {
  if (nfds < 0 || nfds > FD_SETSIZE) {
    errno = EINVAL;
    return -1;
  }
  std::size_t count = 0;
  for (int fd = 0; fd < nfds; ++fd) {
    if ((rd != nullptr && FD_ISSET(fd, rd)) || (wr != nullptr && FD_ISSET(fd, wr)) ||
        (ex != nullptr && FD_ISSET(fd, ex))) {
      ++count;
    }
  }
  std::vector<pollfd> heap;
  pollfd inline_buf[32];
  pollfd* p = inline_buf;
  if (count > std::size(inline_buf)) {
    try {
      heap.resize(count);
    } catch (...) {
      errno = ENOMEM;
      return -1;
    }
    p = heap.data();
  }
  std::size_t k = 0;
  for (int fd = 0; fd < nfds; ++fd) {
    short ev = 0;
    if (rd != nullptr && FD_ISSET(fd, rd)) ev |= POLLIN;
    if (wr != nullptr && FD_ISSET(fd, wr)) ev |= POLLOUT;
    if (ex != nullptr && FD_ISSET(fd, ex)) ev |= POLLPRI;
    if (ev != 0) p[k++] = pollfd{fd, ev, 0};
  }
  const int r = do_poll(p, static_cast<nfds_t>(k), timeout_ns, call::select);
  if (r < 0) return r;
  for (std::size_t i = 0; i < k; ++i) {
    if ((p[i].revents & POLLNVAL) != 0) {
      errno = EBADF;
      return -1;
    }
  }
  if (rd != nullptr) FD_ZERO(rd);
  if (wr != nullptr) FD_ZERO(wr);
  if (ex != nullptr) FD_ZERO(ex);
  int n = 0;
  for (std::size_t i = 0; i < k; ++i) {
    const short re = p[i].revents;
    // The kernel's select: hang-up and error count as readable, error as writable too.
    if ((p[i].events & POLLIN) != 0 && (re & (POLLIN | POLLHUP | POLLERR)) != 0) {
      FD_SET(p[i].fd, rd);
      ++n;
    }
    if ((p[i].events & POLLOUT) != 0 && (re & (POLLOUT | POLLERR)) != 0) {
      FD_SET(p[i].fd, wr);
      ++n;
    }
    if ((p[i].events & POLLPRI) != 0 && (re & POLLPRI) != 0) {
      FD_SET(p[i].fd, ex);
      ++n;
    }
  }
  return n;
}

/// Parks the fiber until `until`. False: woken early (canceled, or its inherited deadline).
bool fiber_sleep_until(clock::time_point until) noexcept {
  const int saved = errno;
  int err = 0;
  count_park(call::sleep);
  const auto r = rt::wait_fds(nullptr, 0, until, "sleep", &err);
  errno = saved;
  return r == rt::fd_wait_result::timeout && clock::now() >= until;
}

bool valid(const timespec* ts) noexcept {
  return ts != nullptr && ts->tv_nsec >= 0 && ts->tv_nsec < 1'000'000'000 && ts->tv_sec >= 0;
}

}  // namespace
}  // namespace fibers::hook::detail

using namespace fibers::hook::detail;
using fibers::hook::call;

extern "C" {

int poll(pollfd* fds, nfds_t n, int timeout_ms) {
  if (parking_fiber() == nullptr) return real.poll.get()(fds, n, timeout_ms);
  return do_poll(fds, n, timeout_ms < 0 ? -1 : std::int64_t{timeout_ms} * 1'000'000, call::poll);
}

int __poll_chk(pollfd* fds, nfds_t n, int timeout_ms, size_t fdslen) {
  if (fdslen / sizeof(pollfd) < n) __builtin_trap();
  return poll(fds, n, timeout_ms);
}

// The signal mask is not applied on the fiber path: it belongs to the thread, which runs other
// fibers while this one waits.
int ppoll(pollfd* fds, nfds_t n, const timespec* ts, const sigset_t* mask) {
  if (parking_fiber() == nullptr) return real.ppoll.get()(fds, n, ts, mask);
  if (ts != nullptr && !valid(ts)) {
    errno = EINVAL;
    return -1;
  }
  return do_poll(fds, n, ts == nullptr ? -1 : to_ns(*ts), call::poll);
}

int select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* tv) {
  if (parking_fiber() == nullptr) return real.select.get()(nfds, rd, wr, ex, tv);
  if (tv != nullptr && (tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1'000'000)) {
    errno = EINVAL;
    return -1;
  }
  const std::int64_t ns = tv == nullptr ? -1 : static_cast<std::int64_t>(tv->tv_sec) * 1'000'000'000 + tv->tv_usec * 1000;
  const auto start = fibers::clock::now();
  const int r = do_select(nfds, rd, wr, ex, ns);
  if (tv != nullptr) {
    // Linux's select leaves the time not slept in *tv.
    const auto left = std::chrono::nanoseconds(ns) - (fibers::clock::now() - start);
    const auto us = left.count() > 0 ? std::chrono::duration_cast<std::chrono::microseconds>(left).count() : 0;
    tv->tv_sec = static_cast<time_t>(us / 1'000'000);
    tv->tv_usec = static_cast<suseconds_t>(us % 1'000'000);
  }
  return r;
}

int pselect(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, const timespec* ts, const sigset_t* mask) {
  if (parking_fiber() == nullptr) return real.pselect.get()(nfds, rd, wr, ex, ts, mask);
  if (ts != nullptr && !valid(ts)) {
    errno = EINVAL;
    return -1;
  }
  return do_select(nfds, rd, wr, ex, ts == nullptr ? -1 : to_ns(*ts));
}

int nanosleep(const timespec* req, timespec* rem) {
  if (parking_fiber() == nullptr) return real.nanosleep.get()(req, rem);
  if (!valid(req)) {
    errno = EINVAL;
    return -1;
  }
  const auto until = fibers::clock::now() + std::chrono::nanoseconds(to_ns(*req));
  if (fiber_sleep_until(until)) return 0;
  // Canceled (or the fiber's deadline): interrupted, as by a signal. rem says what is left.
  if (rem != nullptr) *rem = to_timespec(until - fibers::clock::now());
  errno = EINTR;
  return -1;
}

int clock_nanosleep(clockid_t id, int flags, const timespec* req, timespec* rem) {
  if (parking_fiber() == nullptr || (id != CLOCK_MONOTONIC && id != CLOCK_REALTIME)) {
    return real.clock_nanosleep.get()(id, flags, req, rem);
  }
  if (!valid(req)) return EINVAL;
  std::int64_t ns = to_ns(*req);
  if ((flags & TIMER_ABSTIME) != 0) {
    timespec now{};
    ::clock_gettime(id, &now);
    ns -= to_ns(now);
    if (ns < 0) ns = 0;
  }
  const auto until = fibers::clock::now() + std::chrono::nanoseconds(ns);
  if (fiber_sleep_until(until)) return 0;
  if (rem != nullptr && (flags & TIMER_ABSTIME) == 0) *rem = to_timespec(until - fibers::clock::now());
  return EINTR;
}

int usleep(useconds_t us) {
  if (parking_fiber() == nullptr) return real.usleep.get()(us);
  if (fiber_sleep_until(fibers::clock::now() + std::chrono::microseconds(us))) return 0;
  errno = EINTR;
  return -1;
}

unsigned sleep(unsigned s) {
  if (parking_fiber() == nullptr) return real.sleep.get()(s);
  const auto until = fibers::clock::now() + std::chrono::seconds(s);
  if (fiber_sleep_until(until)) return 0;
  const auto left = until - fibers::clock::now();
  return static_cast<unsigned>(std::chrono::ceil<std::chrono::seconds>(left).count());
}

}  // extern "C"
