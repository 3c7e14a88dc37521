// lib/dns/dns_internal.hpp - what the resolver's parts share: status mapping and the c-ares
// lookup on the calling I/O thread's channel.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "fibers/dns.hpp"
#include "fibers/error.hpp"

namespace fibers::detail::dns {

/// c-ares status (ARES_*) as an error_code (dns_errc, or errc::canceled for a destroyed
/// channel).
std::error_code from_ares_status(int status) noexcept;
/// getaddrinfo status (EAI_*) as an error_code; `saved_errno` for EAI_SYSTEM.
std::error_code from_gai_status(int status, int saved_errno) noexcept;

/// Looks `host` up (a checked name, not numeric) for `family` (AF_INET, AF_INET6, AF_UNSPEC)
/// through the calling fiber's I/O thread's c-ares channel for `opts`; appends the addresses
/// (port 0) to `out`; `ttl` (if not null) gets the smallest TTL of the DNS records that
/// answered, or std::nullopt for an answer from the hosts file. Parks the fiber until the answer, `until` (std::errc::timed_out; the
/// inherited deadline applies too) or cancellation (errc::canceled). Fiber only.
std::error_code cares_lookup(std::string host, int family, const fibers::dns::options& opts,
                             clock::time_point until, std::vector<endpoint>& out,
                             std::optional<std::uint32_t>* ttl = nullptr);

}  // namespace fibers::detail::dns
