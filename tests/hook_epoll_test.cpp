// tests/hook_epoll_test.cpp - libfibers-hook's epoll_wait/epoll_pwait/epoll_pwait2 on a user's
// epoll fd: on a fiber they park it (its I/O thread's heartbeat keeps ticking); on a plain
// thread they are libc. Part of hook_test (the 'hook' and 'hook_off' meson tests).
#include <fcntl.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "fibers/hook.hpp"
#include "hook/hook_test_util.hpp"
#include "heartbeat_fiber.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::clock;
using fibers::hook::call;

using hook_test::parked;

/// A pipe and a user's epoll fd watching its read end (level-triggered, data = 42).
struct epoll_pipe {
  int r = -1, w = -1, ep = -1;
  epoll_pipe() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    r = p[0];
    w = p[1];
    ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) throw std::runtime_error("epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 42;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, r, &ev) != 0) throw std::runtime_error("epoll_ctl");
  }
  epoll_pipe(const epoll_pipe&) = delete;
  epoll_pipe& operator=(const epoll_pipe&) = delete;
  ~epoll_pipe() {
    ::close(ep);
    ::close(r);
    ::close(w);
  }
};

TEST(Hook, EpollWaitOnAUsersEpollFdParksTheFiber) {
  fibers::run([] {
    fibers_test::heartbeat hb;
    epoll_pipe e;
    const auto p0 = parked(call::epoll_wait);
    auto writer = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(50ms);
      ASSERT_EQ(::write(e.w, "x", 1), 1);
    });
    epoll_event out[4]{};
    errno = EDOM;
    const auto t0 = clock::now();
    ASSERT_EQ(::epoll_wait(e.ep, out, 4, 5000), 1);
    EXPECT_GE(clock::now() - t0, 40ms);
    EXPECT_EQ(errno, EDOM);  // the fiber's own errno, untouched by a successful call
    EXPECT_EQ(out[0].data.u64, 42u);
    EXPECT_NE(out[0].events & EPOLLIN, 0u);
    EXPECT_GT(parked(call::epoll_wait), p0);
    writer.join();
    // Level-triggered and still unread: ready at once, no park.
    const auto p1 = parked(call::epoll_wait);
    ASSERT_EQ(::epoll_pwait(e.ep, out, 4, -1, nullptr), 1);
    EXPECT_EQ(parked(call::epoll_wait), p1);
    char c;
    ASSERT_EQ(::read(e.r, &c, 1), 1);
    // epoll_pwait2 and an endless timeout: woken by a write from another fiber.
    auto writer2 = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(20ms);
      ASSERT_EQ(::write(e.w, "y", 1), 1);
    });
    ASSERT_EQ(::epoll_pwait2(e.ep, out, 4, nullptr, nullptr), 1);
    EXPECT_EQ(out[0].data.u64, 42u);
    writer2.join();
    ASSERT_EQ(::read(e.r, &c, 1), 1);
    hb.stop();
    EXPECT_GE(hb.ticks(), 10);
    EXPECT_LT(hb.max_gap(), fibers_test::stall_limit);
  });
}

TEST(Hook, EpollWaitTimesOutCancelsAndReportsClose) {
  fibers::run([] {
    fibers_test::heartbeat hb;
    epoll_pipe e;
    epoll_event out[2]{};
    // The timeout: 0 events after about the time asked, the thread free meanwhile.
    errno = EDOM;
    auto t0 = clock::now();
    EXPECT_EQ(::epoll_wait(e.ep, out, 2, 60), 0);
    EXPECT_GE(clock::now() - t0, 60ms);
    EXPECT_EQ(errno, EDOM);
    const timespec ts{0, 30'000'000};
    t0 = clock::now();
    EXPECT_EQ(::epoll_pwait2(e.ep, out, 2, &ts, nullptr), 0);
    EXPECT_GE(clock::now() - t0, 30ms);
    // Bad arguments are the kernel's errors, at once.
    EXPECT_EQ(::epoll_wait(e.ep, out, 0, 1000), -1);
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(::epoll_wait(e.r, out, 2, 1000), -1);  // not an epoll fd
    EXPECT_EQ(errno, EINVAL);
    // A canceled fiber's wait fails with ECANCELED (not EINTR: an EINTR loop would spin).
    int rc = 0, err = 0;
    auto f = fibers::spawn([&] {
      epoll_event o[2];
      rc = ::epoll_wait(e.ep, o, 2, -1);
      err = errno;
    });
    fibers::this_fiber::sleep_for(10ms);
    f.cancel();
    f.join();
    EXPECT_EQ(rc, -1);
    EXPECT_EQ(err, ECANCELED);
    hb.stop();
    EXPECT_LT(hb.max_gap(), fibers_test::stall_limit);
  });
  // A close of the epoll fd wakes a fiber parked on it with EBADF.
  fibers::run([] {
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    ASSERT_GE(ep, 0);
    int rc = 0, err = 0;
    auto f = fibers::spawn([&] {
      epoll_event o[2];
      rc = ::epoll_wait(ep, o, 2, 5000);
      err = errno;
    });
    fibers::this_fiber::sleep_for(10ms);
    ::close(ep);
    f.join();
    EXPECT_EQ(rc, -1);
    EXPECT_EQ(err, EBADF);
  });
}

TEST(Hook, EpollWaitOnAPlainThreadIsLibc) {
  epoll_pipe e;
  const auto p0 = parked(call::epoll_wait);
  std::thread writer([&] {
    std::this_thread::sleep_for(20ms);
    ASSERT_EQ(::write(e.w, "z", 1), 1);
  });
  epoll_event out[2]{};
  EXPECT_EQ(::epoll_wait(e.ep, out, 2, 5000), 1);  // blocks this thread in the kernel
  EXPECT_EQ(out[0].data.u64, 42u);
  writer.join();
  char c;
  ASSERT_EQ(::read(e.r, &c, 1), 1);
  EXPECT_EQ(::epoll_wait(e.ep, out, 2, 20), 0);
  // A fiber with the hook disabled blocks its thread too.
  fibers::run([&] {
    fibers::hook::disable_scope off;
    EXPECT_EQ(::epoll_wait(e.ep, out, 2, 10), 0);
  });
  EXPECT_EQ(parked(call::epoll_wait), p0);
}

}  // namespace

namespace {

// Run by the 'hook_off' meson test with FIBERS_HOOK=off: the calls added later (epoll_wait,
// gethostbyname_r) are libc on fibers too.
TEST(HookOff, EpollWaitAndGethostbynameAreLibc) {
  const char* v = std::getenv("FIBERS_HOOK");
  if (v == nullptr || std::string(v) != "off") GTEST_SKIP() << "run with FIBERS_HOOK=off";
  fibers::run([] {
    const auto before = fibers::hook::stats().total();
    epoll_pipe e;
    epoll_event out[2]{};
    EXPECT_EQ(::epoll_wait(e.ep, out, 2, 5), 0);
    hostent h{}, *res = nullptr;
    char buf[1024];
    int herr = 0;
    ASSERT_EQ(::gethostbyname_r("localhost", &h, buf, sizeof buf, &res, &herr), 0);
    EXPECT_NE(res, nullptr);
    EXPECT_EQ(fibers::hook::stats().total(), before);
  });
}

}  // namespace
