// tests/scope_test.cpp - structured concurrency: scope and with_scope (children joined,
// errors rethrown, cancellation both ways, children on other threads, per-child handles).
// Inherited deadlines: deadline_test.cpp.
#include <atomic>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fibers/scope.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::clock;
using fibers_test::hang_guard;
using fibers_test::in_child_process;
using fibers_test::ms_since;
using fibers_test::sleep_an_hour;

TEST(Scope, JoinWaitsForEveryChild) {
  fibers::run([] {
    std::vector<int> done;
    fibers::scope s;
    for (int i = 0; i < 5; ++i) {
      s.spawn([&done, i] {
        fibers::this_fiber::sleep_for(std::chrono::milliseconds(5 * (5 - i)));
        done.push_back(i);
      });
    }
    EXPECT_EQ(s.running(), 5u);
    s.join();
    EXPECT_EQ(s.running(), 0u);
    EXPECT_EQ(done.size(), 5u);
  });
}

TEST(Scope, ChildExceptionIsRethrownByJoinAndCancelsSiblingsInReadAndSleep) {
  fibers::run([] {
    auto pair = fibers_test::make_tcp_pair();  // nobody ever writes to it
    std::string reader_end = "running", sleeper_end = "running";
    const auto start = clock::now();
    fibers::scope s;
    s.spawn([&] {
      char buf[16];
      try {
        pair.server.read_some(buf);
        reader_end = "read returned";
      } catch (const fibers::canceled&) {
        reader_end = "canceled";
        throw;
      }
    });
    s.spawn([&] { sleep_an_hour(sleeper_end); });
    s.spawn([] {
      fibers::this_fiber::sleep_for(20ms);
      throw std::runtime_error("child failed");
    });
    try {
      s.join();
      FAIL() << "join did not rethrow";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "child failed");
    }
    EXPECT_EQ(reader_end, "canceled");
    EXPECT_EQ(sleeper_end, "canceled");
    EXPECT_LT(ms_since(start), 10s) << "siblings were not interrupted";
  });
}

TEST(Scope, FirstChildExceptionWins) {
  fibers::run([] {
    fibers::scope s;
    s.spawn([] { throw std::runtime_error("first"); });
    s.spawn([] {
      fibers::this_fiber::yield();  // not a cancellation point: throws after the first one
      throw std::logic_error("second");
    });
    s.spawn([] {
      try {
        fibers::this_fiber::sleep_for(1h);
      } catch (const fibers::canceled&) {
        throw std::out_of_range("third, while being canceled");
      }
    });
    try {
      s.join();
      FAIL() << "join did not rethrow";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "first");
    } catch (const std::exception& e) {
      ADD_FAILURE() << "join rethrew a later error: " << e.what();
    }
  });
}

TEST(Scope, CancelingTheOwnerInJoinCancelsChildrenAndJoinThrowsCanceledAfterTheyEnd) {
  fibers::run([] {
    std::string a_end = "running", b_end = "running";
    bool children_finished_before_join_returned = false;
    bool b_cleaned_up = false;
    auto owner = fibers::spawn([&] {
      fibers::scope s;
      s.spawn([&] { sleep_an_hour(a_end); });
      s.spawn([&] {
        try {
          sleep_an_hour(b_end);
        } catch (const fibers::canceled&) {
          // Clean-up that takes a few scheduler rounds: join must wait for it.
          for (int i = 0; i < 20; ++i) fibers::this_fiber::yield();
          b_cleaned_up = true;
          throw;
        }
      });
      try {
        s.join();
      } catch (const fibers::canceled&) {
        children_finished_before_join_returned = b_cleaned_up && a_end == "canceled";
        throw;
      }
    });
    fibers::this_fiber::sleep_for(20ms);
    const auto start = clock::now();
    owner.cancel();
    EXPECT_THROW(owner.join(), fibers::canceled);
    EXPECT_LT(ms_since(start), 10s);
    EXPECT_EQ(a_end, "canceled");
    EXPECT_EQ(b_end, "canceled");
    EXPECT_TRUE(children_finished_before_join_returned);
  });
}

