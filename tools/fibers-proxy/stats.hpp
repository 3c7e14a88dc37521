// tools/fibers-proxy/stats.hpp - the proxy's counters: one set per I/O thread, written only
// by that thread's fibers (plain load+store, no locked instruction on the hot path), read and
// summed by the stats line from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fibers_proxy {

/// Why a connection failed or was closed early, or an accept went wrong.
enum class error_kind : std::size_t {
  refused_max_conns,  // closed at accept: --max-conns reached
  accept_emfile,      // accept failed for lack of file descriptors (counted per back-off)
  connect_failed,     // no upstream could be connected within the retry budget
  connect_timeout,    // an upstream connect attempt timed out (each attempt)
  tls_client,         // TLS handshake with the client failed
  tls_upstream,       // TLS handshake with an upstream failed (each attempt)
  idle_timeout,       // closed: no progress for --idle-timeout
  lifetime,           // closed: --max-lifetime reached
  slow,               // closed: the minimum-rate rule
  reset,              // a peer reset the connection
  drained,            // closed by shutdown after the drain deadline
  other,              // anything else
  count_
};
inline constexpr std::size_t error_kinds = static_cast<std::size_t>(error_kind::count_);
/// "refused_max_conns", "connect_failed", ...
const char* name(error_kind k) noexcept;

/// Counters of one I/O thread.
struct alignas(64) thread_counters {
  std::atomic<std::uint64_t> accepted{0};   // client connections taken in
  std::atomic<std::uint64_t> finished{0};   // client connections that have ended
  std::atomic<std::uint64_t> bytes_up{0};   // client → upstream
  std::atomic<std::uint64_t> bytes_down{0}; // upstream → client
  std::array<std::atomic<std::uint64_t>, error_kinds> errors{};

  static void add(std::atomic<std::uint64_t>& c, std::uint64_t n) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void count(error_kind k) noexcept { add(errors[static_cast<std::size_t>(k)], 1); }
};

/// Sums of every thread's counters at one moment.
struct totals {
  std::uint64_t accepted = 0, finished = 0, bytes_up = 0, bytes_down = 0;
  std::array<std::uint64_t, error_kinds> errors{};
  std::uint64_t active() const { return accepted - finished; }
  /// "active=A total=T up=B down=B errors: k=n ..." (only the error kinds that happened).
  std::string line() const;
  /// The same as one JSON object.
  std::string json() const;
};

/// The proxy's counters; must outlive the runtime whose fibers count into it.
class proxy_stats {
 public:
  explicit proxy_stats(std::size_t threads) : per_thread_(threads) {}
  thread_counters& thread(std::size_t i) { return per_thread_.at(i); }
  totals sum() const;

 private:
  std::vector<thread_counters> per_thread_;
};

}  // namespace fibers_proxy
