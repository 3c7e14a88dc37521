// fibers/endpoint.hpp - socket addresses: IPv4, IPv6 (with zone ids) and Unix-domain paths or
// abstract names.
#pragma once

#include "fibers/detail/config.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include <sys/socket.h>

namespace fibers {

/// A socket address: "127.0.0.1:80", "[::1]:8080", "[fe80::1%eth0]:80", a Unix-domain socket
/// path "unix:/run/x.sock", or a Linux abstract Unix name "unix:@name" (no file is created).
///
///     auto ep = fibers::endpoint::parse("[::1]:8080");
///     ep.port();        // 8080
///     ep.to_string();   // "[::1]:8080"
class endpoint {
 public:
  /// An empty endpoint (family AF_UNSPEC); to_string() gives "(none)".
  endpoint() noexcept;
  /// Parses "A.B.C.D:port", "[v6]:port", "[v6%zone]:port", "unix:/path" or "unix:@name" (see
  /// ip() for zones, unix_path() for Unix names). Only numeric addresses: names go through DNS.
  /// Throws std::invalid_argument naming the input and what is wrong with it.
  static endpoint parse(std::string_view text);
  /// Non-throwing parse: returns false (and sets `error` to a description) on bad input.
  static bool try_parse(std::string_view text, endpoint& out, std::string* error = nullptr);
  /// An IP endpoint from a numeric address without port ("::1", "10.0.0.1") and a port. An IPv6
  /// address may carry a zone id (sin6_scope_id): "fe80::1%eth0" (an interface name, looked up
  /// now with if_nametoindex) or "fe80::1%2" (an index, taken as is). Throws
  /// std::invalid_argument naming the input, e.g. for an unknown interface.
  static endpoint ip(std::string_view address, std::uint16_t port);
  /// 127.0.0.1:port.
  static endpoint loopback_v4(std::uint16_t port) noexcept;
  /// The IPv6 loopback address (`::1`) with `port`.
  static endpoint loopback_v6(std::uint16_t port) noexcept;
  /// A Unix-domain socket address. "@name" is a Linux abstract name: sun_path[0] == '\0', then
  /// the name's bytes, with no trailing NUL (size() ends at the name); binding it creates no
  /// file, and it disappears with the last socket. Anything else is a file path (a relative
  /// file named "@x" is "./@x"). Paths and names are 1-107 bytes; throws std::invalid_argument
  /// naming the input otherwise.
  static endpoint unix_path(std::string_view path);
  /// Builds an endpoint from a kernel sockaddr (as filled by accept/recvfrom/getsockname),
  /// keeping `len` bytes: for AF_UNIX the length tells a path, an abstract name and an unnamed
  /// socket (len == sizeof(sa_family_t)) apart.
  static endpoint from_sockaddr(const sockaddr* sa, socklen_t len) noexcept;

  /// AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC.
  int family() const noexcept { return addr_.ss_family; }
  /// Port in host byte order (0 for Unix addresses).
  std::uint16_t port() const noexcept;
  /// A copy with another port (IP endpoints only).
  endpoint with_port(std::uint16_t port) const noexcept;
  /// The address without the port ("::1", "fe80::1%lo", "10.0.0.1"), the Unix path, or "@name"
  /// for an abstract Unix name ("" for an unnamed Unix socket). A zone is shown as its
  /// interface's name, or as the index when no interface has it.
  std::string address() const;
  /// "10.0.0.1:80", "[::1]:80", "[fe80::1%lo]:80", "unix:/run/x.sock", "unix:@name" - the form
  /// parse() accepts (abstract names are written byte for byte, not escaped). Not parseable:
  /// "(none)" for an empty endpoint, "(unnamed unix)" for an unbound Unix socket.
  std::string to_string() const;

  /// The raw address for system calls.
  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&addr_); }
  /// Length of the raw address.
  socklen_t size() const noexcept { return len_; }

  /// Same length and same bytes: family, address, port, IPv6 zone, Unix path or name.
  friend bool operator==(const endpoint& a, const endpoint& b) noexcept;

 private:
  sockaddr_storage addr_{};
  socklen_t len_ = 0;
};

}  // namespace fibers
