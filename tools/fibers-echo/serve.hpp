// tools/fibers-echo/serve.hpp - the echo server: one acceptor fiber per I/O thread, one fiber
// per connection (plain or TLS) under the slow-client rules, and the `serve` command around it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <fibers/endpoint.hpp>
#include <fibers/fiber.hpp>
#include <fibers/runtime.hpp>

namespace fibers_echo {

/// Why the server closed a connection early, or an accept went wrong (the names match
/// fibers-proxy's where the rule is the same).
enum class serve_error : std::size_t {
  reset,              // the peer reset the connection (or closed it while we wrote)
  idle_timeout,       // nothing received for --idle-timeout
  write_timeout,      // the echo could not be written for --idle-timeout: a client that
                      // does not read (no unbounded buffering: the connection is closed)
  slow,               // the minimum-rate rule (--min-rate, a trickling client)
  handshake_timeout,  // TLS handshake not done within --handshake-timeout
  tls,                // TLS handshake failed
  refused_max_conns,  // closed at accept: --max-conns reached
  accept_emfile,      // accept failed for lack of file descriptors (counted per back-off)
  other,
  count_
};
inline constexpr std::size_t serve_error_kinds = static_cast<std::size_t>(serve_error::count_);
/// "reset", "idle_timeout", ...
const char* name(serve_error k) noexcept;

/// Counters of one I/O thread. Only that thread's fibers write them (plain load+store, no
/// locked instruction on the hot path); any thread may read them.
struct alignas(64) server_counters {
  std::atomic<std::uint64_t> connections{0};  // accepted (and not refused)
  std::atomic<std::uint64_t> active{0};       // open now
  std::atomic<std::uint64_t> bytes{0};        // echoed
  std::array<std::atomic<std::uint64_t>, serve_error_kinds> errors{};

  static void add(std::atomic<std::uint64_t>& c, std::uint64_t n) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void count(serve_error k) noexcept { add(errors[static_cast<std::size_t>(k)], 1); }
};

/// The server's counters, one set per I/O thread; must outlive the runtime serving with them.
class server_stats {
 public:
  explicit server_stats(std::size_t threads) : per_thread_(threads) {}
  server_counters& thread(std::size_t i) { return per_thread_.at(i); }

  struct totals {
    std::uint64_t connections = 0, active = 0, bytes = 0;
    std::array<std::uint64_t, serve_error_kinds> errors{};
    std::uint64_t of(serve_error k) const { return errors[static_cast<std::size_t>(k)]; }
    /// Every error kind but reset.
    std::uint64_t other_errors() const;
    bool operator==(const totals&) const = default;
  };
  totals sum() const;
  /// "connections=N active=A bytes=B" and " kind=n" for each error kind that happened.
  static std::string format(const totals& t);
  /// The same as one JSON object: {"connections":N,"active":A,"bytes":B,"errors":{...}}.
  static std::string json(const totals& t);

 private:
  std::vector<server_counters> per_thread_;
};

/// The slow-client rules and accept limits of the server.
struct echo_limits {
  /// A connection that receives nothing for this long is closed, and so is one whose echo
  /// cannot be written for this long (a client that does not read). 0: off.
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(60);
  /// TLS: the handshake must be done within this.
  std::chrono::nanoseconds handshake_timeout = std::chrono::seconds(10);
  /// Minimum-rate rule: a connection that sends some bytes in a rate_window, but fewer than
  /// min_rate * rate_window, is closed (a silent window is the idle rule's). 0: off.
  double min_rate = 0;
  std::chrono::nanoseconds rate_window = std::chrono::seconds(30);
  /// Connections at once over all threads; the excess is closed at accept.
  std::size_t max_conns = 10'000;
  /// How long an acceptor pauses when the process is out of file descriptors.
  std::chrono::nanoseconds accept_backoff = std::chrono::milliseconds(100);
};

/// The echo server: one SO_REUSEPORT listener and acceptor fiber per I/O thread of a runtime.
/// Connections run on as detached fibers until they end or the runtime cancels them.
class echo_server {
 public:
  /// Binds `ep` on every I/O thread of `rt` (port 0 picks one free port for all) and starts
  /// accepting; TLS is terminated with `certs`/`keys` (pairs, as fibers-proxy: the first is
  /// the default certificate, the others are chosen by SNI) when they are given. Callable
  /// from a plain thread or a fiber. Throws std::system_error ("listen 127.0.0.1:80:
  /// Permission denied") or fibers::tls::error naming a certificate or key that cannot be
  /// loaded.
  echo_server(fibers::runtime& rt, const fibers::endpoint& ep, server_stats& stats,
              const echo_limits& limits, const std::vector<std::string>& certs = {},
              const std::vector<std::string>& keys = {});
  ~echo_server();
  echo_server(const echo_server&) = delete;
  echo_server& operator=(const echo_server&) = delete;

  /// The bound address (with the real port when 0 was asked for).
  fibers::endpoint local_endpoint() const { return bound_; }
  /// Stops accepting: the listeners close; connections go on.
  void stop();

  struct shared;  // what acceptors and connections share (outlives this object)

 private:
  std::shared_ptr<shared> shared_;
  fibers::endpoint bound_;
  std::vector<fibers::fiber> acceptors_;
};

/// Options of the `serve` command.
struct serve_options {
  fibers::endpoint listen;
  std::size_t threads = 1;
  fibers::socket_io sockets = fibers::socket_io::by_environment;  // --socket-io
  std::chrono::milliseconds stats_interval{0};  // 0: no progress lines
  echo_limits limits;
  std::vector<std::string> tls_cert, tls_key;  // pairs; empty: plain TCP
};

/// The `serve` command: serves until SIGINT or SIGTERM (awaited with fibers::signal_set),
/// then prints the totals and a JSON summary line. Returns the process exit code.
int run_serve(const serve_options& opts);

}  // namespace fibers_echo
