// tests/select_test.cpp - select over channel cases: exactly one case, fairness, default and
// timeout cases, send cases, closed channels, cross-thread wake-ups and races, cancellation.
#include <algorithm>
#include <array>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fibers/channel.hpp"
#include "fibers/scope.hpp"
#include "fibers/select.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::channel;
using fibers::clock;
using fibers_test::ms_since;

TEST(Select, ExactlyOneCaseFiresWhenSeveralAreReadyAndTheOthersKeepTheirValues) {
  fibers::run([] {
    for (int round = 0; round < 50; ++round) {
      channel<int> a(1), b(1), c(1);
      ASSERT_TRUE(a.try_send(1));
      ASSERT_TRUE(b.try_send(2));
      ASSERT_TRUE(c.try_send(3));
      int handlers = 0, got = 0;
      auto on = [&](std::optional<int> v) {
        ++handlers;
        ASSERT_TRUE(v.has_value());
        got = *v;
      };
      const std::size_t i = fibers::select(fibers::on_recv(a, on), fibers::on_recv(b, on), fibers::on_recv(c, on));
      ASSERT_LT(i, 3u);
      EXPECT_EQ(handlers, 1);
      EXPECT_EQ(got, static_cast<int>(i) + 1) << "the returned index is not the case that ran";
      EXPECT_EQ(a.size() + b.size() + c.size(), 2u) << "select took more (or less) than one value";
      EXPECT_EQ((i == 0 ? a : i == 1 ? b : c).size(), 0u);
    }
  });
}

// Runs kTrials selects over one recv case per entry of `ready` (true: the channel holds a
// value, refilled after each select takes it; false: the channel stays empty) and returns how
// often each case was chosen.
template <std::size_t N>
std::array<int, N> choice_counts(const std::array<bool, N>& ready, int trials) {
  std::array<int, N> count{};
  std::vector<std::unique_ptr<channel<int>>> chans;
  for (std::size_t i = 0; i < N; ++i) {
    chans.push_back(std::make_unique<channel<int>>(1));
    if (ready[i]) {
      EXPECT_TRUE(chans[i]->try_send(static_cast<int>(i)));
    }
  }
  for (int k = 0; k < trials; ++k) {
    const std::size_t chosen = [&]<std::size_t... I>(std::index_sequence<I...>) {
      return fibers::select(fibers::on_recv(*chans[I], [](std::optional<int>) {})...);
    }(std::make_index_sequence<N>{});
    ++count[chosen];
    EXPECT_TRUE(chans[chosen]->try_send(static_cast<int>(chosen)));  // refill the one taken
  }
  return count;
}

// Each ready case must be chosen 1/ready_count of the time. With 30,000 trials one standard
// deviation of a share is at most 0.29 percentage points, so +-5 points (17 of them) cannot
// fail by chance, and the old "random start, then in order" scan (which gave a ready case
// behind two empty ones 75 % instead of 50 %) fails by far.
constexpr int kFairnessTrials = 30000;

template <std::size_t N>
void expect_ready_cases_chosen_equally(const std::array<bool, N>& ready, const std::array<int, N>& count) {
  const auto ready_count = static_cast<double>(std::count(ready.begin(), ready.end(), true));
  for (std::size_t i = 0; i < N; ++i) {
    const double share = 100.0 * count[i] / kFairnessTrials;
    if (ready[i]) {
      EXPECT_NEAR(share, 100.0 / ready_count, 5.0) << "ready case " << i << " of " << N << " chosen " << count[i]
                                                   << " times in " << kFairnessTrials;
    } else {
      EXPECT_EQ(count[i], 0) << "empty case " << i << " of " << N << " was chosen";
    }
  }
}

TEST(Select, TwoReadyCasesAreEachChosenHalfTheTime) {
  fibers::run([] {
    const std::array<bool, 2> ready{true, true};
    expect_ready_cases_chosen_equally(ready, choice_counts(ready, kFairnessTrials));
  });
}

TEST(Select, TwoReadyCasesAroundAnEmptyOneAreEachChosenHalfTheTime) {
  // A random start followed by an in-order scan picks case 2 whenever it starts at 1 or 2.
  fibers::run([] {
    const std::array<bool, 3> ready{true, false, true};
    expect_ready_cases_chosen_equally(ready, choice_counts(ready, kFairnessTrials));
  });
}

