// lib/dns/resolve.cpp - fibers::dns::resolve: checks the name, answers numeric addresses and
// localhost itself, then asks c-ares on the calling I/O thread (lib/dns/channel.cpp) or
// getaddrinfo on the blocking pool, and orders the answer.
#include <arpa/inet.h>
#include <netdb.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <stdexcept>
#include <string>

#include "dns/dns_internal.hpp"
#include "fibers/blocking.hpp"
#include "runtime/io_thread.hpp"

namespace fibers {
namespace dns {
namespace {

using detail::dns::cares_lookup;
using detail::dns::from_gai_status;

/// The host as an error message shows it: NULs and control bytes escaped, cut at 100 bytes.
std::string printable(std::string_view host) {
  std::string out;
  for (char c : host.substr(0, 100)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  if (host.size() > 100) out += "...";
  return out;
}

/// Why `host` cannot be a DNS name, or nullptr if it can. RFC 1035 limits (253 bytes written
/// without the final dot, labels of 1-63 bytes); other bytes are the server's business.
const char* bad_name_reason(std::string_view host) noexcept {
  if (host.empty()) return "empty name";
  if (host.find('\0') != std::string_view::npos) return "embedded NUL";
  std::string_view name = host;
  if (name.size() > 1 && name.back() == '.') name.remove_suffix(1);
  if (name == ".") return "empty label";
  if (name.size() > 253) return "name longer than 253 bytes";
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = name.find('.', start);
    const std::size_t len = (dot == std::string_view::npos ? name.size() : dot) - start;
    if (len == 0) return "empty label";
    if (len > 63) return "label longer than 63 bytes";
    if (dot == std::string_view::npos) return nullptr;
    start = dot + 1;
  }
}

bool iequals_suffix(std::string_view s, std::string_view suffix) noexcept {
  if (s.size() < suffix.size()) return false;
  s = s.substr(s.size() - suffix.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != suffix[i]) return false;
  }
  return true;
}

/// "localhost" and names under it (RFC 6761 section 6.3: always loopback, never sent).
bool is_localhost(std::string_view host) noexcept {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return (host.size() == 9 && iequals_suffix(host, "localhost")) || iequals_suffix(host, ".localhost");
}

/// A numeric address ("10.0.0.1", "::1", "fe80::1%eth0", "[::1]"): true and `out` set, or
/// false for anything else. A numeric IPv6 address with an unknown zone is bad_name.
bool numeric(std::string_view host, std::uint16_t port, endpoint& out, std::error_code& ec) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.size() > INET6_ADDRSTRLEN + IF_NAMESIZE) return false;
  // Names (the common case) have a letter or '-' outside hex digits; no copy, no inet_pton.
  if (host.find(':') == std::string_view::npos &&
      host.find_first_not_of("0123456789.") != std::string_view::npos) {
    return false;
  }
  const std::string text(host);
  in_addr a4{};
  if (::inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    out = endpoint::ip(text, port);
    return true;
  }
  if (text.find(':') == std::string::npos) return false;
  try {
    out = endpoint::ip(text, port);
    return true;
  } catch (const std::invalid_argument&) {
    ec = make_error_code(dns_errc::bad_name);
    return true;
  }
}

bool service_port(std::string_view service, std::uint16_t& port) {
  if (service.empty()) {
    port = 0;
    return true;
  }
  unsigned value = 0;
  auto [end, err] = std::from_chars(service.data(), service.data() + service.size(), value);
  if (err == std::errc() && end == service.data() + service.size()) {
    if (value > 65535) return false;
    port = static_cast<std::uint16_t>(value);
    return true;
  }
  if (service.size() > 64 || service.find('\0') != std::string_view::npos) return false;
  // /etc/services, a small local file (like the hosts file c-ares reads).
  const std::string name(service);
  servent se{};
  servent* res = nullptr;
  char buf[1024];
  for (const char* proto : {"tcp", "udp"}) {
    if (::getservbyname_r(name.c_str(), proto, &se, buf, sizeof buf, &res) == 0 && res != nullptr) {
      port = ntohs(static_cast<std::uint16_t>(res->s_port));
      return true;
    }
  }
  return false;
}

int af_of(family f) noexcept {
  switch (f) {
    case family::ipv4: return AF_INET;
    case family::ipv6: return AF_INET6;
    case family::any: break;
  }
  return AF_UNSPEC;
}

