// lib/reactor/epoll.cpp - the Linux epoll backend.
//
// Each fd is registered once with EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET: no epoll_ctl on the hot
// path. epoll_data carries the slot index and generation, so an event still queued for an fd
// that was closed (and whose number or slot was reused) is recognised as stale and dropped.
// An eventfd, level-triggered, breaks a blocking epoll_wait; an atomic flag makes a burst of
// cross-thread wakes cost one write().
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

#include "reactor/reactor.hpp"
#include "runtime/waiter.hpp"

namespace fibers::detail {
namespace {

constexpr std::uint64_t wake_tag = ~std::uint64_t{0};
constexpr std::uint32_t all_events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

std::uint64_t tag(const io_slot& s) noexcept {
  return (std::uint64_t{s.gen} << 32) | s.index;
}

class epoll_reactor final : public reactor {
 public:
  epoll_reactor() {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    wakefd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wakefd_ < 0) {
      int e = errno;
      ::close(epfd_);
      throw std::system_error(e, std::generic_category(), "eventfd");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;  // level-triggered: stays readable until drained
    ev.data.u64 = wake_tag;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev) != 0) {
      int e = errno;
      ::close(wakefd_);
      ::close(epfd_);
      throw std::system_error(e, std::generic_category(), "epoll_ctl(eventfd)");
    }
  }

  ~epoll_reactor() override {
    ::close(wakefd_);
    ::close(epfd_);
  }

  io_slot* open(int fd, std::error_code& ec) noexcept override {
    io_slot* s;
    if (!free_.empty()) {
      s = slots_[free_.back()].get();
      free_.pop_back();
    } else {
      try {
        slots_.push_back(std::make_unique<io_slot>());
        free_.reserve(slots_.size());  // so release() never allocates
      } catch (...) {
        ec = std::make_error_code(std::errc::not_enough_memory);
        return nullptr;
      }
      s = slots_.back().get();
      s->index = static_cast<std::uint32_t>(slots_.size() - 1);
    }
    s->fd = fd;
    s->readable = s->writable = true;
    s->hup = false;
    s->shared = s->muted = s->ring = false;
    s->reader = s->writer = nullptr;
    s->handler = {};
    epoll_event ev{};
    ev.events = all_events;
    ev.data.u64 = tag(*s);
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      ec.assign(errno, std::generic_category());
      release(s);
      return nullptr;
    }
    ec.clear();
    return s;
  }

  void close(io_slot* s) noexcept override {
    // Explicit DEL: a dup()ed or fork-inherited fd would otherwise stay registered.
    if (!s->ring) ::epoll_ctl(epfd_, EPOLL_CTL_DEL, s->fd, nullptr);
    release(s);
  }

  void deregister(int fd) noexcept override { ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr); }

  void forget(io_slot* s) noexcept override { release(s); }

  void unmute(io_slot* s) noexcept override {
    s->muted = false;
    s->readable = s->writable = true;
    modify(*s, all_events);
  }

  void wake() noexcept override {
    if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) {
      std::uint64_t one = 1;
      [[maybe_unused]] ssize_t r = ::write(wakefd_, &one, sizeof one);
    }
  }

  int poll(clock::duration timeout) noexcept override {
    int n = wait(timeout);
    last_full_ = n == max_events;
    int handled = 0;
    for (int i = 0; i < n; ++i) {
      const epoll_event& ev = events_[i];
      if (ev.data.u64 == wake_tag) {
        // Drain the counter first, then clear the flag: a wake() racing with us either sees
        // the flag still set (and its work is picked up by the caller's drain, which runs
        // after poll returns) or writes again.
        std::uint64_t v;
        [[maybe_unused]] ssize_t r = ::read(wakefd_, &v, sizeof v);
        wake_pending_.store(false, std::memory_order_release);
        wake_seen_ = true;
        continue;
      }
      const auto index = static_cast<std::uint32_t>(ev.data.u64 & 0xffffffffu);
      const auto gen = static_cast<std::uint32_t>(ev.data.u64 >> 32);
      if (index >= slots_.size()) continue;
      io_slot& s = *slots_[index];
      if (s.gen != gen || s.fd < 0) continue;  // stale: the fd was closed after this event
      ++handled;
      if (s.handler.fn != nullptr) {
        std::uint32_t bits = 0;
        if (ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) bits |= io_readable;
        if (ev.events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) bits |= io_writable;
        if (ev.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) bits |= io_hangup;
        s.handler.fn(s.handler.ctx, s, bits);
        continue;
      }
      // Nobody here waits for this socket, which other threads serve: stop hearing about it.
      if (s.shared && !s.muted && s.reader == nullptr && s.writer == nullptr) mute(s);
      if (ev.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s.hup = true;
      if (ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        s.readable = true;
        take_and_fire(s.reader, wake_reason::ready);
      }
      if (ev.events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
        s.writable = true;
        take_and_fire(s.writer, wake_reason::ready);
      }
    }
    return handled;
  }

  bool take_wake() noexcept override { return std::exchange(wake_seen_, false); }
  const char* name() const noexcept override { return "epoll"; }
  int native_handle() const noexcept override { return epfd_; }
  bool more_pending() const noexcept override { return last_full_; }
  void hand_to_ring(io_slot* s) noexcept override {
    // Out of the set entirely, not just muted: a muted registration still reports hang-ups,
    // which would wake the slot's ring waiters for nothing.
    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, s->fd, nullptr);
    s->ring = true;
    // A readiness wait parked here would hear nothing more: wake it to look again (its
    // caller asks the ring now: socket_wait.cpp, wait_ready).
    take_and_fire(s->reader, wake_reason::ready);
    take_and_fire(s->writer, wake_reason::ready);
  }

 private:
  // epoll_pwait2 (Linux 5.11) takes a nanosecond timeout, so sub-millisecond deadlines are
  // kept; older kernels get epoll_pwait with the timeout rounded up to whole milliseconds
  // (waking early would only spin back into the wait). Raw system calls, not libc's wrappers:
  // libfibers-hook interposes epoll_wait/epoll_pwait(2) for user code, and a fast park waits
  // here on the parking fiber's stack, where the hook would take it for a user's call and try
  // to park again. Under TSan the libc wrappers stay: TSan intercepts them to model
  // epoll_ctl -> epoll_wait as a release/acquire, and the hook is not used under TSan.
