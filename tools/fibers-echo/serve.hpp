// tools/fibers-echo/serve.hpp - the echo server: one acceptor fiber per I/O thread, one fiber
// per connection, and the `serve` command around it.
#pragma once

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <fibers/endpoint.hpp>
#include <fibers/runtime.hpp>
#include <fibers/tcp_server.hpp>

namespace fibers_echo {

/// Counters of one I/O thread. Only that thread's fibers write them (plain load+store, no
/// locked instruction on the hot path); any thread may read them.
struct alignas(64) server_counters {
  std::atomic<std::uint64_t> connections{0};  // accepted
  std::atomic<std::uint64_t> active{0};       // open now
  std::atomic<std::uint64_t> bytes{0};        // echoed
  std::atomic<std::uint64_t> resets{0};       // connections the peer reset (or closed mid-write)
  std::atomic<std::uint64_t> errors{0};       // connections ended by another error, failed accepts

  static void add(std::atomic<std::uint64_t>& c, std::uint64_t n) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

/// The server's counters, one set per I/O thread; must outlive the runtime serving with them.
class server_stats {
 public:
  explicit server_stats(std::size_t threads) : per_thread_(threads) {}
  server_counters& thread(std::size_t i) { return per_thread_.at(i); }

  struct totals {
    std::uint64_t connections = 0, active = 0, bytes = 0, resets = 0, errors = 0;
    bool operator==(const totals&) const = default;
  };
  totals sum() const;
  /// "connections=N active=A bytes=B resets=R errors=E".
  static std::string format(const totals& t);

 private:
  std::vector<server_counters> per_thread_;
};

/// Starts a fibers::tcp_server echoing on `ep` on every I/O thread of `rt` (SO_REUSEPORT
/// listeners; port 0 picks one free port for all). Throws std::system_error ("listen
/// 127.0.0.1:80: Permission denied") on failure. Destroy it before the runtime.
fibers::tcp_server start_echo_server(fibers::runtime& rt, const fibers::endpoint& ep,
                                     server_stats& stats);

/// Options of the `serve` command.
struct serve_options {
  fibers::endpoint listen;
  std::size_t threads = 1;
  std::chrono::milliseconds stats_interval{0};  // 0: no progress lines
};

/// The `serve` command: serves until SIGINT or SIGTERM (awaited with fibers::signal_set),
/// then prints the totals.
/// Returns the process exit code.
int run_serve(const serve_options& opts);

}  // namespace fibers_echo
