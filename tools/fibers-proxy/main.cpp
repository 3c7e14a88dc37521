// tools/fibers-proxy/main.cpp - fibers-proxy: parse the configuration, start the acceptors,
// print a stats line every --stats-interval, re-read the configuration on SIGHUP (for new
// connections; those in flight keep theirs), and on SIGINT/SIGTERM stop accepting, let the
// transfers in flight finish (up to --drain-timeout), then close what is left and print a
// JSON summary. Exit codes: 0 after a signal, 1 on a start-up failure, 2 for bad flags.
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

#include <fmt/core.h>

#include <fibers/fiber.hpp>
#include <fibers/runtime.hpp>
#include <fibers/error.hpp>
#include <fibers/signal.hpp>
#include <fibers/stream_listener.hpp>

#include "config.hpp"
#include "server.hpp"
#include "socket_io.hpp"
#include "stats.hpp"

namespace {

using namespace fibers_proxy;

// How often the drain looks whether every connection has ended.
constexpr auto drain_poll = std::chrono::milliseconds(20);

const char* signal_name(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "signal";
}

void flush_line(const std::string& s) {
  fmt::print("fibers-proxy: {}\n", s);
  std::fflush(stdout);
}

// --stats-listen: answers every connection with the stats line and the JSON summary.
void serve_stats(fibers::stream_listener& listener, proxy_stats& stats) {
  for (;;) {
    std::error_code ec;
    auto conn = listener.accept(ec);
    if (ec == fibers::errc::canceled || ec == fibers::errc::closed) return;
    if (ec) {  // out of fds: try again shortly
      fibers::this_fiber::sleep_for(std::chrono::milliseconds(100), ec);
      if (ec) return;
      continue;
    }
    totals t = stats.sum();
    std::string text = t.line() + "\n" + t.json() + "\n";
    conn.write_all(fibers::const_buffer(text.data(), text.size()), ec, std::chrono::seconds(1));
    conn.shutdown(fibers::tcp_stream::shutdown_type::write, ec);
  }
}

// SIGHUP: parses the command line (and the --config file it names) again and puts the result
// in force for new connections; a bad file keeps the configuration in force.
void reload(proxy_server& server, const config& running, int argc, char** argv) {
  parse_result parsed = parse_command_line(argc, argv);  // prints its own complaint
  if (!parsed.cfg) {
    flush_line("SIGHUP: configuration not reloaded (see above); the old one stays");
    return;
  }
  config& next = *parsed.cfg;
  if (next.listen != running.listen || next.threads != running.threads ||
      next.stats_listen != running.stats_listen || next.socket_io != running.socket_io) {
    flush_line("SIGHUP: --listen, --threads, --stats-listen and --socket-io need a restart; ignored");
  }
  try {
    server.reload(next);
  } catch (const std::exception& e) {
    flush_line(fmt::format("SIGHUP: configuration not reloaded: {}", e.what()));
    return;
  }
  std::string to;
  for (const auto& u : next.upstreams) to += (to.empty() ? "" : ", ") + u.to_string();
  flush_line("SIGHUP: configuration reloaded; new connections go to " + to);
}

// Runs on I/O thread 0 until a stop signal has come and the drain is over.
void run(fibers::runtime& rt, const config& cfg, proxy_stats& stats, int argc, char** argv) {
  fibers::signal_set stop{SIGINT, SIGTERM, SIGHUP};
  proxy_server server(rt, cfg, stats);
  if (!cfg.quiet) {
    std::string where, to;
    for (const auto& ep : server.bound()) where += (where.empty() ? "" : ", ") + ep.to_string();
    for (const auto& u : cfg.upstreams) to += (to.empty() ? "" : ", ") + u.to_string();
    flush_line(fmt::format("listening on {} ({} thread{}), upstream{} {}{}{}{}{}", where, cfg.threads,
                           cfg.threads == 1 ? "" : "s", cfg.upstreams.size() == 1 ? "" : "s", to,
                           cfg.terminate_tls() ? ", TLS from clients" : "",
                           cfg.upstream_tls ? ", TLS to upstreams" : "", cfg.splice ? ", splice" : "",
                           fibers_tools::socket_io_note(rt, cfg.socket_io)));
    const auto names = server.certificate_names();
    for (std::size_t i = 0; i < names.size(); ++i) {
      std::string list;
      for (const auto& n : names[i]) list += (list.empty() ? "" : ", ") + n;
      flush_line(fmt::format("certificate {}{}: {}", cfg.tls_cert[i], i == 0 ? " (default)" : "",
                             list.empty() ? "(no DNS names)" : list));
    }
  }
  fibers::fiber stats_server;
  if (cfg.stats_listen) {
    auto listener = fibers::stream_listener::bind(*cfg.stats_listen);
    if (!cfg.quiet) flush_line("stats on " + listener.local_endpoint().to_string());
    stats_server = fibers::spawn("stats", [listener = std::move(listener), &stats]() mutable {
      serve_stats(listener, stats);
    });
  }
  const bool periodic = cfg.stats_interval.count() > 0;
  const auto tick = periodic ? std::chrono::duration_cast<fibers::clock::duration>(cfg.stats_interval)
                             : fibers::clock::duration(std::chrono::hours(1));
  int sig = 0;
  while (sig == 0) {
    std::error_code ec;
    sig = stop.wait(ec, tick);
    if (sig == SIGHUP) {
      reload(server, cfg, argc, argv);
      sig = 0;
      continue;
    }
    if (sig != 0 || !periodic) continue;
    // Every interval, changed or not: operators read the line as a heartbeat too (a quiet
    // proxy still says it is alive and idle).
    flush_line(stats.sum().line());
  }
  server.stop();
  const auto drain_end = fibers::clock::now() + cfg.drain_timeout;
  if (!cfg.quiet) {
    flush_line(fmt::format("{}: stopped accepting; draining {} connection(s) for up to {:.1f} s",
                           signal_name(sig), stats.sum().active(),
                           std::chrono::duration<double>(cfg.drain_timeout).count()));
  }
  // A second signal ends the drain at once.
  for (;;) {
    if (stats.sum().active() == 0 || fibers::clock::now() >= drain_end) break;
    const int again = stop.try_wait();
    if (again != 0 && again != SIGHUP) break;  // a second stop signal ends the drain
    fibers::this_fiber::sleep_for(drain_poll);
  }
  if (stats_server.joinable()) {
    stats_server.cancel();
    stats_server.join();
  }
}

}  // namespace

int main(int argc, char** argv) {
  parse_result parsed = parse_command_line(argc, argv);
  if (!parsed.cfg) return parsed.exit_code;
  const config& cfg = *parsed.cfg;
  // splice(2) into a socket has no MSG_NOSIGNAL: a reset peer must be an EPIPE error, not a
  // SIGPIPE that ends the process (--splice may also come with a SIGHUP reload).
  std::signal(SIGPIPE, SIG_IGN);
  proxy_stats stats(cfg.threads);  // outlives the runtime: its fibers count into it
  try {
    fibers::runtime_options ro;
    ro.io_threads = cfg.threads;
    ro.sockets = cfg.socket_io;
    fibers::runtime rt(ro);
    rt.run([&] { run(rt, cfg, stats, argc, argv); });
  } catch (const std::exception& e) {  // ~runtime has canceled what the drain left
    fmt::print(stderr, "fibers-proxy: {}\n", e.what());
    return 1;
  }
  if (!cfg.quiet) {
    totals t = stats.sum();
    flush_line(t.line());
    flush_line("summary " + t.json());
  }
  return 0;
}
