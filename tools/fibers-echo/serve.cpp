// tools/fibers-echo/serve.cpp - the echo server: accept loop, per-connection echo loop, and
// the `serve` command (bind, print the address, wait for SIGINT/SIGTERM, print totals).
#include "serve.hpp"

#include <cstdio>
#include <exception>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <fmt/core.h>

#include <fibers/fibers.hpp>

#include "signals.hpp"

namespace fibers_echo {
namespace {

// A connection starts with a small buffer in its fiber's frame, on the stack page that is
// resident anyway; the first read that fills it moves the connection to a large heap buffer (a
// streaming peer). Chatty small-message connections then touch one page per message, not two,
// and an idle connection holds no heap memory.
constexpr std::size_t small_buffer_size = 1024;
constexpr std::size_t large_buffer_size = 64 * 1024;
// Cancellation (runtime shutdown) and a socket closed under us end a fiber normally.
bool is_shutdown(const std::error_code& ec) {
  return ec == fibers::errc::canceled || ec == fibers::errc::closed;
}

// A peer that goes away with data in flight (a load client stopping) resets the connection.
bool is_reset(const std::error_code& ec) {
  return ec == std::errc::connection_reset || ec == std::errc::broken_pipe;
}

void echo_connection(fibers::tcp_stream& sock, server_counters& counters) {
  unsigned char small[small_buffer_size];
  std::unique_ptr<unsigned char[]> large;
  fibers::mutable_buffer buffer(small, sizeof small);
  std::error_code ec;
  sock.set_nodelay(true);
  for (;;) {
    std::size_t n = sock.read_some(buffer, ec);
    if (ec || n == 0) break;
    sock.write_all(fibers::const_buffer(buffer.data, n), ec);
    if (ec) break;
    if (n == buffer.size && !large) {
      large = std::make_unique<unsigned char[]>(large_buffer_size);
      buffer = fibers::mutable_buffer(large.get(), large_buffer_size);
    }
    // Publish as we go so progress lines are live; single writer per thread, so cheap.
    server_counters::add(counters.bytes, n);
  }
  if (ec && is_reset(ec)) {
    server_counters::add(counters.resets, 1);
  } else if (ec && !is_shutdown(ec)) {
    server_counters::add(counters.errors, 1);
  }
  counters.active.store(counters.active.load(std::memory_order_relaxed) - 1,
                        std::memory_order_relaxed);
}

}  // namespace

server_stats::totals server_stats::sum() const {
  totals t;
  for (const auto& c : per_thread_) {
    t.connections += c.connections.load(std::memory_order_relaxed);
    t.active += c.active.load(std::memory_order_relaxed);
    t.bytes += c.bytes.load(std::memory_order_relaxed);
    t.resets += c.resets.load(std::memory_order_relaxed);
    t.errors += c.errors.load(std::memory_order_relaxed);
  }
  return t;
}

std::string server_stats::format(const totals& t) {
  return fmt::format("connections={} active={} bytes={} resets={} errors={}", t.connections,
                     t.active, t.bytes, t.resets, t.errors);
}

fibers::tcp_server start_echo_server(fibers::runtime& rt, const fibers::endpoint& ep,
                                     server_stats& stats) {
  // One SO_REUSEPORT listener and acceptor per I/O thread; each connection is served on the
  // thread that accepted it and counted in that thread's counters.
  return fibers::tcp_server::start(rt, ep, [&stats](fibers::tcp_stream& sock) {
    server_counters& counters = stats.thread(fibers::runtime::current_thread_index());
    server_counters::add(counters.connections, 1);
    server_counters::add(counters.active, 1);
    echo_connection(sock, counters);
  });
}

int run_serve(const serve_options& opts) {
  server_stats stats(opts.threads);  // outlives the runtime: its fibers count into it
  {
    fibers::runtime rt(opts.threads);
    // SIGINT/SIGTERM are counted from here on and awaited by a fiber (fibers::signal_set).
    fibers::signal_set stop{SIGINT, SIGTERM};
    fibers::tcp_server server;
    try {
      server = start_echo_server(rt, opts.listen, stats);
    } catch (const std::exception& e) {
      fmt::print(stderr, "fibers-echo: {}\n", e.what());
      return 1;
    }
    const fibers::endpoint bound = server.local_endpoint();
    fmt::print("fibers-echo: serving on {} ({} thread{})\n", bound.to_string(), opts.threads,
               opts.threads == 1 ? "" : "s");
    std::fflush(stdout);

    const auto tick = opts.stats_interval.count() > 0
                          ? std::chrono::duration_cast<fibers::clock::duration>(opts.stats_interval)
                          : fibers::clock::duration(std::chrono::hours(1));
    const int sig = rt.run([&] {
      server_stats::totals last;
      for (;;) {
        std::error_code ec;
        if (int got = stop.wait(ec, tick)) return got;
        if (opts.stats_interval.count() == 0) continue;
        auto now = stats.sum();
        if (now == last) continue;  // quiet while idle
        fmt::print("fibers-echo: {}\n", server_stats::format(now));
        std::fflush(stdout);
        last = now;
      }
    });
    fmt::print("fibers-echo: {}, shutting down\n", signal_name(sig));
    std::fflush(stdout);
    server.stop();
    server.join();
  }  // ~runtime cancels the acceptors and connections and waits for them to end
  auto t = stats.sum();
  fmt::print(
      "fibers-echo: served {} connections, {} bytes echoed, {} reset by the peer, "
      "{} other errors\n",
      t.connections, t.bytes, t.resets, t.errors);
  return 0;
}

}  // namespace fibers_echo
