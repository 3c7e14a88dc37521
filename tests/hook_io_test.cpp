// tests/hook_io_test.cpp - libfibers-hook's vector writes keep a blocking fd's contract: writev
// and sendmsg move every byte to a slow reader (a blocking stream socket returns a short count
// only after a signal or SO_SNDTIMEO), on a fiber, on a plain thread, and on a plain thread
// writing to an fd the hook made non-blocking; a read after a short read parks at once yet
// sees data that came meanwhile; regular files stay libc's. Part of hook_test (the 'hook'
// meson test).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fibers/fibers.hpp"
#include "fibers/hook.hpp"
#include "hook/hook_test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::hook::call;

using hook_test::parked;

struct sock_pair {
  int a = -1, b = -1;
  sock_pair() {
    int p[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0) throw std::runtime_error("socketpair");
    a = p[0];
    b = p[1];
  }
  sock_pair(const sock_pair&) = delete;
  sock_pair& operator=(const sock_pair&) = delete;
  ~sock_pair() {
    ::close(a);
    ::close(b);
  }
};

/// Three parts, 3 MiB + 1 byte + 5 MiB, each byte telling its position: far more than the
/// socket buffers hold, so the writer must wait for the reader several times.
struct big_vector {
  std::string p1, p2, p3;
  iovec iov[3];
  big_vector() : p1(3 << 20, '\0'), p2(1, '\0'), p3(5 << 20, '\0') {
    std::size_t k = 0;
    for (auto* s : {&p1, &p2, &p3}) {
      for (char& c : *s) c = static_cast<char>('a' + k++ % 23);
    }
    iov[0] = {p1.data(), p1.size()};
    iov[1] = {p2.data(), p2.size()};
    iov[2] = {p3.data(), p3.size()};
  }
  std::size_t size() const { return p1.size() + p2.size() + p3.size(); }
  std::string joined() const { return p1 + p2 + p3; }
};

/// Reads `n` bytes in 64 KiB pieces, pausing now and then (a slow reader). `pause` sleeps.
template <class Pause>
std::string slow_read(int fd, std::size_t n, Pause pause) {
  std::string got;
  std::vector<char> buf(65536);  // off the stack: fibers have small ones
  for (int i = 0; got.size() < n; ++i) {
    if (i % 16 == 0) pause();
    const ssize_t r = ::read(fd, buf.data(), std::min(buf.size(), n - got.size()));
    if (r <= 0) break;
    got.append(buf.data(), static_cast<std::size_t>(r));
  }
  return got;
}

TEST(Hook, WritevMovesEveryByteToASlowReaderOnAFiber) {
  fibers::run([] {
    sock_pair s;
    big_vector v;
    const auto w0 = parked(call::writev);
    std::string got;
    auto reader = fibers::spawn([&] {
      got = slow_read(s.b, v.size(), [] { fibers::this_fiber::sleep_for(1ms); });
    });
    errno = EDOM;
    EXPECT_EQ(::writev(s.a, v.iov, 3), static_cast<ssize_t>(v.size()));
    EXPECT_EQ(errno, EDOM);
    reader.join();
    EXPECT_TRUE(got == v.joined());
    EXPECT_GT(parked(call::writev), w0);  // it did have to wait
  });
}

TEST(Hook, WritevMovesEveryByteOnAPlainThread) {
  big_vector v;
  {
    // libc's own blocking fd.
    sock_pair s;
    std::string got;
    std::thread reader([&] { got = slow_read(s.b, v.size(), [] { std::this_thread::sleep_for(1ms); }); });
    EXPECT_EQ(::writev(s.a, v.iov, 3), static_cast<ssize_t>(v.size()));
    reader.join();
    EXPECT_TRUE(got == v.joined());
  }
  {
    // An fd the hook made non-blocking on a fiber, then written from a plain thread: still a
    // blocking fd to that thread (the hook waits in poll and goes on).
    sock_pair s;
    fibers::run([&] {
      auto w = fibers::spawn([&] {
        fibers::this_fiber::sleep_for(5ms);
        ASSERT_EQ(::write(s.b, "h", 1), 1);
      });
      char c;
      ASSERT_EQ(::read(s.a, &c, 1), 1);  // parks: s.a is the hook's now
      w.join();
    });
    ASSERT_NE(static_cast<int>(::syscall(SYS_fcntl, s.a, F_GETFL)) & O_NONBLOCK, 0);
    std::string got;
    std::thread reader([&] { got = slow_read(s.b, v.size(), [] { std::this_thread::sleep_for(1ms); }); });
    EXPECT_EQ(::writev(s.a, v.iov, 3), static_cast<ssize_t>(v.size()));
    reader.join();
    EXPECT_TRUE(got == v.joined());
  }
}

