// tests/hook_poll_test.cpp - libfibers-hook's poll/ppoll/select/pselect over every pollable fd
// kind, and fd lifetime around waits: close (on this thread or another) wakes a parked fiber,
// a reused number is spared, a registration kept for a file closed behind the hook's back is
// revalidated. Part of hook_test (the 'hook' meson test).
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <thread>

#include "fibers/fibers.hpp"
#include "fibers/hook.hpp"
#include "hook/hook_test_util.hpp"

namespace {

using namespace std::chrono_literals;
using namespace hook_test;
using fibers::clock;
using fibers::hook::call;

TEST(Hook, PollOverMixedFdKinds) {
  fibers::run([] {
    auto pipe = make_pipe();
    auto sock = make_socketpair();
    const int efd = ::eventfd(0, EFD_CLOEXEC);
    ASSERT_GE(efd, 0);
    pollfd fds[4] = {{pipe.r, POLLIN, 0}, {sock.r, POLLIN, 0}, {efd, POLLIN, 0}, {-1, POLLIN, 0}};
    const auto p0 = parked(call::poll);
    // Zero timeout: just looks.
    EXPECT_EQ(::poll(fds, 4, 0), 0);
    EXPECT_EQ(parked(call::poll), p0);
    // Timeout passes: 0, and the fiber parked (the heartbeat-style check: another fiber ran).
    bool other_ran = false;
    auto other = fibers::spawn([&] { other_ran = true; });
    EXPECT_EQ(::poll(fds, 4, 20), 0);
    EXPECT_TRUE(other_ran);
    other.join();
    // Each kind wakes it.
    for (int which = 0; which < 3; ++which) {
      auto w = fibers::spawn([&] {
        fibers::this_fiber::sleep_for(5ms);
        if (which == 0) { ASSERT_EQ(::write(pipe.w, "a", 1), 1); }
        if (which == 1) { ASSERT_EQ(::write(sock.w, "b", 1), 1); }
        if (which == 2) { ASSERT_EQ(::eventfd_write(efd, 1), 0); }
      });
      EXPECT_EQ(::poll(fds, 4, 5000), 1) << which;
      for (int i = 0; i < 4; ++i) EXPECT_EQ(fds[i].revents != 0, i == which) << which << " " << i;
      w.join();
      char buf[8];
      if (which == 0) { ASSERT_EQ(::read(pipe.r, buf, 1), 1); }
      if (which == 1) { ASSERT_EQ(::read(sock.r, buf, 1), 1); }
      if (which == 2) {
        eventfd_t v;
        ASSERT_EQ(::eventfd_read(efd, &v), 0);
      }
    }
    // Writable at once: no park.
    pollfd out{pipe.w, POLLOUT, 0};
    const auto p1 = parked(call::poll);
    EXPECT_EQ(::poll(&out, 1, 1000), 1);
    EXPECT_EQ(parked(call::poll), p1);
    // poll(NULL, 0, ms) sleeps the fiber.
    EXPECT_EQ(::poll(nullptr, 0, 5), 0);
    // select through the same path.
    auto w = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(5ms);
      ASSERT_EQ(::eventfd_write(efd, 1), 0);
    });
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(pipe.r, &rd);
    FD_SET(efd, &rd);
    timeval tv{5, 0};
    const auto s0 = parked(call::select);
    EXPECT_EQ(::select(std::max(pipe.r, efd) + 1, &rd, nullptr, nullptr, &tv), 1);
    EXPECT_TRUE(FD_ISSET(efd, &rd));
    EXPECT_FALSE(FD_ISSET(pipe.r, &rd));
    EXPECT_GT(parked(call::select), s0);
    w.join();
    timeval zero{0, 0};
    FD_SET(pipe.r, &rd);
    EXPECT_EQ(::select(pipe.r + 1, &rd, nullptr, nullptr, &zero), 0);
    // ppoll and pselect: the same paths with timespecs.
    const auto p2 = parked(call::poll);
    timespec ts{0, 10'000'000};
    pollfd one{pipe.r, POLLIN, 0};
    EXPECT_EQ(::ppoll(&one, 1, &ts, nullptr), 0);
    EXPECT_GT(parked(call::poll), p2);
    FD_ZERO(&rd);
    FD_SET(pipe.r, &rd);
    const auto s2 = parked(call::select);
    EXPECT_EQ(::pselect(pipe.r + 1, &rd, nullptr, nullptr, &ts, nullptr), 0);
    EXPECT_GT(parked(call::select), s2);
    ::close(efd);
  });
  {
    // Plain thread: libc's ppoll and pselect.
    auto pp = make_pipe();
    timespec ts{0, 5'000'000};
    pollfd one{pp.r, POLLIN, 0};
    EXPECT_EQ(::ppoll(&one, 1, &ts, nullptr), 0);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(pp.r, &rd);
    EXPECT_EQ(::pselect(pp.r + 1, &rd, nullptr, nullptr, &ts, nullptr), 0);
  }
  // Plain thread: libc.
  auto pipe = make_pipe();
  pollfd p{pipe.r, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 10), 0);
}

