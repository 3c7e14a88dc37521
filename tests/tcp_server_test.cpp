// tests/tcp_server_test.cpp - tcp_server over several I/O threads (SO_REUSEPORT), stop(),
// bind errors, and runtime::spawn_on handles used across threads.
#include <array>
#include <atomic>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fibers/scope.hpp"
#include "fibers/tcp_server.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::endpoint;
using fibers::stream_socket;
using fibers::tcp_server;

constexpr std::size_t kMsg = 1024;

/// Per-I/O-thread connection counts, filled in by the handler.
struct served_by {
  std::array<std::atomic<int>, 2> thread{};
  tcp_server::handler echo_handler() {
    return [this](fibers::tcp_stream& c) {
      thread.at(fibers::runtime::current_thread_index()).fetch_add(1);
      std::vector<char> buf(64 * 1024);
      for (;;) {
        std::size_t n = c.read_some(buf, 10s);
        if (n == 0) break;
        c.write_all(fibers::const_buffer(buf.data(), n), 10s);
      }
    };
  }
};

/// One round trip of `msg` on `s`; true if the echo came back intact.
bool round_trip(stream_socket& s, const std::vector<char>& msg) {
  s.write_all(msg, 10s);
  std::vector<char> got(msg.size());
  s.read_exact(got, 10s);
  return got == msg;
}

/// On a fiber: `n` concurrent clients each connect to `ep` and echo 1 KiB; returns how many
/// got their own bytes back.
int echo_clients(const endpoint& ep, int n) {
  int ok = 0;
  std::vector<fibers::fiber> clients;
  for (int i = 0; i < n; ++i) {
    clients.push_back(fibers::spawn([&ok, &ep, i] {
      auto s = stream_socket::connect(ep, 10s);
      if (round_trip(s, fibers_test::pattern(kMsg, static_cast<std::uint32_t>(i)))) ++ok;
      s.shutdown(stream_socket::shutdown_type::write);
    }));
  }
  for (auto& c : clients) c.join();
  return ok;
}

TEST(TcpServer, StartedFromAPlainThreadServesConnectionsOnBothIoThreads) {
  fibers::runtime rt(2);
  served_by served;
  auto server = tcp_server::start(rt, endpoint::loopback_v4(0), served.echo_handler());
  const endpoint ep = server.local_endpoint();
  EXPECT_NE(ep.port(), 0) << "the real port was not reported";
  fibers::runtime clients(1);
  EXPECT_EQ(clients.run([&] { return echo_clients(ep, 200); }), 200);
  EXPECT_EQ(server.connections(), 200u);
  EXPECT_GE(served.thread[0].load(), 1) << "I/O thread 0 served no connection";
  EXPECT_GE(served.thread[1].load(), 1) << "I/O thread 1 served no connection";
  EXPECT_EQ(served.thread[0].load() + served.thread[1].load(), 200);
  server.stop();
  server.join();
}

TEST(TcpServer, StartedFromAFiberServesConnectionsOnBothIoThreads) {
  fibers::runtime rt(2);
  served_by served;
  rt.run([&] {
    auto server = tcp_server::start(endpoint::loopback_v4(0), served.echo_handler());
    EXPECT_NE(server.local_endpoint().port(), 0);
    EXPECT_EQ(echo_clients(server.local_endpoint(), 200), 200);
    EXPECT_EQ(server.connections(), 200u);
    server.stop();
    server.join();
  });
  EXPECT_GE(served.thread[0].load(), 1) << "I/O thread 0 served no connection";
  EXPECT_GE(served.thread[1].load(), 1) << "I/O thread 1 served no connection";
}

TEST(TcpServer, StopEndsAcceptingWhileRunningConnectionsGoOn) {
  fibers::runtime rt(2);
  served_by served;
  auto server = tcp_server::start(rt, endpoint::loopback_v4(0), served.echo_handler());
  const endpoint ep = server.local_endpoint();
  fibers::runtime clients(1);
  std::optional<stream_socket> conn;  // lives on the clients' I/O thread across run() calls
  clients.run([&] {
    conn = stream_socket::connect(ep, 10s);
    EXPECT_TRUE(round_trip(*conn, fibers_test::pattern(kMsg, 1)));
  });
  server.stop();
  server.join();
  const std::size_t accepted = server.connections();
  EXPECT_EQ(accepted, 1u);
  clients.run([&] {
    EXPECT_TRUE(round_trip(*conn, fibers_test::pattern(kMsg, 2))) << "a running connection ended at stop()";
    conn->shutdown(stream_socket::shutdown_type::write);
    char end;
    EXPECT_EQ(conn->read_some(fibers::mutable_buffer(&end, 1), 10s), 0u);
    conn.reset();
    // A new connection is refused, or at least never served.
    for (int i = 0; i < 5; ++i) {
      std::error_code ec;
      auto c = stream_socket::connect(ep, ec, 1s);
      if (ec) continue;
      c.write_all("ping", ec, 1s);
      char buf[4];
      std::size_t n = 0;
      if (!ec) n = c.read_some(buf, ec, 1s);
      EXPECT_TRUE(ec || n == 0) << "a connection made after stop() was echoed";
    }
  });
  EXPECT_EQ(server.connections(), accepted) << "accepted after stop()";
}

