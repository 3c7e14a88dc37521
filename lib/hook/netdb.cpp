// lib/hook/netdb.cpp - the older resolver calls on a fiber: gethostbyname, gethostbyname2 and
// their _r forms go through fibers::dns (c-ares on the fiber's I/O thread: only the fiber
// parks); reverse lookups - getnameinfo without NI_NUMERICHOST, gethostbyaddr(_r) - run
// glibc's own call on the blocking pool (fibers::dns has no PTR lookup). Off a fiber, and for
// anything that needs no lookup (address literals, NI_NUMERICHOST, non-IP addresses), glibc.
//
// What glibc's callers see is kept: the _r forms return 0 with *result set, 0 with *result
// null and *h_errnop HOST_NOT_FOUND/NO_DATA/NO_RECOVERY, EAGAIN with TRY_AGAIN, ERANGE with
// NETDB_INTERNAL for a short buffer; errno equals the return value, as glibc leaves it.
// Differences: c-ares reads /etc/hosts and DNS only (not nsswitch.conf's other sources), h_name
// is the name asked for (no canonical name) and h_aliases is empty.
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "fibers/blocking.hpp"
#include "fibers/error.hpp"
#include "hook/hook_internal.hpp"

namespace fibers::hook::detail {
namespace {

using ghbn_fn = hostent* (*)(const char*);
using ghbn2_fn = hostent* (*)(const char*, int);
using ghbn_r_fn = int (*)(const char*, hostent*, char*, size_t, hostent**, int*);
using ghbn2_r_fn = int (*)(const char*, int, hostent*, char*, size_t, hostent**, int*);
using gni_fn = int (*)(const sockaddr*, socklen_t, char*, socklen_t, char*, socklen_t, int);
using ghba_fn = hostent* (*)(const void*, socklen_t, int);
using ghba_r_fn = int (*)(const void*, socklen_t, int, hostent*, char*, size_t, hostent**, int*);
real_fn<ghbn_fn> real_gethostbyname{"gethostbyname"};
real_fn<ghbn2_fn> real_gethostbyname2{"gethostbyname2"};
real_fn<ghbn_r_fn> real_gethostbyname_r{"gethostbyname_r"};
real_fn<ghbn2_r_fn> real_gethostbyname2_r{"gethostbyname2_r"};
real_fn<gni_fn> real_getnameinfo{"getnameinfo"};
real_fn<ghba_fn> real_gethostbyaddr{"gethostbyaddr"};
real_fn<ghba_r_fn> real_gethostbyaddr_r{"gethostbyaddr_r"};

/// A lookup the hook does itself: a fiber, a host name (glibc answers address literals and
/// names of digits and dots alone - inet_aton's forms - without a lookup), AF_INET or AF_INET6.
bool ours(const char* name, int af) noexcept {
  if (parking_fiber() == nullptr || name == nullptr || *name == '\0') return false;
  if (af != AF_INET && af != AF_INET6) return false;
  if (std::strchr(name, ':') != nullptr || is_address_literal(name)) return false;
  for (const char* p = name; *p != '\0'; ++p) {
    if (std::isdigit(static_cast<unsigned char>(*p)) == 0 && *p != '.') return true;
  }
  return false;
}

struct lookup_result {
  int herr = NETDB_SUCCESS;  // or HOST_NOT_FOUND, NO_DATA, NO_RECOVERY, TRY_AGAIN, NETDB_INTERNAL
  int err = 0;               // errno, with NETDB_INTERNAL
  bool use_glibc = false;    // the resolver refused the options (set_dns_options misuse)
  std::vector<fibers::endpoint> eps;
};

lookup_result lookup(const char* name, int af) noexcept {
  lookup_result r;
  std::error_code ec;
  try {
    r.eps = fibers::dns::resolve(name, "0", ec,
                                 dns_options(af == AF_INET6 ? fibers::dns::family::ipv6 : fibers::dns::family::ipv4));
  } catch (const std::bad_alloc&) {
    r.herr = NETDB_INTERNAL;
    r.err = ENOMEM;
    return r;
  } catch (...) {
    r.use_glibc = true;
    return r;
  }
  count_park(call::gethostbyname);
  if (!ec) {
    if (r.eps.empty()) r.herr = NO_DATA;
    return r;
  }
  if (ec == fibers::dns_errc::no_such_host || ec == fibers::dns_errc::bad_name) {
    r.herr = HOST_NOT_FOUND;
  } else if (ec == fibers::dns_errc::no_data) {
    r.herr = NO_DATA;
  } else if (ec == fibers::dns_errc::refused || ec == fibers::dns_errc::bad_response) {
    r.herr = NO_RECOVERY;  // what glibc's resolver says for REFUSED, FORMERR, NOTIMP
  } else if (ec == fibers::errc::canceled) {
    r.herr = NETDB_INTERNAL;
    r.err = ECANCELED;
  } else if (ec == std::errc::timed_out && ec.category() != fibers::dns_category()) {
    r.herr = NETDB_INTERNAL;
    r.err = ETIMEDOUT;  // the fiber's inherited deadline
  } else {
    r.herr = TRY_AGAIN;  // server failure, every server silent or unreachable
  }
  return r;
}

/// Lays out `h` in `buf` as glibc does: the alias list (empty), the address list, the
/// addresses, the name. False if `buf` is too small.
bool fill(hostent* h, char* buf, std::size_t len, const char* name, int af,
          const std::vector<fibers::endpoint>& eps) noexcept {
  const std::size_t alen = af == AF_INET ? sizeof(in_addr) : sizeof(in6_addr);
  std::size_t n = 0;
  for (const auto& ep : eps) n += ep.family() == af ? 1 : 0;
  const std::size_t pad = (alignof(char*) - reinterpret_cast<std::uintptr_t>(buf) % alignof(char*)) % alignof(char*);
  const std::size_t name_len = std::strlen(name) + 1;
  if (buf == nullptr || len < pad + (n + 2) * sizeof(char*) + n * alen + name_len) return false;
  auto** ptrs = reinterpret_cast<char**>(buf + pad);
  char* addrs = reinterpret_cast<char*>(ptrs + n + 2);
  ptrs[0] = nullptr;  // h_aliases
  char** list = ptrs + 1;
  std::size_t i = 0;
  for (const auto& ep : eps) {
    if (ep.family() != af) continue;
    const void* a = af == AF_INET ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(ep.data())->sin_addr)
                                  : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(ep.data())->sin6_addr);
    std::memcpy(addrs + i * alen, a, alen);
    list[i] = addrs + i * alen;
    ++i;
  }
  list[n] = nullptr;
  char* nm = addrs + n * alen;
  std::memcpy(nm, name, name_len);
  h->h_name = nm;
  h->h_aliases = ptrs;
  h->h_addrtype = af;
  h->h_length = static_cast<int>(alen);
  h->h_addr_list = list;
  return true;
}

