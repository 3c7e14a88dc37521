// tests/stack_test.cpp - fiber stacks: per-spawn sizes (spawn_options::stack_size), their pools,
// overflow detection at the size a fiber asked for, and guard pages for every stack where the
// kernel has guard regions.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fibers/fibers.hpp"

namespace {

// Uses about 1 KiB of stack per level (more under ASan).
[[gnu::noinline]] int recurse(int depth) {
  volatile char pad[1024];
  pad[0] = static_cast<char>(depth);
  return depth == 0 ? pad[0] : recurse(depth - 1) + pad[0];
}

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

// True when this kernel (Linux >= 6.13) installs guard regions.
bool kernel_has_guard_regions() {
  const long page = ::sysconf(_SC_PAGESIZE);
  void* p = ::mmap(nullptr, static_cast<std::size_t>(page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  const bool ok = ::madvise(p, static_cast<std::size_t>(page), MADV_GUARD_INSTALL) == 0;
  ::munmap(p, static_cast<std::size_t>(page));
  return ok;
}

fibers::runtime_options small_default_stacks() {
  fibers::runtime_options opts;
  opts.stack_size = 64 * 1024;
  opts.io_threads = 2;
  return opts;
}

TEST(Stack, ALargerStackPerSpawnLetsOneFiberRecurseDeeperThanTheDefault) {
  fibers::runtime rt(small_default_stacks());
  const int r = rt.run([] {
    int out = -1;
    // 300 KiB of frames: far past the runtime's 64 KiB.
    fibers::spawn({.name = "deep", .stack_size = 1024 * 1024}, [&] { out = recurse(300); }).join();
    return out;
  });
  EXPECT_EQ(r, recurse(300));
}

TEST(Stack, SpawnOnTakesAStackSizeForTheOtherThread) {
  fibers::runtime rt(small_default_stacks());
  int out = -1;
  std::size_t ran_on = 99;
  auto f = rt.spawn_on(1, {.name = "deep-remote", .stack_size = 1024 * 1024}, [&] {
    ran_on = fibers::runtime::current_thread_index();
    out = recurse(300);
  });
  f.join();
  EXPECT_EQ(ran_on, 1u);
  EXPECT_EQ(out, recurse(300));
  EXPECT_EQ(f.joinable(), false);
}

TEST(Stack, EachSizeIsPooledAndReused) {
  fibers::runtime rt(small_default_stacks());
  rt.run([&] {
    auto round = [] {
      for (std::size_t kib : {16, 128, 256}) {
        std::vector<fibers::fiber> fs;
        for (int i = 0; i < 40; ++i) {
          fs.push_back(fibers::spawn({.stack_size = kib * 1024}, [] { fibers::this_fiber::yield(); }));
        }
        for (auto& f : fs) f.join();  // each stack is back in its pool once joined
      }
    };
    round();
    const auto carved = fibers::stats(rt).at(0).stacks_carved;
    EXPECT_GE(carved, 120u);  // three sizes, 40 each: none shares another size's pool
    for (int i = 0; i < 5; ++i) round();
    EXPECT_EQ(fibers::stats(rt).at(0).stacks_carved, carved);  // all reused
  });
}

TEST(Stack, TinySizesAreRoundedUpToAUsableStack) {
  fibers::runtime rt;
  const int r = rt.run([] {
    int out = -1;
    fibers::spawn({.stack_size = 1}, [&] { out = recurse(2); }).join();  // at least 8 KiB
    return out;
  });
  EXPECT_EQ(r, recurse(2));
}

// True while the page holding `addr` is mapped.
bool mapped(const void* addr) {
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  unsigned char v = 0;
  void* start = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(addr) & ~(page - 1));
  return ::mincore(start, page, &v) == 0;
}

// An I/O thread owns its pools; handles that outlive the runtime still hold their fibers'
// stacks, so the ended thread's pool lives on until the last of them is back, then unmaps.
TEST(Stack, HandlesReleasedAfterTheRuntimeIsGoneGiveTheirStacksBackToTheOrphanedPool) {
  std::atomic<const void*> on_stack{nullptr};
  fibers::fiber a, b;
  {
    fibers::runtime rt(small_default_stacks());
    // A size of their own: the pool holds these two stacks and nothing else.
    const fibers::spawn_options opts{.name = "", .stack_size = 96 * 1024};
    a = rt.spawn_on(1, opts, [&] { on_stack = __builtin_frame_address(0); });
    b = rt.spawn_on(1, opts, [] { throw std::runtime_error("b failed"); });
  }  // the I/O threads are gone; both fibers have ended
  ASSERT_NE(on_stack.load(), nullptr);
  EXPECT_TRUE(mapped(on_stack.load())) << "a's stack went while its handle held it";
  a.join();
  EXPECT_TRUE(mapped(on_stack.load())) << "the pool went while b still held a stack of it";
  EXPECT_THROW(b.join(), std::runtime_error);
  EXPECT_FALSE(mapped(on_stack.load())) << "the orphaned pool stayed after its last stack came back";
}

TEST(StackDeathTest, OverflowOfASmallPerSpawnStackNamesTheFiberAndItsSize) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        fibers::runtime rt(small_default_stacks());
        rt.run([] { fibers::spawn({.name = "small-stack", .stack_size = 16 * 1024}, [] { recurse(64); }).join(); });
      },
      "stack overflow in fiber .small-stack.*16384-byte stack|AddressSanitizer");
}

