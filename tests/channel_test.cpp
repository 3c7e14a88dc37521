// tests/channel_test.cpp - channels: capacity, FIFO order, close (none of Boost.Fiber 1.81's
// close misbehaviours), deadlines, cancellation, cross-thread exactly-once delivery.
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fibers/channel.hpp"
#include "fibers/scope.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::channel;
using fibers::clock;
using fibers_test::ms_since;

constexpr std::size_t kUnbounded = channel<int>::unbounded;

class ChannelCapacity : public ::testing::TestWithParam<std::size_t> {};

TEST_P(ChannelCapacity, DeliversValuesInFifoOrder) {
  const std::size_t cap = GetParam();
  fibers::run([cap] {
    channel<int> ch(cap);
    EXPECT_EQ(ch.capacity(), cap);
    constexpr int kN = 3000;
    auto producer = fibers::spawn([ch]() mutable {
      for (int i = 0; i < kN; ++i) {
        ch.send(i);
        if (i % 7 == 0) fibers::this_fiber::yield();
      }
    });
    for (int i = 0; i < kN; ++i) {
      auto v = ch.recv(10s);
      ASSERT_TRUE(v.has_value());
      ASSERT_EQ(*v, i);
      if (i % 5 == 0) fibers::this_fiber::yield();
    }
    producer.join();
    EXPECT_EQ(ch.try_recv(), std::nullopt);
  });
}

TEST_P(ChannelCapacity, HoldsExactlyItsCapacityWithoutAReceiver) {
  const std::size_t cap = GetParam();
  fibers::run([cap] {
    channel<int> ch(cap);
    const std::size_t expect = cap == kUnbounded ? 100000 : cap;
    for (std::size_t i = 0; i < expect; ++i) ASSERT_TRUE(ch.try_send(static_cast<int>(i))) << i;
    EXPECT_EQ(ch.size(), expect);
    if (cap != kUnbounded) {
      EXPECT_FALSE(ch.try_send(-1)) << "a channel of capacity " << cap << " took one more";
      std::error_code ec;
      EXPECT_FALSE(ch.send(-1, ec, 10ms));
      EXPECT_EQ(ec, std::errc::timed_out);
    }
    for (std::size_t i = 0; i < expect; ++i) ASSERT_EQ(ch.try_recv(), std::optional<int>(static_cast<int>(i)));
    EXPECT_EQ(ch.try_recv(), std::nullopt);
  });
}

TEST_P(ChannelCapacity, CloseLetsReceiversDrainThenGivesNullopt) {
  const std::size_t cap = GetParam();
  fibers::run([cap] {
    channel<int> ch(cap);
    const int n = cap == 0 ? 0 : static_cast<int>(std::min<std::size_t>(cap, 5));
    for (int i = 0; i < n; ++i) ASSERT_TRUE(ch.try_send(i));
    ch.close();
    EXPECT_TRUE(ch.closed());
    for (int i = 0; i < n; ++i) EXPECT_EQ(ch.recv(1s), std::optional<int>(i));
    EXPECT_EQ(ch.recv(1s), std::nullopt);
    EXPECT_EQ(ch.try_recv(), std::nullopt);
    try {
      ch.send(99);
      FAIL() << "send after close did not throw";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), fibers::errc::channel_closed);
    }
    EXPECT_FALSE(ch.try_send(99));
    EXPECT_EQ(ch.recv(1s), std::nullopt) << "a value sent after close arrived";
  });
}

INSTANTIATE_TEST_SUITE_P(Capacities, ChannelCapacity, ::testing::Values(0, 1, 3, 1000, kUnbounded),
                         [](const auto& info) {
                           return info.param == kUnbounded ? std::string("unbounded")
                                                           : "cap" + std::to_string(info.param);
                         });