/// gethostbyname2_r on a fiber (precondition: ours(name, af)). `fallback` is set when glibc
/// must answer instead.
int host_r(const char* name, int af, hostent* ret, char* buf, std::size_t buflen, hostent** result,
           int* h_errnop, bool& fallback) noexcept {
  *result = nullptr;
  const lookup_result l = lookup(name, af);
  if (l.use_glibc) {
    fallback = true;
    return 0;
  }
  int rc = 0;
  if (l.herr == NETDB_INTERNAL) {
    rc = l.err;
  } else if (l.herr == TRY_AGAIN) {
    rc = EAGAIN;
  } else if (l.herr == NETDB_SUCCESS) {
    if (fill(ret, buf, buflen, name, af, l.eps)) {
      *result = ret;
    } else {
      *h_errnop = NETDB_INTERNAL;
      errno = ERANGE;
      return ERANGE;
    }
  }
  *h_errnop = l.herr;
  errno = rc;  // glibc leaves errno equal to the return value, 0 included
  return rc;
}

/// gethostbyname(2)'s result: one per thread, as glibc's is one per process. Filled only after
/// the lookup, when the fiber has resumed, so it stays the caller's until the caller's next
/// park: no other fiber of the thread runs in between.
struct host_store {
  hostent h{};
  std::vector<char> buf;
  /// Grows buf to at least `size` bytes; on out of memory sets h_errno and errno as glibc's
  /// non-reentrant calls do (NETDB_INTERNAL, ENOMEM) and returns false.
  bool reserve(std::size_t size) noexcept {
    try {
      if (buf.size() < size) buf.resize(size);
      return true;
    } catch (const std::bad_alloc&) {
      h_errno = NETDB_INTERNAL;
      errno = ENOMEM;
      return false;
    }
  }
};