TEST(Select, ThreeReadyCasesAmongEightAreEachChosenAThirdOfTheTime) {
  // Ready cases at 0, 1 and 5: an in-order scan from a random start gives 3/8, 1/8 and 4/8.
  fibers::run([] {
    const std::array<bool, 8> ready{true, true, false, false, false, true, false, false};
    expect_ready_cases_chosen_equally(ready, choice_counts(ready, kFairnessTrials));
  });
}

TEST(Select, TwoReadyCasesAmongTwentyAreEachChosenHalfTheTime) {
  // More cases than select orders on the stack (16): the heap-backed path is fair as well.
  fibers::run([] {
    std::array<bool, 20> ready{};
    ready[3] = ready[17] = true;
    expect_ready_cases_chosen_equally(ready, choice_counts(ready, kFairnessTrials));
  });
}

TEST(Select, DefaultCaseRunsAtOnceWhenNothingIsReady) {
  fibers::run([] {
    channel<int> a, b(2);
    bool default_ran = false, recv_ran = false;
    const auto i = fibers::select(fibers::on_recv(a, [&](std::optional<int>) { recv_ran = true; }),
                                  fibers::on_recv(b, [&](std::optional<int>) { recv_ran = true; }),
                                  fibers::on_default([&] { default_ran = true; }));
    EXPECT_EQ(i, 2u);
    EXPECT_TRUE(default_ran);
    EXPECT_FALSE(recv_ran);
    // Not queued behind: a later send does not get taken by that select.
    EXPECT_FALSE(a.try_send(1)) << "a select that ran its default case is still queued";
    // With a case ready, the default case does not run.
    ASSERT_TRUE(b.try_send(5));
    default_ran = false;
    const auto j = fibers::select(fibers::on_recv(b, [&](std::optional<int> v) { EXPECT_EQ(v, 5); }),
                                  fibers::on_default([&] { default_ran = true; }));
    EXPECT_EQ(j, 0u);
    EXPECT_FALSE(default_ran);
  });
}

TEST(Select, TimeoutCaseRunsAtItsDeadlineAndNotBefore) {
  fibers::run([] {
    channel<int> a;
    bool timed_out = false;
    const auto start = clock::now();
    const auto i = fibers::select(fibers::on_recv(a, [](std::optional<int>) { ADD_FAILURE() << "recv ran"; }),
                                  fibers::on_timeout(60ms, [&] { timed_out = true; }));
    EXPECT_EQ(i, 1u);
    EXPECT_TRUE(timed_out);
    EXPECT_GE(ms_since(start), 60ms);
    EXPECT_FALSE(a.try_send(1)) << "the timed-out select is still queued on the channel";
  });
}

TEST(Select, SendCaseDeliversToAWaitingReceiverOrIntoFreeBufferSpace) {
  fibers::run([] {
    channel<std::string> unbuffered;
    std::optional<std::string> got;
    auto receiver = fibers::spawn([&] { got = unbuffered.recv(10s); });
    fibers::this_fiber::yield();  // the receiver is parked before the select looks
    channel<int> never;
    bool sent = false;
    const auto i = fibers::select(fibers::on_recv(never, [](std::optional<int>) { ADD_FAILURE(); }),
                                  fibers::on_send(unbuffered, "hello", [&] { sent = true; }));
    EXPECT_EQ(i, 1u);
    EXPECT_TRUE(sent);
    receiver.join();
    EXPECT_EQ(got, std::optional<std::string>("hello"));

    // A select that has to wait in its send case: a receiver arriving later takes the value.
    auto late = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(20ms);
      got = unbuffered.recv(10s);
    });
    EXPECT_EQ(fibers::select(fibers::on_send(unbuffered, "later", [] {})), 0u);
    late.join();
    EXPECT_EQ(got, std::optional<std::string>("later"));

    channel<std::unique_ptr<int>> buffered(1);
    auto moveonly = std::make_unique<int>(4);
    EXPECT_EQ(fibers::select(fibers::on_send(buffered, std::move(moveonly), [] {})), 0u);
    EXPECT_EQ(**buffered.try_recv(), 4);
  });
}

