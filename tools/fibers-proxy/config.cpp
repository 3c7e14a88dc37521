// tools/fibers-proxy/config.cpp - the command line and config file (CLI11).
#include "config.hpp"

#include <sys/socket.h>

#include <charconv>
#include <cstdio>
#include <exception>
#include <stdexcept>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "socket_io.hpp"

namespace fibers_proxy {
namespace {

constexpr int exit_usage = 2;
constexpr std::size_t max_threads = 1024;

std::chrono::nanoseconds to_ns(double s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(seconds_d(s));
}

}  // namespace

std::string upstream_address::to_string() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

upstream_address parse_upstream(const std::string& s) {
  std::string host, port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      throw std::invalid_argument("upstream '" + s + "': expected [v6]:port");
    }
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      throw std::invalid_argument("upstream '" + s + "': expected host:port");
    }
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  unsigned value = 0;
  auto [end, err] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (err != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
    throw std::invalid_argument("upstream '" + s + "': bad port '" + port + "'");
  }
  return {host, static_cast<std::uint16_t>(value)};
}

parse_result parse_command_line(int argc, char** argv) {
  config c;
  CLI::App app(
      "fibers-proxy: TCP/TLS proxy on libfibers. Forwards every connection accepted on --listen "
      "to one of the --upstream servers (--balance; one that fails to connect is skipped for "
      "--upstream-backoff). SIGHUP: re-read the configuration for new connections. "
      "SIGINT/SIGTERM: stop accepting, drain, exit.",
      "fibers-proxy");
  app.set_config("--config", "", "read options from a TOML/INI file (key = value, as the flags)");
  app.allow_config_extras(CLI::config_extras_mode::error);

  std::vector<std::string> listen, upstreams;
  double connect_timeout = 5, idle_timeout = 60, max_lifetime = 86400, rate_window = 30,
         drain_timeout = 10, backoff = 10, stats_interval = 10, accept_backoff = 0.1, dns_min_ttl = 1,
         dns_max_ttl = 300, dns_grace = 60;
  app.add_option("--listen,-l", listen, "address to accept on, e.g. 127.0.0.1:8000 (repeatable)")
      ->required();
  app.add_option("--upstream,-u", upstreams, "upstream HOST:PORT, name or IP (repeatable)")
      ->required();
  app.add_option("--threads,-t", c.threads, "I/O threads, one SO_REUSEPORT listener each")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, max_threads));
  app.add_option("--max-conns", c.max_conns, "client connections at once; the excess is closed at accept")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{10'000'000}));
  app.add_option("--connect-timeout", connect_timeout, "seconds per upstream connect attempt (TLS handshake included)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--idle-timeout", idle_timeout, "seconds a direction may wait for a read or write to progress")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-lifetime", max_lifetime, "seconds a connection may live (0: no limit)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--min-rate", c.min_rate,
                 "bytes/s a client must send in each --rate-window in which it sends anything and the upstream answers nothing (0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--rate-window", rate_window, "seconds of the minimum-rate window")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--drain-timeout", drain_timeout, "seconds to let transfers finish on SIGTERM/SIGINT")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  std::string balance = "roundrobin";
  app.add_option("--balance", balance, "roundrobin, or leastconn: the upstream with the fewest connections")
      ->capture_default_str()
      ->check(CLI::IsMember({"roundrobin", "leastconn"}));
  app.add_option("--retries", c.retries, "further upstreams tried when a connect fails")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{100}));
  app.add_option("--upstream-backoff", backoff, "seconds a failed upstream is skipped")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--dns-server", c.dns_servers,
                 "DNS server for upstream names, e.g. 10.0.0.53, 127.0.0.1:5353 or [::1]:53 "
                 "(repeatable; default: the nameservers of /etc/resolv.conf)");
  app.add_option("--dns-min-ttl", dns_min_ttl,
                 "seconds an upstream name's addresses are kept at least (answers with a smaller "
                 "TTL, or none: the hosts file, localhost)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--dns-max-ttl", dns_max_ttl, "seconds an upstream name's addresses are kept at most, whatever the TTL")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--dns-grace", dns_grace,
                 "seconds the last addresses of a name stay in use past their TTL while lookups fail")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--splice", c.splice,
               "plain TCP on both ends: move the bytes with splice(2) through a pipe per direction "
               "instead of copying them through a buffer (off by default: see bench/README.md)");
  std::string socket_io = "io_uring";
  app.add_option("--socket-io", socket_io,
                 "io_uring: client and upstream sockets read and write through each I/O thread's "
                 "io_uring ring (Linux >= 6.1; elsewhere epoll is used and the start-up line says "
                 "so), or epoll: readiness and a system call per read and write")
      ->capture_default_str()
      ->check(CLI::IsMember({"epoll", "io_uring"}));
  app.add_option("--tls-cert", c.tls_cert,
                 "certificate chain (PEM): terminate TLS from clients (repeatable: the first is the "
                 "default, the others are chosen by SNI from their DNS names)");
  app.add_option("--tls-key", c.tls_key, "private key (PEM) of each --tls-cert, in the same order");
  app.add_flag("--upstream-tls", c.upstream_tls, "connect to the upstreams over TLS (verified)");
  app.add_option("--upstream-ca", c.upstream_ca, "trusted CAs (PEM) for --upstream-tls (default: system)");
  app.add_option("--upstream-sni", c.upstream_sni, "name sent and verified with --upstream-tls (default: the upstream's host)");
  app.add_option("--stats-interval", stats_interval, "seconds between stats lines (0: none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  std::string stats_listen;
  app.add_option("--stats-listen", stats_listen,
                 "address (e.g. 127.0.0.1:8001) that answers every connection with the stats line "
                 "and the JSON summary, then closes");
  app.add_option("--accept-backoff", accept_backoff, "seconds the acceptor pauses when out of file descriptors")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--quiet,-q", c.quiet, "no start-up and shutdown lines");

  try {
    app.parse(argc, argv);
    if (c.tls_cert.size() != c.tls_key.size()) {
      throw CLI::ValidationError("--tls-cert/--tls-key", "give them in pairs");
    }
    if (!c.upstream_tls && (!c.upstream_ca.empty() || !c.upstream_sni.empty())) {
      throw CLI::ValidationError("--upstream-ca/--upstream-sni", "need --upstream-tls");
    }
    if (dns_min_ttl > dns_max_ttl) {
      throw CLI::ValidationError("--dns-min-ttl/--dns-max-ttl", "the minimum is above the maximum");
    }
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return {std::nullopt, rc == 0 ? 0 : exit_usage};
  }
  try {
    for (const auto& l : listen) c.listen.push_back(fibers::endpoint::parse(l));
    for (const auto& u : upstreams) c.upstreams.push_back(parse_upstream(u));
    if (!stats_listen.empty()) c.stats_listen = fibers::endpoint::parse(stats_listen);
    for (const auto& d : c.dns_servers) {  // "ip" or "ip:port" / "[v6]:port", as c-ares takes them
      fibers::endpoint ep;
      try {
        ep = fibers::endpoint::ip(d, 53);
      } catch (const std::invalid_argument&) {
        fibers::endpoint::try_parse(d, ep);
      }
      if (ep.family() != AF_INET && ep.family() != AF_INET6) {
        throw std::invalid_argument("--dns-server '" + d + "': expected an IP address, IP:port or [v6]:port");
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "fibers-proxy: {}\n", e.what());
    return {std::nullopt, exit_usage};
  }
  c.socket_io = fibers_tools::parse_socket_io(socket_io);
  c.balance = balance == "leastconn" ? balance_mode::least_connections : balance_mode::round_robin;
  c.connect_timeout = to_ns(connect_timeout);
  c.idle_timeout = to_ns(idle_timeout);
  c.max_lifetime = to_ns(max_lifetime);
  c.rate_window = to_ns(rate_window);
  c.drain_timeout = to_ns(drain_timeout);
  c.upstream_backoff = to_ns(backoff);
  c.stats_interval = to_ns(stats_interval);
  c.accept_backoff = to_ns(accept_backoff);
  c.dns_min_ttl = to_ns(dns_min_ttl);
  c.dns_max_ttl = to_ns(dns_max_ttl);
  c.dns_grace = to_ns(dns_grace);
  return {std::move(c), 0};
}

}  // namespace fibers_proxy
