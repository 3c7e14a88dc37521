// tests/hook_test.cpp - libfibers-hook: plain blocking C code runs on fibers (1,000 echo
// connections on one I/O thread whose heartbeat keeps ticking), and each interposed call keeps
// libc's contract on both paths: on a fiber (parks) and on a plain thread (libc).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "fibers/hook.hpp"
#include "heartbeat_fiber.hpp"
#include "hook/echo_blocking.h"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::clock;
using fibers::hook::call;

/// The kernel's flags, bypassing the hook's fcntl.
int kernel_flags(int fd) { return static_cast<int>(::syscall(SYS_fcntl, fd, F_GETFL)); }

std::uint64_t parked(call c) { return fibers::hook::stats()[c]; }

struct fd_pair {
  int r = -1, w = -1;
  ~fd_pair() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
  }
};

fd_pair make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  return {p[0], p[1]};
}

fd_pair make_socketpair() {
  int p[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0) throw std::runtime_error("socketpair");
  return {p[0], p[1]};
}

TEST(Hook, IsActiveAndOnlyOnFibers) {
  EXPECT_FALSE(fibers::hook::enabled());  // plain thread
  fibers::run([] {
    EXPECT_TRUE(fibers::hook::enabled());
    {
      fibers::hook::disable_scope off;
      EXPECT_FALSE(fibers::hook::enabled());
      {
        fibers::hook::disable_scope nested;
        EXPECT_FALSE(fibers::hook::enabled());
      }
      EXPECT_FALSE(fibers::hook::enabled());
    }
    EXPECT_TRUE(fibers::hook::enabled());
    // Per fiber: another fiber's disable does not touch this one.
    auto f = fibers::spawn([] {
      fibers::hook::disable();
      fibers::this_fiber::sleep_for(20ms);
      EXPECT_FALSE(fibers::hook::enabled());
      fibers::hook::enable();
    });
    fibers::this_fiber::sleep_for(5ms);
    EXPECT_TRUE(fibers::hook::enabled());
    f.join();
  });
}

// Run by the 'hook_off' meson test with FIBERS_HOOK=off: every call is libc, on fibers too.
TEST(HookOff, EnvironmentTurnsEveryCallIntoLibc) {
  const char* v = std::getenv("FIBERS_HOOK");
  if (v == nullptr || std::string(v) != "off") GTEST_SKIP() << "run with FIBERS_HOOK=off";
  EXPECT_FALSE(fibers::hook::active());
  fibers::run([] {
    EXPECT_FALSE(fibers::hook::enabled());
    const auto before = fibers::hook::stats().total();
    EXPECT_EQ(::poll(nullptr, 0, 5), 0);
    EXPECT_EQ(::usleep(1000), 0);
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(s, 0);
    EXPECT_EQ(kernel_flags(s) & O_NONBLOCK, 0);  // not made non-blocking underneath
    ::close(s);
    EXPECT_EQ(fibers::hook::stats().total(), before);
  });
}

