// lib/runtime/dump.cpp - fibers::dump(): every fiber of every I/O thread, with where it waits.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "fibers/debug.hpp"
#include "fibers/future.hpp"
#include "runtime/fiber_state.hpp"
#include "runtime/io_thread.hpp"
#include "runtime/symbolize.hpp"
#include "runtime/waiter.hpp"

namespace fibers {
namespace detail {
namespace {

double seconds(clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A parked fiber's backtrace, from the frame pointer park() saved.
void append_backtrace(std::string& out, void* frame, const void* lo, const void* hi) {
  void* pcs[24];
  const int n = walk_frame_pointers(frame, lo, hi, pcs, 24);
  for (int depth = 0; depth < n; ++depth) {
    out += "      #" + std::to_string(depth) + " " + symbolize(pcs[depth]) + "\n";
  }
}

}  // namespace

void io_thread::describe_fibers(std::string& out) {
  const auto now = clock::now();
  fiber_state* self = current_fiber_state();
  out += "I/O thread " + std::to_string(index_) + ": " + std::to_string(live_count()) + " fiber(s), " +
         reactor_->name() + "\n";
  for (fiber_state* st = live_; st != nullptr; st = st->next_live) {
    out += "  fiber " + std::to_string(st->id) + " '" + st->display_name() + "': ";
    if (st == self) {
      out += "running (this dump)\n";
      continue;
    }
    if (st->wait_what == nullptr) {
      out += "ready\n";
      continue;
    }
    out += "waiting: ";
    out += st->wait_what;
    if (st->wait_fd >= 0) out += " fd " + std::to_string(st->wait_fd);
    char buf[96];
    std::snprintf(buf, sizeof buf, " for %.3f s", seconds(now - st->wait_since));
    out += buf;
    if (st->wait_deadline != clock::time_point::max()) {
      std::snprintf(buf, sizeof buf, ", deadline in %.3f s", seconds(st->wait_deadline - now));
      out += buf;
    }
    if (st->cancel_requested.load(std::memory_order_relaxed)) out += ", cancel requested";
    out += "\n";
    const auto* lo = static_cast<const char*>(st->stack_limit);
    append_backtrace(out, st->park_frame, lo, lo + st->stack_size);
  }
}

}  // namespace detail

void dump(std::ostream& out) {
  std::vector<std::pair<std::size_t, future<std::string>>> answers;
  detail::io_thread* self = detail::io_thread::current();
  std::string own;
  detail::io_thread::for_each([&](detail::io_thread& t) {
    if (&t == self) {
      t.describe_fibers(own);
      return;
    }
    promise<std::string> p;
    answers.emplace_back(t.index(), p.get_future());
    t.post([p = std::move(p), &t]() mutable {
      std::string text;
      t.describe_fibers(text);
      p.set_value(std::move(text));
    });
  });
  out << "libfibers dump:\n" << own;
  for (auto& [index, f] : answers) {
    if (f.wait_for(std::chrono::seconds(1))) {
      out << f.get();
    } else {
      out << "I/O thread " << index << ": did not answer within 1 s - a fiber is blocking it "
          << "(see the watchdog's report)\n";
    }
  }
  out.flush();
}

namespace {
int sigquit_pipe[2] = {-1, -1};

void on_sigquit(int) {
  const char byte = 1;
  [[maybe_unused]] ssize_t r = ::write(sigquit_pipe[1], &byte, 1);
}
}  // namespace

void install_sigquit_dump() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (::pipe2(sigquit_pipe, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    std::thread([] {
      char byte;
      while (::read(sigquit_pipe[0], &byte, 1) == 1) dump(std::cerr);
    }).detach();
    struct sigaction sa{};
    sa.sa_handler = on_sigquit;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGQUIT, &sa, nullptr);
  });
}

}  // namespace fibers
