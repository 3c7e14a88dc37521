// tests/hook/preload_driver.cpp - the blocking C echo code on fibers of ONE I/O thread, in a
// program that does not link libfibers-hook: run with LD_PRELOAD=libfibers-hook.so it passes;
// without the hook the first blocking accept would hold the only thread and it would hang (an
// alarm turns that into a failure).
#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "fibers/fibers.hpp"
#include "fibers/hook.hpp"  // declarations only: the functions are looked up with dlsym
#include "echo_blocking.h"

int main() {
  ::alarm(30);
  using stats_fn = fibers::hook::call_stats (*)() noexcept;
  auto stats = reinterpret_cast<stats_fn>(::dlsym(RTLD_DEFAULT, "_ZN6fibers4hook5statsEv"));
  if (stats == nullptr) {
    std::fprintf(stderr, "preload_driver: libfibers-hook is not loaded (run with LD_PRELOAD)\n");
    return 1;
  }
  constexpr int kConns = 200, kRounds = 10;
  int ok = 0;
  fibers::run([&] {
    int port = 0;
    const int lfd = echo_listen(&port);
    if (lfd < 0) return;
    auto acceptor = fibers::spawn([&] {
      for (int i = 0; i < kConns; ++i) {
        const int fd = echo_accept(lfd);
        if (fd < 0) break;
        fibers::spawn([fd] { echo_serve(fd); }).detach();
      }
    });
    std::vector<fibers::fiber> clients;
    for (int i = 0; i < kConns; ++i) {
      clients.push_back(fibers::spawn([&, port] {
        if (echo_client(port, kRounds, 512) == 0) ++ok;
      }));
    }
    for (auto& c : clients) c.join();
    acceptor.join();
    ::close(lfd);
  });
  const auto s = stats();
  std::printf("preload_driver: %d/%d clients ok on one I/O thread; %llu parks (read %llu, recv %llu)\n",
              ok, kConns, static_cast<unsigned long long>(s.total()),
              static_cast<unsigned long long>(s[fibers::hook::call::read]),
              static_cast<unsigned long long>(s[fibers::hook::call::recv]));
  return ok == kConns && s.total() > 0 ? 0 : 1;
}
