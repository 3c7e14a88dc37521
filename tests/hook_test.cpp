// tests/hook_test.cpp - libfibers-hook: plain blocking C code runs on fibers (1,000 echo
// connections on one I/O thread whose heartbeat keeps ticking), and each interposed call keeps
// libc's contract on both paths: on a fiber (parks) and on a plain thread (libc). The same
// executable holds hook_poll_test.cpp (poll/select, close and fd reuse), hook_io_test.cpp
// (vector writes, reads after a short read, regular files), hook_epoll_test.cpp and
// hook_resolve_test.cpp (name lookups); tests/hook/hook_test_util.hpp has their helpers.
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
#include "hook/hook_test_util.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::clock;
using fibers::hook::call;

using namespace hook_test;

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
