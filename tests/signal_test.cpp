// tests/signal_test.cpp - signal_set: waiting for signals in fibers on any I/O thread.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "fibers/fibers.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;

TEST(SignalSet, ASignalFromAnotherThreadWakesTheWaitingFiber) {
  fibers::run([] {
    fibers::signal_set s{SIGUSR1};
    std::thread raiser([] {
      std::this_thread::sleep_for(20ms);
      ::kill(::getpid(), SIGUSR1);
    });
    EXPECT_EQ(s.wait(10s), SIGUSR1);
    raiser.join();
  });
}

TEST(SignalSet, ASignalSentByAChildProcessWakesEverySetOnEveryThread) {
  fibers::runtime rt(2);
  rt.run([] {
    fibers::signal_set a{SIGUSR1, SIGUSR2};
    fibers::signal_set b{SIGUSR2};
    fibers::signal_set c{SIGUSR2};
    std::atomic<int> got_a{0}, got_b{0}, got_c{0};
    fibers::latch waiting(3);
    auto fa = fibers::spawn_on(1, [&] { waiting.count_down(); got_a = a.wait(10s); });
    auto fb = fibers::spawn_on(0, [&] { waiting.count_down(); got_b = b.wait(10s); });
    auto fc = fibers::spawn_on(1, [&] { waiting.count_down(); got_c = c.wait(10s); });
    waiting.wait();
    fibers::this_fiber::sleep_for(10ms);  // all three parked
    const pid_t parent = ::getpid();
    const pid_t child = ::fork();
    if (child == 0) {
      ::kill(parent, SIGUSR2);
      ::_exit(0);
    }
    ASSERT_GT(child, 0);
    fa.join();
    fb.join();
    fc.join();
    int status = 0;
    ::waitpid(child, &status, 0);
    EXPECT_EQ(got_a.load(), SIGUSR2);
    EXPECT_EQ(got_b.load(), SIGUSR2);
    EXPECT_EQ(got_c.load(), SIGUSR2);
  });
}

TEST(SignalSet, ASignalThatArrivesWhileNobodyWaitsIsKept) {
  fibers::run([] {
    fibers::signal_set s{SIGUSR1, SIGUSR2};
    EXPECT_EQ(s.try_wait(), 0);
    ::raise(SIGUSR2);
    ::raise(SIGUSR1);
    // Each number is counted; the lowest comes first.
    EXPECT_EQ(s.wait(10s), SIGUSR1);
    EXPECT_EQ(s.try_wait(), SIGUSR2);
    EXPECT_EQ(s.try_wait(), 0);
    // A signal delivered before the set existed is not the set's.
    ::raise(SIGUSR1);
    fibers::signal_set later{SIGUSR1};
    EXPECT_EQ(later.try_wait(), 0);
    EXPECT_EQ(s.try_wait(), SIGUSR1);
  });
}

TEST(SignalSet, CancelAndDeadlineEndAWait) {
  fibers::run([] {
    fibers::signal_set s{SIGUSR1};
    std::error_code ec;
    EXPECT_EQ(s.wait(ec, 20ms), 0);
    EXPECT_EQ(ec, std::errc::timed_out);
    try {
      s.wait(10ms);
      ADD_FAILURE() << "wait returned";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out);
    }
    std::string how = "waiting";
    auto f = fibers::spawn([&] {
      try {
        s.wait();
        how = "returned";
      } catch (const fibers::canceled&) {
        how = "canceled";
      }
    });
    fibers::this_fiber::sleep_for(5ms);
    f.cancel();
    f.join();
    EXPECT_EQ(how, "canceled");
    // The set still works after its waiter went away.
    ::raise(SIGUSR1);
    EXPECT_EQ(s.wait(10s), SIGUSR1);
  });
}

TEST(SignalSet, TwoFibersOnOneSetShareItsDeliveries) {
  fibers::run([] {
    fibers::signal_set s{SIGUSR1};
    int woken = 0;
    auto waiter = [&] {
      std::error_code ec;
      if (s.wait(ec, 300ms) == SIGUSR1) ++woken;
    };
    auto f1 = fibers::spawn(waiter);
    auto f2 = fibers::spawn(waiter);
    fibers::this_fiber::sleep_for(5ms);
    ::raise(SIGUSR1);
    f1.join();
    f2.join();
    EXPECT_EQ(woken, 1) << "one delivery wakes one waiter of a set";
  });
}

TEST(SignalSet, TheDefaultDispositionComesBackWithTheLastSet) {
  struct sigaction before = {};
  ::sigaction(SIGUSR2, nullptr, &before);
  {
    fibers::signal_set s{SIGUSR2};
    struct sigaction during = {};
    ::sigaction(SIGUSR2, nullptr, &during);
    EXPECT_NE(during.sa_handler, before.sa_handler);
  }
  struct sigaction after = {};
  ::sigaction(SIGUSR2, nullptr, &after);
  EXPECT_EQ(after.sa_handler, before.sa_handler);
}

TEST(SignalSet, BadSignalsAndMisuseAreClearErrors) {
  auto message_of = [](auto fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_EQ(message_of([] { fibers::signal_set s{SIGKILL}; }),
            "fibers::signal_set: signal 9 cannot be caught");
  EXPECT_EQ(message_of([] { fibers::signal_set s{SIGSEGV}; }),
            "fibers::signal_set: signal 11 is raised by a fault in the thread that caused it and "
            "cannot be awaited");
  EXPECT_EQ(message_of([] { fibers::signal_set s{0}; }), "fibers::signal_set: signal 0 is not a signal number");
  EXPECT_EQ(message_of([] { fibers::signal_set s{}; }), "fibers::signal_set: no signals given");
  fibers::signal_set s{SIGUSR1};
  EXPECT_THROW(s.wait(), std::logic_error);  // not on a fiber
}
