// lib/tls/error.cpp - the "tls" error category and OpenSSL error-queue reading.
#include <openssl/err.h>

#include <cstring>
#include <string>

#include "tls/tls_impl.hpp"

namespace fibers::tls {

namespace {
class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "tls"; }
  std::string message(int c) const override {
    switch (static_cast<errc>(c)) {
      case errc::handshake_failed: return "handshake failed";
      case errc::verify_failed: return "certificate verify failed";
      case errc::truncated: return "peer closed the connection without close_notify (truncated)";
      case errc::protocol_error: return "protocol error";
      case errc::write_failed: return "an earlier write failed midway; the stream cannot write";
      case errc::bad_configuration: return "bad configuration";
    }
    return "unknown tls error";
  }
};
}  // namespace

const std::error_category& error_category() noexcept {
  static const category c;
  return c;
}

namespace detail {

std::string drain_error_queue() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    // A failed fopen (missing file, no permission) is queued as library "system lib" with the
    // errno as its reason: say the errno's text ("No such file or directory").
    const char* r = ERR_GET_LIB(e) == ERR_LIB_SYS ? std::strerror(ERR_GET_REASON(e)) : ERR_reason_error_string(e);
    std::string reason = r != nullptr ? r : "error " + std::to_string(ERR_GET_REASON(e));
    if (out.find(reason) != std::string::npos) continue;
    if (!out.empty()) out += ": ";
    out += reason;
  }
  return out;
}

void throw_config_error(const std::string& what) {
  std::string reason = drain_error_queue();
  throw error(make_error_code(errc::bad_configuration),
              "tls context: " + what + (reason.empty() ? "" : ": " + reason));
}

}  // namespace detail
}  // namespace fibers::tls
