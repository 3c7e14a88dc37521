// tests/stream_socket_test.cpp - connected TCP/Unix stream sockets: transfer, EOF, errors,
// deadlines, close/cancel while waiting, options and addresses.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <csignal>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::stream_socket;
using fibers_test::make_tcp_pair;
using fibers_test::ms_since;
using shut = fibers::stream_socket::shutdown_type;

void check_echo(const fibers::endpoint& listen_on) {
  auto l = fibers::stream_listener::bind(listen_on);
  auto server = fibers_test::spawn_echo_once(l);
  auto c = stream_socket::connect(l.local_endpoint(), 10s);
  c.write_all("hello fibers", 10s);
  std::string got(12, '\0');
  c.read_exact(got, 10s);
  EXPECT_EQ(got, "hello fibers");
  c.shutdown(shut::write);
  char b[4];
  EXPECT_EQ(c.read_some(b, 10s), 0u);
  server.join();
}

TEST(StreamSocket, EchoesOverIpv4Loopback) {
  fibers::run([] { check_echo(fibers::endpoint::loopback_v4(0)); });
}

TEST(StreamSocket, EchoesOverIpv6Loopback) {
  fibers::run([] { check_echo(fibers::endpoint::loopback_v6(0)); });
}

TEST(StreamSocket, EchoesOverAUnixSocket) {
  fibers_test::temp_dir dir;
  fibers::run([&] { check_echo(fibers::endpoint::unix_path(dir.file("echo.sock"))); });
}

constexpr std::size_t kBig = 8 * 1024 * 1024;

TEST(StreamSocket, BigTransferWithWriteSomeAndReadExactKeepsEveryByte) {
  fibers::run([] {
    const auto data = fibers_test::pattern(kBig, 7);
    auto l = fibers::stream_listener::bind(fibers::endpoint::loopback_v4(0));
    auto server = fibers_test::spawn_echo_once(l);
    auto c = stream_socket::connect(l.local_endpoint(), 10s);
    std::size_t writes = 0;
    auto writer = fibers::spawn([&] {  // one fiber writes while another reads
      for (std::size_t off = 0; off < data.size(); ++writes)
        off += c.write_some(fibers::const_buffer(data.data() + off, data.size() - off), 30s);
      c.shutdown(shut::write);
    });
    std::vector<char> got(kBig);
    c.read_exact(got, 60s);
    char b[1];
    EXPECT_EQ(c.read_some(b, 10s), 0u);
    writer.join();
    server.join();
    EXPECT_TRUE(got == data) << "echoed bytes differ";
    EXPECT_GT(writes, 1u) << "8 MiB went out in one write_some: no partial write exercised";
  });
}

TEST(StreamSocket, BigTransferWithWriteAllAndReadSomeKeepsEveryByte) {
  fibers::run([] {
    const auto data = fibers_test::pattern(kBig, 9);
    auto l = fibers::stream_listener::bind(fibers::endpoint::loopback_v4(0));
    auto server = fibers_test::spawn_echo_once(l);
    auto c = stream_socket::connect(l.local_endpoint(), 10s);
    auto writer = fibers::spawn([&] {
      c.write_all(data, 60s);
      c.shutdown(shut::write);
    });
    std::vector<char> got;
    std::vector<char> chunk(256 * 1024);
    std::size_t reads = 0;
    for (;;) {
      std::size_t n = c.read_some(chunk, 30s);
      if (n == 0) break;
      ASSERT_LE(n, chunk.size());
      got.insert(got.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
      ++reads;
    }
    writer.join();
    server.join();
    EXPECT_EQ(got.size(), data.size());
    EXPECT_TRUE(got == data) << "echoed bytes differ";
    EXPECT_GE(reads, kBig / chunk.size());
  });
}

TEST(StreamSocket, ReadSomeReturnsZeroAtEndOfStream) {
  fibers::run([] {
    auto p = make_tcp_pair();
    p.server.write_all("abc");
    p.server.close();
    std::string got(3, '\0');
    p.client.read_exact(got, 10s);
    EXPECT_EQ(got, "abc");
    char b[16];
    EXPECT_EQ(p.client.read_some(b, 10s), 0u);
    std::error_code ec = std::make_error_code(std::errc::io_error);
    EXPECT_EQ(p.client.read_some(b, ec, 10s), 0u);  // EOF stays EOF and is not an error
    EXPECT_FALSE(ec) << ec.message();
  });
}

TEST(StreamSocket, ReadExactOnEarlyEndOfStreamGivesEndOfStream) {
  fibers::run([] {
    auto p = make_tcp_pair();
    p.server.write_all("abc");
    p.server.shutdown(shut::write);
    std::vector<char> buf(10);
    std::error_code ec;
    EXPECT_EQ(p.client.read_exact(buf, ec, 10s), 3u);  // the bytes read so far
    EXPECT_EQ(ec, fibers::errc::end_of_stream);
    EXPECT_EQ(std::string(buf.data(), 3), "abc");
    try {
      p.client.read_exact(buf, 10s);
      FAIL() << "read_exact at end of stream did not throw";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), fibers::errc::end_of_stream);
    }
  });
}

