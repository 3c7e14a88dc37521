// tests/affinity_test.cpp - connection affinity: SO_INCOMING_CPU (incoming_cpu), the CPU each
// I/O thread runs on (runtime::thread_on_cpu), affine_thread, and tcp_server's
// follow_incoming_cpu serving a loopback connection on its client's thread.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fibers/affinity.hpp"
#include "fibers/tcp_server.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;

/// The first two CPUs this process may run on, or fewer.
std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

/// Pins the calling OS thread to `cpu`.
void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  ASSERT_EQ(::sched_setaffinity(0, sizeof set, &set), 0) << "sched_setaffinity(" << cpu << ")";
}

/// A blocking loopback listener on an ephemeral port (plain sockets, no runtime).
struct plain_listener {
  int fd = -1;
  int port = 0;
  plain_listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "loopback listener: " << std::strerror(errno);
      return;
    }
    port = ntohs(a.sin_port);
  }
  ~plain_listener() { ::close(fd); }
};

/// A blocking connect to 127.0.0.1:port; returns the fd (-1 on failure).
int plain_connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST(Affinity, IncomingCpuOfALoopbackConnectionIsTheConnectingThreadsCpu) {
  // What the feature stands on: over loopback the kernel processes the handshake on the
  // connecting thread's CPU, so the accepted socket reports that CPU.
  const std::vector<int> cpus = allowed_cpus();
  plain_listener l;
  for (const int cpu : cpus) {
    int client = -1;
    std::thread t([&] {
      pin_to(cpu);
      client = plain_connect(l.port);
    });
    t.join();
    ASSERT_GE(client, 0);
    const int accepted = ::accept(l.fd, nullptr, nullptr);
    ASSERT_GE(accepted, 0);
    EXPECT_EQ(fibers::incoming_cpu(accepted), std::optional<int>(cpu)) << "connected from CPU " << cpu;
    ::close(accepted);
    ::close(client);
  }
}

TEST(Affinity, IncomingCpuOfWhatIsNoSocketIsEmptyAndKeepsErrno) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  errno = EINTR;
  EXPECT_EQ(fibers::incoming_cpu(p[0]), std::nullopt);
  EXPECT_EQ(fibers::incoming_cpu(-1), std::nullopt);
  EXPECT_EQ(errno, EINTR);
  ::close(p[0]);
  ::close(p[1]);
}

/// Pins I/O thread k of `rt` to cpus[k] and waits until each has polled its reactor there.
void pin_io_threads(fibers::runtime& rt, const std::vector<int>& cpus) {
  for (std::size_t k = 0; k < cpus.size(); ++k) {
    rt.spawn_on(k, [cpu = cpus[k]] {
      pin_to(cpu);
      fibers::this_fiber::sleep_for(5ms);  // parks: the thread polls its reactor on the new CPU
    }).join();
  }
}

TEST(Affinity, ThreadOnCpuNamesTheIoThreadRunningThere) {
  const std::vector<int> cpus = allowed_cpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs in the affinity mask, has " << cpus.size();
  fibers::runtime rt(fibers::runtime_options{.io_threads = 2});
  pin_io_threads(rt, cpus);
  EXPECT_EQ(rt.thread_on_cpu(cpus[0]), std::optional<std::size_t>(0));
  EXPECT_EQ(rt.thread_on_cpu(cpus[1]), std::optional<std::size_t>(1));
  EXPECT_EQ(rt.thread_on_cpu(-1), std::nullopt);
  EXPECT_EQ(rt.thread_on_cpu(CPU_SETSIZE + 7), std::nullopt);
  // Swapped: the mapping follows the threads.
  pin_io_threads(rt, {cpus[1], cpus[0]});
  EXPECT_EQ(rt.thread_on_cpu(cpus[1]), std::optional<std::size_t>(0));
  EXPECT_EQ(rt.thread_on_cpu(cpus[0]), std::optional<std::size_t>(1));
}