TEST(Hook, CloseWakesAFiberBlockedOnTheFd) {
  fibers::run([] {
    auto p = make_pipe();
    auto reader = fibers::spawn([&] {
      char c;
      errno = 0;
      EXPECT_EQ(::read(p.r, &c, 1), -1);
      EXPECT_EQ(errno, EBADF);
    });
    int pr = p.r;
    pollfd pf{p.w, 0, 0};  // a poller on the other end (hang-up only)
    fibers::this_fiber::sleep_for(10ms);
    EXPECT_EQ(::close(pr), 0);
    p.r = -1;
    reader.join();
    // The write end now reports POLLERR (no reader), to a parked poller as well.
    EXPECT_EQ(::poll(&pf, 1, 1000), 1);
    EXPECT_NE(pf.revents & POLLERR, 0);
    // poll on an fd closed while it waits: POLLNVAL.
    auto q = make_pipe();
    pollfd qf{q.r, POLLIN, 0};
    auto closer = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(10ms);
      ::close(q.r);
      q.r = -1;
    });
    EXPECT_EQ(::poll(&qf, 1, 5000), 1);
    EXPECT_NE(qf.revents & POLLNVAL, 0);
    closer.join();
  });
}

TEST(Hook, CloseOnAnotherThreadWakesTheBlockedFiberAndSparesTheReusedNumber) {
  fibers::runtime rt(fibers::runtime_options{.io_threads = 2});
  rt.run([&] {
    auto p = make_pipe();
    std::atomic<int> read_errno{0};
    auto reader = rt.spawn_on(1, [&] {
      char c;
      EXPECT_EQ(::read(p.r, &c, 1), -1);
      read_errno = errno;
    });
    fibers::this_fiber::sleep_for(20ms);
    const int old = p.r;
    ASSERT_EQ(::close(p.r), 0);  // from thread 0
    p.r = -1;
    // The number is reused at once, and a fiber on thread 1 waits on the new fd: the task
    // that takes the old registration down there must not wake it.
    auto q = make_pipe();
    std::atomic<bool> got{false};
    auto second = rt.spawn_on(1, [&] {
      char c;
      if (::read(q.r, &c, 1) == 1) got = true;
    });
    reader.join();
    EXPECT_EQ(read_errno.load(), EBADF);
    fibers::this_fiber::sleep_for(20ms);
    EXPECT_FALSE(got.load());
    ASSERT_EQ(::write(q.w, "n", 1), 1);
    second.join();
    EXPECT_TRUE(got.load());
    std::printf("[ info ] old fd %d, new fd %d\n", old, q.r);
  });
}

// Registrations are kept between waits. A file closed behind the hook's back whose number a
// creation the hook did not see reuses must still be waited for (revalidation after 1 s).
TEST(Hook, KeptRegistrationOfAFdClosedBehindTheHooksBackIsRevalidated) {
  fibers::run([] {
    auto p = make_pipe();
    pollfd pf{p.r, POLLIN, 0};
    auto w = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(5ms);
      ASSERT_EQ(::write(p.w, "1", 1), 1);
    });
    ASSERT_EQ(::poll(&pf, 1, 5000), 1);  // registers p.r with this thread's reactor
    w.join();
    const int old = p.r;
    ASSERT_EQ(::syscall(SYS_close, p.r), 0);  // not through the hook
    int q[2];
    ASSERT_EQ(::syscall(SYS_pipe2, q, O_CLOEXEC), 0);  // nor this
    p.r = -1;
    if (q[0] != old) {
      ::syscall(SYS_close, q[0]);
      ::syscall(SYS_close, q[1]);
      GTEST_SKIP() << "the kernel did not reuse fd " << old;
    }
    auto w2 = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(20ms);
      ASSERT_EQ(::write(q[1], "2", 1), 1);
    });
    pollfd qf{q[0], POLLIN, 0};
    const auto t0 = clock::now();
    EXPECT_EQ(::poll(&qf, 1, 10000), 1);  // without revalidation: 10 s and 0
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - t0).count();
    std::printf("[ info ] poll on the reused number returned after %lld ms\n", static_cast<long long>(ms));
    w2.join();
    ::close(q[0]);
    ::close(q[1]);
  });
}

}  // namespace
