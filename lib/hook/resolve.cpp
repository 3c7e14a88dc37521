// lib/hook/resolve.cpp - getaddrinfo on a fiber through fibers::dns (c-ares on the fiber's
// I/O thread: only the fiber parks).
//
// Only the plain lookups go that way: a host name (not an address literal), family
// AF_UNSPEC/AF_INET/AF_INET6, no AI_CANONNAME, AI_NUMERICHOST, AI_NUMERICSERV, or AI_V4MAPPED
// with AF_INET6. Everything else, and every call off a fiber, is glibc's (which blocks the
// thread: address literals and numeric services do not wait). The list is built the way glibc
// builds its own - one malloc per entry with its sockaddr inside, no canonical name - so
// glibc's freeaddrinfo frees it. Differences from glibc: c-ares reads /etc/hosts and DNS only
// (not nsswitch.conf's other sources), and AI_ADDRCONFIG is not applied.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>

#include "fibers/dns.hpp"
#include "fibers/error.hpp"
#include "hook/hook_internal.hpp"

namespace fibers::hook::detail {

bool is_address_literal(const char* node) noexcept {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, node, buf) == 1 || ::inet_pton(AF_INET6, node, buf) == 1 ||
         std::strchr(node, '%') != nullptr;  // a scoped IPv6 literal
}

namespace {

// set_dns_options: read by every lookup (a copy under the lock), written rarely.
std::mutex options_mu;
constinit fibers::dns::options* user_options = nullptr;  // nullptr: the defaults

}  // namespace

fibers::dns::options dns_options(fibers::dns::family families) {
  fibers::dns::options o;
  {
    std::lock_guard lk(options_mu);
    if (user_options != nullptr) o = *user_options;
  }
  o.families = families;
  o.backend = fibers::dns::backend::cares;
  return o;
}

namespace {

using gai_fn = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
real_fn<gai_fn> real_getaddrinfo{"getaddrinfo"};

int map_error(const std::error_code& ec) noexcept {
  if (ec == fibers::dns_errc::no_such_host || ec == fibers::dns_errc::no_data ||
      ec == fibers::dns_errc::bad_name) {
    return EAI_NONAME;
  }
  if (ec == fibers::dns_errc::bad_service) return EAI_SERVICE;
  if (ec == fibers::errc::canceled) {
    errno = ECANCELED;
    return EAI_SYSTEM;
  }
  if (ec == std::errc::timed_out && ec.category() != fibers::dns_category()) {
    errno = ETIMEDOUT;  // the fiber's inherited deadline
    return EAI_SYSTEM;
  }
  return EAI_AGAIN;  // server failure, timeout, refused, no server
}

struct ai_block {
  addrinfo ai;
  sockaddr_storage addr;
};

}  // namespace
}  // namespace fibers::hook::detail

using namespace fibers::hook::detail;

extern "C" int getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  const int flags = hints != nullptr ? hints->ai_flags : (AI_V4MAPPED | AI_ADDRCONFIG);
  const int family = hints != nullptr ? hints->ai_family : AF_UNSPEC;
  const int socktype = hints != nullptr ? hints->ai_socktype : 0;
  const int protocol = hints != nullptr ? hints->ai_protocol : 0;
  if (parking_fiber() == nullptr || node == nullptr || res == nullptr ||
      (flags & (AI_CANONNAME | AI_NUMERICHOST | AI_NUMERICSERV)) != 0 ||
      (family == AF_INET6 && (flags & AI_V4MAPPED) != 0) ||
      (family != AF_UNSPEC && family != AF_INET && family != AF_INET6) ||
      (socktype != 0 && socktype != SOCK_STREAM && socktype != SOCK_DGRAM) || is_address_literal(node)) {
    return real_getaddrinfo.get()(node, service, hints, res);
  }
  const int saved = errno;
  std::vector<fibers::endpoint> eps;
  std::error_code ec;
  try {
    const auto opts = dns_options(family == AF_INET    ? fibers::dns::family::ipv4
                                  : family == AF_INET6 ? fibers::dns::family::ipv6
                                                       : fibers::dns::family::any);
    eps = fibers::dns::resolve(node, service != nullptr ? service : "0", ec, opts);
  } catch (const std::bad_alloc&) {
    return EAI_MEMORY;
  } catch (...) {
    return real_getaddrinfo.get()(node, service, hints, res);  // misuse of the resolver: glibc
  }
  count_park(fibers::hook::call::getaddrinfo);
  if (ec) return map_error(ec);
  if (eps.empty()) return EAI_NONAME;
  const int types[2] = {SOCK_STREAM, SOCK_DGRAM};
  addrinfo* head = nullptr;
  addrinfo** tail = &head;
  for (const auto& ep : eps) {
    for (int t : types) {
      if (socktype != 0 && socktype != t) continue;
      auto* b = static_cast<ai_block*>(std::calloc(1, sizeof(ai_block)));
      if (b == nullptr) {
        ::freeaddrinfo(head);
        return EAI_MEMORY;
      }
      std::memcpy(&b->addr, ep.data(), ep.size());
      b->ai.ai_family = ep.data()->sa_family;
      b->ai.ai_socktype = t;
      b->ai.ai_protocol = protocol != 0 ? protocol : (t == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP);
      b->ai.ai_addrlen = ep.size();
      b->ai.ai_addr = reinterpret_cast<sockaddr*>(&b->addr);
      *tail = &b->ai;
      tail = &b->ai.ai_next;
    }
  }
  *res = head;
  errno = saved;
  return 0;
}

namespace fibers::hook {

void set_dns_options(const fibers::dns::options& opts) {
  auto fresh = std::make_unique<fibers::dns::options>(opts);
  std::lock_guard lk(detail::options_mu);
  delete detail::user_options;  // lookups copy it under the lock: nobody holds a reference
  detail::user_options = fresh.release();
}

}  // namespace fibers::hook