// The proof: blocking C code, 1,000 connections at once, one I/O thread, never blocked.
TEST(Hook, ThousandBlockingCEchoConnectionsOnOneThread) {
  constexpr int kConns = 1000, kRounds = 20;
  fibers_test::nofile_limit limit;
  limit.raise_to_hard();
  rlimit now{};
  ::getrlimit(RLIMIT_NOFILE, &now);
  ASSERT_GE(now.rlim_cur, 2200u) << "RLIMIT_NOFILE hard limit too low for 1000 connections";
  const auto before = fibers::hook::stats();
  int ok = 0, failed = 0, first_error = 0;
  long served_bytes = 0;
  std::chrono::milliseconds gap{0}, raw_gap{0};
  long ticks = 0;
  fibers::run([&] {
    fibers_test::heartbeat hb;
    int port = 0;
    const int lfd = echo_listen(&port);
    ASSERT_GE(lfd, 0);
    int accepted = 0;
    auto acceptor = fibers::spawn("acceptor", [&] {
      while (accepted < kConns) {
        const int fd = echo_accept(lfd);
        if (fd < 0) break;
        ++accepted;
        fibers::spawn([fd, &served_bytes] {
          const long n = echo_serve(fd);
          if (n > 0) served_bytes += n;
        }).detach();
      }
    });
    std::vector<fibers::fiber> clients;
    clients.reserve(kConns);
    for (int i = 0; i < kConns; ++i) {
      clients.push_back(fibers::spawn([&, port] {
        const int rc = echo_client(port, kRounds, 100);
        if (rc == 0) {
          ++ok;
        } else {
          ++failed;
          if (first_error == 0) first_error = rc;
        }
      }));
    }
    for (auto& c : clients) c.join();
    acceptor.join();
    ::close(lfd);
    // Let the servers see their clients' FIN.
    for (int i = 0; i < 200 && served_bytes < long{kConns} * kRounds * 100; ++i) fibers::this_fiber::sleep_for(5ms);
    hb.stop();
    gap = hb.max_gap();
    raw_gap = hb.max_raw_gap();
    ticks = hb.ticks();
  });
  const auto after = fibers::hook::stats();
  EXPECT_EQ(ok, kConns) << failed << " clients failed, first error " << first_error << " ("
                        << std::strerror(first_error > 0 ? first_error : EIO) << ")";
  EXPECT_EQ(served_bytes, long{kConns} * kRounds * 100);
  EXPECT_GT(ticks, 0);
  EXPECT_LT(gap, fibers_test::stall_limit) << "raw gap " << raw_gap.count() << " ms";
  EXPECT_GT(after[call::accept], before[call::accept]);
  EXPECT_GT(after[call::read] + after[call::recv], before[call::read] + before[call::recv]);
  std::printf("[ info ] 1000 conns x %d round trips: heartbeat max gap %lld ms (raw %lld), %ld ticks; parks: accept %llu, connect %llu, read %llu, recv %llu, write %llu, send %llu\n",
              kRounds, static_cast<long long>(gap.count()), static_cast<long long>(raw_gap.count()), ticks,
              static_cast<unsigned long long>(after[call::accept] - before[call::accept]),
              static_cast<unsigned long long>(after[call::connect] - before[call::connect]),
              static_cast<unsigned long long>(after[call::read] - before[call::read]),
              static_cast<unsigned long long>(after[call::recv] - before[call::recv]),
              static_cast<unsigned long long>(after[call::write] - before[call::write]),
              static_cast<unsigned long long>(after[call::send] - before[call::send]));
}

TEST(Hook, SameCCodeOnPlainThreadsIsLibc) {
  const auto before = fibers::hook::stats().total();
  int port = 0;
  const int lfd = echo_listen(&port);
  ASSERT_GE(lfd, 0);
  std::thread server([lfd] {
    const int fd = echo_accept(lfd);
    if (fd >= 0) echo_serve(fd);
  });
  EXPECT_EQ(echo_client(port, 50, 1000), 0);
  server.join();
  ::close(lfd);
  EXPECT_EQ(fibers::hook::stats().total(), before);  // nothing parked
}

TEST(Hook, ErrnoIsTheFibersOwnAfterAPark) {
  fibers::run([] {
    auto p = make_pipe();
    auto writer = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(10ms);
      errno = ERANGE;  // another fiber on the same thread changes errno meanwhile
      char c = 'x';
      ASSERT_EQ(::write(p.w, &c, 1), 1);
      errno = ENOENT;
    });
    const auto before = parked(call::read);
    errno = EDOM;
    char c = 0;
    ASSERT_EQ(::read(p.r, &c, 1), 1);
    EXPECT_EQ(errno, EDOM);  // not EAGAIN from the hook's try, not the other fiber's ENOENT
    EXPECT_EQ(parked(call::read), before + 1);
    writer.join();
    // A failure sets the call's own errno.
    EXPECT_EQ(::read(-1, &c, 1), -1);
    EXPECT_EQ(errno, EBADF);
  });
}

