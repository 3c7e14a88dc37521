// tools/fibers-proxy/config.hpp - what the proxy is told to do: every setting, with its
// default, and the command line (CLI11, with --config FILE in TOML/INI through CLI11's own
// parser) that fills it in.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <fibers/endpoint.hpp>
#include <fibers/runtime.hpp>

namespace fibers_proxy {

using seconds_d = std::chrono::duration<double>;

/// One upstream as given: a host name or IP literal and a port.
struct upstream_address {
  std::string host;
  std::uint16_t port = 0;
  std::string to_string() const;
};

/// How an upstream is chosen for a new client.
enum class balance_mode { round_robin, least_connections };

/// Every setting of the proxy. Durations are fibers::clock durations; zero turns a limit off
/// where the help text says so.
struct config {
  std::vector<fibers::endpoint> listen;
  std::vector<upstream_address> upstreams;
  std::size_t threads = 1;

  // Limits and timeouts.
  std::size_t max_conns = 10'000;  // over all threads; the excess is closed at accept
  std::chrono::nanoseconds connect_timeout = std::chrono::seconds(5);  // per attempt, TLS included
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(60);    // per direction
  std::chrono::nanoseconds max_lifetime = std::chrono::hours(24);      // 0: none
  // Minimum-rate rule: a connection whose client sends some bytes in a window, but fewer
  // than min_rate * window, while the upstream sends none, is closed (a silent window is
  // left to idle_timeout). 0: off.
  double min_rate = 8;  // bytes per second, client → upstream
  std::chrono::nanoseconds rate_window = std::chrono::seconds(30);
  std::chrono::nanoseconds drain_timeout = std::chrono::seconds(10);  // on SIGTERM/SIGINT

  // Upstream selection.
  balance_mode balance = balance_mode::round_robin;
  std::size_t retries = 2;  // further upstreams tried after a failed connect, per client
  std::chrono::nanoseconds upstream_backoff = std::chrono::seconds(10);

  // Upstream names: resolved with these DNS servers (empty: /etc/resolv.conf), kept for the
  // answer's TTL clamped to [dns_min_ttl, dns_max_ttl], and kept dns_grace longer when a
  // lookup fails.
  std::vector<std::string> dns_servers;
  std::chrono::nanoseconds dns_min_ttl = std::chrono::seconds(1);
  std::chrono::nanoseconds dns_max_ttl = std::chrono::seconds(300);
  std::chrono::nanoseconds dns_grace = std::chrono::seconds(60);

  // Plain TCP on both ends: move the bytes with splice(2) through a pipe per direction.
  bool splice = false;
  // How the I/O threads' sockets move bytes (runtime_options::sockets); io_uring falls back to
  // epoll where the kernel cannot. io_uring by default: it costs the proxy less CPU per
  // round-trip (bench/README.md).
  fibers::socket_io socket_io = fibers::socket_io::io_uring;

  // TLS.
  // Pairs: terminate TLS from clients; the first is the default certificate, the others are
  // chosen by SNI (their DNS names).
  std::vector<std::string> tls_cert, tls_key;
  bool upstream_tls = false;      // originate TLS to the upstreams
  std::string upstream_ca;        // trusted CAs (PEM); empty: the system store
  std::string upstream_sni;       // name sent and verified; empty: the upstream's host

  std::chrono::nanoseconds stats_interval = std::chrono::seconds(10);  // 0: no stats lines
  std::optional<fibers::endpoint> stats_listen;  // plain-text stats to whoever connects
  std::chrono::nanoseconds accept_backoff = std::chrono::milliseconds(100);  // at EMFILE
  bool quiet = false;

  bool terminate_tls() const { return !tls_cert.empty(); }
};

/// "host:port" or "[v6]:port" → upstream_address; throws std::invalid_argument.
upstream_address parse_upstream(const std::string& s);

/// Parses the command line (and the --config file it names). Returns the config, or the
/// process exit code when the run should end now (--help: 0, a bad flag: 2, the message
/// already printed).
struct parse_result {
  std::optional<config> cfg;
  int exit_code = 0;
};
parse_result parse_command_line(int argc, char** argv);

}  // namespace fibers_proxy