TEST(Channel, UnbufferedSendWaitsUntilAReceiverTakesTheValue) {
  fibers::run([] {
    channel<int> ch;
    bool sent = false;
    auto sender = fibers::spawn([&] {
      ch.send(7);
      sent = true;
    });
    fibers::this_fiber::sleep_for(50ms);
    EXPECT_FALSE(sent) << "send on an unbuffered channel returned with no receiver";
    EXPECT_EQ(ch.recv(1s), std::optional<int>(7));
    sender.join();
    EXPECT_TRUE(sent);
  });
}

TEST(Channel, TrySendOnUnbufferedHandsTheValueToAParkedReceiver) {
  fibers::run([] {
    channel<int> ch;
    EXPECT_FALSE(ch.try_send(1)) << "no receiver yet";
    std::optional<int> got;
    auto receiver = fibers::spawn([&] { got = ch.recv(10s); });
    fibers::this_fiber::sleep_for(10ms);  // the receiver is parked now
    EXPECT_TRUE(ch.try_send(2));
    receiver.join();
    EXPECT_EQ(got, std::optional<int>(2));
  });
}

TEST(Channel, CloseWakesBlockedReceiversWithNullopt) {
  fibers::run([] {
    channel<std::string> ch(2);
    int ended = 0;
    std::vector<fibers::fiber> receivers;
    for (int i = 0; i < 3; ++i) {
      receivers.push_back(fibers::spawn([&] {
        EXPECT_EQ(ch.recv(), std::nullopt);
        ++ended;
      }));
    }
    fibers::this_fiber::sleep_for(20ms);
    EXPECT_EQ(ended, 0);
    ch.close();
    for (auto& r : receivers) r.join();
    EXPECT_EQ(ended, 3);
  });
}

/// A sender parked on `ch` (full or unbuffered) when it is closed gets channel_closed, and its
/// value never comes out of the channel afterwards (Boost.Fiber 1.81's unbuffered channel
/// handed a later receiver the dead sender's value).
template <class T>
void blocked_senders_fail_on_close_and_their_values_never_arrive(std::size_t cap, std::vector<T> buffered,
                                                                 std::vector<T> blocked) {
  fibers::run([&] {
    channel<T> ch(cap);
    for (auto& v : buffered) ASSERT_TRUE(ch.try_send(std::move(v)));
    std::vector<std::error_code> results(blocked.size());
    std::vector<fibers::fiber> senders;
    for (std::size_t i = 0; i < blocked.size(); ++i) {
      senders.push_back(fibers::spawn([&, i] {
        bool threw = false;
        try {
          ch.send(std::move(blocked[i]));
        } catch (const std::system_error& e) {
          results[i] = e.code();
          threw = true;
        }
        EXPECT_TRUE(threw);
      }));
    }
    fibers::this_fiber::sleep_for(20ms);
    ch.close();
    for (auto& s : senders) s.join();  // their frames (and values) are gone now
    for (auto& ec : results) EXPECT_EQ(ec, fibers::errc::channel_closed) << ec.message();
    std::size_t drained = 0;
    while (auto v = ch.recv(1s)) {
      ++drained;
      ASSERT_LE(drained, buffered.size()) << "a closed channel delivered a blocked sender's value";
    }
    EXPECT_EQ(drained, buffered.size());
    EXPECT_EQ(ch.try_recv(), std::nullopt);
  });
}

TEST(Channel, CloseFailsBlockedUnbufferedSendersAndNeverDeliversTheirValues) {
  std::vector<std::unique_ptr<int>> blocked;
  for (int i = 0; i < 3; ++i) blocked.push_back(std::make_unique<int>(100 + i));
  blocked_senders_fail_on_close_and_their_values_never_arrive<std::unique_ptr<int>>(0, {}, std::move(blocked));
  blocked_senders_fail_on_close_and_their_values_never_arrive<std::string>(
      0, {}, {std::string(100, 'x'), std::string(200, 'y')});
}