TEST(Hook, RcvTimeoExpiresWithEagainOnFiberAndThread) {
  auto check = [](int fd) {
    timeval tv{0, 30'000};
    ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    char c;
    const auto t0 = clock::now();
    errno = 0;
    EXPECT_EQ(::read(fd, &c, 1), -1);
    EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << std::strerror(errno);
    EXPECT_GE(clock::now() - t0, 25ms);  // no upper bound: the machine may be loaded
    errno = 0;
    EXPECT_EQ(::recv(fd, &c, 1, 0), -1);
    EXPECT_EQ(errno, EAGAIN);
  };
  fibers::run([&] {
    auto s = make_socketpair();
    const auto before = parked(call::read);
    check(s.r);
    EXPECT_EQ(parked(call::read), before + 1);
    EXPECT_NE(kernel_flags(s.r) & O_NONBLOCK, 0);   // the hook's
    EXPECT_EQ(::fcntl(s.r, F_GETFL) & O_NONBLOCK, 0);  // the user's view
    // The same fd (non-blocking underneath now) from a plain thread: still blocks, then EAGAIN.
    std::thread t([&] { check(s.r); });
    t.join();
  });
  auto s = make_socketpair();  // a plain thread's own socket: pure libc
  check(s.r);
}

TEST(Hook, UserNonBlockingSocketsGetEagainAndNeverPark) {
  fibers::run([] {
    const auto before = parked(call::read) + parked(call::recv) + parked(call::accept);
    int p[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p), 0);
    char c;
    EXPECT_EQ(::read(p[0], &c, 1), -1);
    EXPECT_EQ(errno, EAGAIN);
    EXPECT_NE(::fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);
    // Set by fcntl on a blocking socket.
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(s, 0);
    EXPECT_EQ(::fcntl(s, F_GETFL) & O_NONBLOCK, 0);
    ASSERT_EQ(::fcntl(s, F_SETFL, ::fcntl(s, F_GETFL) | O_NONBLOCK), 0);
    EXPECT_NE(::fcntl(s, F_GETFL) & O_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(s, 8), 0);
    EXPECT_EQ(::accept(s, nullptr, nullptr), -1);
    EXPECT_EQ(errno, EAGAIN);
    // ioctl(FIONBIO) back to blocking: now a read parks (and a writer wakes it).
    int zero = 0;
    ASSERT_EQ(::ioctl(p[0], FIONBIO, &zero), 0);
    EXPECT_EQ(::fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);
    EXPECT_NE(kernel_flags(p[0]) & O_NONBLOCK, 0);
    EXPECT_EQ(parked(call::read) + parked(call::recv) + parked(call::accept), before);
    auto w = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(5ms);
      ASSERT_EQ(::send(p[1], "y", 1, 0), 1);
    });
    EXPECT_EQ(::recv(p[0], &c, 1, 0), 1);
    EXPECT_EQ(c, 'y');
    w.join();
    // MSG_DONTWAIT is per call: EAGAIN, no park.
    const auto r0 = parked(call::recv);
    EXPECT_EQ(::recv(p[0], &c, 1, MSG_DONTWAIT), -1);
    EXPECT_EQ(errno, EAGAIN);
    EXPECT_EQ(parked(call::recv), r0);
    ::close(p[0]);
    ::close(p[1]);
    ::close(s);
  });
}

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