bool wanted(const endpoint& ep, family f) noexcept {
  return f == family::any || ep.family() == af_of(f);
}

/// The getaddrinfo path: on a pool thread, so the caller (a fiber or a plain thread) only
/// waits. Captures by value: the caller may be gone when it finishes.
struct gai_answer {
  int status = 0;
  int saved_errno = 0;
  std::vector<endpoint> addrs;
};

gai_answer run_getaddrinfo(const std::string& host, int af) {
  gai_answer a;
  addrinfo hints{};
  hints.ai_family = af;
  hints.ai_socktype = SOCK_STREAM;  // one entry per address, not one per socket type
  addrinfo* res = nullptr;
  a.status = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  a.saved_errno = errno;
  if (a.status == 0) {
    for (addrinfo* p = res; p != nullptr; p = p->ai_next) {
      if (p->ai_family == AF_INET || p->ai_family == AF_INET6) a.addrs.push_back(endpoint::from_sockaddr(p->ai_addr, p->ai_addrlen));
    }
    ::freeaddrinfo(res);
  }
  return a;
}

std::error_code gai_lookup(const std::string& host, int af, clock::time_point until, std::vector<endpoint>& out) {
  future<gai_answer> f;
  try {
    f = default_blocking_pool().async([host, af] { return run_getaddrinfo(host, af); });
  } catch (const std::system_error& e) {
    return e.code();  // the pool's queue is full
  }
  try {
    if (!f.wait_until(until)) return std::make_error_code(std::errc::timed_out);
  } catch (const canceled&) {
    return make_error_code(errc::canceled);
  }
  gai_answer a = f.get();
  if (std::error_code ec = from_gai_status(a.status, a.saved_errno)) return ec;
  if (a.addrs.empty()) return make_error_code(dns_errc::no_data);
  out.insert(out.end(), a.addrs.begin(), a.addrs.end());
  return {};
}

/// Port set, duplicates removed (first kept), the preferred family first (stable). In place:
/// a handful of addresses, no allocation.
void finish(std::vector<endpoint>& eps, std::uint16_t port, const options& opts) {
  std::size_t kept = 0;
  for (std::size_t i = 0; i < eps.size(); ++i) {
    endpoint e = eps[i].with_port(port);
    if (std::find(eps.begin(), eps.begin() + static_cast<std::ptrdiff_t>(kept), e) == eps.begin() + static_cast<std::ptrdiff_t>(kept)) {
      eps[kept++] = e;
    }
  }
  eps.resize(kept);
  const int first = opts.prefer_ipv4 ? AF_INET : AF_INET6;
  auto front = eps.begin();
  for (auto it = eps.begin(); it != eps.end(); ++it) {
    if (it->family() == first) {
      std::rotate(front, it, it + 1);
      ++front;
    }
  }
}

/// The lookup behind every form; `ttl` (if not null) gets the answer's TTL (answer::ttl).
std::vector<endpoint> resolve_port(std::string_view host, std::uint16_t port, std::error_code& ec,
                                   const options& opts, deadline dl, const char** detail,
                                   std::optional<std::chrono::seconds>* ttl = nullptr) {
  ec.clear();
  if (ttl != nullptr) ttl->reset();
  std::vector<endpoint> eps;
  endpoint ep;
  if (numeric(host, port, ep, ec)) {
    if (ec) {
      if (detail != nullptr) *detail = "not a valid IPv6 address or zone";
      return {};
    }
    if (!wanted(ep, opts.families)) {
      ec = make_error_code(dns_errc::no_data);
      return {};
    }
    eps.push_back(ep);
    return eps;
  }
  if (const char* why = bad_name_reason(host)) {
    ec = make_error_code(dns_errc::bad_name);
    if (detail != nullptr) *detail = why;
    return {};
  }
  if (opts.backend == backend::cares && is_localhost(host)) {
    if (opts.families != family::ipv4) eps.push_back(endpoint::loopback_v6(port));
    if (opts.families != family::ipv6) eps.push_back(endpoint::loopback_v4(port));
    finish(eps, port, opts);
    return eps;
  }
  const clock::time_point until = dl.is_set() ? dl.when() : clock::time_point::max();
  std::string name(host);
  const int af = af_of(opts.families);
  detail::io_thread* t = detail::io_thread::current();
  const bool on_fiber = t != nullptr && t->running_fiber() != nullptr;
  if (t != nullptr && !on_fiber) {
    throw std::logic_error("fibers::dns::resolve: called on an I/O thread's loop (a posted task), which cannot wait; call it from a fiber");
  }
  if (on_fiber && opts.backend == backend::cares) {
    std::optional<std::uint32_t> secs;
    ec = cares_lookup(std::move(name), af, opts, until, eps, ttl != nullptr ? &secs : nullptr);
    if (!ec && ttl != nullptr && secs) *ttl = std::chrono::seconds(*secs);
  } else {
    if (!on_fiber && opts.backend == backend::cares && !opts.servers.empty()) {
      throw std::logic_error("fibers::dns::resolve: options.servers needs the c-ares backend, which runs on a fiber of an I/O thread; this thread can only use getaddrinfo");
    }
    ec = gai_lookup(name, af, until, eps);
  }
  if (ec) return {};
  eps.erase(std::remove_if(eps.begin(), eps.end(), [&](const endpoint& e) { return !wanted(e, opts.families); }), eps.end());
  if (eps.empty()) {
    ec = make_error_code(dns_errc::no_data);
    return {};
  }
  finish(eps, port, opts);
  return eps;
}

