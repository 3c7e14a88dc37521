// tools/fibers-proxy/addresses.hpp - an upstream host name's addresses, kept for the TTL of
// the DNS answer and resolved again when it runs out; the last good addresses outlive a
// failed lookup for a grace period.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include <fibers/clock.hpp>
#include <fibers/dns.hpp>
#include <fibers/endpoint.hpp>

#include "config.hpp"

namespace fibers_proxy {

/// The addresses of one upstream name, shared by every I/O thread (a std::mutex, never held
/// across a wait). A lookup runs on the fiber of the client that finds the addresses expired;
/// while it runs, other clients keep using the expired ones (within the grace period).
class address_cache {
 public:
  /// For `host` (a name; IP literals need no cache) and `port`, resolved with cfg.dns_servers.
  address_cache(std::string host, std::uint16_t port, const config& cfg);

  /// The addresses to connect to now. Fresh ones (within the answer's TTL, clamped to
  /// [cfg.dns_min_ttl, cfg.dns_max_ttl]; an answer without a TTL, such as the hosts file's,
  /// counts as cfg.dns_min_ttl) are returned without a lookup. Otherwise resolves on the
  /// calling fiber within `dl` (a cancellation point). A failed lookup keeps the last good
  /// addresses for cfg.dns_grace past their expiry (logged once per failure spell) and is
  /// retried no sooner than cfg.dns_min_ttl later; without usable addresses it is `ec`.
  std::vector<fibers::endpoint> get(std::error_code& ec, fibers::deadline dl);

  /// Lookups made so far (successful or not).
  std::uint64_t lookups() const;

 private:
  std::string host_;
  std::uint16_t port_;
  const config& cfg_;
  fibers::dns::options opts_;

  mutable std::mutex mu_;
  std::vector<fibers::endpoint> addrs_;   // the last good answer (empty: none usable)
  fibers::clock::time_point fresh_until_;  // used without a lookup until then
  fibers::clock::time_point good_until_;   // fresh_until_ + grace: never used after
  fibers::clock::time_point retry_at_;     // after a failure: no new lookup before, if addrs_
  bool resolving_ = false;                 // a fiber is resolving: the others use addrs_
  bool failing_ = false;                   // a failure has been logged; the next success says so
  std::uint64_t lookups_ = 0;
};

}  // namespace fibers_proxy
