// tools/common/certificates.cpp - certificate names (OpenSSL's X509 API on the
// context's own certificate) and the SNI choice.
#include "certificates.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <system_error>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace fibers_tools {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// The DNS names of the certificate loaded into `ctx`: subjectAltName, else the CN.
std::vector<std::string> dns_names(const fibers::tls::context& ctx) {
  std::vector<std::string> out;
  X509* cert = SSL_CTX_get0_certificate(ctx.native_handle());
  if (cert == nullptr) return out;
  auto* alt = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (alt != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(alt); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(alt, i);
      if (n->type != GEN_DNS) continue;
      const ASN1_STRING* s = n->d.dNSName;
      out.push_back(lower(std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                           static_cast<std::size_t>(ASN1_STRING_length(s)))));
    }
    GENERAL_NAMES_free(alt);
  }
  if (out.empty()) {
    char cn[256];
    int len = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    if (len > 0) out.push_back(lower(std::string_view(cn, static_cast<std::size_t>(len))));
  }
  return out;
}

}  // namespace

void require_readable(const std::string& flag, const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw std::system_error(errno, std::generic_category(), flag + " " + path);
  std::fclose(f);
}

certificate_set::certificate_set(const std::vector<std::string>& certs,
                                 const std::vector<std::string>& keys) {
  if (certs.size() != keys.size() || certs.empty()) {
    throw std::invalid_argument("--tls-cert and --tls-key: give them in pairs");
  }
  for (std::size_t i = 0; i < certs.size(); ++i) {
    // OpenSSL's own reason for a missing file is "system lib": say which file and why.
    require_readable("--tls-cert", certs[i]);
    require_readable("--tls-key", keys[i]);
    fibers::tls::server_options o;
    o.cert_file = certs[i];
    o.key_file = keys[i];
    contexts_.push_back(std::make_unique<fibers::tls::context>(fibers::tls::context::server(o)));
    names_.push_back(dns_names(*contexts_.back()));
    for (const auto& n : names_.back()) by_name_.emplace(n, contexts_.back().get());  // first wins
  }
  if (contexts_.size() > 1) {
    contexts_.front()->set_sni_callback([this](std::string_view name) { return pick(name); });
  }
}

const fibers::tls::context* certificate_set::pick(std::string_view server_name) const {
  std::string name = lower(server_name);
  if (auto it = by_name_.find(name); it != by_name_.end()) return it->second;
  if (auto dot = name.find('.'); dot != std::string::npos) {
    if (auto it = by_name_.find("*" + name.substr(dot)); it != by_name_.end()) return it->second;
  }
  return nullptr;  // the default certificate
}

}  // namespace fibers_tools
