// lib/tls/stream_info.cpp - what a tls::stream tells about its session: the negotiated
// protocol, version and cipher, the peer's certificate names, resumption, SNI.
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>

#include <mutex>
#include <string>
#include <vector>

#include "tls/stream_impl.hpp"

namespace fibers::tls {

std::string stream::alpn() const {
  if (!impl_) return {};
  std::lock_guard lk(impl_->mu);
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(impl_->ssl, &p, &len);
  return p != nullptr ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

std::string stream::version() const {
  if (!impl_ || !impl_->handshaken.load(std::memory_order_acquire)) return {};
  std::lock_guard lk(impl_->mu);
  return SSL_get_version(impl_->ssl);
}

std::string stream::cipher() const {
  if (!impl_ || !impl_->handshaken.load(std::memory_order_acquire)) return {};
  std::lock_guard lk(impl_->mu);
  const char* c = SSL_get_cipher_name(impl_->ssl);
  return c != nullptr ? c : "";
}

std::string stream::peer_subject() const {
  if (!impl_) return {};
  std::lock_guard lk(impl_->mu);
  X509* cert = SSL_get0_peer_certificate(impl_->ssl);
  if (cert == nullptr) return {};
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  return buf;
}

std::vector<std::string> stream::peer_alt_names() const {
  std::vector<std::string> names;
  if (!impl_) return names;
  std::lock_guard lk(impl_->mu);
  X509* cert = SSL_get0_peer_certificate(impl_->ssl);
  if (cert == nullptr) return names;
  auto* gens = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (gens == nullptr) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(gens); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens, i);
    if (g->type == GEN_DNS) {
      const ASN1_IA5STRING* s = g->d.dNSName;
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<std::size_t>(ASN1_STRING_length(s)));
    } else if (g->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* s = g->d.iPAddress;
      char text[INET6_ADDRSTRLEN] = {};
      const int len = ASN1_STRING_length(s);
      if (len == 4 || len == 16) {
        ::inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s), text, sizeof text);
        names.emplace_back(text);
      }
    }
  }
  GENERAL_NAMES_free(gens);
  return names;
}

bool stream::session_reused() const {
  if (!impl_) return false;
  std::lock_guard lk(impl_->mu);
  return SSL_session_reused(impl_->ssl) == 1;
}

std::string stream::server_name() const {
  if (!impl_) return {};
  std::lock_guard lk(impl_->mu);
  const char* n = SSL_get_servername(impl_->ssl, TLSEXT_NAMETYPE_host_name);
  return n != nullptr ? n : "";
}

std::string stream::last_error_detail() const {
  if (!impl_) return {};
  std::lock_guard lk(impl_->mu);
  return impl_->detail;
}

SSL* stream::native_handle() const noexcept { return impl_ ? impl_->ssl : nullptr; }


}  // namespace fibers::tls
