// tests/stream_listener_test.cpp - binding, accepting (deadlines, many connections, a full fd
// table), SO_REUSEPORT, Unix paths and abstract names, and handing accepted fds to another I/O
// thread.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::stream_listener;
using fibers::stream_socket;
using fibers_test::ms_since;

TEST(StreamListener, BindingPortZeroPicksAPort) {
  fibers::run([] {
    for (auto ep : {fibers::endpoint::loopback_v4(0), fibers::endpoint::loopback_v6(0)}) {
      auto l = stream_listener::bind(ep);
      EXPECT_TRUE(l.is_open());
      auto local = l.local_endpoint();
      EXPECT_NE(local.port(), 0);
      EXPECT_EQ(local.family(), ep.family());
      EXPECT_EQ(local.address(), ep.address());
    }
  });
}

TEST(StreamListener, AcceptTimesOutAtTheDeadline) {
  fibers::run([] {
    auto l = stream_listener::bind(fibers::endpoint::loopback_v4(0));
    std::error_code ec;
    auto start = fibers::clock::now();
    auto s = l.accept(ec, 100ms);
    EXPECT_EQ(ec, std::errc::timed_out) << ec.message();
    EXPECT_FALSE(s.is_open());
    EXPECT_GE(ms_since(start), 100ms) << "timed out before the deadline";
    start = fibers::clock::now();
    try {
      l.accept(50ms);
      FAIL() << "accept past its deadline did not throw";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out);
    }
    EXPECT_GE(ms_since(start), 50ms);
  });
}

TEST(StreamListener, BindingAPortInUseFailsWithAddressInUse) {
  fibers::run([] {
    auto first = stream_listener::bind(fibers::endpoint::loopback_v4(0));
    auto ep = first.local_endpoint();
    std::error_code ec;
    auto second = stream_listener::bind(ep, ec);
    EXPECT_EQ(ec, std::errc::address_in_use) << ec.message();
    EXPECT_FALSE(second.is_open());
    try {
      stream_listener::bind(ep);
      FAIL() << "binding a port in use did not throw";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::address_in_use);
      EXPECT_NE(std::string(e.what()).find(ep.to_string()), std::string::npos) << e.what();
    }
  });
}

TEST(StreamListener, TwoReusePortListenersShareAPortAndBothAccept) {
  fibers::run([] {
    fibers::listen_options opts;
    opts.reuse_port = true;
    auto a = stream_listener::bind(fibers::endpoint::loopback_v4(0), opts);
    auto ep = a.local_endpoint();
    std::error_code ec;
    auto b = stream_listener::bind(ep, ec, opts);
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(b.local_endpoint(), ep);

    constexpr int kClients = 40;
    int accepted = 0;
    std::vector<stream_socket> conns;
    auto acceptor = [&](stream_listener& l, int& mine) {
      while (accepted < kClients) {  // the kernel picks the listener for each connection
        std::error_code aec;
        auto s = l.accept(aec, 20ms);
        if (aec == std::errc::timed_out) continue;
        ASSERT_FALSE(aec) << aec.message();
        conns.push_back(std::move(s));
        ++accepted;
        ++mine;
      }
    };
    int by_a = 0, by_b = 0;
    auto fa = fibers::spawn([&] { acceptor(a, by_a); });
    auto fb = fibers::spawn([&] { acceptor(b, by_b); });
    std::vector<stream_socket> clients;
    for (int i = 0; i < kClients; ++i) clients.push_back(stream_socket::connect(ep, 10s));
    fa.join();
    fb.join();
    EXPECT_EQ(accepted, kClients);
    // The kernel spreads connections by a hash of the 4-tuple: 40 all landing on one
    // listener (chance 2^-39) would mean only one of them is really accepting.
    EXPECT_GT(by_a, 0);
    EXPECT_GT(by_b, 0);
  });
}

TEST(StreamListener, UnixListenerAcceptsOnItsPathAndTheExistingPathIsInUse) {
  fibers_test::temp_dir dir;
  fibers::run([&] {
    auto ep = fibers::endpoint::unix_path(dir.file("l.sock"));
    auto l = stream_listener::bind(ep);
    EXPECT_EQ(l.local_endpoint(), ep);
    auto c = stream_socket::connect(ep, 10s);
    auto s = l.accept(10s);
    c.write_all("unix");
    std::string got(4, '\0');
    s.read_exact(got, 10s);
    EXPECT_EQ(got, "unix");
    std::error_code ec;
    auto again = stream_listener::bind(ep, ec);
    EXPECT_EQ(ec, std::errc::address_in_use) << ec.message();
  });
}

