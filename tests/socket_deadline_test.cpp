// tests/socket_deadline_test.cpp - Go-style socket deadlines (set_read_deadline,
// set_write_deadline, set_deadline: absolute, per direction, followed by calls in progress),
// deadlines already past, and set_timeout of zero or less. Cases after Go's
// net/timeout_test.go.
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::clock;
using fibers::stream_socket;
using fibers_test::make_tcp_pair;
using fibers_test::ms_since;

// Fills the peer's receive buffer and our send buffer, so the next write blocks.
void fill_send_buffer(stream_socket& s) {
  std::vector<char> chunk(64 * 1024);
  std::error_code ec;
  while (s.write_some(chunk, ec, 50ms) > 0) {
  }
  ASSERT_EQ(ec, std::errc::timed_out);
}

// A deadline already past fails at once with timed_out, without the read that would have
// succeeded: the data is still there afterwards (Go: TestReadTimeout's past deadline case).
TEST(SocketDeadline, ADeadlineInThePastFailsAtOnceAndConsumesNothing) {
  fibers::run([] {
    auto p = make_tcp_pair();
    p.server.write_all("data", 10s);
    fibers::this_fiber::sleep_for(10ms);
    char b[8];
    std::error_code ec;

    p.client.set_read_deadline(clock::now() - 1s);
    EXPECT_EQ(p.client.read_some(b, ec), 0u);
    EXPECT_EQ(ec, std::errc::timed_out);
    p.client.set_read_deadline(clock::now());  // "now" is already past when the call starts
    EXPECT_EQ(p.client.read_some(b, ec), 0u);
    EXPECT_EQ(ec, std::errc::timed_out);
    p.client.set_read_deadline(clock::time_point::max());

    EXPECT_EQ(p.client.read_some(b, ec, fibers::deadline::at(clock::now() - 1ms)), 0u);
    EXPECT_EQ(ec, std::errc::timed_out);
    EXPECT_EQ(p.client.read_exact(b, ec, fibers::deadline::at(clock::now() - 1ms)), 0u);
    EXPECT_EQ(ec, std::errc::timed_out);

    // An inherited deadline already past, too.
    fibers::with_deadline(fibers::deadline::at(clock::now() - 1ms), [&] {
      EXPECT_EQ(p.client.read_some(b, ec), 0u);
      EXPECT_EQ(ec, std::errc::timed_out);
    });

    std::string got(4, '\0');
    p.client.read_exact(got, 10s);
    EXPECT_EQ(got, "data") << "a call past its deadline consumed data";
  });
}

// set_timeout of zero or less means "already expired": today's bug was a negative timeout
// letting a write go through.
TEST(SocketDeadline, ZeroOrNegativeTimeoutFailsEveryCallAtOnce) {
  fibers::run([] {
    auto p = make_tcp_pair();
    char b[4];
    std::error_code ec;
    for (auto t : {clock::duration(-5s), clock::duration::zero()}) {
      p.client.set_timeout(t);
      EXPECT_EQ(p.client.write_some("abc", ec), 0u);
      EXPECT_EQ(ec, std::errc::timed_out) << "timeout " << t.count();
      EXPECT_EQ(p.client.write_all("abc", ec), 0u);
      EXPECT_EQ(ec, std::errc::timed_out);
      EXPECT_EQ(p.client.read_some(b, ec), 0u);
      EXPECT_EQ(ec, std::errc::timed_out);
    }
    p.client.set_timeout(std::nullopt);
    p.client.write_all("ok", 10s);
    std::string got(2, '\0');
    p.server.read_exact(got, 10s);
    EXPECT_EQ(got, "ok") << "a timed-out write sent bytes";
    EXPECT_EQ(p.server.read_some(b, ec, 20ms), 0u);
    EXPECT_EQ(ec, std::errc::timed_out);
  });
}

