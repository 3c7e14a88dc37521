// tools/fibers-proxy/addresses.cpp - an upstream name's addresses, re-resolved after the TTL.
#include "addresses.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include <fmt/core.h>

#include <fibers/error.hpp>

namespace fibers_proxy {

using fibers::clock;

address_cache::address_cache(std::string host, std::uint16_t port, const config& cfg)
    : host_(std::move(host)), port_(port), cfg_(cfg) {
  opts_.servers = cfg.dns_servers;
}

std::uint64_t address_cache::lookups() const {
  std::lock_guard lk(mu_);
  return lookups_;
}

std::vector<fibers::endpoint> address_cache::get(std::error_code& ec, fibers::deadline dl) {
  ec.clear();
  {
    std::lock_guard lk(mu_);
    const auto now = clock::now();
    if (!addrs_.empty()) {
      if (now < fresh_until_) return addrs_;
      // Expired but within the grace period: someone else is resolving, or the last lookup
      // failed a moment ago.
      if (now < good_until_ && (resolving_ || now < retry_at_)) return addrs_;
    }
    resolving_ = true;
    ++lookups_;
  }
  fibers::dns::answer a;
  std::error_code lec;
  try {
    a = fibers::dns::resolve_answer(host_, port_, lec, opts_, dl);
  } catch (...) {
    std::lock_guard lk(mu_);
    resolving_ = false;
    throw;
  }
  std::lock_guard lk(mu_);
  resolving_ = false;
  const auto now = clock::now();
  if (!lec) {
    const clock::duration told = a.ttl ? clock::duration(*a.ttl) : clock::duration(cfg_.dns_min_ttl);
    const auto ttl = std::clamp<clock::duration>(told, cfg_.dns_min_ttl, cfg_.dns_max_ttl);
    addrs_ = std::move(a.endpoints);
    fresh_until_ = now + ttl;
    good_until_ = fresh_until_ + cfg_.dns_grace;
    if (failing_) {
      fmt::print(stderr, "fibers-proxy: resolve {}: answered again\n", host_);
      failing_ = false;
    }
    return addrs_;
  }
  if (lec == fibers::errc::canceled) {  // the client went away (shutdown): nothing learnt
    ec = lec;
    return {};
  }
  retry_at_ = now + cfg_.dns_min_ttl;
  if (!addrs_.empty() && now < good_until_) {
    if (!failing_) {
      failing_ = true;
      fmt::print(stderr, "fibers-proxy: resolve {}: {}; keeping its last {} address(es) for up to {:.1f} s\n", host_,
                 lec.message(), addrs_.size(), std::chrono::duration<double>(good_until_ - now).count());
    }
    return addrs_;
  }
  if (!addrs_.empty()) {
    fmt::print(stderr, "fibers-proxy: resolve {}: {}; its last addresses are past the {:.1f} s grace period, dropped\n",
               host_, lec.message(), std::chrono::duration<double>(cfg_.dns_grace).count());
    addrs_.clear();
    failing_ = true;
  }
  ec = lec;
  return {};
}

}  // namespace fibers_proxy