#if defined(__SANITIZE_THREAD__)
  int epoll_wait_ms(int ms) noexcept { return ::epoll_wait(epfd_, events_, max_events, ms); }
  int epoll_wait_ts(const timespec* ts) noexcept { return ::epoll_pwait2(epfd_, events_, max_events, ts, nullptr); }
#else
  int epoll_wait_ms(int ms) noexcept {
    return static_cast<int>(::syscall(SYS_epoll_pwait, epfd_, events_, max_events, ms, nullptr, 0));
  }
  int epoll_wait_ts(const timespec* ts) noexcept {
#ifdef SYS_epoll_pwait2
    return static_cast<int>(::syscall(SYS_epoll_pwait2, epfd_, events_, max_events, ts, nullptr, 0));
#else
    (void)ts;
    errno = ENOSYS;
    return -1;
#endif
  }
#endif
  int wait(clock::duration timeout) noexcept {
    if (timeout <= clock::duration::zero() || !have_pwait2_) {
      int ms = -1;
      if (timeout >= clock::duration::zero()) {
        auto m = std::chrono::ceil<std::chrono::milliseconds>(timeout).count();
        ms = m > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(m);
      }
      return epoll_wait_ms(ms);
    }
    const auto ns = timeout.count();
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    int n = epoll_wait_ts(&ts);
    if (n < 0 && errno == ENOSYS) {
      have_pwait2_ = false;
      return wait(timeout);
    }
    return n;
  }

  // Interest in nothing: only EPOLLERR/EPOLLHUP can still be reported (they always are).
  void mute(io_slot& s) noexcept {
    s.muted = true;
    modify(s, EPOLLET);
  }

  void modify(io_slot& s, std::uint32_t events) noexcept {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag(s);
    ::epoll_ctl(epfd_, EPOLL_CTL_MOD, s.fd, &ev);
  }

  void release(io_slot* s) noexcept {
    s->fd = -1;
    s->reader = s->writer = nullptr;
    s->handler = {};
    ++s->gen;
    free_.push_back(s->index);
  }

  static constexpr int max_events = 256;
  int epfd_ = -1;
  int wakefd_ = -1;
  std::atomic<bool> wake_pending_{false};
  bool have_pwait2_ = true;
  bool wake_seen_ = false;
  bool last_full_ = false;
  std::vector<std::unique_ptr<io_slot>> slots_;
  std::vector<std::uint32_t> free_;
  epoll_event events_[max_events];
};

}  // namespace

std::unique_ptr<reactor> reactor::create() { return std::make_unique<epoll_reactor>(); }

}  // namespace fibers::detail
