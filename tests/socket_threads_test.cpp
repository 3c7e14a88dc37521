// tests/socket_threads_test.cpp - sockets shared across threads: close() from any thread wakes
// every blocked fiber at once, a socket handed to a fiber on another I/O thread works there,
// a reader and a writer on different I/O threads share one connection.
#include <fcntl.h>
#include <sys/socket.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::stream_socket;
using fibers_test::make_tcp_pair;
using fibers_test::ms_since;

// Where close() is called from, relative to the I/O thread (0) that created the socket.
enum class placement { same_thread_fiber, other_io_thread_fiber, posted_on_owner, posted_on_other, plain_thread };

const char* name(placement p) {
  switch (p) {
    case placement::same_thread_fiber: return "a fiber on the owning thread";
    case placement::other_io_thread_fiber: return "a fiber on another I/O thread";
    case placement::posted_on_owner: return "runtime::post to the owning thread";
    case placement::posted_on_other: return "runtime::post to another thread";
    case placement::plain_thread: return "a plain thread";
  }
  return "?";
}

void close_from(placement p, fibers::runtime& rt, stream_socket& s) {
  switch (p) {
    case placement::same_thread_fiber: fibers::spawn([&] { s.close(); }).join(); break;
    case placement::other_io_thread_fiber: rt.spawn_on(1, [&] { s.close(); }).join(); break;
    case placement::posted_on_owner:
    case placement::posted_on_other: {
      fibers::channel<int> done(1);
      rt.post([&] { s.close(); done.send(1); }, p == placement::posted_on_owner ? 0 : 1);
      ASSERT_TRUE(done.recv(10s).has_value());
      break;
    }
    case placement::plain_thread: std::thread([&] { s.close(); }).join(); break;
  }
}

// A reader and a writer blocked on one socket (the writer on a full send buffer), each on the
// given I/O thread, are both woken with errc::closed by close() from `p`, long before their
// deadline (none: they would wait forever), and the peer then sees the connection end.
void check_close_wakes_blocked_calls(placement p, std::size_t reader_thread, bool with_deadline) {
  // (SCOPED_TRACE is per thread and the checks run on an I/O thread: name the case in each.)
  const std::string what = std::string("close from ") + name(p) + ", reader on thread " +
                           std::to_string(reader_thread) + (with_deadline ? ", 60 s deadline" : ", no deadline");
  fibers::runtime rt(2);
  rt.run([&] {
    auto pair = make_tcp_pair();
    const fibers::deadline dl = with_deadline ? fibers::deadline(60s) : fibers::deadline();
    fibers::channel<std::pair<const char*, std::error_code>> results(2);
    const std::vector<char> big(8 << 20);  // made here: zeroing 8 MiB can take 50 ms on a busy VM
    std::atomic<int> started{0};
    auto reader = rt.spawn_on(reader_thread, [&] {
      char b[16];
      std::error_code ec;
      started.fetch_add(1);
      pair.client.read_some(b, ec, dl);
      results.send({"read", ec});
    });
    auto writer = rt.spawn_on(1 - reader_thread, [&] {
      std::error_code ec;
      started.fetch_add(1);
      pair.client.write_all(big, ec, dl);  // the peer never reads: blocks on a full buffer
      results.send({"write", ec});
    });
    while (started.load() < 2) fibers::this_fiber::sleep_for(1ms);
    fibers::this_fiber::sleep_for(50ms);  // both are blocked by now (the writer's peer never reads)
    ASSERT_FALSE(results.try_recv().has_value()) << what << ": a call returned before close";
    const auto start = fibers::clock::now();
    close_from(p, rt, pair.client);
    for (int i = 0; i < 2; ++i) {
      auto r = results.recv(10s);
      ASSERT_TRUE(r.has_value()) << what << ": a blocked call was not woken by close";
      EXPECT_EQ(r->second, fibers::errc::closed) << what << ": " << r->first << ": " << r->second.message();
    }
    EXPECT_LT(ms_since(start), 5s) << what;
    reader.join();
    writer.join();
    EXPECT_FALSE(pair.client.is_open());
    // The fd really is closed (once every thread let go of it): the peer reads the end, or a
    // reset since it left unread bytes behind.
    std::vector<char> b(64 * 1024);
    std::error_code ec;
    for (;;) {
      std::size_t n = pair.server.read_some(b, ec, 10s);
      if (ec || n == 0) break;
    }
    EXPECT_TRUE(!ec || ec == std::errc::connection_reset) << what << ": " << ec.message();
    // Later calls fail cleanly, on any thread.
    pair.client.read_some(b, ec);
    EXPECT_EQ(ec, std::errc::bad_file_descriptor);
    ec.clear();
    rt.spawn_on(1, [&] { pair.client.write_some("x", ec); }).join();
    EXPECT_EQ(ec, std::errc::bad_file_descriptor);
  });
}