TEST(Scope, ScopeLeftByAnExceptionCancelsAndWaitsForItsChildren) {
  fibers::run([] {
    std::string a_end = "running";
    bool b_ended = false;
    const auto start = clock::now();
    try {
      fibers::scope s;
      s.spawn([&] { sleep_an_hour(a_end); });
      s.spawn([&] {
        try {
          fibers::this_fiber::sleep_for(1h);
        } catch (const fibers::canceled&) {
          for (int i = 0; i < 20; ++i) fibers::this_fiber::yield();
          b_ended = true;
          throw;
        }
      });
      fibers::this_fiber::sleep_for(10ms);
      throw std::runtime_error("owner failed");
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "owner failed");
      // ~scope ran during unwinding: the children have ended.
      EXPECT_EQ(a_end, "canceled");
      EXPECT_TRUE(b_ended);
    }
    EXPECT_LT(ms_since(start), 10s);
  });
}

TEST(Scope, WithScopeJoinsAndReturnsTheBodysValue) {
  fibers::run([] {
    int a = 0, b = 0;
    const int r = fibers::with_scope([&](fibers::scope& s) {
      s.spawn([&] {
        fibers::this_fiber::sleep_for(10ms);
        a = 1;
      });
      s.spawn([&] {
        fibers::this_fiber::sleep_for(5ms);
        b = 2;
      });
      return 42;
    });
    EXPECT_EQ(r, 42);
    EXPECT_EQ(a, 1) << "with_scope returned before the children ended";
    EXPECT_EQ(b, 2);
    EXPECT_THROW(fibers::with_scope([](fibers::scope& s) { s.spawn([] { throw std::invalid_argument("x"); }); }),
                 std::invalid_argument);
  });
}

TEST(Scope, AChildsErrorCancelsTheBodyAndWithScopeRethrowsTheChildsError) {
  in_child_process([] {
    hang_guard guard(20s, "a body waiting while a child of its scope fails");
    fibers::run([] {
      std::string body_end = "running", sibling_end = "running";
      bool next_wait_in_body_canceled = false;
      const auto start = clock::now();
      try {
        fibers::with_scope([&](fibers::scope& s) {
          s.spawn([&] { sleep_an_hour(sibling_end); });
          s.spawn([] {
            fibers::this_fiber::sleep_for(20ms);
            throw std::runtime_error("child failed");
          });
          try {
            sleep_an_hour(body_end);
          } catch (const fibers::canceled&) {
            // Canceled once, for as long as the scope lasts: the next wait fails too.
            std::error_code ec;
            fibers::this_fiber::sleep_for(1h, ec);
            next_wait_in_body_canceled = ec == fibers::errc::canceled;
            throw;
          }
        });
        ADD_FAILURE() << "with_scope returned";
      } catch (const fibers::canceled& e) {
        ADD_FAILURE() << "with_scope threw the body's canceled, not the child's error: " << e.what();
      } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "child failed");
      }
      EXPECT_EQ(body_end, "canceled");
      EXPECT_EQ(sibling_end, "canceled");
      EXPECT_TRUE(next_wait_in_body_canceled);
      EXPECT_LT(ms_since(start), 10s);
      // The scope's cancellation of its owner ended with the scope.
      EXPECT_FALSE(fibers::this_fiber::cancel_requested());
      std::error_code ec;
      fibers::this_fiber::sleep_for(1ms, ec);
      EXPECT_FALSE(ec) << ec.message();

      // The class form: the body catches the canceled, join() rethrows the child's error.
      body_end = "running";
      fibers::scope s;
      s.spawn([] {
        fibers::this_fiber::sleep_for(10ms);
        throw std::invalid_argument("class child failed");
      });
      try {
        sleep_an_hour(body_end);
      } catch (const fibers::canceled&) {
      }
      EXPECT_EQ(body_end, "canceled");
      EXPECT_THROW(s.join(), std::invalid_argument);
      EXPECT_FALSE(fibers::this_fiber::cancel_requested());

      // A body that returns without waiting again is not troubled: join rethrows the error.
      EXPECT_THROW(fibers::with_scope([](fibers::scope& sc) {
                     sc.spawn([] { throw std::out_of_range("quick failure"); });
                     fibers::this_fiber::yield();  // the child fails; not a cancellation point
                     fibers::this_fiber::yield();
                   }),
                   std::out_of_range);
      EXPECT_FALSE(fibers::this_fiber::cancel_requested());
    });
  });
}