TEST(Affinity, AffineThreadFallsBackWhenItCannotTell) {
  fibers::runtime one;  // one I/O thread: always the fallback
  plain_listener l;
  const int client = plain_connect(l.port);
  ASSERT_GE(client, 0);
  const int accepted = ::accept(l.fd, nullptr, nullptr);
  ASSERT_GE(accepted, 0);
  EXPECT_EQ(fibers::affine_thread(one, accepted, 0), 0u);
  fibers::runtime two(fibers::runtime_options{.io_threads = 2});
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  EXPECT_EQ(fibers::affine_thread(two, p[0], 1), 1u);  // no incoming CPU
  ::close(p[0]);
  ::close(p[1]);
  ::close(accepted);
  ::close(client);
}

TEST(Affinity, TcpServerFollowingIncomingCpuServesOnTheClientsThread) {
  const std::vector<int> cpus = allowed_cpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs in the affinity mask, has " << cpus.size();
  fibers::runtime rt(fibers::runtime_options{.io_threads = 2});
  pin_io_threads(rt, cpus);
  // Only thread 0 listens; a connection from a client on thread 1 must be served on thread 1,
  // and the handed-over socket must work there (an echo of a few KiB, then EOF).
  std::atomic<int> served_on[2] = {-1, -1};
  std::atomic<int> registrations[2] = {-1, -1};  // epoll sets holding the connection's fd
  std::atomic<int> next{0};
  fibers::server_options opts{.threads = 1, .follow_incoming_cpu = true};
  auto server = fibers::tcp_server::start(rt, fibers::endpoint::parse("127.0.0.1:0"), [&](fibers::tcp_stream& c) {
    std::vector<char> buf(256);
    const std::size_t n = c.read_some(buf, 10s);  // the client's index, then its payload
    ASSERT_GT(n, 0u);
    served_on[buf[0] - '0'] = static_cast<int>(fibers::runtime::current_thread_index());
    registrations[buf[0] - '0'] = fibers_test::epoll_sets_holding(c.native_handle());
    ++next;
    c.write_all(fibers::const_buffer(buf.data(), n), 10s);
    std::vector<char> rest(64 * 1024);
    for (std::size_t m; (m = c.read_some(rest, 10s)) > 0;) c.write_all(fibers::const_buffer(rest.data(), m), 10s);
  }, opts);
  const fibers::endpoint ep = server.local_endpoint();
  for (std::size_t k : {std::size_t(1), std::size_t(0)}) {
    rt.spawn_on(k, [&, k] {
      auto s = fibers::stream_socket::connect(ep, 10s);
      std::string hello = std::to_string(k) + "-hello";
      s.write_all(fibers::const_buffer(hello.data(), hello.size()), 10s);
      std::vector<char> back(hello.size());
      s.read_exact(back, 10s);
      EXPECT_EQ(std::string(back.begin(), back.end()), hello);
      const std::vector<char> payload = fibers_test::pattern(32 * 1024, static_cast<std::uint32_t>(k + 1));
      s.write_all(fibers::const_buffer(payload.data(), payload.size()), 10s);
      s.shutdown(fibers::stream_socket::shutdown_type::write);
      std::vector<char> echoed(payload.size());
      s.read_exact(echoed, 10s);
      EXPECT_EQ(echoed, payload);
      std::vector<char> eof(1);
      EXPECT_EQ(s.read_some(eof, 10s), 0u);
    }).join();
  }
  EXPECT_EQ(next.load(), 2);
  EXPECT_EQ(served_on[1].load(), 1) << "the client ran on I/O thread 1, pinned to CPU " << cpus[1];
  EXPECT_EQ(served_on[0].load(), 0);
  // Handed over, the fd is registered with the serving thread's reactor only: one left on the
  // accepting thread would take an event there for every packet.
  EXPECT_EQ(registrations[1].load(), 1);
  EXPECT_EQ(registrations[0].load(), 1);
  server.stop();
  server.join();
}

}  // namespace
