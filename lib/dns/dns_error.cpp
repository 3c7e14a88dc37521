// lib/dns/dns_error.cpp - the "dns" error category, and c-ares / getaddrinfo statuses mapped
// onto it.
#include "dns/dns_internal.hpp"

#include <ares.h>
#include <netdb.h>

namespace fibers {
namespace {

class dns_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "dns"; }
  std::string message(int code) const override {
    switch (static_cast<dns_errc>(code)) {
      case dns_errc::no_such_host: return "no such host";
      case dns_errc::no_data: return "no address of the requested family";
      case dns_errc::server_failure: return "DNS server failure";
      case dns_errc::refused: return "DNS query refused";
      case dns_errc::timeout: return "DNS server did not answer";
      case dns_errc::no_server: return "no DNS server reachable";
      case dns_errc::bad_name: return "invalid host name";
      case dns_errc::bad_service: return "unknown service";
      case dns_errc::bad_response: return "bad DNS response";
      case dns_errc::other: return "name resolution failed";
    }
    return "unknown dns error " + std::to_string(code);
  }
  // Code that only knows the generic conditions still sees a server timeout as a timeout and
  // an unreachable server as a refused connection; `ec == dns_errc::timeout` tells the
  // server's silence from the caller's own deadline (std::errc::timed_out itself).
  std::error_condition default_error_condition(int code) const noexcept override {
    switch (static_cast<dns_errc>(code)) {
      case dns_errc::timeout: return std::errc::timed_out;
      case dns_errc::no_server: return std::errc::connection_refused;
      default: return {code, *this};
    }
  }
};

}  // namespace

const std::error_category& dns_category() noexcept {
  static const dns_category_impl instance;
  return instance;
}

namespace detail::dns {

std::error_code from_ares_status(int status) noexcept {
  switch (status) {
    case ARES_SUCCESS: return {};
    case ARES_ENOTFOUND: return make_error_code(dns_errc::no_such_host);
    case ARES_ENODATA: return make_error_code(dns_errc::no_data);
    case ARES_ESERVFAIL: return make_error_code(dns_errc::server_failure);
    case ARES_EREFUSED: return make_error_code(dns_errc::refused);
    case ARES_ETIMEOUT: return make_error_code(dns_errc::timeout);
    case ARES_ECONNREFUSED: return make_error_code(dns_errc::no_server);
    case ARES_EBADNAME: return make_error_code(dns_errc::bad_name);
    case ARES_ESERVICE: return make_error_code(dns_errc::bad_service);
    case ARES_EFORMERR:
    case ARES_ENOTIMP:
    case ARES_EBADRESP:
    case ARES_EOF: return make_error_code(dns_errc::bad_response);
    case ARES_ENOMEM: return std::make_error_code(std::errc::not_enough_memory);
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION: return make_error_code(errc::canceled);
    default: return make_error_code(dns_errc::other);
  }
}

std::error_code from_gai_status(int status, int saved_errno) noexcept {
  switch (status) {
    case 0: return {};
    case EAI_NONAME: return make_error_code(dns_errc::no_such_host);
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
    case EAI_ADDRFAMILY: return make_error_code(dns_errc::no_data);
    // glibc says EAI_AGAIN both for a server that did not answer and for SERVFAIL.
    case EAI_AGAIN: return make_error_code(dns_errc::timeout);
    case EAI_FAIL: return make_error_code(dns_errc::server_failure);
    case EAI_SERVICE: return make_error_code(dns_errc::bad_service);
    case EAI_MEMORY: return std::make_error_code(std::errc::not_enough_memory);
    case EAI_SYSTEM: return {saved_errno, std::generic_category()};
    default: return make_error_code(dns_errc::other);
  }
}

}  // namespace detail::dns
}  // namespace fibers