TEST(StreamSocket, ConnectToAClosedPortIsRefusedAndTheMessageNamesTheAddress) {
  fibers::run([] {
    auto port = fibers_test::closed_port();
    std::error_code ec;
    auto s = stream_socket::connect(fibers::endpoint::loopback_v4(port), ec, 10s);
    EXPECT_EQ(ec, std::errc::connection_refused) << ec.message();
    EXPECT_FALSE(s.is_open());
    try {
      stream_socket::connect(fibers::endpoint::loopback_v4(port), 10s);
      FAIL() << "connect to a closed port did not throw";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::connection_refused);
      EXPECT_NE(std::string(e.what()).find("connect 127.0.0.1:" + std::to_string(port)),
                std::string::npos)
          << e.what();
    }
  });
}

TEST(StreamSocket, ReadTimesOutAtTheDeadlineInBothForms) {
  fibers::run([] {
    auto p = make_tcp_pair();
    char b[8];
    std::error_code ec;
    auto start = fibers::clock::now();
    EXPECT_EQ(p.client.read_some(b, ec, 100ms), 0u);
    EXPECT_EQ(ec, std::errc::timed_out) << ec.message();
    EXPECT_GE(ms_since(start), 100ms) << "timed out before the deadline";
    EXPECT_LT(ms_since(start), 10s);

    start = fibers::clock::now();
    try {
      p.client.read_some(b, fibers::deadline::at(fibers::clock::now() + 50ms));
      FAIL() << "read_some past its deadline did not throw";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out);
    }
    EXPECT_GE(ms_since(start), 50ms);

    // read_exact's deadline covers the whole transfer, not each chunk.
    auto trickle = fibers::spawn([&] {
      for (int i = 0; i < 20; ++i) {
        p.server.write_all("x");
        fibers::this_fiber::sleep_for(20ms);
      }
    });
    std::vector<char> buf(100);
    start = fibers::clock::now();
    std::size_t n = p.client.read_exact(buf, ec, 150ms);
    EXPECT_EQ(ec, std::errc::timed_out);
    EXPECT_GE(ms_since(start), 150ms);
    EXPECT_GT(n, 0u);
    ASSERT_LT(n, 20u);
    trickle.join();
    // The socket still works after a timeout.
    p.server.write_all("ok");
    std::string rest(20 - n + 2, '\0');
    p.client.read_exact(rest, 10s);
    EXPECT_EQ(rest.substr(rest.size() - 2), "ok");
  });
}

TEST(StreamSocket, SocketTimeoutAppliesToCallsWithoutADeadline) {
  fibers::run([] {
    auto p = make_tcp_pair();
    EXPECT_FALSE(p.client.timeout().has_value());
    p.client.set_timeout(80ms);
    ASSERT_TRUE(p.client.timeout().has_value());
    EXPECT_EQ(*p.client.timeout(), 80ms);
    char b[8];
    std::error_code ec;
    auto start = fibers::clock::now();
    p.client.read_some(b, ec);
    EXPECT_EQ(ec, std::errc::timed_out) << ec.message();
    EXPECT_GE(ms_since(start), 80ms);
    // An explicit deadline, or deadline::never(), replaces the default timeout.
    for (fibers::deadline dl : {fibers::deadline(5s), fibers::deadline::never()}) {
      auto late = fibers::spawn([&] {
        fibers::this_fiber::sleep_for(250ms);
        p.server.write_all("y");
      });
      EXPECT_EQ(p.client.read_some(b, ec, dl), 1u);
      EXPECT_FALSE(ec) << ec.message();
      late.join();
    }
    p.client.set_timeout(std::nullopt);
    EXPECT_FALSE(p.client.timeout().has_value());
  });
}

