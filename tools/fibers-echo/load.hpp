// tools/fibers-echo/load.hpp - the load client: C connections (plain or TLS), each a fiber (two
// with --pipeline) sending S-byte messages and reading back the verified echo, either as fast
// as the echoes come back (closed loop) or on a fixed schedule (--rate, open loop); and the
// `load` command around it.
#pragma once

#include <array>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <fibers/endpoint.hpp>
#include <fibers/runtime.hpp>

#include "stats.hpp"

namespace fibers_echo {

/// Options of a load run.
struct load_options {
  std::string host = "127.0.0.1";  // IP literal or name (resolved); the TLS name too
  std::uint16_t port = 0;
  std::optional<fibers::endpoint> target;  // set when host is an IP literal
  std::size_t conns = 1;
  std::size_t size = 1;
  std::chrono::nanoseconds duration{};  // measured window
  std::chrono::nanoseconds warmup{};    // run before the window, not counted
  std::size_t threads = 1;              // I/O threads of the client runtime
  fibers::socket_io sockets = fibers::socket_io::by_environment;  // --socket-io
  std::chrono::nanoseconds timeout{};   // deadline of every connect/handshake/write/read
  std::size_t pipeline = 1;             // messages in flight per connection
  double rate = 0;                      // round-trips/s over all connections; 0: closed loop
  bool tls = false;
  std::string tls_ca;                   // trusted CAs (PEM); empty: the system store
  bool insecure = false;                // TLS without verification
  bool progress = false;                // a progress line on stderr every second
};

/// Why a round-trip or connection failed.
enum class load_error : std::size_t {
  connect,  // the connection could not be opened (refused, unreachable, no such host)
  tls,      // TLS handshake failed (verification included)
  timeout,  // a connect, handshake, write or read exceeded --timeout
  reset,    // the server reset the connection
  eof,      // the server closed the connection
  corrupt,  // the echo differed from what was sent
  other,
  count_
};
inline constexpr std::size_t load_error_kinds = static_cast<std::size_t>(load_error::count_);
/// "connect", "tls", ...
const char* name(load_error k) noexcept;

/// A send more than this behind its intended time (paced runs) is counted late.
inline constexpr std::chrono::milliseconds late_threshold{1};

/// What a load run measured (round-trips whose intended send time fell inside the measured
/// window; closed loop: whose send did).
struct load_result {
  std::string target;  // "127.0.0.1:7000" or "name:port"
  bool tls = false;
  std::size_t conns = 0;
  std::size_t connected = 0;  // connections opened
  std::size_t size = 0;
  std::size_t pipeline = 1;
  double rate = 0;     // target rate; 0: closed loop
  double seconds = 0;  // length of the measured window
  bool stopped = false;  // a stop signal ended the run early
  std::uint64_t round_trips = 0;
  std::uint64_t bytes = 0;  // echoed payload, one direction
  std::uint64_t late = 0;   // sends more than late_threshold behind schedule
  std::uint64_t unsent = 0;  // paced: due in the window but not sent when it ended (the
                             // client was that far behind); not in the latency figures
  std::uint64_t max_lag_ns = 0;  // the furthest a send was behind schedule
  std::array<std::uint64_t, load_error_kinds> errors{};
  latency_histogram latency;
  std::string first_error;  // the first error's message, when any

  std::uint64_t of(load_error k) const { return errors[static_cast<std::size_t>(k)]; }
  std::uint64_t error_count() const;
  bool ok() const { return error_count() == 0 && connected == conns; }
  double round_trips_per_sec() const;
  double megabytes_per_sec() const;  // 1 MB = 1e6 B
  /// "rt/s=... MB/s=... p50_us=... p99_us=... p999_us=... max_us=... errors=... corrupt=...
  /// conns=C size=S".
  std::string line() const;
  /// The rest of the human summary: mode, connections, late sends, errors by kind.
  std::string details() const;
  /// Everything as one JSON object (one line).
  std::string json() const;
};

/// Runs the load on its own runtime and returns what it measured. Opens every connection
/// first (a failure is counted by kind; the others go on), then starts the clock. Stops early
/// when a signal of `stop` arrives (if given). Notes the first error of each kind on stderr.
load_result run_load(const load_options& opts, const sigset_t* stop);

/// The `load` command: runs the load, prints the summary (or, with `json`, one JSON object)
/// on stdout; exit code 1 when a connection failed or any error happened.
int run_load_command(const load_options& opts, bool json, const sigset_t& stop);

}  // namespace fibers_echo
