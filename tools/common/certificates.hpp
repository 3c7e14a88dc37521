// tools/common/certificates.hpp - TLS termination with one or several certificates (fibers-proxy,
// fibers-echo serve): one server context per --tls-cert/--tls-key pair, chosen by the name the
// client asks for (SNI).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <fibers/tls.hpp>

namespace fibers_tools {

/// Throws std::system_error "FLAG PATH: No such file or directory" when `path` cannot be
/// opened for reading (OpenSSL's message for that case names no reason).
void require_readable(const std::string& flag, const std::string& path);

/// The server contexts. The first pair is the default (no SNI, or a name no certificate
/// carries); every other certificate serves the DNS names of its subjectAltName (or its
/// CN when it has none), "*.example.org" wildcards included.
class certificate_set {
 public:
  /// Loads each (cert, key) pair; throws std::system_error (require_readable) or tls::error
  /// naming the file on failure.
  certificate_set(const std::vector<std::string>& certs, const std::vector<std::string>& keys);
  /// The context to accept with: its SNI callback picks among the others.
  const fibers::tls::context& context() const { return *contexts_.front(); }
  /// The DNS names each certificate serves, in --tls-cert order (for the start-up line).
  const std::vector<std::vector<std::string>>& names() const { return names_; }

 private:
  const fibers::tls::context* pick(std::string_view server_name) const;

  // unique_ptr: the SNI callback returns pointers that must stay put.
  std::vector<std::unique_ptr<fibers::tls::context>> contexts_;
  std::vector<std::vector<std::string>> names_;
  std::unordered_map<std::string, const fibers::tls::context*> by_name_;  // lower case
};

}  // namespace fibers_tools