TEST(StreamSocket, WriteAllToAPeerThatDoesNotReadTimesOut) {
  fibers::run([] {
    auto p = make_tcp_pair();
    std::vector<char> big(16 * 1024 * 1024);  // far more than the socket buffers hold
    std::error_code ec;
    auto start = fibers::clock::now();
    std::size_t n = p.client.write_all(big, ec, 200ms);
    EXPECT_EQ(ec, std::errc::timed_out) << ec.message();
    EXPECT_GE(ms_since(start), 200ms);
    EXPECT_GT(n, 0u);
    EXPECT_LT(n, big.size());
  });
}

/// Closes `s` with SO_LINGER {on, 0}: the kernel sends RST instead of FIN.
void reset(stream_socket& s) {
  linger lg{1, 0};
  ASSERT_EQ(::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  s.close();
}

TEST(StreamSocket, PeerResetGivesConnectionResetAndWritingDoesNotRaiseSigpipe) {
  std::signal(SIGPIPE, SIG_DFL);  // so a send without MSG_NOSIGNAL would kill this binary
  fibers::run([] {
    auto p = make_tcp_pair();
    reset(p.server);
    char b[8];
    try {
      p.client.read_some(b, 10s);
      FAIL() << "read from a reset connection did not throw";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::connection_reset) << e.what();
    }
    std::vector<char> data(64 * 1024);
    std::error_code wec;
    for (int i = 0; i < 100 && !wec; ++i) p.client.write_all(data, wec, 10s);
    EXPECT_TRUE(wec == std::errc::broken_pipe || wec == std::errc::connection_reset)
        << wec.message();

    // Writing first (no read noticed the reset) fails too, and the reset stays visible.
    auto q = make_tcp_pair();
    reset(q.server);
    fibers::this_fiber::sleep_for(20ms);  // let the RST arrive
    wec.clear();
    for (int i = 0; i < 100 && !wec; ++i) q.client.write_all(data, wec, 10s);
    EXPECT_TRUE(wec == std::errc::broken_pipe || wec == std::errc::connection_reset)
        << wec.message();
  });
}

TEST(StreamSocket, CloseWakesAFiberBlockedInReadWithClosedAndReusedFdsStayApart) {
  fibers::run([] {
    auto p = make_tcp_pair();
    std::error_code ec;
    bool returned = false;
    auto reader = fibers::spawn([&] {
      char b[8];
      p.client.read_some(b, ec, 10s);
      returned = true;
    });
    fibers::this_fiber::sleep_for(20ms);
    ASSERT_FALSE(returned);
    const int old_fd = p.client.native_handle();
    bool reused = false;
    p.client.close();
    EXPECT_FALSE(p.client.is_open());
    EXPECT_EQ(p.client.native_handle(), -1);
    // Before the woken reader runs, reuse fd numbers and make the new sockets readable: the
    // old waiter must get errc::closed, not the new sockets' readiness.
    std::vector<stream_socket> fresh, peers;
    fresh.reserve(100);
    peers.reserve(100);
    for (int i = 0; i < 100; ++i) {
      int sv[2];
      ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
      fresh.emplace_back(sv[0]);  // adopting makes the fd non-blocking
      peers.emplace_back(sv[1]);
      EXPECT_NE(::fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
      reused = reused || sv[0] == old_fd || sv[1] == old_fd;
      peers.back().write_all("new" + std::to_string(i % 10));
    }
    ASSERT_TRUE(reused) << "fd " << old_fd << " was not reused: the scenario did not happen";
    reader.join();
    EXPECT_EQ(ec, fibers::errc::closed) << ec.message();
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      std::string got(4, '\0');
      fresh[i].read_exact(got, 10s);
      EXPECT_EQ(got, "new" + std::to_string(i % 10));
    }

    auto q = make_tcp_pair();  // the throwing form reports closed, not canceled
    bool closed = false;
    auto r2 = fibers::spawn([&] {
      char b[8];
      try {
        q.client.read_some(b, 10s);
      } catch (const std::system_error& e) {
        closed = e.code() == fibers::errc::closed;
      }
    });
    fibers::this_fiber::sleep_for(10ms);
    q.client.close();
    r2.join();
    EXPECT_TRUE(closed);
  });
}