TEST(Channel, CloseFailsSendersBlockedOnAFullBufferAndReceiversGetOnlyTheBufferedValues) {
  std::vector<std::unique_ptr<int>> buffered, blocked;
  for (int i = 0; i < 3; ++i) buffered.push_back(std::make_unique<int>(i));
  for (int i = 0; i < 2; ++i) blocked.push_back(std::make_unique<int>(100 + i));
  blocked_senders_fail_on_close_and_their_values_never_arrive<std::unique_ptr<int>>(3, std::move(buffered),
                                                                                     std::move(blocked));
  blocked_senders_fail_on_close_and_their_values_never_arrive<std::string>(
      3, {"a", "b", "c"}, {std::string(300, 'z')});
}

TEST(Channel, RangeForReceivesUntilClosed) {
  fibers::run([] {
    channel<int> ch(4);
    fibers::spawn([ch]() mutable {
      for (int i = 0; i < 100; ++i) ch.send(i);
      ch.close();
    }).detach();
    std::vector<int> got;
    for (int v : ch) got.push_back(v);
    ASSERT_EQ(got.size(), 100u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(got[i], i);
  });
}

TEST(Channel, RecvDeadlineThrowsTimedOutNotBeforeTheDeadline) {
  fibers::run([] {
    channel<int> ch(1);
    const auto start = clock::now();
    try {
      ch.recv(50ms);
      FAIL() << "recv on an empty channel returned";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out);
    }
    EXPECT_GE(ms_since(start), 50ms);
    std::error_code ec;
    EXPECT_EQ(ch.recv(ec, 10ms), std::nullopt);
    EXPECT_EQ(ec, std::errc::timed_out);
    EXPECT_TRUE(ch.try_send(1));
    EXPECT_EQ(ch.recv(ec, 10ms), std::optional<int>(1));
    EXPECT_FALSE(ec);
  });
}

TEST(Channel, InheritedDeadlineEndsBlockedRecvAndSendWithTimedOut) {
  fibers::run([] {
    channel<int> ch(1);
    auto start = clock::now();
    std::error_code ec;
    fibers::with_deadline(30ms, [&] { ch.recv(ec); });
    EXPECT_EQ(ec, std::errc::timed_out);
    EXPECT_GE(ms_since(start), 30ms);
    ASSERT_TRUE(ch.try_send(1));
    start = clock::now();
    EXPECT_THROW(fibers::with_deadline(30ms, [&] { ch.send(2); }), std::system_error);
    EXPECT_GE(ms_since(start), 30ms);
    EXPECT_EQ(ch.try_recv(), std::optional<int>(1));
    EXPECT_EQ(ch.try_recv(), std::nullopt) << "the timed-out send was delivered";
  });
}

TEST(Channel, ATimedOutSendersValueNeverArrivesButALaterOneDoes) {
  for (std::size_t cap : {std::size_t{0}, std::size_t{1}}) {
    fibers::run([cap] {
      channel<std::string> ch(cap);
      if (cap == 1) {
        ASSERT_TRUE(ch.try_send("first"));
      }
      const auto start = clock::now();
      try {
        ch.send("lost", 40ms);
        FAIL() << "send on a full channel returned";
      } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::timed_out);
      }
      EXPECT_GE(ms_since(start), 40ms);
      fibers::spawn([ch]() mutable { ch.send("later", 10s); }).detach();
      if (cap == 1) {
        EXPECT_EQ(ch.recv(1s), std::optional<std::string>("first"));
      }
      EXPECT_EQ(ch.recv(1s), std::optional<std::string>("later"));
      std::error_code ec;
      EXPECT_EQ(ch.recv(ec, 20ms), std::nullopt) << "a timed-out send was delivered";
      EXPECT_EQ(ec, std::errc::timed_out);
    });
  }
}

TEST(Channel, CancelingAFiberBlockedInRecvOrSendThrowsCanceled) {
  fibers::run([] {
    channel<std::unique_ptr<int>> ch;
    auto receiver = fibers::spawn([&] { ch.recv(); });
    fibers::this_fiber::sleep_for(20ms);
    receiver.cancel();
    EXPECT_THROW(receiver.join(), fibers::canceled);
    EXPECT_FALSE(ch.try_send(std::make_unique<int>(1))) << "a canceled receiver was still queued";
    auto sender = fibers::spawn([&] { ch.send(std::make_unique<int>(6)); });
    fibers::this_fiber::sleep_for(20ms);
    sender.cancel();
    EXPECT_THROW(sender.join(), fibers::canceled);
    std::error_code ec;
    EXPECT_FALSE(ch.recv(ec, 20ms).has_value()) << "a canceled sender's value was delivered";
    EXPECT_EQ(ec, std::errc::timed_out);
  });
}

