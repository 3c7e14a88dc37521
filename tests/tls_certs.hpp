// tests/tls_certs.hpp - a throwaway PKI for the TLS tests: a CA and leaf certificates made
// with OpenSSL's API, written as PEM files into a temporary directory.
#pragma once

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace fibers_test {

/// A key pair and its certificate (owned).
struct cert_and_key {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  cert_and_key() = default;
  cert_and_key(const cert_and_key&) = delete;
  cert_and_key& operator=(const cert_and_key&) = delete;
  cert_and_key(cert_and_key&& o) noexcept : key(o.key), cert(o.cert) { o.key = nullptr; o.cert = nullptr; }
  ~cert_and_key() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

/// What a leaf certificate says.
struct leaf_spec {
  std::string common_name = "localhost";
  std::vector<std::string> dns_names = {"localhost"};
  std::vector<std::string> ips = {"127.0.0.1"};
  long not_before_days = -1;  // relative to now
  long not_after_days = 30;
  bool rsa = false;           // RSA 2048 instead of ECDSA P-256
};

inline EVP_PKEY* make_key(bool rsa) {
  EVP_PKEY* k = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
  if (k == nullptr) throw std::runtime_error("key generation failed");
  return k;
}

inline void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) throw std::runtime_error("bad extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

inline X509* make_cert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                       long nb_days, long na_days, long serial) {
  X509* c = X509_new();
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
  X509_gmtime_adj(X509_getm_notBefore(c), nb_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(c), na_days * 86400);
  X509_set_pubkey(c, key);
  X509_NAME* name = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(c, issuer != nullptr ? X509_get_subject_name(issuer) : name);
  (void)issuer_key;
  return c;
}

/// A CA that signs leaves; files go to `dir`.
class test_ca {
 public:
  explicit test_ca(const std::string& dir, const std::string& name = "libfibers test CA")
      : dir_(dir) {
    ca_.key = make_key(false);
    ca_.cert = make_cert(ca_.key, name, nullptr, nullptr, -1, 365, next_serial_++);
    add_ext(ca_.cert, ca_.cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(ca_.cert, ca_.cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(ca_.cert, ca_.cert, NID_subject_key_identifier, "hash");
    X509_sign(ca_.cert, ca_.key, EVP_sha256());
    ca_file_ = dir_ + "/" + safe(name) + ".pem";
    write_cert(ca_file_, ca_.cert);
  }
  /// The CA certificate's PEM file.
  const std::string& ca_file() const { return ca_file_; }

  /// Issues a leaf; returns {cert_file, key_file} (the cert file holds the leaf only).
  std::pair<std::string, std::string> issue(const std::string& file_stem, const leaf_spec& spec = {}) {
    cert_and_key leaf;
    leaf.key = make_key(spec.rsa);
    leaf.cert = make_cert(leaf.key, spec.common_name, ca_.cert, ca_.key, spec.not_before_days,
                          spec.not_after_days, next_serial_++);
    std::string san;
    for (const auto& d : spec.dns_names) san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
    for (const auto& ip : spec.ips) san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
    if (!san.empty()) add_ext(leaf.cert, ca_.cert, NID_subject_alt_name, san);
    add_ext(leaf.cert, ca_.cert, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(leaf.cert, ca_.cert, NID_ext_key_usage, "serverAuth,clientAuth");
    X509_sign(leaf.cert, ca_.key, EVP_sha256());
    const std::string cert_file = dir_ + "/" + file_stem + ".crt";
    const std::string key_file = dir_ + "/" + file_stem + ".key";
    write_cert(cert_file, leaf.cert);
    write_key(key_file, leaf.key);
    return {cert_file, key_file};
  }

 private:
  static std::string safe(std::string s) {
    for (char& c : s) if (c == ' ') c = '_';
    return s;
  }
  static void write_cert(const std::string& path, X509* c) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) throw std::runtime_error("cannot write " + path);
    PEM_write_X509(f, c);
    std::fclose(f);
  }
  static void write_key(const std::string& path, EVP_PKEY* k) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) throw std::runtime_error("cannot write " + path);
    PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
  }
  std::string dir_;
  cert_and_key ca_;
  std::string ca_file_;
  long next_serial_ = 1;
};

}  // namespace fibers_test