// sendmsg: every byte, and the ancillary data (a passed fd) exactly once, with the first bytes.
TEST(Hook, SendmsgMovesEveryByteAndSendsAncillaryDataOnce) {
  fibers::run([] {
    sock_pair s;
    int pipefd[2];
    ASSERT_EQ(::pipe2(pipefd, O_CLOEXEC), 0);
    const std::string payload(2 << 20, 'm');
    std::size_t got = 0;
    int fds_received = 0;
    auto reader = fibers::spawn([&] {
      std::vector<char> buf(65536);
      for (int i = 0; got < payload.size(); ++i) {
        if (i % 8 == 0) fibers::this_fiber::sleep_for(1ms);
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int)) * 4];
        iovec iov{buf.data(), buf.size()};
        msghdr m{};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = control;
        m.msg_controllen = sizeof control;
        const ssize_t r = ::recvmsg(s.b, &m, MSG_CMSG_CLOEXEC);
        if (r <= 0) break;
        got += static_cast<std::size_t>(r);
        for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
          if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            fds_received += static_cast<int>(n);
            int fds[4];
            std::memcpy(fds, CMSG_DATA(c), n * sizeof(int));
            for (std::size_t k = 0; k < n; ++k) ::close(fds[k]);
          }
        }
      }
    });
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{const_cast<char*>(payload.data()), payload.size()};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pipefd[0], sizeof(int));
    const auto s0 = parked(call::sendmsg);
    EXPECT_EQ(::sendmsg(s.a, &m, 0), static_cast<ssize_t>(payload.size()));
    EXPECT_GT(parked(call::sendmsg), s0);
    reader.join();
    EXPECT_EQ(got, payload.size());
    EXPECT_EQ(fds_received, 1);
    ::close(pipefd[0]);
    ::close(pipefd[1]);
  });
}

// SO_SNDTIMEO still ends a vector write early, with the count moved (as the kernel does).
TEST(Hook, SndTimeoEndsAWritevWithWhatWasMoved) {
  auto check = [](int fd) {
    timeval tv{0, 30'000};
    ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
    big_vector v;
    const ssize_t n = ::writev(fd, v.iov, 3);
    EXPECT_GT(n, 0);
    EXPECT_LT(n, static_cast<ssize_t>(v.size()));
  };
  fibers::run([&] {
    sock_pair s;
    check(s.a);
  });
  sock_pair s;
  check(s.a);  // libc's own
}

/// A connected loopback TCP pair made with plain calls (on a fiber: the hook's sockets).
struct tcp_pair {
  int a = -1, b = -1;
  tcp_pair() {
    const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (l < 0 || ::bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(l, 1) != 0 ||
        ::getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("listen");
    }
    a = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(a, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("connect");
    b = ::accept(l, nullptr, nullptr);
    ::close(l);
    if (b < 0) throw std::runtime_error("accept");
  }
  tcp_pair(const tcp_pair&) = delete;
  tcp_pair& operator=(const tcp_pair&) = delete;
  ~tcp_pair() {
    ::close(a);
    ::close(b);
  }
};

// After a short read the hook parks the next read at once (no read that says EAGAIN) - and
// only until the reactor reports an edge: data whose edge the loop took in while the reader
// was busy elsewhere is read at once, not after the stale-registration check a second later.
TEST(Hook, ReadAfterAShortReadParksAtOnceYetSeesDataThatCameMeanwhile) {
  auto check = [](int r, int w) {
    char buf[256];
    auto writer = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(5ms);
      ASSERT_EQ(::write(w, "abc", 3), 3);
    });
    ASSERT_EQ(::read(r, buf, sizeof buf), 3);  // parks (registers r), then a short read
    writer.join();
    // Parks without trying, and the next write wakes it.
    auto writer2 = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(5ms);
      ASSERT_EQ(::write(w, "de", 2), 2);
    });
    ASSERT_EQ(::read(r, buf, sizeof buf), 2);
    EXPECT_EQ(std::string(buf, 2), "de");
    writer2.join();
    // Data arrives while this fiber sleeps: the loop takes its edge with nobody waiting on r.
    ASSERT_EQ(::write(w, "fgh", 3), 3);
    fibers::this_fiber::sleep_for(20ms);
    const auto r0 = parked(call::read);
    const auto t0 = fibers::clock::now();
    ASSERT_EQ(::read(r, buf, sizeof buf), 3);
    EXPECT_LT(fibers::clock::now() - t0, 200ms);
    EXPECT_EQ(parked(call::read), r0);  // read at once
    EXPECT_EQ(std::string(buf, 3), "fgh");
  };
  fibers::run([&] {
    tcp_pair t;
    check(t.a, t.b);
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    check(p[0], p[1]);
    ::close(p[0]);
    ::close(p[1]);
  });
}

}  // namespace