TEST(Scope, AnInnerScopeEndingLeavesTheOuterScopesCancellationOfTheBodyInPlace) {
  in_child_process([] {
    hang_guard guard(20s, "nested scopes canceling the same body");
    fibers::run([] {
      std::string inner_error, outer_body_end = "running";
      try {
        fibers::with_scope([&](fibers::scope& outer) {
          outer.spawn([] {
            fibers::this_fiber::sleep_for(30ms);
            throw std::runtime_error("outer child failed");
          });
          try {
            fibers::with_scope([&](fibers::scope& inner) {
              inner.spawn([] { throw std::logic_error("inner child failed"); });
              fibers::this_fiber::sleep_for(1h);
            });
          } catch (const std::logic_error& e) {
            inner_error = e.what();
          }
          // The inner scope withdrew its own request only: the body can wait again...
          EXPECT_FALSE(fibers::this_fiber::cancel_requested());
          // ...until the outer scope's child fails.
          sleep_an_hour(outer_body_end);
        });
        ADD_FAILURE() << "with_scope returned";
      } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "outer child failed");
      }
      EXPECT_EQ(inner_error, "inner child failed");
      EXPECT_EQ(outer_body_end, "canceled");
      EXPECT_FALSE(fibers::this_fiber::cancel_requested());

      // An inner scope ending while the outer one holds its cancellation keeps the body canceled.
      bool canceled_after_inner = false;
      try {
        fibers::with_scope([&](fibers::scope& outer) {
          outer.spawn([] { throw std::runtime_error("outer failed first"); });
          try {
            fibers::with_scope([&](fibers::scope& inner) {
              inner.spawn([] { throw std::logic_error("inner failed second"); });
              std::error_code ec;
              fibers::this_fiber::sleep_for(1h, ec);  // canceled by the outer child
              fibers::this_fiber::sleep_for(1ms, ec);  // lets the inner child fail too
            });
          } catch (const std::logic_error&) {
          }
          canceled_after_inner = fibers::this_fiber::cancel_requested();
        });
        ADD_FAILURE() << "with_scope returned";
      } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "outer failed first");
      }
      EXPECT_TRUE(canceled_after_inner) << "the inner scope withdrew the outer scope's cancellation";
      EXPECT_FALSE(fibers::this_fiber::cancel_requested());
    });
  });
}

TEST(Scope, ChildrenMaySpawnChildrenUntilTheScopeHasEnded) {
  in_child_process([] {
    hang_guard guard(20s, "children spawning into a joining scope");
    fibers::run([] {
      // Spawned while join() waits: the body returned long before.
      std::vector<int> order;
      fibers::with_scope([&](fibers::scope& s) {
        s.spawn([&] {
          fibers::this_fiber::sleep_for(20ms);  // join() is waiting by now
          s.spawn([&] {
            fibers::this_fiber::sleep_for(5ms);
            s.spawn([&] {
              fibers::this_fiber::sleep_for(5ms);
              order.push_back(3);
            });
            order.push_back(2);
          });
          order.push_back(1);
        });
      });
      EXPECT_EQ(order, (std::vector<int>{1, 2, 3})) << "with_scope returned before a grandchild ended";

      // A child spawned after the scope was canceled starts canceled, and its error does not
      // replace the first one.
      std::string late_end = "not spawned";
      try {
        fibers::with_scope([&](fibers::scope& s) {
          s.spawn([&] {
            try {
              fibers::this_fiber::sleep_for(1h);
            } catch (const fibers::canceled&) {
              late_end = "running";
              s.spawn([&] { sleep_an_hour(late_end); });
              throw;
            }
          });
          s.spawn([] {
            fibers::this_fiber::sleep_for(10ms);
            throw std::runtime_error("first");
          });
        });
        ADD_FAILURE() << "with_scope returned";
      } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "first");
      }
      EXPECT_EQ(late_end, "canceled");

      // Once join() has returned, the scope is over: spawning into it is a clear error.
      fibers::scope s;
      s.spawn([] {});
      s.join();
      try {
        s.spawn([] {});
        ADD_FAILURE() << "spawn after the scope ended did not throw";
      } catch (const std::logic_error& e) {
        EXPECT_NE(std::string(e.what()).find("has ended"), std::string::npos) << e.what();
      }
      EXPECT_EQ(s.running(), 0u);
    });
  });
}

