// tools/fibers-proxy/upstream.hpp - choosing and connecting an upstream: round-robin over the
// list, an upstream whose connect failed is skipped for a back-off period, and each client
// gets a budget of further attempts.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <fibers/clock.hpp>
#include <fibers/tls.hpp>

#include "accept.hpp"
#include "addresses.hpp"
#include "config.hpp"
#include "pipe_end.hpp"
#include "stats.hpp"

namespace fibers_proxy {

using fibers_tools::out_of_descriptors;
using fibers_tools::pipe_end;

/// The upstreams, shared by every I/O thread (the round-robin cursor, the back-off marks and
/// the per-upstream connection counts are atomics; an upstream name's address_cache takes a
/// short lock).
class upstream_pool {
 public:
  /// Builds the TLS client context when cfg.upstream_tls (throws tls::error on a bad CA).
  explicit upstream_pool(const config& cfg);

  /// Connects to an upstream (and handshakes when TLS is on). Tries up to 1 + cfg.retries
  /// upstreams, each with cfg.connect_timeout, chosen by cfg.balance (round-robin, or the
  /// fewest connections with round-robin among equals), skipping those in back-off unless
  /// all are. Counts failed attempts in `counters`. On success `chosen` is the upstream's
  /// index: pass it to release() when the connection ends. On failure `ec` is the last
  /// attempt's error and `what` names it ("connect db:5432: Connection refused").
  /// A cancellation point.
  pipe_end connect(thread_counters& counters, std::size_t& chosen, std::error_code& ec,
                   std::string& what);
  /// The connection to upstream `chosen` has ended.
  void release(std::size_t chosen) noexcept {
    entries_[chosen].active.fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  struct entry {
    upstream_address addr;
    std::optional<fibers::endpoint> literal;     // an IP literal: connected without a lookup
    std::unique_ptr<address_cache> addresses;    // a name: its addresses, kept for their TTL
    std::atomic<fibers::clock::rep> down_until{0};  // skipped until then (clock ticks)
    std::atomic<std::size_t> active{0};              // proxied connections now
  };
  std::size_t pick(fibers::clock::time_point now);
  pipe_end attempt(const entry& e, std::error_code& ec);

  const config& cfg_;
  std::unique_ptr<entry[]> entries_;
  std::size_t count_ = 0;
  std::atomic<std::size_t> next_{0};
  fibers::tls::context tls_;
};

}  // namespace fibers_proxy