// Every stack of a slab gets its guard region, whichever system call installed it (one
// process_madvise for the whole slab, or madvise per stack): from each fiber's own frame, the
// pages below are probed with write(2), which fails with EFAULT on a guard page and reads any
// other mapped page. The first EFAULT must come within the fiber's 16 KiB: without the guard,
// the probe would go on into the neighbouring stack's top page, which is mapped.
TEST(Stack, EveryStackOfASlabHasAGuardPageRightBelowIt) {
  if (!kernel_has_guard_regions()) {
    GTEST_SKIP() << "this kernel has no MADV_GUARD_INSTALL (Linux < 6.13): capped PROT_NONE guards instead";
  }
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  constexpr std::size_t stack_kib = 16;
  constexpr int fibers_n = 80;  // two and a half slabs of 32 stacks
  std::vector<int> pages_down(fibers_n, -1);  // pages from the frame's page to the guard
  fibers::runtime_options opts;
  opts.stack_size = stack_kib * 1024;
  opts.stack_canary = false;
  fibers::runtime rt(opts);
  rt.run([&] {
    fibers::channel<int> never(0);
    std::vector<fibers::fiber> fs;
    fibers::latch probed(fibers_n);
    for (int i = 0; i < fibers_n; ++i) {
      fs.push_back(fibers::spawn([&, i] {
        const auto frame = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0)) & ~(page - 1);
        for (int k = 1; k <= static_cast<int>(stack_kib * 1024 / page) + 1; ++k) {
          const ssize_t n = ::write(pipe_fds[1], reinterpret_cast<const void*>(frame - k * page), 1);
          if (n < 0 && errno == EFAULT) {
            pages_down[i] = k;
            break;
          }
        }
        probed.count_down();
        (void)never.recv();  // keep the stack in use until all are probed
      }));
    }
    probed.wait();
    never.close();
    for (auto& f : fs) f.join();
  });
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  for (int i = 0; i < fibers_n; ++i) {
    EXPECT_GE(pages_down[i], 1) << "fiber " << i << ": no guard page within its stack's reach below its frame";
  }
}

// Without guard regions only vm.max_map_count/4 stacks get a PROT_NONE guard page (each splits
// a mapping); with them every stack has one. The fiber that overflows here is spawned after
// more stacks than that cap were carved, with the canary off: only a guard page can catch it.
TEST(StackDeathTest, AStackCarvedBeyondTheMappingCapStillHasAGuardPage) {
  if (!kernel_has_guard_regions()) {
    GTEST_SKIP() << "this kernel has no MADV_GUARD_INSTALL (Linux < 6.13): stacks beyond the cap rely on the canary";
  }
  std::size_t max_maps = 65530;
  std::ifstream("/proc/sys/vm/max_map_count") >> max_maps;
  const std::size_t parked = max_maps / 4 + 64;
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        fibers::runtime_options opts;
        opts.stack_size = 16 * 1024;
        opts.stack_canary = false;
        fibers::runtime rt(opts);
        rt.run([parked] {
          fibers::channel<int> never(0);
          std::vector<fibers::fiber> fibers;
          for (std::size_t i = 0; i < parked; ++i) fibers.push_back(fibers::spawn([&never] { (void)never.recv(); }));
          fibers::spawn({.name = "beyond-the-cap"}, [] { recurse(64); }).join();
        });
      },
      "stack overflow in fiber .beyond-the-cap.: it ran into the guard page|AddressSanitizer");
}

}  // namespace