hostent* host(const char* name, int af, bool& fallback) noexcept {
  static thread_local host_store store;
  const lookup_result l = lookup(name, af);
  if (l.use_glibc) {
    fallback = true;
    return nullptr;
  }
  if (l.herr != NETDB_SUCCESS) {
    h_errno = l.herr;
    errno = l.herr == NETDB_INTERNAL ? l.err : l.herr == TRY_AGAIN ? EAGAIN : 0;
    return nullptr;
  }
  const std::size_t need = std::strlen(name) + 1 + (l.eps.size() + 3) * (sizeof(char*) + sizeof(in6_addr));
  if (!store.reserve(need)) return nullptr;
  if (!fill(&store.h, store.buf.data(), store.buf.size(), name, af, l.eps)) {
    h_errno = NETDB_INTERNAL;  // cannot happen: `need` covers the layout
    errno = ERANGE;
    return nullptr;
  }
  errno = 0;  // as glibc leaves it
  return &store.h;
}

/// getnameinfo that looks a name up (PTR, or the hosts file): on a fiber, not NI_NUMERICHOST,
/// an IPv4/IPv6 address, a host buffer.
bool reverse_lookup(const sockaddr* sa, socklen_t salen, const char* host, socklen_t hostlen, int flags) noexcept {
  return parking_fiber() != nullptr && sa != nullptr && host != nullptr && hostlen > 0 &&
         (flags & NI_NUMERICHOST) == 0 && salen <= static_cast<socklen_t>(sizeof(sockaddr_storage)) &&
         ((sa->sa_family == AF_INET && salen >= static_cast<socklen_t>(sizeof(sockaddr_in))) ||
          (sa->sa_family == AF_INET6 && salen >= static_cast<socklen_t>(sizeof(sockaddr_in6))));
}

/// How a call handed to the blocking pool ended, seen from the calling fiber.
enum class pool_result { ran, canceled, timed_out, queue_full, no_memory };

/// Runs `fn` (noexcept) on the default blocking pool; only the calling fiber waits.
template <class F>
pool_result run_on_pool(F&& fn) noexcept {
  try {
    fibers::blocking(std::forward<F>(fn));
    return pool_result::ran;
  } catch (const fibers::canceled&) {
    return pool_result::canceled;
  } catch (const std::system_error& e) {
    return e.code() == std::errc::timed_out ? pool_result::timed_out : pool_result::queue_full;
  } catch (const std::bad_alloc&) {
    return pool_result::no_memory;
  }
}

/// gethostbyaddr(_r) that looks a name up: on a fiber, an IPv4/IPv6 address of the right size.
bool reverse_addr(const void* addr, socklen_t len, int type) noexcept {
  return parking_fiber() != nullptr && addr != nullptr &&
         ((type == AF_INET && len == sizeof(in_addr)) || (type == AF_INET6 && len == sizeof(in6_addr)));
}

/// One gethostbyaddr_r on the blocking pool, into the job's own buffer - laid out at the same
/// address modulo 16 as the caller's, so glibc's alignment holds after the copy.
struct gha_job {
  unsigned char addr[sizeof(in6_addr)]{};
  socklen_t len = 0;
  int type = 0;
  std::unique_ptr<char[]> mem;
  char* buf = nullptr;
  std::size_t buflen = 0;
  hostent h{};
  hostent* res = nullptr;
  int herr = 0;
  int rc = 0;
  int err = 0;
};

/// `p` moved from the job's buffer [from, from + len) to `to`, if it points into it.
template <class T>
T* moved(T* p, const char* from, std::size_t len, char* to) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(p), f = reinterpret_cast<std::uintptr_t>(from);
  if (a < f || a >= f + len) return p;
  return reinterpret_cast<T*>(to + (a - f));
}