TEST(Channel, MoveOnlyValuesPassThroughEveryOperation) {
  fibers::run([] {
    channel<std::unique_ptr<int>> ch(2);
    auto p = std::make_unique<int>(1);
    EXPECT_TRUE(ch.try_send(std::move(p)));
    ch.send(std::make_unique<int>(2));
    auto q = std::make_unique<int>(3);
    EXPECT_FALSE(ch.try_send(std::move(q)));
    ASSERT_NE(q, nullptr) << "a failed try_send consumed its argument";
    EXPECT_EQ(**ch.recv(), 1);
    EXPECT_EQ(**ch.try_recv(), 2);
    auto f = fibers::spawn([&] { ch.send(std::move(q)); });
    EXPECT_EQ(**ch.recv(1s), 3);
    f.join();
  });
}

// The buffer is a ring that grows by doubling: values wrap around its end and are moved when
// it grows with some of them wrapped; order, contents and destruction must survive both.
TEST(Channel, BufferKeepsOrderAcrossWrapAndGrowthAndDestroysWhatIsLeft) {
  struct counted {
    explicit counted(int v, std::shared_ptr<int> l) : value(std::to_string(v)), live(std::move(l)) { ++*live; }
    counted(counted&& o) noexcept : value(std::move(o.value)), live(o.live) { ++*live; }
    counted(const counted&) = delete;
    ~counted() { --*live; }
    std::string value;
    std::shared_ptr<int> live;
  };
  auto live = std::make_shared<int>(0);
  fibers::run([live] {
    channel<counted> ch(channel<counted>::unbounded);
    int sent = 0, received = 0;
    // Laps of unequal pushes and pops: the head walks round the ring, and each growth
    // happens with the queue wrapped.
    for (int lap = 0; lap < 40; ++lap) {
      for (int i = 0; i < 7 + lap; ++i) ASSERT_TRUE(ch.try_send(counted(sent++, live)));
      for (int i = 0; i < 5 + lap / 2; ++i) {
        auto v = ch.try_recv();
        ASSERT_TRUE(v.has_value());
        ASSERT_EQ(v->value, std::to_string(received++));
      }
    }
    EXPECT_EQ(*live, sent - received) << "values alive = values still in the channel";
    // The channel goes away holding values: each is destroyed exactly once.
  });
  EXPECT_EQ(*live, 0);
}

TEST(Channel, ProducersOnFourIoThreadsAndTwoPlainThreadsDeliverEachMessageExactlyOnce) {
  constexpr int kMessages = 100000;
  constexpr int kProducers = 6;
  for (std::size_t cap : {std::size_t{0}, std::size_t{7}}) {
    fibers::runtime rt(4);
    channel<int> ch(cap);
    std::vector<std::atomic<int>> seen(kMessages);
    auto produce = [ch](int p) mutable {
      for (int id = p; id < kMessages; id += kProducers) ch.send(id, 60s);
    };
    auto consume = [ch, &seen]() mutable {
      while (auto v = ch.recv(60s)) seen[*v].fetch_add(1, std::memory_order_relaxed);
    };
    std::vector<fibers::fiber> producers, consumers;
    for (int t = 0; t < 4; ++t) producers.push_back(rt.spawn_on(t, [produce, t]() mutable { produce(t); }));
    std::thread plain_a([produce]() mutable { produce(4); });
    std::thread plain_b([produce]() mutable { produce(5); });
    // Consumers sit on threads other than the producer they would pair with, plus one plain.
    for (int t = 0; t < 4; ++t) consumers.push_back(rt.spawn_on((t + 1) % 4, consume));
    std::thread plain_consumer(consume);
    for (auto& f : producers) f.join();
    plain_a.join();
    plain_b.join();
    ch.close();
    for (auto& f : consumers) f.join();
    plain_consumer.join();
    int missing = 0, duplicated = 0;
    for (auto& s : seen) {
      missing += s.load() == 0;
      duplicated += s.load() > 1;
    }
    EXPECT_EQ(missing, 0) << "capacity " << cap;
    EXPECT_EQ(duplicated, 0) << "capacity " << cap;
  }
}

