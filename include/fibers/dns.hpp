// fibers/dns.hpp - host names to addresses without blocking an I/O thread: c-ares driven by
// the calling thread's reactor, or getaddrinfo on the blocking pool.
#pragma once

#include "fibers/detail/config.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "fibers/clock.hpp"
#include "fibers/endpoint.hpp"

namespace fibers {

/// Why a name did not resolve (category fibers::dns_category(), name "dns"). The caller's own
/// deadline is not among them: that is std::errc::timed_out, as for every wait, and
/// cancellation is fibers::errc::canceled.
enum class dns_errc {
  no_such_host = 1,  ///< NXDOMAIN: the name does not exist
  no_data,           ///< the name exists but has no address of the requested family
  server_failure,    ///< SERVFAIL: the server could not answer (e.g. upstream failure)
  refused,           ///< REFUSED: the server declined to answer
  timeout,           ///< no server answered within attempts x per-try timeout (compares
                     ///< equal to std::errc::timed_out as a condition)
  no_server,         ///< no server could be reached (connection refused; compares equal to
                     ///< std::errc::connection_refused as a condition)
  bad_name,          ///< not a valid host name (empty, a label over 63 bytes, the name over
                     ///< 253, an empty label, an embedded NUL); no query was sent
  bad_service,       ///< the service is neither a port number nor a known service name
  bad_response,      ///< the answer could not be parsed (malformed, truncated, not implemented)
  other,             ///< any other resolver failure
};

/// The category of fibers::dns_errc; its name() is "dns".
const std::error_category& dns_category() noexcept;

/// Makes an error_code of dns_errc (found by ADL: `ec == fibers::dns_errc::no_such_host`).
inline std::error_code make_error_code(dns_errc e) noexcept { return {static_cast<int>(e), dns_category()}; }

namespace dns {

/// Which address families a lookup asks for.
enum class family : unsigned char {
  any,   ///< A and AAAA
  ipv4,  ///< A only
  ipv6,  ///< AAAA only
};

/// Which code path does the lookup.
enum class backend : unsigned char {
  /// c-ares on the calling I/O thread's reactor (no thread involved). Reads /etc/hosts (or the
  /// file named by the CARES_HOSTS environment variable), then asks DNS servers as
  /// /etc/resolv.conf (or `servers`) says. Ignores /etc/nsswitch.conf.
  cares,
  /// getaddrinfo(3) on the blocking pool (fibers::default_blocking_pool()): every source
  /// /etc/nsswitch.conf names (files, dns, mdns, ldap, sss, ...). `servers`, `attempts` and
  /// `try_timeout` do not apply (glibc reads /etc/resolv.conf). A canceled or expired caller
  /// returns at once; the getaddrinfo call still runs to its end on its pool thread.
  getaddrinfo,
};

/// How to resolve. The defaults read the system's configuration.
struct options {
  /// Families to ask for (a filter: family::ipv4 never returns an IPv6 address).
  family families = family::any;
  /// Order of the result: IPv6 addresses before IPv4 (false, RFC 6724's default) or after.
  /// Within a family, the order of the answer is kept.
  bool prefer_ipv4 = false;
  /// c-ares only: DNS servers to ask, "127.0.0.1:5353", "[::1]:53", "10.0.0.1" (port 53);
  /// empty: the nameservers of /etc/resolv.conf.
  std::vector<std::string> servers;
  /// c-ares only: tries per server (0: resolv.conf's `attempts`, else c-ares' default of 3).
  int attempts = 0;
  /// c-ares only: the first try's timeout per server (later tries double it; 0: resolv.conf's
  /// `timeout`, else c-ares' default of 5 s).
  std::chrono::milliseconds try_timeout{0};
  /// c-ares only: most lookups one channel has in flight at once; later ones wait in a FIFO
  /// queue. A burst of thousands would otherwise overflow a socket's receive buffer (the
  /// server's or c-ares' own) and turn into retries after a timeout: here, with 208 KiB
  /// buffers, 256 in flight (512 queries: a lookup of family::any is two) lost 256 datagrams
  /// per burst, 128 lost none.
  std::size_t max_in_flight = 128;
  /// The code path (see backend).
  dns::backend backend = backend::cares;
};

/// Resolves `host` (a name, a numeric IPv4/IPv6 address, or "localhost") and `service` (a port
/// number "443", a name from /etc/services "https", or "" for port 0) to endpoints, ordered as
/// options.prefer_ipv4 says, without duplicates. Never empty on success.
///
/// Numeric addresses are answered without any query or file read, and so are "localhost" and
/// names under ".localhost" with backend::cares (RFC 6761: ::1 and 127.0.0.1; getaddrinfo
/// answers them from the hosts file). Names are checked first: an empty name, a label
/// longer than 63 bytes, a name longer than 253 or with an empty label, or an embedded NUL is
/// dns_errc::bad_name, and nothing is sent.
///
/// On a fiber (c-ares backend) the lookup runs on the fiber's I/O thread: that thread keeps one
/// c-ares channel per distinct set of servers/attempts/try_timeout/max_in_flight, created on
/// first use and destroyed when the thread ends; its sockets are watched by the thread's
/// reactor and its timeouts sit on the thread's timer heap. Only the calling fiber parks.
///
/// A cancellation point: the caller's deadline `dl` and the fiber's inherited deadline
/// (with_deadline, scope) give std::errc::timed_out, a cancel gives fibers::canceled, at once,
/// even while a query is in flight (its answer, when it comes, is dropped). dns_errc::timeout
/// is different: every server stayed silent for attempts x try_timeout.
///
/// On a plain thread (not a fiber of an I/O thread) the lookup goes through getaddrinfo on the
/// blocking pool, the thread blocking until the answer or `dl`; options.servers then throws
/// std::logic_error (only the c-ares path can use them).
///
/// Throws std::system_error whose what() names the host: "resolve nosuch.test: no such host".
///
///     auto eps = fibers::dns::resolve("example.com", "443", {}, 2s);
///     auto s = fibers::tcp_stream::connect(eps.front(), 2s);   // or connect("example.com", 443)
std::vector<endpoint> resolve(std::string_view host, std::string_view service, const options& opts = {},
                              deadline dl = {});
/// resolve() reporting failures in `ec` (returns an empty vector then). Throws only for
/// misuse: std::logic_error (see resolve), std::invalid_argument for an options.servers entry
/// c-ares cannot parse (naming it); and std::bad_alloc.
std::vector<endpoint> resolve(std::string_view host, std::string_view service, std::error_code& ec,
                              const options& opts = {}, deadline dl = {});
/// resolve() with a port number instead of a service.
std::vector<endpoint> resolve(std::string_view host, std::uint16_t port, const options& opts = {},
                              deadline dl = {});
/// resolve() with a port number, reporting failures in `ec`.
std::vector<endpoint> resolve(std::string_view host, std::uint16_t port, std::error_code& ec,
                              const options& opts = {}, deadline dl = {});

/// What resolve_answer() returns: the endpoints and how long the answer may be kept.
struct answer {
  /// As resolve() returns them (ordered, no duplicates, never empty on success).
  std::vector<endpoint> endpoints;
  /// The smallest TTL among the DNS records of the answer (the address records of every
  /// family asked for, and the CNAMEs on the way), in whole seconds; 0 is a valid TTL ("do
  /// not keep"). std::nullopt when no DNS record answered, so nothing says how long the
  /// addresses hold: numeric hosts, "localhost" and names under it, a hosts-file answer
  /// (c-ares), backend::getaddrinfo and plain threads (getaddrinfo reports no TTL).
  std::optional<std::chrono::seconds> ttl;
};

/// resolve() that also reports the answer's TTL (answer::ttl), for callers that keep the
/// addresses and resolve again when they expire. The same checks, errors, deadline and
/// cancellation behaviour as resolve(); throws the same std::system_error.
///
///     auto a = fibers::dns::resolve_answer("db.internal", 5432, {}, 2s);
///     auto keep_for = a.ttl.value_or(30s);   // no TTL: the caller's own choice
answer resolve_answer(std::string_view host, std::uint16_t port, const options& opts = {}, deadline dl = {});
/// resolve_answer() reporting failures in `ec` (returns an empty answer then). Throws only for
/// misuse, as resolve() with `ec` does.
answer resolve_answer(std::string_view host, std::uint16_t port, std::error_code& ec, const options& opts = {},
                      deadline dl = {});

/// Splits "host:port", "[v6]:port" or "host" (then port = `default_port`) into host and port.
/// Returns false if the text has a bad or missing port and no default (default_port < 0).
bool split_host_port(std::string_view text, std::string& host, std::uint16_t& port, int default_port = -1);

}  // namespace dns
}  // namespace fibers

/// @cond internal
template <>
struct std::is_error_code_enum<fibers::dns_errc> : std::true_type {};
/// @endcond