TEST(SocketThreads, CloseFromAnyPlacementWakesEveryBlockedCallWithClosed) {
  for (placement p : {placement::same_thread_fiber, placement::other_io_thread_fiber,
                      placement::posted_on_owner, placement::posted_on_other, placement::plain_thread}) {
    for (std::size_t reader_thread : {0u, 1u}) {
      for (bool with_deadline : {false, true}) check_close_wakes_blocked_calls(p, reader_thread, with_deadline);
    }
  }
}

// fd numbers freed by a close from a plain thread are reused at once by new sockets: the old
// blocked calls get errc::closed, and the new sockets, used on both I/O threads (whose
// reactors had the old fd registered), get every byte of their own.
TEST(SocketThreads, CloseFromAnotherThreadUnderFdReuseKeepsSocketsApart) {
  fibers::runtime rt(2);
  rt.run([&] {
    int rounds_with_reuse = 0;
    const std::vector<char> big(8 << 20);
    for (int round = 0; round < 20; ++round) {
      auto pair = make_tcp_pair();
      fibers::channel<std::error_code> results(2);
      auto r0 = fibers::spawn([&] {
        char b[16];
        std::error_code ec;
        pair.client.read_some(b, ec);
        results.send(ec);
      });
      std::atomic<bool> writing{false};
      auto w1 = rt.spawn_on(1, [&] {
        std::error_code ec;
        writing = true;
        pair.client.write_all(big, ec);
        results.send(ec);
      });
      while (!writing.load()) fibers::this_fiber::sleep_for(1ms);
      fibers::this_fiber::sleep_for(5ms);
      const int old_fd = pair.client.native_handle();
      std::thread([&] { pair.client.close(); }).join();
      for (int i = 0; i < 2; ++i) {
        auto ec = results.recv(10s);
        ASSERT_TRUE(ec.has_value()) << "round " << round << ": a blocked call was not woken";
        EXPECT_EQ(*ec, fibers::errc::closed) << ec->message();
      }
      r0.join();
      w1.join();
      fibers::this_fiber::sleep_for(1ms);  // both threads' loops have let go of the old fd
      std::vector<stream_socket> fresh, peers;
      bool reused = false;
      for (int i = 0; i < 4; ++i) {
        int sv[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        reused = reused || sv[0] == old_fd || sv[1] == old_fd;
        fresh.emplace_back(sv[0]);
        peers.emplace_back(sv[1]);
      }
      rounds_with_reuse += reused ? 1 : 0;
      for (std::size_t i = 0; i < fresh.size(); ++i) {
        const std::string msg = "new" + std::to_string(i);
        // Registered on thread 1 as well: an epoll set that still held the old number would
        // refuse it (EEXIST) or wake the wrong reader.
        auto reader = rt.spawn_on(1, [&, i] {
          std::string got(msg.size(), '\0');
          fresh[i].read_exact(got, 10s);
          EXPECT_EQ(got, msg);
        });
        fibers::this_fiber::sleep_for(1ms);
        peers[i].write_all(msg, 10s);
        reader.join();
      }
    }
    EXPECT_GT(rounds_with_reuse, 0) << "no fd number was reused: the scenario did not happen";
  });
}

// A connection accepted on thread 0 and handed through a channel to a fiber on thread 1 is
// served there (Go: any goroutine may use a net.Conn).
TEST(SocketThreads, ASocketHandedToAnotherIoThreadIsServedThere) {
  fibers::runtime rt(2);
  rt.run([&] {
    auto l = fibers::stream_listener::bind(fibers::endpoint::loopback_v4(0));
    fibers::channel<stream_socket> handoff(1);
    auto server = rt.spawn_on(1, [&] {
      auto s = handoff.recv(10s);
      ASSERT_TRUE(s.has_value());
      EXPECT_EQ(fibers::runtime::current_thread_index(), 1u);
      std::vector<char> buf(4096);
      for (;;) {
        std::size_t n = s->read_some(buf, 10s);
        if (n == 0) break;
        s->write_all(fibers::const_buffer(buf.data(), n), 10s);
      }
    });
    auto c = stream_socket::connect(l.local_endpoint(), 10s);
    handoff.send(l.accept(10s));
    const auto msg = fibers_test::pattern(256 * 1024, 7);
    auto writer = fibers::spawn([&] {
      c.write_all(msg, 10s);
      c.shutdown(stream_socket::shutdown_type::write);
    });
    std::vector<char> got(msg.size());
    c.read_exact(got, 10s);
    EXPECT_EQ(got, msg);
    writer.join();
    server.join();
  });
}

// One connection, a reader fiber on thread 0 and a writer fiber on thread 1 at the same time,
// each direction carrying 4 MiB: every byte arrives, in order, in both directions.
TEST(SocketThreads, AReaderAndAWriterOnDifferentIoThreadsShareAConnection) {
  fibers::runtime rt(2);
  rt.run([&] {
    auto pair = make_tcp_pair();
    const auto out = fibers_test::pattern(4 << 20, 1);
    const auto in = fibers_test::pattern(4 << 20, 2);
    // The peer echoes nothing: it writes `in` and reads `out`, on thread 0.
    auto peer_writer = fibers::spawn([&] { pair.server.write_all(in, 20s); });
    std::vector<char> peer_got(out.size());
    auto peer_reader = fibers::spawn([&] { pair.server.read_exact(peer_got, 20s); });
    auto writer = rt.spawn_on(1, [&] { pair.client.write_all(out, 20s); });
    std::vector<char> got(in.size());
    auto reader = fibers::spawn([&] { pair.client.read_exact(got, 20s); });
    writer.join();
    reader.join();
    peer_writer.join();
    peer_reader.join();
    EXPECT_EQ(got, in);
    EXPECT_EQ(peer_got, out);
  });
}

// The socket moves between threads turn by turn (thread 0 writes, thread 1 reads the reply,
// ...): each thread's registration keeps its own readiness and nothing is lost.
TEST(SocketThreads, CallsAlternatingBetweenThreadsLoseNothing) {
  fibers::runtime rt(2);
  rt.run([&] {
    auto l = fibers::stream_listener::bind(fibers::endpoint::loopback_v4(0));
    auto echo = fibers_test::spawn_echo_once(l);
    auto c = stream_socket::connect(l.local_endpoint(), 10s);
    for (int i = 0; i < 200; ++i) {
      const std::string msg = "m" + std::to_string(i);
      auto on = [&](std::size_t t, auto fn) { rt.spawn_on(t, fn).join(); };
      on(i % 2, [&] { c.write_all(msg, 10s); });
      std::string got(msg.size(), '\0');
      on((i + 1) % 2, [&] { c.read_exact(got, 10s); });
      ASSERT_EQ(got, msg);
    }
    c.shutdown(stream_socket::shutdown_type::write);
    echo.join();
  });
}

// Blocking socket calls from a plain thread are a clear error naming the rule; close() and
// deadlines work there.
TEST(SocketThreads, APlainThreadGetsAClearErrorForCallsThatWait) {
  fibers::runtime rt(1);
  auto pair = rt.run([] { return make_tcp_pair(); });
  char b[4];
  try {
    pair.client.read_some(b);
    FAIL() << "read_some on a plain thread did not throw";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("read"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("I/O thread"), std::string::npos) << e.what();
  }
  pair.client.set_read_deadline(fibers::clock::now());
  EXPECT_LE(pair.client.read_deadline(), fibers::clock::now());
  pair.client.close();
  EXPECT_FALSE(pair.client.is_open());
  rt.run([&] { pair.server.close(); });
}

// A socket closed after its runtime is gone (a plain thread, no reactor left): the fd is
// closed and nothing touches the dead runtime.
TEST(SocketThreads, ASocketOutlivingItsRuntimeClosesItsFd) {
  stream_socket kept;
  int fd = -1;
  {
    fibers::runtime rt(2);
    rt.run([&] {
      auto pair = make_tcp_pair();
      rt.spawn_on(1, [&] {
        std::error_code ec;
        char b[4];
        pair.client.read_some(b, ec, 1ms);  // registers with thread 1 too
        EXPECT_EQ(ec, std::errc::timed_out);
      }).join();
      fd = pair.client.native_handle();
      kept = std::move(pair.client);
    });
  }
  ASSERT_GE(fd, 0);
  kept.close();
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1) << "fd " << fd << " is still open";
}

}  // namespace