TEST(Scope, AChildHandleCancelsThatChildAloneAndItsCanceledIsNoError) {
  in_child_process([] {
    hang_guard guard(20s, "canceling one child of a scope");
    fibers::runtime rt(2);
    rt.run([] {
      std::string slow_end = "running", remote_end = "running";
      bool other_finished = false, running_before = false, running_after = true;
      std::uint64_t slow_id = 0, handle_id = 1;
      fibers::with_scope([&](fibers::scope& s) {
        auto slow = s.spawn([&] {
          slow_id = fibers::this_fiber::id();
          sleep_an_hour(slow_end);
        });
        auto remote = s.spawn_on(1, [&] { sleep_an_hour(remote_end); });
        s.spawn([&] {
          fibers::this_fiber::sleep_for(30ms);
          other_finished = true;
        });
        fibers::this_fiber::sleep_for(5ms);
        running_before = slow.running();
        handle_id = slow.id();
        slow.cancel();
        remote.cancel();
        fibers::this_fiber::sleep_for(10ms);
        running_after = slow.running();
        slow.cancel();  // ended: nothing happens
      });  // no error: the canceled children did what they were asked
      EXPECT_EQ(slow_end, "canceled");
      EXPECT_EQ(remote_end, "canceled");
      EXPECT_TRUE(other_finished) << "canceling one child canceled its sibling";
      EXPECT_TRUE(running_before);
      EXPECT_FALSE(running_after);
      EXPECT_EQ(handle_id, slow_id);

      // Another exception from a child canceled alone is an error of the scope as usual.
      EXPECT_THROW(fibers::with_scope([](fibers::scope& s) {
                     auto c = s.spawn([] {
                       try {
                         fibers::this_fiber::sleep_for(1h);
                       } catch (const fibers::canceled&) {
                         throw std::runtime_error("cleanup failed");
                       }
                     });
                     fibers::this_fiber::yield();
                     c.cancel();
                   }),
                   std::runtime_error);
    });
  });
}

TEST(Scope, AnEndedChildsStackIsReleasedWhileTheScopeGoesOn) {
  // A long-lived scope (an accept loop spawning a child per connection) must not keep every
  // ended child: its handle goes when it ends, and its stack back to the pool for the next.
  fibers::runtime rt(1);
  rt.run([&rt] {
    const auto carved_before = fibers::stats(rt)[0].stacks_carved;
    int ran = 0;
    fibers::with_scope([&](fibers::scope& s) {
      for (int i = 0; i < 300; ++i) {
        s.spawn([&ran] { ++ran; });
        fibers::this_fiber::sleep_for(0ms);  // parks: the child runs and ends
        fibers::this_fiber::yield();
      }
    });
    EXPECT_EQ(ran, 300);
    EXPECT_LT(fibers::stats(rt)[0].stacks_carved - carved_before, 100u)
        << "ended children kept their stacks until the scope ended";
  });
}