TEST(Channel, DeadlinesRacingAcrossThreadsNeitherLoseNorDuplicateValues) {
  constexpr int kN = 5000;
  for (std::size_t cap : {std::size_t{0}, std::size_t{1}}) {
    fibers::runtime rt(2);
    channel<int> ch(cap);
    std::vector<char> sent(kN, 0), got(kN, 0);
    auto producer = rt.spawn_on(0, [&] {
      for (int i = 0; i < kN; ++i) {
        std::error_code ec;
        if (ch.send(i, ec, std::chrono::microseconds((i % 5) * 500))) sent[i] = 1;
        else EXPECT_EQ(ec, std::errc::timed_out);
      }
      ch.close();
    });
    auto consumer = rt.spawn_on(1, [&] {
      for (int k = 0;; ++k) {
        // Now and then some work between receives, so senders park and their deadlines race
        // this receiver.
        const auto busy_until = clock::now() + std::chrono::microseconds(k % 8 == 0 ? (k / 8 % 5) * 500 : 0);
        while (clock::now() < busy_until) {
        }
        std::error_code ec;
        auto v = ch.recv(ec, std::chrono::microseconds(k % 250));
        if (ec) {
          EXPECT_EQ(ec, std::errc::timed_out);
          continue;
        }
        if (!v) break;
        ++got[*v];
      }
    });
    producer.join();
    consumer.join();
    int delivered = 0, mismatched = 0;
    for (int i = 0; i < kN; ++i) {
      delivered += sent[i];
      mismatched += sent[i] != got[i];
    }
    EXPECT_EQ(mismatched, 0) << "capacity " << cap << ": a timed-out send arrived or a sent value was lost";
    EXPECT_GT(delivered, 0) << "capacity " << cap;
  }
}

TEST(Channel, CloseRacingWithSendersAndReceiversOnOtherThreadsLosesAndInventsNothing) {
  constexpr int kPerSender = 20000;
  for (std::size_t cap : {std::size_t{0}, std::size_t{3}}) {
    fibers::runtime rt(2);
    channel<int> ch(cap);
    std::vector<char> sent(2 * kPerSender, 0);
    std::vector<std::atomic<int>> got(2 * kPerSender);
    auto sender = [ch, &sent](int first) mutable {
      std::error_code ec;
      for (int i = first; i < 2 * kPerSender && !ec; i += 2) sent[i] = ch.send(i, ec, 60s);
      EXPECT_TRUE(!ec || ec == fibers::errc::channel_closed) << ec.message();
    };
    auto receiver = [ch, &got]() mutable {
      while (auto v = ch.recv(60s)) got[*v].fetch_add(1);
    };
    auto fiber_sender = rt.spawn_on(0, [sender]() mutable { sender(0); });
    std::thread plain_sender(sender, 1);
    auto fiber_receiver = rt.spawn_on(1, receiver);
    std::thread plain_receiver(receiver);
    rt.run([&] {  // close in the middle of the traffic
      while (got[2 * kPerSender / 3].load() == 0 && got[2 * kPerSender / 3 + 1].load() == 0) {
        fibers::this_fiber::sleep_for(100us);
      }
      ch.close();
    });
    fiber_sender.join();
    plain_sender.join();
    fiber_receiver.join();
    plain_receiver.join();
    int bad = 0;
    for (int i = 0; i < 2 * kPerSender; ++i) bad += got[i].load() != sent[i];
    EXPECT_EQ(bad, 0) << "capacity " << cap << ": a value sent before close was lost, or a failed send arrived";
  }
}

}  // namespace