// Linux abstract names live in the kernel, not the file system: nothing named after the
// socket appears in the working directory, and the name is free again once the listener closes.
TEST(StreamListener, AbstractUnixListenerAcceptsWithoutCreatingAFile) {
  const std::string name = "fibers-test-abstract-" + std::to_string(::getpid());
  // Entries of the working directory whose name mentions the socket's name (other tests may
  // create unrelated files there concurrently).
  auto files_named_after_it = [&] {
    std::vector<std::string> found;
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::current_path())) {
      if (e.path().filename().string().find(name) != std::string::npos) found.push_back(e.path());
    }
    return found;
  };
  fibers::run([&] {
    auto ep = fibers::endpoint::parse("unix:@" + name);
    auto l = stream_listener::bind(ep);
    EXPECT_EQ(l.local_endpoint(), ep);  // getsockname gives the abstract name back
    EXPECT_EQ(l.local_endpoint().to_string(), "unix:@" + name);
    auto c = stream_socket::connect(ep, 10s);
    auto s = l.accept(10s);
    c.write_all("abstract");
    std::string got(8, '\0');
    s.read_exact(got, 10s);
    EXPECT_EQ(got, "abstract");

    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ASSERT_EQ(::getpeername(c.native_handle(), reinterpret_cast<sockaddr*>(&ss), &len), 0);
    EXPECT_EQ(fibers::endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len), ep);
    EXPECT_EQ(s.peer_endpoint().to_string(), "(unnamed unix)");  // the client never bound

    std::error_code ec;
    auto again = stream_listener::bind(ep, ec);
    EXPECT_EQ(ec, std::errc::address_in_use) << ec.message();
    EXPECT_EQ(files_named_after_it(), std::vector<std::string>{});
    s.close();
    c.close();
    l.close();
    auto rebound = stream_listener::bind(ep, ec);  // a path would still be taken by its file
    EXPECT_FALSE(ec) << ec.message();
  });
  EXPECT_EQ(files_named_after_it(), std::vector<std::string>{});
}

TEST(StreamListener, ThousandConcurrentEchoConnectionsOnOneIoThread) {
  fibers_test::nofile_limit limit;
  limit.raise_to_hard();
  rlimit now{};
  ::getrlimit(RLIMIT_NOFILE, &now);
  ASSERT_GE(now.rlim_cur, 2200u) << "RLIMIT_NOFILE hard limit too low for 1000 connections";
  fibers::run([] {
    constexpr int kConns = 1000;
    constexpr std::size_t kMsg = 100;
    auto l = stream_listener::bind(fibers::endpoint::loopback_v4(0));
    auto ep = l.local_endpoint();
    std::vector<fibers::fiber> handlers;
    auto acceptor = fibers::spawn("acceptor", [&] {
      for (int i = 0; i < kConns; ++i) {
        handlers.push_back(fibers::spawn([s = l.accept(30s)]() mutable {
          char buf[kMsg];
          s.read_exact(buf, 30s);
          s.write_all(buf, 30s);
          char b;
          EXPECT_EQ(s.read_some(fibers::mutable_buffer(&b, 1), 30s), 0u);
        }));
      }
    });
    int connected = 0, verified = 0, peak = 0;
    std::vector<fibers::fiber> clients;
    for (int i = 0; i < kConns; ++i) {
      clients.push_back(fibers::spawn([&, i] {
        auto c = stream_socket::connect(ep, 30s);
        peak = std::max(peak, ++connected);
        // Hold every connection open until all are up, so all 1000 are live at once.
        for (int k = 0; k < 6000 && connected < kConns; ++k) fibers::this_fiber::sleep_for(5ms);
        const auto msg = fibers_test::pattern(kMsg, static_cast<std::uint32_t>(i));
        c.write_all(msg, 30s);
        std::vector<char> got(kMsg);
        c.read_exact(got, 30s);
        if (got == msg) ++verified;
      }));
    }
    for (auto& c : clients) c.join();
    acceptor.join();
    for (auto& h : handlers) h.join();
    EXPECT_EQ(peak, kConns);
    EXPECT_EQ(verified, kConns);
    EXPECT_EQ(handlers.size(), static_cast<std::size_t>(kConns));
  });
}

TEST(StreamListener, AcceptWithAFullFdTableFailsAndLosesNoConnection) {
  fibers_test::nofile_limit limit;
  fibers::run([&] {
    auto l = stream_listener::bind(fibers::endpoint::loopback_v4(0));
    auto c = stream_socket::connect(l.local_endpoint(), 10s);  // waits in the backlog
    c.write_all("queued");
    int lowest_free = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(lowest_free, 0);
    ::close(lowest_free);
    ASSERT_TRUE(limit.set_soft(static_cast<rlim_t>(lowest_free)));  // no new fd can be made

    std::error_code ec;
    auto s = l.accept(ec, 2s);
    EXPECT_EQ(ec, std::errc::too_many_files_open) << ec.message();
    EXPECT_FALSE(s.is_open());
    try {
      l.accept(2s);
      ADD_FAILURE() << "accept with a full fd table did not throw";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::too_many_files_open) << e.what();
    }

    limit.restore();
    auto ok = l.accept(ec, 10s);
    ASSERT_FALSE(ec) << "the queued connection was lost: " << ec.message();
    std::string got(6, '\0');
    ok.read_exact(got, 10s);
    EXPECT_EQ(got, "queued");
  });
}

TEST(StreamListener, AcceptFdHandsAConnectionToAnotherIoThread) {
  std::promise<std::string> served;
  fibers::runtime rt(2);
  rt.run([&] {
    auto l = stream_listener::bind(fibers::endpoint::loopback_v4(0));
    auto c = stream_socket::connect(l.local_endpoint(), 10s);
    std::error_code ec;
    int fd = l.accept_fd(ec, 10s);
    ASSERT_FALSE(ec) << ec.message();
    ASSERT_GE(fd, 0);
    EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0) << "accept_fd gave a blocking fd";
    rt.post(
        [fd, &served] {
          try {
            stream_socket s(fd);
            std::string req(4, '\0');
            s.read_exact(req, 10s);
            s.write_all("off!", 10s);
            served.set_value(req + "@" + std::to_string(fibers::runtime::current_thread_index()));
          } catch (...) {
            served.set_exception(std::current_exception());
          }
        },
        1);
    c.write_all("hand");
    std::string reply(4, '\0');
    c.read_exact(reply, 10s);
    EXPECT_EQ(reply, "off!");
  });
  auto f = served.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(f.get(), "hand@1");
}

}  // namespace