/// Calls `start` and checks that it throws EADDRINUSE with a message naming `ep`.
template <class F>
void expect_bind_error(const endpoint& ep, F&& start) {
  try {
    start();
    ADD_FAILURE() << "tcp_server::start on a port in use did not throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::address_in_use) << e.what();
    EXPECT_NE(std::string(e.what()).find(ep.to_string()), std::string::npos)
        << "message does not name " << ep.to_string() << ": " << e.what();
  }
}

TEST(TcpServer, BindFailureThrowsWithAMessageNamingTheAddress) {
  fibers::runtime rt(2);
  served_by served;
  std::optional<fibers::stream_listener> blocker;  // lives on I/O thread 0 across run() calls
  const endpoint ep = rt.run([&] {
    blocker = fibers::stream_listener::bind(endpoint::loopback_v4(0));  // no SO_REUSEPORT
    const endpoint bound = blocker->local_endpoint();
    expect_bind_error(bound, [&] { tcp_server::start(bound, served.echo_handler()); });
    return bound;
  });
  // From this plain thread, with the runtime form.
  expect_bind_error(ep, [&] { tcp_server::start(rt, ep, served.echo_handler()); });
  rt.run([&] {
    // The port still belongs to its owner, and the failed starts left nothing listening on it.
    auto c = stream_socket::connect(ep, 10s);
    auto s = blocker->accept(10s);
    c.write_all("x");
    char b = 0;
    s.read_exact(fibers::mutable_buffer(&b, 1), 10s);
    EXPECT_EQ(b, 'x');
    blocker.reset();
  });
  EXPECT_EQ(served.thread[0].load() + served.thread[1].load(), 0);
}

TEST(TcpServer, SpawnOnHandlesAreJoinedAndCanceledFromOtherThreads) {
  fibers::runtime rt(2);
  // From this plain thread.
  std::size_t where = 99;
  auto f = rt.spawn_on(1, [&where] { where = fibers::runtime::current_thread_index(); });
  f.join();
  EXPECT_EQ(where, 1u);
  auto sleeper = rt.spawn_on(1, "sleeper", [] { fibers::this_fiber::sleep_for(1h); });
  EXPECT_EQ(sleeper.name(), "sleeper");
  std::this_thread::sleep_for(20ms);
  sleeper.cancel();
  EXPECT_THROW(sleeper.join(), fibers::canceled);
  EXPECT_THROW(rt.spawn_on(2, [] {}), std::out_of_range);
  EXPECT_THROW(fibers::spawn_on(0, [] {}), std::logic_error);  // no runtime on this thread
  EXPECT_THROW(tcp_server::start(endpoint::loopback_v4(0), [](fibers::tcp_stream&) {}), std::logic_error);

  // From a fiber on thread 0: joined there, or by a plain thread; canceled from thread 0.
  rt.run([] {
    auto thrower = fibers::spawn_on(1, [] { throw std::invalid_argument("on thread 1"); });
    EXPECT_THROW(thrower.join(), std::invalid_argument);
    auto s1 = fibers::spawn_on(1, [] { fibers::this_fiber::sleep_for(1h); });
    fibers::this_fiber::sleep_for(10ms);
    const auto start = fibers::clock::now();
    s1.cancel();
    EXPECT_THROW(s1.join(), fibers::canceled);
    EXPECT_LT(fibers_test::ms_since(start), 10s);
    std::size_t idx = 99;
    auto s2 = fibers::spawn_on(1, [&idx] {
      fibers::this_fiber::sleep_for(20ms);
      idx = fibers::runtime::current_thread_index();
    });
    std::thread joiner([&s2] { s2.join(); });
    joiner.join();  // blocks thread 0 briefly; s2 runs on thread 1
    EXPECT_EQ(idx, 1u);
  });
}

TEST(TcpServer, SpawnOnFromAFiberWhoseDeadlineHasPassedStillReturnsTheHandle) {
  // Creating the fiber is not a wait the caller may abandon: the handle must not be lost.
  fibers::runtime rt(2);
  const bool ran = rt.run([] {
    bool child_ran = false;
    auto h = fibers::with_deadline(fibers::deadline::at(fibers::clock::now() - 1ms), [&] {
      return fibers::spawn_on(1, [&child_ran] { child_ran = true; });
    });
    EXPECT_TRUE(h.joinable());
    if (h.joinable()) h.join();
    return child_ran;
  });
  EXPECT_TRUE(ran);
}

}  // namespace