TEST(Select, RecvCaseOnAClosedChannelGetsNullopt) {
  fibers::run([] {
    channel<int> open_ch, closed_ch(3);
    ASSERT_TRUE(closed_ch.try_send(8));
    closed_ch.close();
    std::vector<std::optional<int>> seen;
    for (int k = 0; k < 2; ++k) {
      const auto i = fibers::select(fibers::on_recv(open_ch, [](std::optional<int>) { ADD_FAILURE(); }),
                                    fibers::on_recv(closed_ch, [&](std::optional<int> v) { seen.push_back(v); }));
      EXPECT_EQ(i, 1u);
    }
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[0], std::optional<int>(8)) << "buffered values are drained first";
    EXPECT_EQ(seen[1], std::nullopt);

    // Blocked in select when the channel is closed.
    channel<int> later;
    auto closer = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(20ms);
      later.close();
    });
    bool got_end = false;
    fibers::select(fibers::on_recv(later, [&](std::optional<int> v) { got_end = !v.has_value(); }),
                   fibers::on_timeout(10s, [] { ADD_FAILURE() << "close did not wake the select"; }));
    closer.join();
    EXPECT_TRUE(got_end);
  });
}

TEST(Select, SendCaseOnAClosedChannelThrowsChannelClosed) {
  fibers::run([] {
    channel<int> ch(1);
    ch.close();
    try {
      fibers::select(fibers::on_send(ch, 1, [] { ADD_FAILURE() << "handler ran"; }));
      FAIL() << "select send on a closed channel returned";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), fibers::errc::channel_closed);
    }
    // Closed while the select waits in a send case; the value is not delivered afterwards.
    channel<std::string> unbuffered;
    auto closer = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(20ms);
      unbuffered.close();
    });
    try {
      fibers::select(fibers::on_send(unbuffered, std::string(64, 'v'), [] { ADD_FAILURE(); }),
                     fibers::on_timeout(10s, [] { ADD_FAILURE() << "close did not wake the select"; }));
      FAIL() << "select did not throw";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), fibers::errc::channel_closed);
    }
    closer.join();
    EXPECT_EQ(unbuffered.recv(1s), std::nullopt);
  });
}

TEST(Select, BlockedSelectIsWokenByASenderOnAnotherIoThread) {
  fibers::runtime rt(2);
  rt.run([] {
    channel<int> a, b;
    auto sender = fibers::spawn_on(1, [b]() mutable {
      fibers::this_fiber::sleep_for(20ms);
      b.send(static_cast<int>(fibers::runtime::current_thread_index()), 10s);
    });
    std::optional<int> got;
    const auto i = fibers::select(fibers::on_recv(a, [](std::optional<int>) { ADD_FAILURE(); }),
                                  fibers::on_recv(b, [&](std::optional<int> v) { got = v; }),
                                  fibers::on_timeout(10s, [] { ADD_FAILURE() << "never woken"; }));
    EXPECT_EQ(i, 1u);
    EXPECT_EQ(got, std::optional<int>(1));
    sender.join();
  });
}

TEST(Select, RacingSendersOnTwoChannelsNeitherLoseNorDuplicateMessages) {
  constexpr int kPerSender = 20000;
  for (std::size_t cap : {std::size_t{0}, std::size_t{1}}) {
    fibers::runtime rt(1);
    channel<int> a(cap), b(cap);
    std::vector<int> seen(2 * kPerSender, 0);
    // Two plain threads send at the same time to the two channels one select waits on.
    auto sender = [](channel<int> ch, int first) {
      std::error_code ec;
      for (int i = 0; i < kPerSender && !ec; ++i) ch.send(2 * i + first, ec, 60s);
    };
    std::thread ta(sender, a, 0);
    std::thread tb(sender, b, 1);
    const int received = rt.run([&] {
      int n = 0;
      auto take = [&](std::optional<int> v) {
        ASSERT_TRUE(v.has_value());
        ++seen[*v];
        ++n;
      };
      // A lost message would leave a sender blocked forever: the inherited deadline turns
      // that into a timed_out error instead of a hang.
      fibers::with_deadline(60s, [&] {
        while (n < 2 * kPerSender) fibers::select(fibers::on_recv(a, take), fibers::on_recv(b, take));
      });
      return n;
    });
    a.close();  // a duplicate would leave a sender blocked: release it
    b.close();
    ta.join();
    tb.join();
    EXPECT_EQ(received, 2 * kPerSender);
    int bad = 0;
    for (int s : seen) bad += s != 1;
    EXPECT_EQ(bad, 0) << "capacity " << cap << ": messages lost or duplicated";
    EXPECT_EQ(a.try_recv(), std::nullopt);
    EXPECT_EQ(b.try_recv(), std::nullopt);
  }
}

