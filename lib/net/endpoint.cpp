// lib/net/endpoint.cpp - parsing and formatting socket addresses.
#include "fibers/endpoint.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <charconv>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fibers {
namespace {

// Room in sun_path for a path (plus its NUL) or an abstract name (after its leading NUL).
constexpr std::size_t kUnixMax = sizeof(sockaddr_un::sun_path) - 1;
constexpr std::size_t kSunPathOffset = offsetof(sockaddr_un, sun_path);

bool fail(std::string* error, std::string_view text, std::string_view why) {
  if (error != nullptr) {
    *error = "invalid endpoint \"";
    *error += text;
    *error += "\": ";
    *error += why;
  }
  return false;
}

bool parse_port(std::string_view s, std::uint16_t& port) {
  if (s.empty() || s.size() > 5) return false;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

// An IPv6 zone id: an interface index ("1") or an interface name ("lo", "eth0").
bool parse_zone(std::string_view zone, std::uint32_t& scope, std::string* error,
                std::string_view text) {
  if (zone.empty()) return fail(error, text, "empty zone id after '%'");
  if (zone.find_first_not_of("0123456789") == std::string_view::npos) {
    auto [end, ec] = std::from_chars(zone.data(), zone.data() + zone.size(), scope);
    if (ec != std::errc() || end != zone.data() + zone.size()) {
      return fail(error, text, "zone index out of range");
    }
    return true;
  }
  scope = zone.size() < IF_NAMESIZE ? ::if_nametoindex(std::string(zone).c_str()) : 0;
  if (scope == 0) {
    std::string why = "unknown interface '";
    why += zone;
    why += "' in the zone id";
    return fail(error, text, why);
  }
  return true;
}

// "%lo" for an IPv6 scope id (the index if no interface has it now), "" for none.
std::string zone_suffix(std::uint32_t scope) {
  if (scope == 0) return {};
  char name[IF_NAMESIZE] = {};
  std::string s = "%";
  s += ::if_indextoname(scope, name) != nullptr ? std::string(name) : std::to_string(scope);
  return s;
}

bool make_ip(std::string_view address, std::uint16_t port, endpoint& out, std::string* error,
             std::string_view text) {
  std::string_view zone;
  bool has_zone = false;
  if (auto percent = address.find('%'); percent != std::string_view::npos) {
    zone = address.substr(percent + 1);
    address = address.substr(0, percent);
    has_zone = true;
  }
  std::string a(address);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (a.find(':') != std::string::npos) {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET6, a.c_str(), &sa->sin6_addr) != 1) {
      return fail(error, text, "not a numeric IPv6 address");
    }
    if (has_zone && !parse_zone(zone, sa->sin6_scope_id, error, text)) return false;
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
  } else {
    if (has_zone) return fail(error, text, "a zone id ('%...') is only for IPv6 addresses");
    auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
    if (::inet_pton(AF_INET, a.c_str(), &sa->sin_addr) != 1) {
      return fail(error, text, "not a numeric IPv4 address (host names need DNS resolution)");
    }
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    len = sizeof(sockaddr_in);
  }
  out = endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  return true;
}

// "/path" (a file, with its NUL counted in the length) or "@name" (Linux abstract namespace:
// sun_path[0] == 0, then the name; the length ends at the name, since every byte counts).
bool make_unix(std::string_view path, endpoint& out, std::string* error, std::string_view text) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::size_t len = 0;
  if (path.starts_with('@')) {
    std::string_view name = path.substr(1);
    if (name.empty()) return fail(error, text, "empty abstract Unix socket name after '@'");
    if (name.size() > kUnixMax) {
      return fail(error, text, "abstract Unix socket name longer than 107 bytes");
    }
    std::memcpy(sa.sun_path + 1, name.data(), name.size());
    len = kSunPathOffset + 1 + name.size();
  } else {
    if (path.empty()) return fail(error, text, "empty Unix socket path");
    if (path.size() > kUnixMax) return fail(error, text, "Unix socket path longer than 107 bytes");
    if (path.find('\0') != std::string_view::npos) {
      return fail(error, text, "Unix socket path contains a NUL byte");
    }
    std::memcpy(sa.sun_path, path.data(), path.size());
    len = kSunPathOffset + path.size() + 1;
  }
  out = endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&sa), static_cast<socklen_t>(len));
  return true;
}

}  // namespace

endpoint::endpoint() noexcept { addr_.ss_family = AF_UNSPEC; }