// Moving the read deadline to now (from another fiber, another I/O thread or a plain thread)
// wakes the blocked read at once with timed_out; the socket stays usable.
TEST(SocketDeadline, MovingTheDeadlineToNowWakesABlockedReadFromAnyThread) {
  fibers::runtime rt(2);
  rt.run([&] {
    auto p = make_tcp_pair();
    for (int from = 0; from < 3; ++from) {
      const char* what = from == 0 ? "same thread" : from == 1 ? "other I/O thread" : "plain thread";
      p.client.set_read_deadline(clock::time_point::max());
      std::error_code ec;
      bool returned = false;
      auto reader = fibers::spawn([&] {
        char b[4];
        p.client.read_some(b, ec);
        returned = true;
      });
      fibers::this_fiber::sleep_for(30ms);
      ASSERT_FALSE(returned) << what;
      const auto start = clock::now();
      auto move_it = [&] { p.client.set_read_deadline(clock::now()); };
      if (from == 0) fibers::spawn(move_it).join();
      else if (from == 1) rt.spawn_on(1, move_it).join();
      else std::thread(move_it).join();
      reader.join();
      EXPECT_EQ(ec, std::errc::timed_out) << what << ": " << ec.message();
      EXPECT_LT(ms_since(start), 5s) << what;
    }
    p.client.set_read_deadline(clock::time_point::max());
    p.server.write_all("ok", 10s);
    std::string got(2, '\0');
    p.client.read_exact(got, 10s);
    EXPECT_EQ(got, "ok");
  });
}

// A blocked read on thread 1, its deadline moved earlier (still in the future) from thread 0:
// it times out at the new deadline, not the old one.
TEST(SocketDeadline, MovingTheDeadlineEarlierIsFollowedByAReadOnAnotherThread) {
  fibers::runtime rt(2);
  rt.run([&] {
    auto p = make_tcp_pair();
    p.client.set_read_deadline(clock::now() + 60s);
    std::error_code ec;
    const auto start = clock::now();
    auto reader = rt.spawn_on(1, [&] {
      char b[4];
      p.client.read_some(b, ec);
    });
    fibers::this_fiber::sleep_for(20ms);
    p.client.set_read_deadline(clock::now() + 50ms);
    reader.join();
    EXPECT_EQ(ec, std::errc::timed_out);
    EXPECT_GE(ms_since(start), 50ms);
    EXPECT_LT(ms_since(start), 30s) << "the read waited for its old deadline";
  });
}

// Extending or clearing the deadline while a read is blocked lets it go on: it returns the
// data that arrives after the old deadline (Go: TestReadTimeoutMustNotReturn, extended).
TEST(SocketDeadline, ExtendingOrClearingTheDeadlineLetsABlockedReadGoOn) {
  fibers::run([] {
    for (bool clear : {false, true}) {
      const char* what = clear ? "cleared" : "extended";
      auto p = make_tcp_pair();
      p.client.set_read_deadline(clock::now() + 100ms);
      std::error_code ec;
      std::size_t n = 0;
      char b[8];
      const auto start = clock::now();
      auto reader = fibers::spawn([&] { n = p.client.read_some(b, ec); });
      fibers::this_fiber::sleep_for(30ms);
      p.client.set_read_deadline(clear ? clock::time_point::max() : clock::now() + 60s);
      fibers::this_fiber::sleep_until(start + 250ms);  // well past the old deadline
      p.server.write_all("late", 10s);
      reader.join();
      EXPECT_FALSE(ec) << what << ": " << ec.message();
      ASSERT_EQ(n, 4u) << what;
      EXPECT_EQ(std::string(b, 4), "late");
      EXPECT_GE(ms_since(start), 250ms);
    }
  });
}

// The write deadline stops a write blocked on a full buffer (write_all reports what it
// wrote); the read direction is unaffected, and vice versa.
TEST(SocketDeadline, ReadAndWriteDeadlinesAreIndependent) {
  fibers::run([] {
    auto p = make_tcp_pair();
    fill_send_buffer(p.client);
    std::error_code wec;
    std::size_t written = 0;
    auto writer = fibers::spawn([&] { written = p.client.write_all(std::vector<char>(1 << 20), wec); });
    std::error_code rec;
    std::size_t got = 0;
    char b[4];
    auto reader = fibers::spawn([&] { got = p.client.read_some(b, rec); });
    fibers::this_fiber::sleep_for(20ms);
    p.client.set_write_deadline(clock::now());
    writer.join();
    EXPECT_EQ(wec, std::errc::timed_out);
    EXPECT_LT(written, std::size_t{1} << 20);
    EXPECT_LE(p.client.write_deadline(), clock::now());
    // The reader still waits; data wakes it.
    fibers::this_fiber::sleep_for(20ms);
    p.server.write_all("r", 10s);
    reader.join();
    EXPECT_FALSE(rec) << rec.message();
    EXPECT_EQ(got, 1u);

    // set_deadline sets both; clearing both lets both go on.
    p.client.set_deadline(clock::now() - 1s);
    EXPECT_EQ(p.client.read_some(b, rec), 0u);
    EXPECT_EQ(rec, std::errc::timed_out);
    EXPECT_EQ(p.client.write_some("x", wec), 0u);
    EXPECT_EQ(wec, std::errc::timed_out);
    p.client.set_deadline(clock::time_point::max());
    EXPECT_EQ(p.client.read_deadline(), clock::time_point::max());
    EXPECT_EQ(p.client.write_deadline(), clock::time_point::max());
  });
}