/// Moves every entry of the NULL-terminated pointer list at `list` (in the caller's buffer) as
/// moved() does. The list is as aligned as glibc left it, which for an oddly placed buffer is
/// not pointer-aligned: each entry is read and written with memcpy.
void move_list(char** list, const char* from, std::size_t len, char* to) noexcept {
  if (list == nullptr) return;
  for (char** a = list;; ++a) {
    char* p = nullptr;
    std::memcpy(&p, a, sizeof p);
    if (p == nullptr) return;
    p = moved(p, from, len, to);
    std::memcpy(a, &p, sizeof p);
  }
}

/// gethostbyaddr_r on a fiber (precondition: reverse_addr).
int addr_r(const void* addr, socklen_t len, int type, hostent* ret, char* buf, std::size_t buflen, hostent** result,
           int* h_errnop) noexcept {
  *result = nullptr;
  std::shared_ptr<gha_job> job;
  try {
    job = std::make_shared<gha_job>();
    job->mem.reset(new char[buflen + 16]);
  } catch (const std::bad_alloc&) {
    *h_errnop = NETDB_INTERNAL;
    errno = ENOMEM;
    return ENOMEM;
  }
  std::memcpy(job->addr, addr, len);
  job->len = len;
  job->type = type;
  job->buf = job->mem.get() + ((reinterpret_cast<std::uintptr_t>(buf) - reinterpret_cast<std::uintptr_t>(job->mem.get())) & 15);
  job->buflen = buflen;
  count_park(call::getnameinfo);
  const pool_result pr = run_on_pool([job] {
    job->rc = real_gethostbyaddr_r.get()(job->addr, job->len, job->type, &job->h, job->buf, job->buflen, &job->res,
                                         &job->herr);
    job->err = errno;
    return 0;
  });
  int rc = 0;
  switch (pr) {
    case pool_result::ran: break;
    case pool_result::canceled: rc = ECANCELED; break;
    case pool_result::timed_out: rc = ETIMEDOUT; break;  // the fiber's inherited deadline
    case pool_result::no_memory: rc = ENOMEM; break;
    case pool_result::queue_full:
      *h_errnop = TRY_AGAIN;
      errno = EAGAIN;
      return EAGAIN;
  }
  if (rc != 0) {
    *h_errnop = NETDB_INTERNAL;
    errno = rc;
    return rc;
  }
  *h_errnop = job->herr;
  if (job->res != nullptr) {
    // Every pointer glibc set points into its buffer: copy the buffer, then move them.
    std::memcpy(buf, job->buf, buflen);
    const char* from = job->buf;
    ret->h_addrtype = job->h.h_addrtype;
    ret->h_length = job->h.h_length;
    ret->h_name = moved(job->h.h_name, from, buflen, buf);
    ret->h_aliases = moved(job->h.h_aliases, from, buflen, buf);
    ret->h_addr_list = moved(job->h.h_addr_list, from, buflen, buf);
    move_list(ret->h_aliases, from, buflen, buf);
    move_list(ret->h_addr_list, from, buflen, buf);
    *result = ret;
  }
  errno = job->err;
  return job->rc;
}

/// One getnameinfo on the blocking pool. The pool thread writes only into this (shared) job:
/// a canceled caller returns at once and its buffers may be gone when glibc finishes.
struct gni_job {
  sockaddr_storage sa{};
  socklen_t salen = 0;
  int flags = 0;
  std::vector<char> host, serv;
  int rc = 0;
  int err = 0;
};

}  // namespace
}  // namespace fibers::hook::detail

using namespace fibers::hook::detail;

