// tests/debug_test.cpp - fibers::dump, counters, the blocked-thread watchdog, stack-overflow
// detection and pooled stacks.
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "fibers/fibers.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;

TEST(Debug, DumpNamesEveryFiberAndWhatItWaitsFor) {
  fibers::runtime rt(2);
  rt.run([&] {
    auto listener = fibers::tcp_listener::bind(fibers::endpoint::loopback_v4(0));
    auto client = fibers::tcp_stream::connect(listener.local_endpoint(), 5s);
    auto server = listener.accept(5s);
    auto reader = fibers::spawn("idle-reader", [&] {
      char b[8];
      std::error_code ec;
      server.read_some(b, ec);
    });
    auto sleeper = rt.spawn_on(1, "long-sleeper", [] {
      std::error_code ec;
      fibers::this_fiber::sleep_for(1h, ec);
    });
    fibers::this_fiber::sleep_for(30ms);
    std::ostringstream out;
    fibers::dump(out);
    const std::string text = out.str();
    EXPECT_NE(text.find("'idle-reader': waiting: read fd " + std::to_string(server.native_handle())),
              std::string::npos) << text;
    EXPECT_NE(text.find("'long-sleeper': waiting: sleep"), std::string::npos) << text;
    EXPECT_NE(text.find("deadline in"), std::string::npos) << text;
    EXPECT_NE(text.find("'main': running (this dump)"), std::string::npos) << text;
    EXPECT_NE(text.find("I/O thread 1"), std::string::npos) << text;
    // The backtrace of the parked reader goes through the socket call it is parked in.
    EXPECT_NE(text.find("fibers::stream_socket::read_some"), std::string::npos) << text;
    client.write_all("x");
    reader.join();
    sleeper.cancel();
    sleeper.join();
  });
}

TEST(Debug, CountersCountSpawnsSwitchesParksAndReactorWork) {
  fibers::runtime rt;
  const auto before = fibers::stats(rt).at(0);
  rt.run([] {
    for (int i = 0; i < 10; ++i) fibers::spawn([] { fibers::this_fiber::sleep_for(1ms); }).join();
  });
  // run() returns as soon as the main fiber's result is in; its last steps may still be
  // running on the I/O thread for a moment.
  auto after = fibers::stats(rt).at(0);
  for (int i = 0; i < 1000 && after.fibers_alive != 0; ++i) {
    std::this_thread::sleep_for(1ms);
    after = fibers::stats(rt).at(0);
  }
  EXPECT_GE(after.fibers_spawned - before.fibers_spawned, 11u);  // ten + the main fiber
  EXPECT_GE(after.parks - before.parks, 10u);
  EXPECT_GT(after.switches, before.switches);
  EXPECT_GT(after.reactor_polls, before.reactor_polls);
  EXPECT_EQ(after.fibers_alive, 0u);
}

TEST(Debug, WatchdogNamesTheFiberThatBlocksItsThread) {
  fibers::runtime_options opts;
  opts.watchdog = 40ms;
  testing::internal::CaptureStderr();
  {
    fibers::runtime rt(opts);
    rt.run([] {
      fibers::spawn("thread-hog", [] { std::this_thread::sleep_for(300ms); }).join();
    });
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("libfibers watchdog: I/O thread 0 has run fiber"), std::string::npos) << err;
  EXPECT_NE(err.find("'thread-hog'"), std::string::npos) << err;
  EXPECT_NE(err.find("nanosleep"), std::string::npos) << err;  // where it blocks
}

#if !defined(NDEBUG)
// Debug builds (like this test build) have the watchdog on at 100 ms without being asked.
TEST(Debug, WatchdogIsOnByDefaultInDebugBuilds) {
  ::unsetenv("FIBERS_WATCHDOG_MS");
  testing::internal::CaptureStderr();
  {
    fibers::runtime rt;  // default options
    rt.run([] { fibers::spawn("default-hog", [] { std::this_thread::sleep_for(400ms); }).join(); });
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("'default-hog'"), std::string::npos) << err;
}
#endif

TEST(Debug, WatchdogStaysQuietForFibersThatPark) {
  fibers::runtime_options opts;
  opts.watchdog = 40ms;
  testing::internal::CaptureStderr();
  {
    fibers::runtime rt(opts);
    rt.run([] { fibers::this_fiber::sleep_for(200ms); });
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

[[gnu::noinline]] int recurse(int depth) {
  volatile char pad[1024];
  pad[0] = static_cast<char>(depth);
  return depth == 0 ? pad[0] : recurse(depth - 1) + pad[0];
}

TEST(DebugDeathTest, StackOverflowIsReportedWithTheFibersName) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        fibers::runtime_options opts;
        opts.stack_size = 64 * 1024;
        fibers::runtime rt(opts);
        rt.run([] { fibers::spawn("deep-recursion", [] { recurse(200); }).join(); });
      },
      "stack overflow in fiber 'deep-recursion'|AddressSanitizer");
}

TEST(Debug, StacksAreReusedNotLeaked) {
  fibers::runtime rt;
  rt.run([&] {
    auto batch = [] {
      std::vector<fibers::fiber> fs;
      for (int i = 0; i < 1000; ++i) fs.push_back(fibers::spawn([] { fibers::this_fiber::yield(); }));
      for (auto& f : fs) f.join();
    };
    batch();  // a stack is back in its pool once its fiber has ended and been joined
    const auto carved_after_first = fibers::stats(rt).at(0).stacks_carved;
    EXPECT_GE(carved_after_first, 1000u);
    for (int i = 0; i < 10; ++i) batch();
    // Ten more batches of 1,000 fibers run on the first batch's stacks (a slab of spare at most).
    EXPECT_LE(fibers::stats(rt).at(0).stacks_carved, carved_after_first + 32);
  });
}

TEST(Debug, ExceptionsThrownAndCaughtAcrossManyFibers) {
  // Run under ASan this proves the switch annotations: unannotated fcontext switches make
  // ASan misreport exception unwinding on fiber stacks.
  fibers::runtime rt(2);
  std::atomic<int> caught{0};
  rt.run([&] {
    std::vector<fibers::fiber> fs;
    for (int i = 0; i < 200; ++i) {
      fs.push_back(rt.spawn_on(static_cast<std::size_t>(i % 2), [&caught, i] {
        for (int k = 0; k < 5; ++k) {
          try {
            fibers::this_fiber::yield();
            throw std::runtime_error("boom " + std::to_string(i));
          } catch (const std::runtime_error&) {
            caught.fetch_add(1);
          }
        }
      }));
    }
    for (auto& f : fs) f.join();
  });
  EXPECT_EQ(caught.load(), 1000);
}

}  // namespace