// The deadlines apply to accept (a listener's read) and to UDP receive and send.
TEST(SocketDeadline, DeadlinesApplyToAcceptAndDatagrams) {
  fibers::run([] {
    auto l = fibers::stream_listener::bind(fibers::endpoint::loopback_v4(0));
    std::error_code ec;
    auto acceptor = fibers::spawn([&] { l.accept(ec); });
    fibers::this_fiber::sleep_for(20ms);
    l.set_read_deadline(clock::now());
    acceptor.join();
    EXPECT_EQ(ec, std::errc::timed_out);

    auto u = fibers::udp_socket::bind(fibers::endpoint::loopback_v4(0));
    u.set_read_deadline(clock::now() + 30ms);
    fibers::endpoint from;
    char b[8];
    const auto start = clock::now();
    EXPECT_EQ(u.recv_from(b, from, ec), 0u);
    EXPECT_EQ(ec, std::errc::timed_out);
    EXPECT_GE(ms_since(start), 30ms);
    u.set_write_deadline(clock::now() - 1ms);
    EXPECT_EQ(u.send_to("x", u.local_endpoint(), ec), 0u);
    EXPECT_EQ(ec, std::errc::timed_out);
  });
}

// Races between expiry, data arrival and deadline changes lose nothing: a writer sends a
// numbered byte stream, a reader reads it under a read deadline that another thread keeps
// moving to random points around now; every timed-out read is retried, and in the end the
// reader has every byte, in order, once.
TEST(SocketDeadline, DeadlineChangesRacingWithDataLoseNothing) {
  fibers::runtime rt(2);
  rt.run([&] {
    auto p = make_tcp_pair();
    constexpr std::size_t total = 200'000;
    std::atomic<bool> done{false};
    auto writer = rt.spawn_on(1, [&] {
      std::vector<char> chunk(997);
      std::size_t sent = 0;
      while (sent < total) {
        const std::size_t n = std::min(chunk.size(), total - sent);
        for (std::size_t i = 0; i < n; ++i) chunk[i] = static_cast<char>((sent + i) % 251);
        p.server.write_all(fibers::const_buffer(chunk.data(), n), 30s);
        sent += n;
        if (sent % (20 * 997) == 0) fibers::this_fiber::sleep_for(1ms);
      }
    });
    std::thread mover([&] {
      std::mt19937 rng(42);
      while (!done.load()) {
        const auto offset = std::chrono::microseconds(static_cast<int>(rng() % 2000)) - 500us;
        p.client.set_read_deadline(clock::now() + offset);
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 700));
      }
    });
    std::vector<char> buf(4096);
    std::size_t received = 0, timeouts = 0;
    bool in_order = true;
    while (received < total) {
      std::error_code ec;
      std::size_t n = p.client.read_some(buf, ec);
      if (ec == std::errc::timed_out) {
        ++timeouts;
        continue;
      }
      ASSERT_FALSE(ec) << ec.message();
      ASSERT_GT(n, 0u);
      for (std::size_t i = 0; i < n; ++i) in_order = in_order && buf[i] == static_cast<char>((received + i) % 251);
      received += n;
    }
    done = true;
    mover.join();
    writer.join();
    EXPECT_TRUE(in_order);
    EXPECT_EQ(received, total);
    RecordProperty("timeouts", static_cast<int>(timeouts));
  });
}

}  // namespace