TEST(Scope, ChildrenOnOtherThreadsAreJoinedCanceledAndCancelLikeLocalOnes) {
  in_child_process([] {
    hang_guard guard(30s, "scope children on another I/O thread");
    fibers::runtime rt(2);
    rt.run([] {
      // join() waits for a child on thread 1; its writes are visible afterwards.
      std::size_t child_thread = 99;
      bool child_done = false;
      fibers::with_scope([&](fibers::scope& s) {
        s.spawn_on(1, "remote-child", [&] {
          child_thread = fibers::runtime::current_thread_index();
          fibers::this_fiber::sleep_for(20ms);
          child_done = true;
        });
      });
      EXPECT_EQ(child_thread, 1u);
      EXPECT_TRUE(child_done) << "with_scope returned before the remote child ended";

      // A remote child's error cancels a remote sibling, a local sibling and the body, and is
      // what with_scope throws.
      std::string remote_end = "running", local_end = "running", body_end = "running";
      const auto start = clock::now();
      try {
        fibers::with_scope([&](fibers::scope& s) {
          s.spawn_on(1, [&] { sleep_an_hour(remote_end); });
          s.spawn([&] { sleep_an_hour(local_end); });
          s.spawn_on(1, [] {
            fibers::this_fiber::sleep_for(20ms);
            throw std::runtime_error("remote child failed");
          });
          sleep_an_hour(body_end);
        });
        ADD_FAILURE() << "with_scope returned";
      } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "remote child failed");
      }
      EXPECT_EQ(remote_end, "canceled");
      EXPECT_EQ(local_end, "canceled");
      EXPECT_EQ(body_end, "canceled");
      EXPECT_LT(ms_since(start), 10s);
      EXPECT_FALSE(fibers::this_fiber::cancel_requested());

      // A local child's error cancels a remote one.
      remote_end = "running";
      EXPECT_THROW(fibers::with_scope([&](fibers::scope& s) {
                     s.spawn_on(1, [&] { sleep_an_hour(remote_end); });
                     s.spawn([] {
                       fibers::this_fiber::sleep_for(10ms);
                       throw std::invalid_argument("local child failed");
                     });
                   }),
                   std::invalid_argument);
      EXPECT_EQ(remote_end, "canceled");

      // The scope's deadline reaches a remote child.
      remote_end = "running";
      clock::time_point remote_deadline{}, scope_deadline{};
      try {
        fibers::with_deadline(50ms, [&] {
          scope_deadline = fibers::current_deadline();
          fibers::with_scope([&](fibers::scope& s) {
            s.spawn_on(1, [&] {
              remote_deadline = fibers::current_deadline();
              sleep_an_hour(remote_end);
            });
          });
        });
        ADD_FAILURE() << "with_scope returned";
      } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
      }
      EXPECT_EQ(remote_deadline, scope_deadline);
      EXPECT_TRUE(remote_end == "timed_out" || remote_end == "canceled") << remote_end;

      // Canceling the owner in join() cancels the remote child, and join() waits for it.
      remote_end = "running";
      bool remote_ended_before_join_threw = false;
      auto owner = fibers::spawn([&] {
        fibers::scope s;
        s.spawn_on(1, [&] { sleep_an_hour(remote_end); });
        try {
          s.join();
        } catch (const fibers::canceled&) {
          remote_ended_before_join_threw = remote_end == "canceled";
          throw;
        }
      });
      fibers::this_fiber::sleep_for(20ms);
      owner.cancel();
      EXPECT_THROW(owner.join(), fibers::canceled);
      EXPECT_TRUE(remote_ended_before_join_threw);

      // A remote child may spawn more children (here and there) while join() waits.
      std::atomic<int> grandchildren{0};
      fibers::with_scope([&](fibers::scope& s) {
        s.spawn([&] {
          fibers::this_fiber::sleep_for(10ms);
          s.spawn_on(1, [&] {
            fibers::this_fiber::sleep_for(5ms);
            ++grandchildren;
          });
          ++grandchildren;
        });
      });
      EXPECT_EQ(grandchildren.load(), 2);

      // A remote child cannot spawn into the scope itself: the scope's state is its owner's.
      std::string remote_spawn = "not tried";
      fibers::with_scope([&](fibers::scope& s) {
        s.spawn_on(1, [&] {
          try {
            s.spawn([] {});
            remote_spawn = "spawned";
          } catch (const std::logic_error& e) {
            remote_spawn = e.what();
          }
        });
      });
      EXPECT_NE(remote_spawn.find("another thread"), std::string::npos) << remote_spawn;

      fibers::scope bad;
      EXPECT_THROW(bad.spawn_on(2, [] {}), std::out_of_range);
      EXPECT_EQ(bad.running(), 0u);
      bad.join();
    });
  });
}