extern "C" {

int gethostbyname2_r(const char* name, int af, hostent* ret, char* buf, size_t buflen, hostent** result,
                     int* h_errnop) {
  if (!ours(name, af)) return real_gethostbyname2_r.get()(name, af, ret, buf, buflen, result, h_errnop);
  bool fallback = false;
  const int rc = host_r(name, af, ret, buf, buflen, result, h_errnop, fallback);
  if (fallback) return real_gethostbyname2_r.get()(name, af, ret, buf, buflen, result, h_errnop);
  return rc;
}

int gethostbyname_r(const char* name, hostent* ret, char* buf, size_t buflen, hostent** result, int* h_errnop) {
  if (!ours(name, AF_INET)) return real_gethostbyname_r.get()(name, ret, buf, buflen, result, h_errnop);
  bool fallback = false;
  const int rc = host_r(name, AF_INET, ret, buf, buflen, result, h_errnop, fallback);
  if (fallback) return real_gethostbyname_r.get()(name, ret, buf, buflen, result, h_errnop);
  return rc;
}

hostent* gethostbyname2(const char* name, int af) {
  if (!ours(name, af)) return real_gethostbyname2.get()(name, af);
  bool fallback = false;
  hostent* h = host(name, af, fallback);
  return fallback ? real_gethostbyname2.get()(name, af) : h;
}

hostent* gethostbyname(const char* name) {
  if (!ours(name, AF_INET)) return real_gethostbyname.get()(name);
  bool fallback = false;
  hostent* h = host(name, AF_INET, fallback);
  return fallback ? real_gethostbyname.get()(name) : h;
}

int getnameinfo(const sockaddr* sa, socklen_t salen, char* host, socklen_t hostlen, char* serv, socklen_t servlen,
                int flags) {
  if (!reverse_lookup(sa, salen, host, hostlen, flags)) {
    return real_getnameinfo.get()(sa, salen, host, hostlen, serv, servlen, flags);
  }
  std::shared_ptr<gni_job> job;
  try {
    job = std::make_shared<gni_job>();
    std::memcpy(&job->sa, sa, static_cast<std::size_t>(salen));
    job->salen = salen;
    job->flags = flags;
    job->host.resize(hostlen);
    if (serv != nullptr && servlen > 0) job->serv.resize(servlen);
  } catch (const std::bad_alloc&) {
    return EAI_MEMORY;
  }
  count_park(fibers::hook::call::getnameinfo);
  switch (run_on_pool([job] {
    job->rc = real_getnameinfo.get()(reinterpret_cast<const sockaddr*>(&job->sa), job->salen, job->host.data(),
                                     static_cast<socklen_t>(job->host.size()),
                                     job->serv.empty() ? nullptr : job->serv.data(),
                                     static_cast<socklen_t>(job->serv.size()), job->flags);
    job->err = errno;
    return 0;
  })) {
    case pool_result::ran: break;
    case pool_result::canceled: errno = ECANCELED; return EAI_SYSTEM;
    case pool_result::timed_out: errno = ETIMEDOUT; return EAI_SYSTEM;  // the fiber's inherited deadline
    case pool_result::queue_full: return EAI_AGAIN;
    case pool_result::no_memory: return EAI_MEMORY;
  }
  if (job->rc == 0) {
    std::memcpy(host, job->host.data(), job->host.size());
    if (!job->serv.empty()) std::memcpy(serv, job->serv.data(), job->serv.size());
  }
  errno = job->err;  // what glibc left (0 after a success, the cause with EAI_SYSTEM)
  return job->rc;
}

int gethostbyaddr_r(const void* addr, socklen_t len, int type, hostent* ret, char* buf, size_t buflen, hostent** result,
                    int* h_errnop) {
  if (!reverse_addr(addr, len, type) || ret == nullptr || buf == nullptr || result == nullptr || h_errnop == nullptr) {
    return real_gethostbyaddr_r.get()(addr, len, type, ret, buf, buflen, result, h_errnop);
  }
  return addr_r(addr, len, type, ret, buf, buflen, result, h_errnop);
}

hostent* gethostbyaddr(const void* addr, socklen_t len, int type) {
  if (!reverse_addr(addr, len, type)) return real_gethostbyaddr.get()(addr, len, type);
  static thread_local host_store store;  // as gethostbyname's: filled after the fiber resumed
  std::size_t size = std::max<std::size_t>(store.buf.size(), 1024);
  for (;;) {
    if (!store.reserve(size)) return nullptr;
    hostent* res = nullptr;
    int herr = 0;
    const int rc = addr_r(addr, len, type, &store.h, store.buf.data(), store.buf.size(), &res, &herr);
    if (rc == ERANGE && size < (std::size_t{1} << 20)) {
      size *= 2;  // as glibc's own gethostbyaddr grows its buffer
      continue;
    }
    h_errno = herr;
    return res;
  }
}

}  // extern "C"
