// tools/fibers-proxy/stats.cpp - summing and printing the counters.
#include "stats.hpp"

#include <fmt/core.h>

namespace fibers_proxy {

const char* name(error_kind k) noexcept {
  switch (k) {
    case error_kind::refused_max_conns: return "refused_max_conns";
    case error_kind::accept_emfile: return "accept_emfile";
    case error_kind::connect_failed: return "connect_failed";
    case error_kind::connect_timeout: return "connect_timeout";
    case error_kind::tls_client: return "tls_client";
    case error_kind::tls_upstream: return "tls_upstream";
    case error_kind::idle_timeout: return "idle_timeout";
    case error_kind::lifetime: return "lifetime";
    case error_kind::slow: return "slow";
    case error_kind::reset: return "reset";
    case error_kind::drained: return "drained";
    case error_kind::other: return "other";
    case error_kind::count_: break;
  }
  return "?";
}

totals proxy_stats::sum() const {
  totals t;
  for (const auto& c : per_thread_) {
    // `finished` first: a connection counted as finished is always counted as accepted too,
    // so active() never goes negative while the threads run.
    t.finished += c.finished.load(std::memory_order_relaxed);
    t.accepted += c.accepted.load(std::memory_order_relaxed);
    t.bytes_up += c.bytes_up.load(std::memory_order_relaxed);
    t.bytes_down += c.bytes_down.load(std::memory_order_relaxed);
    for (std::size_t k = 0; k < error_kinds; ++k) {
      t.errors[k] += c.errors[k].load(std::memory_order_relaxed);
    }
  }
  return t;
}

std::string totals::line() const {
  std::string s = fmt::format("active={} total={} bytes_up={} bytes_down={}", active(), accepted,
                              bytes_up, bytes_down);
  for (std::size_t k = 0; k < error_kinds; ++k) {
    if (errors[k] != 0) s += fmt::format(" {}={}", name(static_cast<error_kind>(k)), errors[k]);
  }
  return s;
}

std::string totals::json() const {
  std::string s = fmt::format(R"({{"connections":{},"active":{},"bytes_up":{},"bytes_down":{},"errors":{{)",
                              accepted, active(), bytes_up, bytes_down);
  for (std::size_t k = 0; k < error_kinds; ++k) {
    s += fmt::format(R"({}"{}":{})", k == 0 ? "" : ",", name(static_cast<error_kind>(k)), errors[k]);
  }
  return s + "}}";
}

}  // namespace fibers_proxy
