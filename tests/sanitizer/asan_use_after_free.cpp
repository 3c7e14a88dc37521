// tests/sanitizer/asan_use_after_free.cpp - a deliberate heap use-after-free inside a fiber
// (after a few switches), which an ASan build must report. Run by asan_check.sh.
#include <cstdio>
#include <memory>

#include "fibers/fibers.hpp"

[[gnu::noinline]] int read_after_free_in_fiber() {
  auto* p = new int[4]{1, 2, 3, 4};
  fibers::this_fiber::yield();
  delete[] p;
  fibers::this_fiber::yield();
  volatile int* q = p;
  return q[2];  // heap-use-after-free
}

int main() {
  int v = fibers::run([] {
    auto other = fibers::spawn([] {
      for (int i = 0; i < 10; ++i) fibers::this_fiber::yield();
    });
    int r = read_after_free_in_fiber();
    other.join();
    return r;
  });
  std::printf("not caught: %d\n", v);
  return 0;
}