TEST(Scope, AChildOnAnotherThreadCancelsItsScopeOrASibling) {
  in_child_process([] {
    hang_guard guard(30s, "scope::cancel from a child on another I/O thread");
    fibers::runtime rt(2);
    rt.run([] {
      // scope::cancel() from a remote child: every child goes (the body does not; it joins),
      // and join reports the children's canceled as errgroup's Wait reports context.Canceled.
      std::string local_end = "running", remote_end = "running";
      EXPECT_THROW(fibers::with_scope([&](fibers::scope& s) {
                     s.spawn([&] { sleep_an_hour(local_end); });
                     s.spawn_on(1, [&] { sleep_an_hour(remote_end); });
                     s.spawn_on(1, [&s] {
                       fibers::this_fiber::sleep_for(10ms);
                       s.cancel();
                     });
                   }),
                   fibers::canceled);
      EXPECT_FALSE(fibers::this_fiber::cancel_requested());
      EXPECT_EQ(local_end, "canceled");
      EXPECT_EQ(remote_end, "canceled");

      // child::cancel() from a remote sibling stops that child alone.
      std::string target_end = "running", bystander_end = "running";
      fibers::with_scope([&](fibers::scope& s) {
        auto target = s.spawn([&] { sleep_an_hour(target_end); });
        auto bystander = s.spawn([&] {
          try {
            sleep_an_hour(bystander_end);
          } catch (const fibers::canceled&) {
          }
        });
        s.spawn_on(1, [target]() mutable { target.cancel(); }).running();
        while (target.running()) fibers::this_fiber::sleep_for(1ms);
        EXPECT_EQ(bystander_end, "running");
        bystander.cancel();
      });
      EXPECT_EQ(target_end, "canceled");
    });
  });
}

TEST(Scope, AChildHandleJoinsThatChildAloneWithADeadline) {
  fibers::runtime rt(2);
  rt.run([] {
    bool quick_done = false, remote_done = false;
    std::string slow_end = "running";
    fibers::with_scope([&](fibers::scope& s) {
      auto slow = s.spawn([&] { sleep_an_hour(slow_end); });
      auto quick = s.spawn([&] {
        fibers::this_fiber::sleep_for(5ms);
        quick_done = true;
      });
      auto remote = s.spawn_on(1, [&] {
        fibers::this_fiber::sleep_for(5ms);
        remote_done = true;
      });
      quick.join();
      EXPECT_TRUE(quick_done);
      remote.join(10s);
      EXPECT_TRUE(remote_done);
      quick.join();  // ended: returns at once
      // A join that times out leaves the child running.
      try {
        slow.join(10ms);
        ADD_FAILURE() << "join of a sleeping child returned";
      } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::timed_out) << e.what();
      }
      EXPECT_TRUE(slow.running());
      EXPECT_EQ(slow_end, "running");
      // A sibling may join it too; cancel wakes both.
      bool sibling_saw_end = false;
      s.spawn([&] {
        slow.join();
        sibling_saw_end = !slow.running();
      });
      fibers::this_fiber::yield();
      slow.cancel();
      slow.join();
      EXPECT_EQ(slow_end, "canceled");
      fibers::this_fiber::sleep_for(1ms);
      EXPECT_TRUE(sibling_saw_end);
      // A join from another thread is refused.
      auto other = s.spawn([] { fibers::this_fiber::sleep_for(1h); });
      fibers::spawn_on(1, [&] { EXPECT_THROW(other.join(), std::logic_error); }).join();
      other.cancel();
    });
  });
}

TEST(ScopeDeathTest, CancelFromAnUnrelatedThreadAbortsNamingTheRule) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        fibers::runtime rt(2);
        rt.run([&rt] {
          fibers::with_scope([&](fibers::scope& s) {
            s.spawn([] { fibers::this_fiber::sleep_for(1h); });
            rt.spawn_on(1, [&s] { s.cancel(); }).join();
          });
        });
      },
      "fibers::scope::cancel: called from another thread than the scope owner's by a fiber "
      "that is not a child of the scope");
}


}  // namespace
