// lib/tls/tls_impl.hpp - what context.cpp, stream.cpp and error.cpp share.
#pragma once

#include <openssl/ssl.h>

#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fibers/tls.hpp"

namespace fibers::tls {

struct context::impl {
  SSL_CTX* ctx = nullptr;
  bool client = false;
  bool verify = true;
  std::function<std::string()> key_password;
  std::vector<unsigned char> alpn_wire;  // length-prefixed protocol names
  std::function<const context*(std::string_view)> sni;
  // Client sessions to resume, by "name:port" (the new-session callback fills it).
  bool session_cache = false;
  std::mutex sessions_mu;
  std::unordered_map<std::string, SSL_SESSION*> sessions;

  impl() = default;
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;
  ~impl();
  /// Takes a reference on the session cached for `key`, or nullptr.
  SSL_SESSION* take_session(const std::string& key);
  /// Forgets the session cached for `key` (its connection failed).
  void drop_session(const std::string& key);
};

namespace detail {
/// Reads OpenSSL's error queue (first error first) into "reason: reason ..." and clears it.
std::string drain_error_queue();
/// Throws tls::error(errc::configuration-like) for a failed context setting.
[[noreturn]] void throw_config_error(const std::string& what);
/// ALPN list in wire format; std::invalid_argument for an empty or over-long name.
std::vector<unsigned char> alpn_wire(const std::vector<std::string>& protocols);
}  // namespace detail

}  // namespace fibers::tls