bool endpoint::try_parse(std::string_view text, endpoint& out, std::string* error) {
  if (text.empty()) return fail(error, text, "empty");
  if (text.starts_with("unix:")) return make_unix(text.substr(5), out, error, text);
  std::string_view address;
  std::string_view port_text;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return fail(error, text, "missing ']' after IPv6 address");
    address = text.substr(1, close - 1);
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      return fail(error, text, "missing ':port' after ']'");
    }
    port_text = text.substr(close + 2);
    if (address.find(':') == std::string_view::npos) {
      return fail(error, text, "brackets are only for IPv6 addresses");
    }
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail(error, text, "missing ':port'");
    address = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (address.find(':') != std::string_view::npos) {
      return fail(error, text, "IPv6 addresses must be written in brackets, e.g. [::1]:80");
    }
  }
  if (address.empty()) return fail(error, text, "missing address");
  std::uint16_t port = 0;
  if (!parse_port(port_text, port)) return fail(error, text, "port must be a number 0-65535");
  return make_ip(address, port, out, error, text);
}

endpoint endpoint::parse(std::string_view text) {
  endpoint ep;
  std::string error;
  if (!try_parse(text, ep, &error)) throw std::invalid_argument(error);
  return ep;
}

endpoint endpoint::ip(std::string_view address, std::uint16_t port) {
  endpoint ep;
  std::string error;
  if (!make_ip(address, port, ep, &error, address)) throw std::invalid_argument(error);
  return ep;
}

endpoint endpoint::loopback_v4(std::uint16_t port) noexcept {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return from_sockaddr(reinterpret_cast<sockaddr*>(&sa), sizeof sa);
}

endpoint endpoint::loopback_v6(std::uint16_t port) noexcept {
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(port);
  sa.sin6_addr = in6addr_loopback;
  return from_sockaddr(reinterpret_cast<sockaddr*>(&sa), sizeof sa);
}

endpoint endpoint::unix_path(std::string_view path) {
  endpoint ep;
  std::string error;
  if (!make_unix(path, ep, &error, path)) throw std::invalid_argument(error);
  return ep;
}

endpoint endpoint::from_sockaddr(const sockaddr* sa, socklen_t len) noexcept {
  endpoint ep;
  if (sa == nullptr || len <= 0 || static_cast<std::size_t>(len) > sizeof(ep.addr_)) return ep;
  std::memcpy(&ep.addr_, sa, static_cast<std::size_t>(len));
  ep.len_ = len;
  return ep;
}

std::uint16_t endpoint::port() const noexcept {
  switch (family()) {
    case AF_INET: return ntohs(reinterpret_cast<const sockaddr_in*>(&addr_)->sin_port);
    case AF_INET6: return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr_)->sin6_port);
    default: return 0;
  }
}

endpoint endpoint::with_port(std::uint16_t port) const noexcept {
  endpoint ep = *this;
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&ep.addr_)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&ep.addr_)->sin6_port = htons(port);
  return ep;
}

std::string endpoint::address() const {
  char buf[INET6_ADDRSTRLEN] = {};
  switch (family()) {
    case AF_INET:
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr_)->sin_addr, buf, sizeof buf);
      return buf;
    case AF_INET6: {
      const auto* sa = reinterpret_cast<const sockaddr_in6*>(&addr_);
      ::inet_ntop(AF_INET6, &sa->sin6_addr, buf, sizeof buf);
      std::string s = buf;
      s += zone_suffix(sa->sin6_scope_id);
      return s;
    }
    case AF_UNIX: {
      // The kernel's length says what is there: none (unnamed), a NUL-terminated path, or an
      // abstract name whose bytes (NULs included) all count.
      if (len_ <= kSunPathOffset) return {};
      const auto* sa = reinterpret_cast<const sockaddr_un*>(&addr_);
      const std::size_t n = len_ - kSunPathOffset;
      if (sa->sun_path[0] == '\0') {
        std::string s = "@";
        s.append(sa->sun_path + 1, n - 1);
        return s;
      }
      return std::string(sa->sun_path, strnlen(sa->sun_path, n));
    }
    default: return {};
  }
}

std::string endpoint::to_string() const {
  // Appends rather than `"[" + address() + ...`: GCC 12 warns (-Wrestrict, a false positive,
  // GCC bug 105651) on operator+(const char*, std::string&&) in release builds.
  std::string s;
  switch (family()) {
    case AF_INET:
      s = address();
      s += ':';
      s += std::to_string(port());
      return s;
    case AF_INET6:
      s = "[";
      s += address();
      s += "]:";
      s += std::to_string(port());
      return s;
    case AF_UNIX:
      // An unnamed socket (an unbound client, as accept() reports it) has no address at all.
      if (len_ <= kSunPathOffset) return "(unnamed unix)";
      s = "unix:";
      s += address();
      return s;
    default: return "(none)";
  }
}

bool operator==(const endpoint& a, const endpoint& b) noexcept {
  return a.len_ == b.len_ && std::memcmp(&a.addr_, &b.addr_, static_cast<std::size_t>(a.len_)) == 0;
}

}  // namespace fibers
