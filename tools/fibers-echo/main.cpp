// tools/fibers-echo/main.cpp - command line of fibers-echo: `serve`, `load` and `demo`.
// Bad flags give CLI11's message and exit code 2; failures at run time exit 1.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <fibers/endpoint.hpp>
#include <fibers/runtime.hpp>

#include "demo.hpp"
#include "load.hpp"
#include "serve.hpp"
#include "signals.hpp"
#include "socket_io.hpp"

namespace {

constexpr int exit_usage = 2;
constexpr int max_port = 65535;
constexpr std::size_t max_conns = 1'000'000;
constexpr std::size_t max_size = std::size_t{1} << 30;
constexpr std::size_t max_threads = 1024;
constexpr std::size_t max_pipeline = 65536;

// --rate: a finite number >= 0 (CLI11's range check would print the whole double range).
std::string check_rate(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v) || v < 0) {
    return "'" + text + "' is not a rate: give round-trips per second, a number >= 0 (0: closed loop)";
  }
  return {};
}

std::chrono::nanoseconds seconds(double s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

// Flags shared by serve and load.
/// --socket-io for serve and load: how the runtime's stream sockets do their I/O. Not given:
/// the library's default (FIBERS_SOCKET_IO, else epoll).
struct socket_io_flag {
  std::string value;
  void add(CLI::App& cmd) {
    cmd.add_option("--socket-io", value,
                   "io_uring: sockets read and write through each I/O thread's io_uring ring (Linux "
                   ">= 6.1; elsewhere epoll is used and the start-up line says so), or epoll: "
                   "readiness and a system call per read and write (default: $FIBERS_SOCKET_IO, "
                   "else epoll)")
        ->check(CLI::IsMember({"epoll", "io_uring"}));
  }
  fibers::socket_io get() const { return fibers_tools::parse_socket_io(value); }
};

struct address_flags {
  std::string host = "127.0.0.1";
  int port = 0;
  void add(CLI::App& cmd, int min_port, const char* host_help) {
    cmd.add_option("--port,-p", port, "TCP port")
        ->required()
        ->check(CLI::Range(min_port, max_port));
    cmd.add_option("--host", host, host_help)->capture_default_str();
  }
  fibers::endpoint endpoint() const {
    return fibers::endpoint::ip(host, static_cast<std::uint16_t>(port));
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("fibers-echo: TCP echo server, load client and demo on libfibers", "fibers-echo");
  app.require_subcommand(1);

  address_flags serve_addr;
  std::size_t serve_threads = 1;
  double stats_every = 10;
  fibers_echo::serve_options so;
  double idle_timeout = 60, handshake_timeout = 10, rate_window = 30, accept_backoff = 0.1;
  auto* serve = app.add_subcommand("serve", "echo every byte back; stop with SIGINT/SIGTERM");
  serve_addr.add(*serve, 0, "numeric IPv4 or IPv6 address to listen on");
  socket_io_flag serve_io;
  serve_io.add(*serve);
  serve->add_option("--threads,-t", serve_threads, "I/O threads (one SO_REUSEPORT listener each)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, max_threads));
  serve->add_option("--stats-interval", stats_every, "seconds between progress lines (0: none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  serve->add_option("--tls-cert", so.tls_cert,
                    "certificate chain (PEM): terminate TLS (repeatable, as fibers-proxy: the first is "
                    "the default, the others are chosen by SNI)");
  serve->add_option("--tls-key", so.tls_key, "private key (PEM) of each --tls-cert, in the same order");
  serve->add_option("--idle-timeout", idle_timeout,
                    "seconds a connection may send nothing, or leave its echo unread, before it is "
                    "closed (0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  serve->add_option("--handshake-timeout", handshake_timeout, "seconds allowed for a TLS handshake")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  serve->add_option("--min-rate", so.limits.min_rate,
                    "bytes/s a connection must send in each --rate-window in which it sends anything "
                    "(a trickling client is closed; 0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  serve->add_option("--rate-window", rate_window, "seconds of the minimum-rate window")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  serve->add_option("--max-conns", so.limits.max_conns,
                    "connections at once; the excess is closed at accept")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{10'000'000}));
  serve->add_option("--accept-backoff", accept_backoff,
                    "seconds the acceptor pauses when out of file descriptors")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);

  address_flags load_addr;
  std::size_t load_conns = 0, load_size = 0, load_threads = 1;
  double load_duration = 0, load_warmup = 1, load_timeout = 5;
  fibers_echo::load_options lo;
  bool load_json = false, load_progress = false, load_quiet = false;
  auto* load = app.add_subcommand("load", "measure an echo server: round-trips/s and latency");
  load_addr.add(*load, 1, "server: IP address or host name (also the TLS name verified and sent)");
  load->add_option("--conns,-c", load_conns, "connections, each a fiber")
      ->required()
      ->check(CLI::Range(std::size_t{1}, max_conns));
  load->add_option("--size,-s", load_size, "bytes per message")
      ->required()
      ->check(CLI::Range(std::size_t{1}, max_size));
  load->add_option("--duration,-d", load_duration, "seconds measured")
      ->required()
      ->check(CLI::PositiveNumber);
  load->add_option("--warmup,-w", load_warmup, "seconds run before measuring")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  socket_io_flag load_io;
  load_io.add(*load);
  load->add_option("--threads,-t", load_threads, "client I/O threads")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, max_threads));
  load->add_option("--timeout", load_timeout,
                   "seconds allowed for each connect/handshake/write/read")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  load->add_option("--pipeline", lo.pipeline, "messages in flight per connection")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, max_pipeline));
  load->add_option("--rate,-r", lo.rate,
                   "round-trips/s over all connections, paced open loop: latency is measured from "
                   "each message's intended send time (0: closed loop, as fast as echoes return)")
      ->capture_default_str()
      ->check(CLI::Validator(check_rate, "RATE"));
  auto* tls_flag = load->add_flag("--tls", lo.tls, "connect over TLS (the certificate is verified)");
  load->add_option("--tls-ca", lo.tls_ca, "trusted CAs (PEM) for --tls (default: the system store)")
      ->needs(tls_flag);
  load->add_flag("--insecure", lo.insecure, "--tls without certificate verification (testing only)")
      ->needs(tls_flag)
      ->excludes("--tls-ca");
  load->add_flag("--json", load_json, "print the summary as one JSON object on stdout");
  load->add_flag("--progress", load_progress,
                 "a progress line on stderr every second (default: when stderr is a terminal)");
  load->add_flag("--quiet,-q", load_quiet, "no progress line");

  double demo_seconds = 3, demo_warmup = 0.5, demo_timeout = 5;
  std::size_t demo_conns = 64, demo_size = 64;
  auto* demo = app.add_subcommand("demo", "server and load in one process on 127.0.0.1");
  demo->add_option("--seconds", demo_seconds, "seconds measured")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  demo->add_option("--warmup", demo_warmup, "seconds run before measuring")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  demo->add_option("--conns,-c", demo_conns, "connections")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, max_conns));
  demo->add_option("--size,-s", demo_size, "bytes per message")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, max_size));
  demo->add_option("--timeout", demo_timeout, "seconds allowed for each connect/write/read")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : exit_usage;
  }

  if (*serve && so.tls_cert.size() != so.tls_key.size()) {
    fmt::print(stderr, "fibers-echo: --tls-cert and --tls-key: give them in pairs\n");
    return exit_usage;
  }

  try {
    try {
      if (*serve) so.listen = serve_addr.endpoint();
    } catch (const std::exception& e) {
      fmt::print(stderr, "fibers-echo: --host: {}\n", e.what());
      return exit_usage;
    }
    if (*load) {
      lo.host = load_addr.host;
      lo.port = static_cast<std::uint16_t>(load_addr.port);
      try {
        lo.target = load_addr.endpoint();  // an IP literal; otherwise a name, resolved
      } catch (const std::exception&) {
        lo.target.reset();
      }
    }
    if (*serve) {
      so.threads = serve_threads;
      so.sockets = serve_io.get();
      so.stats_interval =
          std::chrono::duration_cast<std::chrono::milliseconds>(seconds(stats_every));
      so.limits.idle_timeout = seconds(idle_timeout);
      so.limits.handshake_timeout = seconds(handshake_timeout);
      so.limits.rate_window = seconds(rate_window);
      so.limits.accept_backoff = seconds(accept_backoff);
      return fibers_echo::run_serve(so);  // stop signals: a fibers::signal_set
    }
    // load and demo orchestrate from this (plain) thread: the stop signals are blocked before
    // any runtime exists, so every I/O thread inherits the mask, and collected here.
    sigset_t stop = fibers_echo::block_stop_signals();
    if (*load) {
      lo.conns = load_conns;
      lo.size = load_size;
      lo.duration = seconds(load_duration);
      lo.warmup = seconds(load_warmup);
      lo.threads = load_threads;
      lo.sockets = load_io.get();
      lo.timeout = seconds(load_timeout);
      lo.progress = !load_quiet && (load_progress || isatty(STDERR_FILENO) == 1);
      return fibers_echo::run_load_command(lo, load_json, stop);
    }
    fibers_echo::demo_options d;
    d.duration = seconds(demo_seconds);
    d.warmup = seconds(demo_warmup);
    d.conns = demo_conns;
    d.size = demo_size;
    d.timeout = seconds(demo_timeout);
    return fibers_echo::run_demo(d, stop);
  } catch (const std::exception& e) {
    fmt::print(stderr, "fibers-echo: {}\n", e.what());
    return 1;
  }
}