namespace {

// A connection created on thread 0 and served only by fibers of thread 1 stops waking thread
// 0's reactor: its registration there is muted while nobody on thread 0 waits for it (a
// hand-off server would otherwise pay a wake-up of the accepting thread per message). Thread
// 0 still serves the socket when one of its fibers calls it again.
TEST(SocketThreads, ASocketServedOnAnotherThreadStopsWakingItsHomeThread) {
  fibers::runtime rt(2);
  rt.run([&] {
    auto pair = make_tcp_pair();
    constexpr int rounds = 1000;
    std::uint64_t home_events = 0;
    rt.spawn_on(1, [&] {
      auto echo = fibers::spawn([&] {
        char b[16];
        for (int i = 0; i < rounds; ++i) {
          pair.server.read_exact(fibers::mutable_buffer(b, 16), 10s);
          pair.server.write_all(fibers::const_buffer(b, 16), 10s);
        }
      });
      char b[16] = {};
      pair.client.write_all(fibers::const_buffer(b, 16), 10s);  // first use: registers here
      pair.client.read_exact(fibers::mutable_buffer(b, 16), 10s);
      fibers::this_fiber::sleep_for(20ms);  // thread 0 has learnt the sockets are shared
      const auto before = fibers::stats(rt).at(0).reactor_events;
      for (int i = 1; i < rounds; ++i) {
        pair.client.write_all(fibers::const_buffer(b, 16), 10s);
        pair.client.read_exact(fibers::mutable_buffer(b, 16), 10s);
      }
      home_events = fibers::stats(rt).at(0).reactor_events - before;
      echo.join();
    }).join();
    EXPECT_LT(home_events, std::uint64_t{rounds / 10})
        << "thread 0's reactor saw " << home_events << " events for " << rounds << " round trips served on thread 1";
    // Back on the home thread, the muted registration serves again.
    pair.server.write_all("home", 10s);
    std::string got(4, '\0');
    pair.client.read_exact(got, 10s);
    EXPECT_EQ(got, "home");
    auto reader = fibers::spawn([&] {
      std::string later(5, '\0');
      pair.client.read_exact(later, 10s);  // parks on thread 0: needs its events again
      EXPECT_EQ(later, "again");
    });
    fibers::this_fiber::sleep_for(10ms);
    rt.spawn_on(1, [&] { pair.server.write_all("again", 10s); }).join();
    reader.join();
  });
}

}  // namespace
