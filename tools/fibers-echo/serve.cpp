// tools/fibers-echo/serve.cpp - the echo server: accept loop, per-connection echo loop under
// the slow-client rules, and the `serve` command (bind, print the address, wait for
// SIGINT/SIGTERM, print totals).
#include "serve.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <fmt/core.h>

#include <fibers/fibers.hpp>

#include "accept.hpp"
#include "certificates.hpp"
#include "pipe_end.hpp"
#include "signals.hpp"
#include "socket_io.hpp"

namespace fibers_echo {

using fibers::clock;
using fibers_tools::pipe_end;

struct echo_server::shared {
  shared(server_stats& s, const echo_limits& l) : stats(s), limits(l) {}
  server_stats& stats;
  const echo_limits limits;
  std::unique_ptr<fibers_tools::certificate_set> certificates;  // when terminating TLS
  std::atomic<std::size_t> open{0};  // connections now, all threads (--max-conns)
  fibers_tools::emfile_log emfile{"fibers-echo"};
};

namespace {

using shared_state = echo_server::shared;

// A connection starts with a small buffer in its fiber's frame, on the stack page that is
// resident anyway; the first read that fills it moves the connection to a large heap buffer (a
// streaming peer). Chatty small-message connections then touch one page per message, not two,
// and an idle connection holds no heap memory. The buffer is also the bound on what the
// server holds for a client that does not read: it reads again only once the echo is written.
constexpr std::size_t small_buffer_size = 1024;
constexpr std::size_t large_buffer_size = 64 * 1024;
// TLS handshakes (certificate work) are stack-hungry; plain connections use the default.
constexpr std::size_t tls_stack = 256 * 1024;

// Cancellation (runtime shutdown) and a socket closed under us end a fiber normally.
bool is_shutdown(const std::error_code& ec) {
  return ec == fibers::errc::canceled || ec == fibers::errc::closed;
}

// A peer that goes away with data in flight (a load client stopping) resets the connection.
bool is_reset(const std::error_code& ec) {
  return ec == std::errc::connection_reset || ec == std::errc::broken_pipe ||
         ec == std::errc::connection_aborted;
}

// A TLS peer that closes without close_notify: an end of stream for an echo server.
bool is_end(const std::error_code& ec) {
  return ec == fibers::tls::errc::truncated || ec == fibers::errc::end_of_stream;
}

std::optional<serve_error> classify(const std::error_code& ec) {
  if (is_shutdown(ec) || is_end(ec)) return std::nullopt;
  return is_reset(ec) ? serve_error::reset : serve_error::other;
}

// Reads and echoes back until the client closes, a rule closes the connection, or the
// runtime shuts down; returns why it was closed early (nothing for a normal end).
std::optional<serve_error> echo_loop(pipe_end& conn, const echo_limits& limits,
                                     server_counters& counters) {
  unsigned char small[small_buffer_size];
  std::unique_ptr<unsigned char[]> large;
  fibers::mutable_buffer buffer(small, sizeof small);
  const auto idle = limits.idle_timeout;
  const bool idle_rule = idle.count() > 0;  // 0: off (no deadline, no clock read per message)
  auto last_progress = clock::now();
  // Minimum-rate window (none when the rule is off).
  const bool rate_rule = limits.min_rate > 0;
  auto window_end = rate_rule ? last_progress + limits.rate_window : clock::time_point::max();
  const auto min_window_bytes = static_cast<std::uint64_t>(
      limits.min_rate * std::chrono::duration<double>(limits.rate_window).count());
  std::uint64_t window_bytes = 0;
  for (;;) {
    if (rate_rule) {
      const auto now = clock::now();
      if (now >= window_end) {
        // Trickling: some bytes in the window, too few. A silent window is the idle rule's.
        if (window_bytes > 0 && window_bytes < min_window_bytes) return serve_error::slow;
        window_bytes = 0;
        window_end += limits.rate_window;
        if (window_end <= now) window_end = now + limits.rate_window;
      }
    }
    std::error_code ec;
    const auto idle_end = idle_rule ? last_progress + idle : clock::time_point::max();
    const std::size_t n =
        conn.read_some(buffer, ec, fibers::deadline::at(std::min(idle_end, window_end)));
    if (ec == std::errc::timed_out) {
      if (clock::now() >= idle_end) return serve_error::idle_timeout;
      continue;  // a window boundary
    }
    if (ec) return classify(ec);
    if (n == 0) return std::nullopt;  // the client closed
    // The write has the idle timeout too: a client that never reads fills the socket buffers,
    // the write stalls and the connection is closed; nothing more is read meanwhile.
    conn.write_all(fibers::const_buffer(buffer.data, n), ec,
                   idle_rule ? fibers::deadline::after(idle) : fibers::deadline::never());
    if (ec == std::errc::timed_out) return serve_error::write_timeout;
    if (ec) return classify(ec);
    if (idle_rule) last_progress = clock::now();
    window_bytes += n;
    if (n == buffer.size && !large) {
      large = std::make_unique<unsigned char[]>(large_buffer_size);
      buffer = fibers::mutable_buffer(large.get(), large_buffer_size);
    }
    // Publish as we go so progress lines are live; single writer per thread, so cheap.
    server_counters::add(counters.bytes, n);
  }
}

// One connection: the TLS handshake (when terminating TLS), then the echo loop.
void serve_connection(fibers::tcp_stream sock, const shared_state& sh, server_counters& counters) {
  sock.set_nodelay(true);
  pipe_end conn;
  if (sh.certificates) {
    fibers::tls::stream t(std::move(sock), sh.certificates->context());
    std::error_code ec;
    t.handshake(ec, fibers::deadline::after(sh.limits.handshake_timeout));
    if (ec) {
      if (ec == std::errc::timed_out) {
        counters.count(serve_error::handshake_timeout);
      } else if (!is_shutdown(ec)) {
        counters.count(is_reset(ec) ? serve_error::reset : serve_error::tls);
      }
      return;
    }
    conn = pipe_end(std::move(t));
  } else {
    conn = pipe_end(std::move(sock));
  }
  if (auto why = echo_loop(conn, sh.limits, counters)) counters.count(*why);
}

void accept_loop(fibers::stream_listener& listener, const std::shared_ptr<shared_state>& sh,
                 server_counters& counters) {
  const echo_limits& limits = sh->limits;
  for (;;) {
    std::error_code ec;
    fibers::tcp_stream conn = listener.accept(ec);
    if (is_shutdown(ec)) return;
    if (ec) {
      // Out of fds: the connection stays queued in the backlog. Pause (no busy retry), go on.
      if (fibers_tools::out_of_descriptors(ec)) {
        counters.count(serve_error::accept_emfile);
        sh->emfile.note(ec, limits.accept_backoff);
      } else {
        counters.count(serve_error::other);
      }
      fibers::this_fiber::sleep_for(limits.accept_backoff, ec);
      if (ec) return;
      continue;
    }
    if (sh->open.fetch_add(1, std::memory_order_relaxed) >= limits.max_conns) {
      // Over the limit: refuse now rather than queue without bound.
      sh->open.fetch_sub(1, std::memory_order_relaxed);
      counters.count(serve_error::refused_max_conns);
      conn.close();
      continue;
    }
    server_counters::add(counters.connections, 1);
    server_counters::add(counters.active, 1);
    const std::size_t stack = sh->certificates ? tls_stack : 0;
    fibers::spawn({.name = "echo", .stack_size = stack},
                  [conn = std::move(conn), sh, &counters]() mutable {
                    try {
                      serve_connection(std::move(conn), *sh, counters);
                    } catch (const fibers::canceled&) {
                      // runtime shutdown
                    } catch (const std::exception& e) {
                      counters.count(serve_error::other);
                      fmt::print(stderr, "fibers-echo: connection failed: {}\n", e.what());
                    }
                    counters.active.store(counters.active.load(std::memory_order_relaxed) - 1,
                                          std::memory_order_relaxed);
                    sh->open.fetch_sub(1, std::memory_order_relaxed);
                  })
        .detach();
  }
}

}  // namespace

const char* name(serve_error k) noexcept {
  switch (k) {
    case serve_error::reset: return "reset";
    case serve_error::idle_timeout: return "idle_timeout";
    case serve_error::write_timeout: return "write_timeout";
    case serve_error::slow: return "slow";
    case serve_error::handshake_timeout: return "handshake_timeout";
    case serve_error::tls: return "tls";
    case serve_error::refused_max_conns: return "refused_max_conns";
    case serve_error::accept_emfile: return "accept_emfile";
    case serve_error::other: return "other";
    case serve_error::count_: break;
  }
  return "?";
}

std::uint64_t server_stats::totals::other_errors() const {
  std::uint64_t n = 0;
  for (std::size_t k = 0; k < serve_error_kinds; ++k) {
    if (static_cast<serve_error>(k) != serve_error::reset) n += errors[k];
  }
  return n;
}

server_stats::totals server_stats::sum() const {
  totals t;
  for (const auto& c : per_thread_) {
    t.connections += c.connections.load(std::memory_order_relaxed);
    t.active += c.active.load(std::memory_order_relaxed);
    t.bytes += c.bytes.load(std::memory_order_relaxed);
    for (std::size_t k = 0; k < serve_error_kinds; ++k) {
      t.errors[k] += c.errors[k].load(std::memory_order_relaxed);
    }
  }
  return t;
}

std::string server_stats::format(const totals& t) {
  std::string s =
      fmt::format("connections={} active={} bytes={}", t.connections, t.active, t.bytes);
  for (std::size_t k = 0; k < serve_error_kinds; ++k) {
    if (t.errors[k] != 0) s += fmt::format(" {}={}", name(static_cast<serve_error>(k)), t.errors[k]);
  }
  return s;
}

std::string server_stats::json(const totals& t) {
  std::string s = fmt::format(R"({{"connections":{},"active":{},"bytes":{},"errors":{{)",
                              t.connections, t.active, t.bytes);
  for (std::size_t k = 0; k < serve_error_kinds; ++k) {
    s += fmt::format(R"({}"{}":{})", k == 0 ? "" : ",", name(static_cast<serve_error>(k)),
                     t.errors[k]);
  }
  return s + "}}";
}

echo_server::echo_server(fibers::runtime& rt, const fibers::endpoint& ep, server_stats& stats,
                         const echo_limits& limits, const std::vector<std::string>& certs,
                         const std::vector<std::string>& keys)
    : shared_(std::make_shared<shared>(stats, limits)) {
  if (!certs.empty() || !keys.empty()) {
    shared_->certificates = std::make_unique<fibers_tools::certificate_set>(certs, keys);
  }
  // Each connection is served on the thread that accepted it, counted in that thread's
  // counters.
  const fibers_tools::accept_loop loop = [sh = shared_](fibers::stream_listener& listener,
                                                        std::size_t t) {
    accept_loop(listener, sh, sh->stats.thread(t));
  };
  acceptors_ = fibers_tools::start_acceptors(rt, ep, loop, bound_);
}

echo_server::~echo_server() { stop(); }

void echo_server::stop() { fibers_tools::stop_acceptors(acceptors_); }

int run_serve(const serve_options& opts) {
  server_stats stats(opts.threads);  // outlives the runtime: its fibers count into it
  {
    fibers::runtime rt(fibers::runtime_options{.io_threads = opts.threads, .sockets = opts.sockets});
    // SIGINT/SIGTERM are counted from here on and awaited by a fiber (fibers::signal_set).
    fibers::signal_set stop{SIGINT, SIGTERM};
    std::unique_ptr<echo_server> server;
    try {
      server = std::make_unique<echo_server>(rt, opts.listen, stats, opts.limits, opts.tls_cert,
                                             opts.tls_key);
    } catch (const std::exception& e) {
      fmt::print(stderr, "fibers-echo: {}\n", e.what());
      return 1;
    }
    const fibers::endpoint bound = server->local_endpoint();
    fmt::print("fibers-echo: serving on {} ({} thread{}{}{})\n", bound.to_string(), opts.threads,
               opts.threads == 1 ? "" : "s", opts.tls_cert.empty() ? "" : ", TLS",
               fibers_tools::socket_io_note(rt, opts.sockets));
    std::fflush(stdout);

    const auto tick = opts.stats_interval.count() > 0
                          ? std::chrono::duration_cast<clock::duration>(opts.stats_interval)
                          : clock::duration(std::chrono::hours(1));
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
    server->stop();
  }  // ~runtime cancels the connections and waits for them to end
  auto t = stats.sum();
  fmt::print(
      "fibers-echo: served {} connections, {} bytes echoed, {} reset by the peer, "
      "{} other errors\n",
      t.connections, t.bytes, t.of(serve_error::reset), t.other_errors());
  fmt::print("fibers-echo: summary {}\n", server_stats::json(t));
  return 0;
}

}  // namespace fibers_echo