TEST(Hook, CanceledFiberFailsWithEcanceledAndSleepWithEintr) {
  fibers::run([] {
    auto p = make_pipe();
    int read_errno = 0, sleep_rc = 0, sleep_errno = 0, poll_errno = 0;
    timespec rem{};
    auto reader = fibers::spawn([&] {
      char c;
      EXPECT_EQ(::read(p.r, &c, 1), -1);
      read_errno = errno;
    });
    auto sleeper = fibers::spawn([&] {
      timespec ts{10, 0};
      sleep_rc = ::nanosleep(&ts, &rem);
      sleep_errno = errno;
    });
    auto poller = fibers::spawn([&] {
      pollfd pf{p.r, POLLIN, 0};
      EXPECT_EQ(::poll(&pf, 1, -1), -1);
      poll_errno = errno;
    });
    fibers::this_fiber::sleep_for(10ms);
    reader.cancel();
    sleeper.cancel();
    poller.cancel();
    reader.join();
    sleeper.join();
    poller.join();
    EXPECT_EQ(read_errno, ECANCELED);
    EXPECT_EQ(poll_errno, ECANCELED);
    EXPECT_EQ(sleep_rc, -1);
    EXPECT_EQ(sleep_errno, EINTR);
    EXPECT_GT(rem.tv_sec, 5);
  });
}

extern "C" void on_usr1(int) {}

TEST(Hook, SignalInterruptsABlockedPlainThreadWithEintr) {
  struct sigaction sa {}, old{};
  sa.sa_handler = on_usr1;  // no SA_RESTART
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  auto run_case = [](int fd) {
    std::atomic<bool> in_read{false};
    int rc = 0, err = 0;
    std::thread t([&] {
      in_read = true;
      char c;
      rc = static_cast<int>(::read(fd, &c, 1));
      err = errno;
    });
    while (!in_read) std::this_thread::yield();
    std::this_thread::sleep_for(30ms);
    ::pthread_kill(t.native_handle(), SIGUSR1);
    t.join();
    EXPECT_EQ(rc, -1);
    EXPECT_EQ(err, EINTR);
  };
  auto plain = make_pipe();
  run_case(plain.r);  // libc's own blocking read
  auto hooked = make_pipe();
  fibers::run([&] {
    // Make the hook take the fd over (non-blocking underneath) with one parked read.
    auto w = fibers::spawn([&] { ASSERT_EQ(::write(hooked.w, "z", 1), 1); });
    char c;
    ASSERT_EQ(::read(hooked.r, &c, 1), 1);
    w.join();
  });
  EXPECT_NE(kernel_flags(hooked.r) & O_NONBLOCK, 0);
  run_case(hooked.r);  // the hook's emulated blocking read on a plain thread
  ::sigaction(SIGUSR1, &old, nullptr);
}

TEST(Hook, SleepsParkTheFiber) {
  fibers::run([] {
    const auto s0 = parked(call::sleep);
    int ticks = 0;
    bool stop = false;
    auto ticker = fibers::spawn([&] {
      while (!stop) {
        fibers::this_fiber::sleep_for(2ms);
        ++ticks;
      }
    });
    EXPECT_EQ(::usleep(20'000), 0);
    timespec ts{0, 20'000'000};
    EXPECT_EQ(::nanosleep(&ts, nullptr), 0);
    EXPECT_EQ(::clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr), 0);
    EXPECT_EQ(::sleep(0), 0u);
    stop = true;
    ticker.join();
    EXPECT_GT(ticks, 3);  // the thread ran the ticker while this fiber slept
    EXPECT_GE(parked(call::sleep), s0 + 3);
    // Disabled: libc's sleep (the thread blocks), nothing counted.
    const auto s1 = parked(call::sleep);
    {
      fibers::hook::disable_scope off;
      EXPECT_EQ(::usleep(1000), 0);
    }
    EXPECT_EQ(parked(call::sleep), s1);
  });
}

TEST(Hook, BlockingWriteAndWaitallMoveEveryByte) {
  fibers::run([] {
    auto s = make_socketpair();
    const std::string big(4 << 20, 'q');
    auto reader = fibers::spawn([&] {
      std::string got(big.size(), '\0');
      EXPECT_EQ(::recv(s.r, got.data(), got.size(), MSG_WAITALL), static_cast<ssize_t>(got.size()));
      EXPECT_EQ(got, big);
    });
    EXPECT_EQ(::write(s.w, big.data(), big.size()), static_cast<ssize_t>(big.size()));
    reader.join();
    EXPECT_GT(parked(call::write), 0u);
  });
}

TEST(Hook, ForkedChildIsPlainLibcAndLeavesTheParentsWaitsAlone) {
  fibers::run([] {
    auto p = make_pipe();
    auto reader = fibers::spawn([&] {
      char c;
      EXPECT_EQ(::read(p.r, &c, 1), 1);  // parked: p.r is registered with this thread's epoll
    });
    fibers::this_fiber::sleep_for(10ms);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // The child shares the parent's epoll instance: closing p.r here must not take the
      // parent's registration down, and nothing here may try to park.
      ::close(p.r);
      ::usleep(1000);
      ::_exit(fibers::hook::active() ? 1 : 0);
    }
    int status = 0;
    fibers::blocking([&] { ::waitpid(pid, &status, 0); });
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT_EQ(::write(p.w, "f", 1), 1);
    reader.join();  // woken through the registration the child left alone
  });
}