TEST(StreamSocket, SecondReaderOrWriterOnTheSameSocketGetsBusy) {
  fibers::run([] {
    auto p = make_tcp_pair();
    std::string got;
    auto a = fibers::spawn([&] {
      char b[8];
      got.assign(b, p.client.read_some(b, 10s));
    });
    fibers::this_fiber::sleep_for(10ms);
    char b2[8];
    std::error_code ec;
    EXPECT_EQ(p.client.read_some(b2, ec, 2s), 0u);
    EXPECT_EQ(ec, fibers::errc::busy) << ec.message();
    p.client.write_all("w", 10s);  // a writer beside the parked reader is fine
    char w;
    EXPECT_EQ(p.server.read_some(fibers::mutable_buffer(&w, 1), 10s), 1u);
    p.server.write_all("r");
    a.join();
    EXPECT_EQ(got, "r");

    // Same for writers: park one on a full send buffer, a second one is busy.
    std::vector<char> big(16 * 1024 * 1024);  // far more than the socket buffers hold
    std::error_code wec;
    auto writer = fibers::spawn([&] { p.client.write_all(big, wec, 30s); });
    fibers::this_fiber::sleep_for(50ms);
    EXPECT_EQ(p.client.write_some("x", ec, 2s), 0u);
    EXPECT_EQ(ec, fibers::errc::busy) << ec.message();
    writer.cancel();
    writer.join();
    EXPECT_EQ(wec, fibers::errc::canceled);
  });
}

TEST(StreamSocket, CancelingAFiberBlockedInReadGivesCanceled) {
  fibers::run([] {
    auto p = make_tcp_pair();
    bool threw = false;
    auto a = fibers::spawn([&] {
      char b[8];
      try {
        p.client.read_some(b, 30s);
      } catch (const fibers::canceled&) {
        threw = true;
      }
    });
    fibers::this_fiber::sleep_for(10ms);
    a.cancel();
    a.join();
    EXPECT_TRUE(threw);
    std::error_code ec;
    auto b = fibers::spawn([&] {
      char buf[8];
      p.client.read_some(buf, ec, 30s);
    });
    fibers::this_fiber::sleep_for(10ms);
    b.cancel();
    b.join();
    EXPECT_EQ(ec, fibers::errc::canceled);
    // The canceled waits left nothing behind: the next read is not busy and gets the data.
    p.server.write_all("ok");
    std::string got(2, '\0');
    p.client.read_exact(got, 10s);
    EXPECT_EQ(got, "ok");
  });
}

TEST(StreamSocket, WaitReadableAndWritableWaitForReadinessWithoutMovingBytes) {
  fibers::run([] {
    auto p = make_tcp_pair();
    std::error_code ec;
    auto start = fibers::clock::now();
    p.client.wait_readable(ec, 100ms);
    EXPECT_EQ(ec, std::errc::timed_out);
    EXPECT_GE(ms_since(start), 100ms);

    // A waiter wakes when bytes arrive and leaves them in the socket.
    bool woke = false;
    auto waiter = fibers::spawn([&] {
      p.client.wait_readable(10s);
      woke = true;
    });
    fibers::this_fiber::sleep_for(20ms);
    EXPECT_FALSE(woke);
    p.server.write_all("xy");
    waiter.join();
    EXPECT_TRUE(woke);
    p.client.wait_readable(1s);  // still readable: nothing was consumed
    // The caller's own read empties the socket (the socket's readiness bit stays set): the
    // next wait must park, not return at once.
    char b[8];
    ASSERT_EQ(::recv(p.client.native_handle(), b, sizeof b, MSG_DONTWAIT), 2);
    ASSERT_EQ(::recv(p.client.native_handle(), b, sizeof b, MSG_DONTWAIT), -1);
    p.client.wait_readable(ec, 50ms);
    EXPECT_EQ(ec, std::errc::timed_out);
    // End of stream is readable.
    p.server.shutdown(shut::write);
    p.client.wait_readable(1s);
    EXPECT_EQ(p.client.read_some(b, 1s), 0u);

    // Writable: a new connection has room; fill its send buffer with the caller's own sends
    // (until the kernel agrees it is full: acknowledgements free room while the peer's
    // receive window still grows), then wait for room.
    p = make_tcp_pair();
    p.server.wait_writable(ec, 1s);
    EXPECT_FALSE(ec) << ec.message();
    std::vector<char> chunk(64 * 1024);
    for (int round = 0;; ++round) {
      ASSERT_LT(round, 10000) << "the send buffer never filled";
      while (::send(p.server.native_handle(), chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
      }
      ASSERT_EQ(errno, EAGAIN);
      pollfd pf{p.server.native_handle(), POLLOUT, 0};
      if (::poll(&pf, 1, 0) == 0) break;
      fibers::this_fiber::sleep_for(1ms);
    }
    p.server.wait_writable(ec, 50ms);
    EXPECT_EQ(ec, std::errc::timed_out);
    auto drain = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(20ms);
      std::vector<char> sink(1 << 20);
      for (int i = 0; i < 64; ++i) {  // until the sender has room again (or nothing is left)
        std::error_code rec;
        if (p.client.read_some(sink, rec, 100ms) == 0) break;
      }
    });
    p.server.wait_writable(10s);
    drain.join();
  });
}

