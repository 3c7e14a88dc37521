// tests/udp_socket_test.cpp - datagrams: round trips, sender address, deadlines, truncation
// (silent in recv_from, reported by receive_from).
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::udp_socket;
using fibers_test::ms_since;

void check_round_trip(const fibers::endpoint& any_port) {
  auto a = udp_socket::bind(any_port);
  auto b = udp_socket::bind(any_port);
  EXPECT_NE(a.local_endpoint().port(), 0);
  EXPECT_NE(a.local_endpoint(), b.local_endpoint());
  EXPECT_EQ(a.send_to("ping", b.local_endpoint(), 5s), 4u);
  char buf[64];
  fibers::endpoint from;
  std::size_t n = b.recv_from(buf, from, 5s);
  EXPECT_EQ(std::string(buf, n), "ping");
  EXPECT_EQ(from, a.local_endpoint()) << from.to_string();
  // Reply to whoever sent it.
  EXPECT_EQ(b.send_to("pong!", from, 5s), 5u);
  fibers::endpoint from2;
  n = a.recv_from(buf, from2, 5s);
  EXPECT_EQ(std::string(buf, n), "pong!");
  EXPECT_EQ(from2, b.local_endpoint()) << from2.to_string();
}

TEST(UdpSocket, SendToAndRecvFromRoundTripOverIpv4) {
  fibers::run([] { check_round_trip(fibers::endpoint::loopback_v4(0)); });
}

TEST(UdpSocket, SendToAndRecvFromRoundTripOverIpv6) {
  fibers::run([] { check_round_trip(fibers::endpoint::loopback_v6(0)); });
}

TEST(UdpSocket, RecvFromParksUntilADatagramArrives) {
  fibers::run([] {
    auto a = udp_socket::bind(fibers::endpoint::loopback_v4(0));
    auto b = udp_socket::bind(fibers::endpoint::loopback_v4(0));
    std::string got;
    fibers::endpoint from;
    auto receiver = fibers::spawn([&] {
      char buf[16];
      got.assign(buf, b.recv_from(buf, from, 10s));
    });
    fibers::this_fiber::sleep_for(20ms);  // the receiver is parked by now
    EXPECT_TRUE(got.empty());
    a.send_to("late", b.local_endpoint());
    receiver.join();
    EXPECT_EQ(got, "late");
    EXPECT_EQ(from, a.local_endpoint());
  });
}

TEST(UdpSocket, RecvFromTimesOutAtTheDeadlineInBothForms) {
  fibers::run([] {
    auto u = udp_socket::bind(fibers::endpoint::loopback_v4(0));
    char buf[16];
    fibers::endpoint from;
    std::error_code ec;
    auto start = fibers::clock::now();
    EXPECT_EQ(u.recv_from(buf, from, ec, 100ms), 0u);
    EXPECT_EQ(ec, std::errc::timed_out) << ec.message();
    EXPECT_GE(ms_since(start), 100ms) << "timed out before the deadline";
    EXPECT_LT(ms_since(start), 10s);
    start = fibers::clock::now();
    try {
      u.recv_from(buf, from, 50ms);
      FAIL() << "recv_from past its deadline did not throw";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out);
    }
    EXPECT_GE(ms_since(start), 50ms);
    // The socket's default timeout applies when no deadline is given.
    u.set_timeout(60ms);
    start = fibers::clock::now();
    u.recv_from(buf, from, ec);
    EXPECT_EQ(ec, std::errc::timed_out) << ec.message();
    EXPECT_GE(ms_since(start), 60ms);
  });
}

// Documented behaviour: recv_from cuts a datagram larger than the buffer to the buffer; the call
// returns the bytes stored (at most the buffer size) and the rest of that datagram is dropped
// (receive_from reports it, see below).
TEST(UdpSocket, RecvFromTruncatesADatagramLargerThanTheBufferToIt) {
  fibers::run([] {
    auto a = udp_socket::bind(fibers::endpoint::loopback_v4(0));
    auto b = udp_socket::bind(fibers::endpoint::loopback_v4(0));
    const auto big = fibers_test::pattern(1000, 3);
    EXPECT_EQ(a.send_to(big, b.local_endpoint()), 1000u);
    a.send_to("next", b.local_endpoint());
    char small[10];
    fibers::endpoint from;
    std::size_t n = b.recv_from(small, from, 5s);
    EXPECT_EQ(n, sizeof small);
    EXPECT_EQ(std::string(small, sizeof small), std::string(big.data(), sizeof small));
    char buf[64];
    n = b.recv_from(buf, from, 5s);  // the next datagram, not the rest of the first
    EXPECT_EQ(std::string(buf, n), "next");
  });
}

