// tests/gdb/gdb_target.cpp - a program for tools/gdb/fibers.py's test: two fibers parked in
// known functions, then a call to ready_for_gdb() where gdb stops.
#include <cstdio>

#include "fibers/fibers.hpp"

using namespace std::chrono_literals;

extern "C" [[gnu::noinline]] void ready_for_gdb() { std::puts("ready"); }

[[gnu::noinline]] void parked_in_sleep() { fibers::this_fiber::sleep_for(1h); }

[[gnu::noinline]] void parked_in_channel(fibers::channel<int> ch) { (void)ch.recv(); }

int main() {
  fibers::run([] {
    fibers::channel<int> ch;
    auto a = fibers::spawn("gdb-sleeper", [] { parked_in_sleep(); });
    auto b = fibers::spawn("gdb-receiver", [ch] { parked_in_channel(ch); });
    fibers::this_fiber::sleep_for(20ms);
    ready_for_gdb();
    ch.close();
    a.cancel();
    b.join();
    try {
      a.join();
    } catch (const fibers::canceled&) {
    }
  });
  return 0;
}