TEST(Select, SendAndRecvSelectsOnSeveralThreadsDeliverEachMessageExactlyOnce) {
  constexpr int kPerProducer = 20000;
  fibers::runtime rt(2);
  channel<int> a, b(2);
  std::vector<std::atomic<int>> seen(2 * kPerProducer);
  auto consumer = [a, b, &seen]() mutable {
    bool a_done = false, b_done = false;
    while (!(a_done && b_done)) {
      fibers::select(fibers::on_recv(a, [&](std::optional<int> v) { v ? void(++seen[*v]) : void(a_done = true); }),
                     fibers::on_recv(b, [&](std::optional<int> v) { v ? void(++seen[*v]) : void(b_done = true); }),
                     fibers::on_timeout(60s, [] { throw std::runtime_error("consumer starved"); }));
    }
  };
  // Producer 1: a fiber whose every send is a select over both channels.
  auto select_producer = rt.spawn_on(1, [a, b]() mutable {
    for (int i = 0; i < kPerProducer; ++i) {
      fibers::select(fibers::on_send(a, i, [] {}), fibers::on_send(b, i, [] {}),
                     fibers::on_timeout(60s, [] { throw std::runtime_error("producer starved"); }));
    }
  });
  // Producer 2: a plain thread alternating plain sends on both.
  std::thread plain_producer([a, b]() mutable {
    for (int i = kPerProducer; i < 2 * kPerProducer; ++i) (i % 2 ? a : b).send(i, 60s);
  });
  auto c0 = rt.spawn_on(0, consumer);
  auto c1 = rt.spawn_on(1, consumer);
  select_producer.join();
  plain_producer.join();
  a.close();
  b.close();
  c0.join();
  c1.join();
  int bad = 0;
  for (auto& s : seen) bad += s.load() != 1;
  EXPECT_EQ(bad, 0) << "messages lost or duplicated";
}

TEST(Select, CancelingAFiberBlockedInSelectThrowsCanceled) {
  fibers::run([] {
    channel<int> a, b;
    const auto start = clock::now();
    auto f = fibers::spawn([&] {
      fibers::select(fibers::on_recv(a, [](std::optional<int>) { ADD_FAILURE(); }),
                     fibers::on_recv(b, [](std::optional<int>) { ADD_FAILURE(); }));
    });
    fibers::this_fiber::sleep_for(20ms);
    f.cancel();
    EXPECT_THROW(f.join(), fibers::canceled);
    EXPECT_LT(ms_since(start), 5s);
    EXPECT_FALSE(a.try_send(1)) << "the canceled select is still queued on a";
    EXPECT_FALSE(b.try_send(1)) << "the canceled select is still queued on b";
  });
}

TEST(Select, InheritedDeadlineEndsASelectWithoutTimeoutCaseWithTimedOut) {
  fibers::run([] {
    channel<int> a;
    const auto start = clock::now();
    try {
      fibers::with_deadline(50ms, [&] { fibers::select(fibers::on_recv(a, [](std::optional<int>) { ADD_FAILURE(); })); });
      FAIL() << "select returned";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out);
    }
    EXPECT_GE(ms_since(start), 50ms);
    // A timeout case later than the inherited deadline does not run either.
    bool case_ran = false;
    EXPECT_THROW(fibers::with_deadline(20ms, [&] {
                   fibers::select(fibers::on_recv(a, [](std::optional<int>) {}),
                                  fibers::on_timeout(10s, [&] { case_ran = true; }));
                 }),
                 std::system_error);
    EXPECT_FALSE(case_ran);
  });
}

}  // namespace