TEST(StreamSocket, WaitReadableIsACancellationPointAndSeesClose) {
  fibers::run([] {
    auto p = make_tcp_pair();
    std::error_code ec;
    auto a = fibers::spawn([&] { p.client.wait_readable(ec, 30s); });
    fibers::this_fiber::sleep_for(10ms);
    a.cancel();
    a.join();
    EXPECT_EQ(ec, fibers::errc::canceled);
    bool threw = false;
    auto b = fibers::spawn([&] {
      try {
        p.client.wait_readable(30s);
      } catch (const fibers::canceled&) {
        threw = true;
      }
    });
    fibers::this_fiber::sleep_for(10ms);
    b.cancel();
    b.join();
    EXPECT_TRUE(threw);
    // The fiber's inherited deadline applies.
    auto start = fibers::clock::now();
    {
      fibers::deadline_scope within(fibers::deadline::after(50ms));
      p.client.wait_readable(ec);
    }
    EXPECT_EQ(ec, std::errc::timed_out);
    EXPECT_GE(ms_since(start), 50ms);
    // A second waiter in the same direction on this thread is busy; close wakes the first.
    auto c = fibers::spawn([&] { p.client.wait_readable(ec, 30s); });
    fibers::this_fiber::sleep_for(10ms);
    std::error_code busy;
    p.client.wait_readable(busy, 1s);
    EXPECT_EQ(busy, fibers::errc::busy);
    p.client.close();
    c.join();
    EXPECT_EQ(ec, fibers::errc::closed);
    p.client.wait_writable(ec, 1s);
    EXPECT_EQ(ec, std::errc::bad_file_descriptor);
    try {
      p.client.wait_readable(1s);
      ADD_FAILURE() << "no exception";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::bad_file_descriptor);
      EXPECT_NE(std::string(e.what()).find("wait_readable"), std::string::npos) << e.what();
    }
  });
}

int int_option(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  return ::getsockopt(fd, level, name, &v, &len) == 0 ? v : -1;
}

TEST(StreamSocket, NodelayAndKeepaliveAreSet) {
  fibers::run([] {
    auto p = make_tcp_pair();
    int fd = p.client.native_handle();
    for (bool on : {true, false}) {
      p.client.set_nodelay(on);
      p.client.set_keepalive(on);
      EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_NODELAY) > 0, on);
      EXPECT_EQ(int_option(fd, SOL_SOCKET, SO_KEEPALIVE) > 0, on);
    }
  });
}

TEST(StreamSocket, LocalAndPeerEndpointsMatchAcrossTheConnection) {
  fibers::run([] {
    for (auto bind_ep : {fibers::endpoint::loopback_v4(0), fibers::endpoint::loopback_v6(0)}) {
      auto l = fibers::stream_listener::bind(bind_ep);
      auto c = stream_socket::connect(l.local_endpoint(), 10s);
      auto s = l.accept(10s);
      EXPECT_EQ(c.peer_endpoint(), l.local_endpoint());
      EXPECT_EQ(s.local_endpoint(), l.local_endpoint());
      EXPECT_EQ(c.local_endpoint(), s.peer_endpoint());
      EXPECT_EQ(c.local_endpoint().family(), bind_ep.family());
      EXPECT_NE(c.local_endpoint().port(), 0);
    }
  });
}

TEST(StreamSocket, ShutdownWriteMakesThePeerReadEndOfStream) {
  fibers::run([] {
    auto p = make_tcp_pair();
    p.client.write_all("last");
    p.client.shutdown(shut::write);
    std::string got(4, '\0');
    p.server.read_exact(got, 10s);
    EXPECT_EQ(got, "last");
    char b[8];
    EXPECT_EQ(p.server.read_some(b, 10s), 0u);
    p.server.write_all("reply");  // half-close: the other direction still works
    std::string reply(5, '\0');
    p.client.read_exact(reply, 10s);
    EXPECT_EQ(reply, "reply");
  });
}

}  // namespace
