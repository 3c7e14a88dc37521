// lib/runtime/overflow_guard.cpp
#include "runtime/overflow_guard.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/sanitizer.hpp"

namespace fibers::detail {
namespace {

struct sigaction previous{};
thread_local void* alt_stack = nullptr;

void say(const char* s) { [[maybe_unused]] ssize_t r = ::write(STDERR_FILENO, s, std::strlen(s)); }

// Decimal, without snprintf (a signal handler may not call it).
void say_number(std::size_t n) {
  char buf[24];
  char* p = buf + sizeof buf;
  *--p = '\0';
  do {
    *--p = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n != 0);
  say(p);
}

void on_segv(int sig, siginfo_t* info, void* uctx) {
  io_thread* t = io_thread::current();
  if (t != nullptr) {
    fiber_state* st = t->running_fiber();
    if (st != nullptr && st->stack_limit != nullptr) {
      const auto fault = reinterpret_cast<std::uintptr_t>(info->si_addr);
      const auto limit = reinterpret_cast<std::uintptr_t>(st->stack_limit);
      const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
      if (fault < limit && fault + page >= limit) {
        say("libfibers: stack overflow in fiber '");
        say(st->name.empty() ? "(unnamed)" : st->name.c_str());
        say("': it ran into the guard page below its ");
        say_number(st->stack_size);
        say("-byte stack. Keep large buffers off the stack or raise runtime_options::stack_size "
            "(or spawn_options::stack_size for this fiber).\n");
      }
    }
  }
  // Hand the fault on: the previous handler, or the default action when the fault repeats.
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction != nullptr) return previous.sa_sigaction(sig, info, uctx);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN && previous.sa_handler != nullptr) {
    return previous.sa_handler(sig);
  }
  ::signal(sig, SIG_DFL);
}

}  // namespace

void install_overflow_guard() {
#if defined(FIBERS_ASAN)
  return;  // ASan reports stack overflows itself (and owns SIGSEGV)
#endif
  const std::size_t size = 64 * 1024;
  alt_stack = std::malloc(size);
  if (alt_stack != nullptr) {
    stack_t ss{};
    ss.ss_sp = alt_stack;
    ss.ss_size = size;
    ::sigaltstack(&ss, nullptr);
  }
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa{};
    sa.sa_sigaction = on_segv;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    ::sigaction(SIGSEGV, &sa, &previous);
  });
}

void remove_overflow_guard() {
  if (alt_stack == nullptr) return;
  stack_t ss{};
  ss.ss_flags = SS_DISABLE;
  ::sigaltstack(&ss, nullptr);
  std::free(alt_stack);
  alt_stack = nullptr;
}

}  // namespace fibers::detail