TEST(Hook, SndTimeoEndsABlockedWriteWithWhatWasMoved) {
  auto check = [](int fd) {
    timeval tv{0, 30'000};
    ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
    const std::string big(16 << 20, 's');  // far more than the socket buffers hold
    const ssize_t n = ::write(fd, big.data(), big.size());
    EXPECT_GT(n, 0);
    EXPECT_LT(n, static_cast<ssize_t>(big.size()));
    errno = 0;
    EXPECT_EQ(::send(fd, big.data(), big.size(), 0), -1);  // nothing fits: EAGAIN
    EXPECT_EQ(errno, EAGAIN);
  };
  fibers::run([&] {
    auto s = make_socketpair();
    const auto w0 = parked(call::write);
    check(s.w);
    EXPECT_GT(parked(call::write), w0);
  });
  auto s = make_socketpair();
  check(s.w);  // libc's own
}

TEST(Hook, VectorMessageAndDatagramCallsPark) {
  fibers::run([] {
    auto s = make_socketpair();
    const auto before = fibers::hook::stats();
    auto writer = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(5ms);
      char a[] = "ab", b[] = "cd";
      iovec v[2] = {{a, 2}, {b, 2}};
      ASSERT_EQ(::writev(s.w, v, 2), 4);
      fibers::this_fiber::sleep_for(5ms);
      msghdr m{};
      char c[] = "ef";
      iovec cv{c, 2};
      m.msg_iov = &cv;
      m.msg_iovlen = 1;
      ASSERT_EQ(::sendmsg(s.w, &m, 0), 2);
    });
    char x[4], y[2];
    iovec v[2] = {{x, 2}, {x + 2, 2}};
    EXPECT_EQ(::readv(s.r, v, 2), 4);
    EXPECT_EQ(std::string(x, 4), "abcd");
    msghdr m{};
    iovec yv{y, 2};
    m.msg_iov = &yv;
    m.msg_iovlen = 1;
    EXPECT_EQ(::recvmsg(s.r, &m, 0), 2);
    EXPECT_EQ(std::string(y, 2), "ef");
    writer.join();
    // UDP: recvfrom parks until sendto from another fiber.
    const int u1 = ::socket(AF_INET, SOCK_DGRAM, 0), u2 = ::socket(AF_INET, SOCK_DGRAM, 0);
    ASSERT_GE(u1, 0);
    ASSERT_GE(u2, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    ASSERT_EQ(::bind(u1, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::getsockname(u1, reinterpret_cast<sockaddr*>(&a), &alen), 0);
    auto sender = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(5ms);
      ASSERT_EQ(::sendto(u2, "dgram", 5, 0, reinterpret_cast<sockaddr*>(&a), sizeof a), 5);
    });
    char buf[64];
    sockaddr_in from{};
    socklen_t flen = sizeof from;
    EXPECT_EQ(::recvfrom(u1, buf, sizeof buf, MSG_WAITALL, reinterpret_cast<sockaddr*>(&from), &flen), 5);
    sender.join();
    const auto after = fibers::hook::stats();
    EXPECT_GT(after[call::readv], before[call::readv]);
    EXPECT_GT(after[call::recvmsg], before[call::recvmsg]);
    EXPECT_GT(after[call::recvfrom], before[call::recvfrom]);
    ::close(u1);
    ::close(u2);
  });
}