TEST(UdpSocket, ReceiveFromReportsADatagramLongerThanTheBufferAndTheNextIsUnaffected) {
  fibers::run([] {
    auto a = udp_socket::bind(fibers::endpoint::loopback_v4(0));
    auto b = udp_socket::bind(fibers::endpoint::loopback_v4(0));
    const auto big = fibers_test::pattern(100, 7);
    ASSERT_EQ(a.send_to(big, b.local_endpoint()), 100u);
    a.send_to("next", b.local_endpoint());
    char small[10];
    auto got = b.receive_from(small, 5s);
    EXPECT_TRUE(got.truncated);
    EXPECT_EQ(got.size, sizeof small);
    EXPECT_EQ(got.datagram_size, 100u);
    EXPECT_EQ(got.from, a.local_endpoint()) << got.from.to_string();
    EXPECT_EQ(std::string(small, sizeof small), std::string(big.data(), sizeof small));

    char buf[64];
    std::error_code ec;
    auto next = b.receive_from(buf, ec, 5s);  // the next datagram, not the rest of the first
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_FALSE(next.truncated);
    EXPECT_EQ(next.size, 4u);
    EXPECT_EQ(next.datagram_size, 4u);
    EXPECT_EQ(std::string(buf, next.size), "next");
  });
}

TEST(UdpSocket, ReceiveFromSaysTruncatedOnlyWhenTheDatagramDoesNotFit) {
  fibers::run([] {
    auto a = udp_socket::bind(fibers::endpoint::loopback_v6(0));
    auto b = udp_socket::bind(fibers::endpoint::loopback_v6(0));
    a.send_to("0123456789", b.local_endpoint());
    a.send_to("", b.local_endpoint());
    a.send_to("x", b.local_endpoint());
    char buf[10];
    auto full = b.receive_from(buf, 5s);
    EXPECT_FALSE(full.truncated);
    EXPECT_EQ(full.size, 10u);
    EXPECT_EQ(full.datagram_size, 10u);
    auto empty = b.receive_from(buf, 5s);
    EXPECT_FALSE(empty.truncated);
    EXPECT_EQ(empty.datagram_size, 0u);
    // An empty buffer still learns the datagram's length (and consumes the datagram).
    auto sized = b.receive_from(fibers::mutable_buffer{}, 5s);
    EXPECT_TRUE(sized.truncated);
    EXPECT_EQ(sized.size, 0u);
    EXPECT_EQ(sized.datagram_size, 1u);
    EXPECT_EQ(sized.from, a.local_endpoint());
  });
}

TEST(UdpSocket, ReceiveFromPastItsDeadlineFailsInBothFormsNamingTheOperation) {
  fibers::run([] {
    auto u = udp_socket::bind(fibers::endpoint::loopback_v4(0));
    char buf[8];
    std::error_code ec;
    auto got = u.receive_from(buf, ec, 20ms);
    EXPECT_EQ(ec, std::errc::timed_out) << ec.message();
    EXPECT_EQ(got.size, 0u);
    EXPECT_FALSE(got.truncated);
    EXPECT_EQ(got.from.family(), AF_UNSPEC);
    try {
      u.receive_from(buf, 20ms);
      FAIL() << "receive_from past its deadline did not throw";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out);
      const std::string what = e.what();
      EXPECT_NE(what.find("receive_from on " + u.local_endpoint().to_string()), std::string::npos)
          << what;
    }
  });
}

TEST(UdpSocket, DatagramBoundariesArePreserved) {
  fibers::run([] {
    auto a = udp_socket::bind(fibers::endpoint::loopback_v4(0));
    auto b = udp_socket::bind(fibers::endpoint::loopback_v4(0));
    for (const char* m : {"a", "bb", "", "ccc"}) a.send_to(m, b.local_endpoint());
    char buf[64];
    fibers::endpoint from;
    for (const char* m : {"a", "bb", "", "ccc"}) {
      std::error_code ec;
      std::size_t n = b.recv_from(buf, from, ec, 5s);
      ASSERT_FALSE(ec) << ec.message();
      EXPECT_EQ(std::string(buf, n), m);
    }
  });
}

TEST(UdpSocket, SendToAnEndpointOfAnotherFamilyReportsAnError) {
  fibers::run([] {
    auto u = udp_socket::bind(fibers::endpoint::loopback_v4(0));
    std::error_code ec;
    u.send_to("x", fibers::endpoint::loopback_v6(9), ec, 1s);
    EXPECT_TRUE(ec) << "sending to [::1] from an IPv4 socket succeeded";
    EXPECT_THROW(u.send_to("x", fibers::endpoint::loopback_v6(9), 1s), std::system_error);
  });
}

TEST(UdpSocket, CancelingAFiberBlockedInRecvFromGivesCanceled) {
  fibers::run([] {
    auto u = udp_socket::bind(fibers::endpoint::loopback_v4(0));
    std::error_code ec;
    auto f = fibers::spawn([&] {
      char buf[8];
      fibers::endpoint from;
      u.recv_from(buf, from, ec, 30s);
    });
    fibers::this_fiber::sleep_for(10ms);
    f.cancel();
    f.join();
    EXPECT_EQ(ec, fibers::errc::canceled) << ec.message();
  });
}

}  // namespace
