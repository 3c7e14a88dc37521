// lib/tls/context.cpp - tls::context: an SSL_CTX set up from client_options / server_options.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "tls/tls_impl.hpp"

namespace fibers::tls {

using detail::throw_config_error;

context::impl::~impl() {
  for (auto& [key, s] : sessions) SSL_SESSION_free(s);
  SSL_CTX_free(ctx);
}

void context::impl::drop_session(const std::string& key) {
  std::lock_guard lk(sessions_mu);
  auto it = sessions.find(key);
  if (it == sessions.end()) return;
  SSL_SESSION_free(it->second);
  sessions.erase(it);
}

SSL_SESSION* context::impl::take_session(const std::string& key) {
  std::lock_guard lk(sessions_mu);
  auto it = sessions.find(key);
  if (it == sessions.end()) return nullptr;
  SSL_SESSION_up_ref(it->second);
  return it->second;
}

namespace detail {
std::vector<unsigned char> alpn_wire(const std::vector<std::string>& protocols) {
  std::vector<unsigned char> wire;
  for (const std::string& p : protocols) {
    if (p.empty() || p.size() > 255) {
      throw std::invalid_argument("tls context: ALPN protocol names must be 1..255 bytes (got \"" +
                                  p + "\")");
    }
    wire.push_back(static_cast<unsigned char>(p.size()));
    wire.insert(wire.end(), p.begin(), p.end());
  }
  return wire;
}
}  // namespace detail

namespace {

int proto_version(version v) {
  switch (v) {
    case version::tls1_0: return TLS1_VERSION;
    case version::tls1_1: return TLS1_1_VERSION;
    case version::tls1_2: return TLS1_2_VERSION;
    case version::tls1_3: return TLS1_3_VERSION;
  }
  return TLS1_2_VERSION;
}

int password_cb(char* buf, int size, int /*rwflag*/, void* u) {
  auto* ci = static_cast<context::impl*>(u);
  if (!ci->key_password) return -1;
  std::string pw;
  try {
    pw = ci->key_password();
  } catch (...) {
    return -1;
  }
  if (pw.size() > static_cast<std::size_t>(size)) return -1;
  std::memcpy(buf, pw.data(), pw.size());
  return static_cast<int>(pw.size());
}

// Servers: the first of our protocols the client also offers; none in common fails the
// handshake with no_application_protocol (RFC 7301 3.2), as Go's server does.
int alpn_select_cb(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
                   const unsigned char* in, unsigned int inlen, void* arg) {
  auto* ci = static_cast<context::impl*>(arg);
  unsigned char* sel = nullptr;
  if (SSL_select_next_proto(&sel, outlen, ci->alpn_wire.data(),
                            static_cast<unsigned int>(ci->alpn_wire.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

int servername_cb(SSL* ssl, int* /*alert*/, void* arg) {
  auto* ci = static_cast<context::impl*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr || !ci->sni) return SSL_TLSEXT_ERR_OK;
  try {
    const context* picked = ci->sni(name);
    if (picked != nullptr && picked->native_handle() != nullptr &&
        picked->native_handle() != SSL_get_SSL_CTX(ssl)) {
      SSL_set_SSL_CTX(ssl, picked->native_handle());
    }
  } catch (...) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

// Clients: a session (TLS 1.3: a ticket, after the handshake) to resume next time. The key
// is the stream's "name:port", kept as the SSL's app data string. The cache keeps a copy:
// OpenSSL marks a connection's own session not resumable when the SSL is freed without a
// close_notify sent (SSL_free -> ssl_clear_bad_session), and most connections end that way
// (a destructor, a peer that just closes), which left nothing to resume after them. Sessions
// of connections that failed are dropped instead (stream.cpp, record_failure).
int new_session_cb(SSL* ssl, SSL_SESSION* sess) {
  auto* ci = static_cast<context::impl*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, 0));
  if (ci == nullptr || key == nullptr || key->empty()) return 0;
  SSL_SESSION* copy = SSL_SESSION_dup(sess);
  if (copy == nullptr) return 0;
  std::lock_guard lk(ci->sessions_mu);
  auto [it, added] = ci->sessions.try_emplace(*key, copy);
  if (!added) {
    SSL_SESSION_free(it->second);
    it->second = copy;
  }
  return 0;  // no reference on `sess` kept
}

std::shared_ptr<context::impl> make_impl(bool client) {
  auto ci = std::make_shared<context::impl>();
  ci->client = client;
  ERR_clear_error();
  ci->ctx = SSL_CTX_new(client ? TLS_client_method() : TLS_server_method());
  if (ci->ctx == nullptr) throw_config_error("SSL_CTX_new");
  SSL_CTX_set_app_data(ci->ctx, ci.get());
  // No renegotiation (a DoS vector, and nothing here needs it). No partial writes: the
  // stream's BIO takes every record, so SSL_write_ex writes all it is given (up to 64 KiB,
  // four records) or fails, and the stream sends them with one transport write.
  SSL_CTX_set_options(ci->ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ci->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_default_passwd_cb(ci->ctx, password_cb);
  SSL_CTX_set_default_passwd_cb_userdata(ci->ctx, ci.get());
  return ci;
}

template <class Opts>
void apply_common(context::impl& ci, const Opts& o) {
  if (SSL_CTX_set_min_proto_version(ci.ctx, proto_version(o.min_version)) != 1) {
    throw_config_error("min_version");
  }
  if (o.max_version && SSL_CTX_set_max_proto_version(ci.ctx, proto_version(*o.max_version)) != 1) {
    throw_config_error("max_version");
  }
  if (!o.ciphers.empty() && SSL_CTX_set_cipher_list(ci.ctx, o.ciphers.c_str()) != 1) {
    throw_config_error("ciphers \"" + o.ciphers + "\"");
  }
  if (!o.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ci.ctx, o.ciphersuites.c_str()) != 1) {
    throw_config_error("ciphersuites \"" + o.ciphersuites + "\"");
  }
  if (!o.groups.empty() && SSL_CTX_set1_groups_list(ci.ctx, o.groups.c_str()) != 1) {
    throw_config_error("groups \"" + o.groups + "\"");
  }
  ci.key_password = o.key_password;
}

void load_chain_and_key(context::impl& ci, const std::string& cert, const std::string& key) {
  if (SSL_CTX_use_certificate_chain_file(ci.ctx, cert.c_str()) != 1) {
    throw_config_error("load certificate chain " + cert);
  }
  if (SSL_CTX_use_PrivateKey_file(ci.ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    throw_config_error("load private key " + key);
  }
  if (SSL_CTX_check_private_key(ci.ctx) != 1) {
    throw_config_error("private key " + key + " does not match certificate " + cert);
  }
}

void load_cas(context::impl& ci, const std::string& file, const std::string& dir) {
  if (SSL_CTX_load_verify_locations(ci.ctx, file.empty() ? nullptr : file.c_str(),
                                    dir.empty() ? nullptr : dir.c_str()) != 1) {
    throw_config_error("load CA " + (file.empty() ? dir : file));
  }
}

}  // namespace

context context::client(const client_options& o) {
  auto ci = make_impl(true);
  apply_common(*ci, o);
  if (o.insecure_skip_verify) {
    ci->verify = false;
    SSL_CTX_set_verify(ci->ctx, SSL_VERIFY_NONE, nullptr);
    std::fprintf(stderr,
                 "libfibers: WARNING: a TLS client context with insecure_skip_verify: server "
                 "certificates are NOT verified (any server can impersonate any other)\n");
  } else {
    SSL_CTX_set_verify(ci->ctx, SSL_VERIFY_PEER, nullptr);
    if (!o.ca_file.empty() || !o.ca_dir.empty()) {
      load_cas(*ci, o.ca_file, o.ca_dir);
    } else if (SSL_CTX_set_default_verify_paths(ci->ctx) != 1) {
      throw_config_error("load the system CA store");
    }
  }
  if (!o.cert_file.empty() || !o.key_file.empty()) load_chain_and_key(*ci, o.cert_file, o.key_file);
  if (!o.alpn.empty()) {
    ci->alpn_wire = detail::alpn_wire(o.alpn);
    if (SSL_CTX_set_alpn_protos(ci->ctx, ci->alpn_wire.data(),
                                static_cast<unsigned int>(ci->alpn_wire.size())) != 0) {
      throw_config_error("alpn");
    }
  }
  if (o.session_cache) {
    ci->session_cache = true;
    SSL_CTX_set_session_cache_mode(ci->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ci->ctx, new_session_cb);
  } else {
    SSL_CTX_set_session_cache_mode(ci->ctx, SSL_SESS_CACHE_OFF);
  }
  return context(std::move(ci));
}

context context::server(const server_options& o) {
  if (o.cert_file.empty() || o.key_file.empty()) {
    throw std::invalid_argument("fibers::tls::context::server: cert_file and key_file are required");
  }
  auto ci = make_impl(false);
  apply_common(*ci, o);
  load_chain_and_key(*ci, o.cert_file, o.key_file);
  static constexpr unsigned char sid[] = "libfibers";
  SSL_CTX_set_session_id_context(ci->ctx, sid, sizeof sid - 1);
  if (o.client_certificates != client_auth::none) {
    int mode = SSL_VERIFY_PEER;
    if (o.client_certificates == client_auth::require) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ci->ctx, mode, nullptr);
    if (o.client_ca_file.empty() && o.client_ca_dir.empty()) {
      throw std::invalid_argument(
          "fibers::tls::context::server: client certificates need client_ca_file or client_ca_dir");
    }
    load_cas(*ci, o.client_ca_file, o.client_ca_dir);
    if (!o.client_ca_file.empty()) {
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.client_ca_file.c_str())) {
        SSL_CTX_set_client_CA_list(ci->ctx, names);
      }
    }
  } else {
    ci->verify = false;
  }
  if (!o.alpn.empty()) {
    ci->alpn_wire = detail::alpn_wire(o.alpn);
    SSL_CTX_set_alpn_select_cb(ci->ctx, alpn_select_cb, ci.get());
  }
  if (!o.session_tickets) {
    SSL_CTX_set_options(ci->ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ci->ctx, 0);
  }
  SSL_CTX_set_tlsext_servername_callback(ci->ctx, servername_cb);
  SSL_CTX_set_tlsext_servername_arg(ci->ctx, ci.get());
  return context(std::move(ci));
}

void context::set_sni_callback(std::function<const context*(std::string_view)> pick) {
  if (!impl_ || impl_->client) {
    throw std::logic_error("fibers::tls::context::set_sni_callback: only on a server context");
  }
  impl_->sni = std::move(pick);
}

bool context::is_client() const noexcept { return impl_ != nullptr && impl_->client; }

SSL_CTX* context::native_handle() const noexcept { return impl_ ? impl_->ctx : nullptr; }

}  // namespace fibers::tls