// A name only c-ares can know (CARES_HOSTS names a hosts file glibc never reads): the fiber's
// getaddrinfo went through fibers::dns. Address literals stay glibc's.
TEST(Hook, GetaddrinfoOnAFiberGoesThroughFibersDns) {
  fibers_test::temp_dir dir;
  const std::string hosts = dir.file("hosts");
  {
    std::ofstream f(hosts);
    f << "10.11.12.13 hooktest.invalid\n";
  }
  ::setenv("CARES_HOSTS", hosts.c_str(), 1);
  fibers::run([] {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const auto g0 = parked(call::getaddrinfo);
    errno = EDOM;
    ASSERT_EQ(::getaddrinfo("hooktest.invalid", "8080", &hints, &res), 0);
    EXPECT_EQ(errno, EDOM);
    ASSERT_NE(res, nullptr);
    EXPECT_EQ(res->ai_next, nullptr);
    EXPECT_EQ(res->ai_socktype, SOCK_STREAM);
    EXPECT_EQ(res->ai_protocol, IPPROTO_TCP);
    ASSERT_EQ(res->ai_family, AF_INET);
    const auto* sin = reinterpret_cast<const sockaddr_in*>(res->ai_addr);
    char text[INET_ADDRSTRLEN];
    EXPECT_STREQ(::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text), "10.11.12.13");
    EXPECT_EQ(ntohs(sin->sin_port), 8080);
    ::freeaddrinfo(res);  // glibc's: the list is laid out as glibc lays out its own
    EXPECT_EQ(parked(call::getaddrinfo), g0 + 1);
    // Both socket types when none is asked for.
    hints.ai_socktype = 0;
    ASSERT_EQ(::getaddrinfo("hooktest.invalid", nullptr, &hints, &res), 0);
    int n = 0;
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) ++n;
    EXPECT_EQ(n, 2);
    ::freeaddrinfo(res);
    // A literal is glibc's (no lookup to wait for).
    ASSERT_EQ(::getaddrinfo("127.0.0.1", "80", &hints, &res), 0);
    ::freeaddrinfo(res);
    EXPECT_EQ(parked(call::getaddrinfo), g0 + 2);
  });
  ::unsetenv("CARES_HOSTS");
  // Plain thread: glibc.
  const auto g1 = parked(call::getaddrinfo);
  addrinfo* res = nullptr;
  ASSERT_EQ(::getaddrinfo("127.0.0.1", "80", nullptr, &res), 0);
  ::freeaddrinfo(res);
  EXPECT_EQ(parked(call::getaddrinfo), g1);
}

TEST(Hook, ConnectParksAndReportsRefused) {
  fibers::run([] {
    const int port = fibers_test::closed_port();
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), -1);
    EXPECT_EQ(errno, ECONNREFUSED);
    ::close(fd);
  });
}

TEST(Hook, DupSharesTheHooksView) {
  fibers::run([] {
    auto p = make_pipe();
    auto w = fibers::spawn([&] { ASSERT_EQ(::write(p.w, "ab", 2), 2); });
    char c;
    ASSERT_EQ(::read(p.r, &c, 1), 1);  // hooked now
    w.join();
    const int d = ::dup(p.r);
    ASSERT_GE(d, 0);
    EXPECT_EQ(::fcntl(d, F_GETFL) & O_NONBLOCK, 0);  // blocking, as the user left it
    ASSERT_EQ(::read(d, &c, 1), 1);
    auto w2 = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(5ms);
      ASSERT_EQ(::write(p.w, "c", 1), 1);
    });
    ASSERT_EQ(::read(d, &c, 1), 1);  // parks on the dup, not EAGAIN
    EXPECT_EQ(c, 'c');
    w2.join();
    ::close(d);
  });
}

}  // namespace
