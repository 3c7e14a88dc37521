// hello: a fiber sleeps and answers; the main fiber joins it. Blocking-looking code, one thread.
#include <fibers/fibers.hpp>

#include <cstdio>

int main() {
  using namespace std::chrono_literals;
  return fibers::run([] {
    int answer = 0;
    fibers::fiber other = fibers::spawn([&] {
      fibers::this_fiber::sleep_for(10ms);  // parks this fiber only
      answer = 42;
    });
    std::printf("hello from the main fiber\n");
    other.join();
    std::printf("the other fiber answered %d\n", answer);
    return answer == 42 ? 0 : 1;
  });
}