[[noreturn]] void throw_resolve(const std::error_code& ec, std::string_view host, const char* detail) {
  std::string what = "resolve " + printable(host);
  if (detail != nullptr) what += std::string(" (") + detail + ")";
  throw_error(ec, what);
}

}  // namespace

answer resolve_answer(std::string_view host, std::uint16_t port, std::error_code& ec, const options& opts,
                      deadline dl) {
  answer a;
  a.endpoints = resolve_port(host, port, ec, opts, dl, nullptr, &a.ttl);
  if (ec) a.ttl.reset();
  return a;
}

answer resolve_answer(std::string_view host, std::uint16_t port, const options& opts, deadline dl) {
  std::error_code ec;
  const char* detail = nullptr;
  answer a;
  a.endpoints = resolve_port(host, port, ec, opts, dl, &detail, &a.ttl);
  if (ec) throw_resolve(ec, host, detail);
  return a;
}

std::vector<endpoint> resolve(std::string_view host, std::uint16_t port, std::error_code& ec, const options& opts,
                              deadline dl) {
  return resolve_port(host, port, ec, opts, dl, nullptr);
}

std::vector<endpoint> resolve(std::string_view host, std::uint16_t port, const options& opts, deadline dl) {
  std::error_code ec;
  const char* detail = nullptr;
  auto eps = resolve_port(host, port, ec, opts, dl, &detail);
  if (ec) throw_resolve(ec, host, detail);
  return eps;
}

std::vector<endpoint> resolve(std::string_view host, std::string_view service, std::error_code& ec,
                              const options& opts, deadline dl) {
  std::uint16_t port = 0;
  if (!service_port(service, port)) {
    ec = make_error_code(dns_errc::bad_service);
    return {};
  }
  return resolve_port(host, port, ec, opts, dl, nullptr);
}

std::vector<endpoint> resolve(std::string_view host, std::string_view service, const options& opts, deadline dl) {
  std::uint16_t port = 0;
  if (!service_port(service, port)) {
    throw_resolve(make_error_code(dns_errc::bad_service), host, nullptr);
  }
  return resolve(host, port, opts, dl);
}

bool split_host_port(std::string_view text, std::string& host, std::uint16_t& port, int default_port) {
  std::string_view h = text;
  std::string_view p;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return false;
    h = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      p = rest.substr(1);
      if (p.empty()) return false;
    }
  } else {
    const std::size_t colon = text.rfind(':');
    // More than one colon without brackets: a bare IPv6 address, no port.
    if (colon != std::string_view::npos && text.find(':') == colon) {
      h = text.substr(0, colon);
      p = text.substr(colon + 1);
      if (p.empty()) return false;
    }
  }
  if (p.empty()) {
    if (default_port < 0 || default_port > 65535) return false;
    port = static_cast<std::uint16_t>(default_port);
  } else if (!service_port(p, port)) {
    return false;
  }
  host.assign(h);
  return true;
}

}  // namespace dns
}  // namespace fibers
