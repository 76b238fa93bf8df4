#include "tests/support/test_pki.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace membraned::test {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const noexcept { X509_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const noexcept { BIO_free(p); }
};

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test PKI: ") + what + " failed");
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  check(size > 0 && data != nullptr, "BIO_get_mem_data");
  return std::string(data, static_cast<std::size_t>(size));
}

std::unique_ptr<EVP_PKEY, PkeyFree> new_p256_key() {
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  check(key != nullptr, "EVP_PKEY_Q_keygen");
  return key;
}

// A version 3 certificate for `key` with CN=common_name, valid from a minute ago for a day; the
// issuer and the extensions are the caller's.
std::unique_ptr<X509, X509Free> new_certificate(EVP_PKEY* key, std::string_view common_name, long serial) {
  std::unique_ptr<X509, X509Free> cert(X509_new());
  check(cert != nullptr, "X509_new");
  check(X509_set_version(cert.get(), X509_VERSION_3) == 1, "X509_set_version");
  check(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial) == 1, "ASN1_INTEGER_set");
  check(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60) != nullptr, "X509_gmtime_adj");
  check(X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400L) != nullptr, "X509_gmtime_adj");
  check(X509_set_pubkey(cert.get(), key) == 1, "X509_set_pubkey");
  std::string cn(common_name);
  check(X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0) == 1,
        "X509_NAME_add_entry_by_txt");
  return cert;
}

// Adds one extension written as in openssl.cnf ("critical,CA:TRUE").
void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str());
  check(extension != nullptr, "X509V3_EXT_nconf_nid");
  const int added = X509_add_ext(cert, extension, -1);
  X509_EXTENSION_free(extension);
  check(added == 1, "X509_add_ext");
}

PemPair pem_of(X509* cert, EVP_PKEY* key) {
  std::unique_ptr<BIO, BioFree> cert_bio(BIO_new(BIO_s_mem()));
  std::unique_ptr<BIO, BioFree> key_bio(BIO_new(BIO_s_mem()));
  check(cert_bio != nullptr && key_bio != nullptr, "BIO_new");
  check(PEM_write_bio_X509(cert_bio.get(), cert) == 1, "PEM_write_bio_X509");
  check(PEM_write_bio_PrivateKey(key_bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1,
        "PEM_write_bio_PrivateKey");
  return PemPair{bio_text(cert_bio.get()), bio_text(key_bio.get())};
}

std::unique_ptr<BIO, BioFree> memory_bio(const std::string& text) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  check(bio != nullptr, "BIO_new_mem_buf");
  return bio;
}

}  // namespace

PemPair make_self_signed_pem(std::string_view common_name, int days) {
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  check(key != nullptr, "EVP_PKEY_Q_keygen");

  std::unique_ptr<X509, X509Free> cert(X509_new());
  check(cert != nullptr, "X509_new");
  check(X509_set_version(cert.get(), X509_VERSION_3) == 1, "X509_set_version");
  check(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1) == 1, "ASN1_INTEGER_set");
  check(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60) != nullptr, "X509_gmtime_adj");
  check(X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400L * days) != nullptr,
        "X509_gmtime_adj");
  check(X509_set_pubkey(cert.get(), key.get()) == 1, "X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(cert.get());
  std::string cn(common_name);
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                   0) == 1,
        "X509_NAME_add_entry_by_txt");
  check(X509_set_issuer_name(cert.get(), name) == 1, "X509_set_issuer_name");
  check(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0, "X509_sign");

  std::unique_ptr<BIO, BioFree> cert_bio(BIO_new(BIO_s_mem()));
  std::unique_ptr<BIO, BioFree> key_bio(BIO_new(BIO_s_mem()));
  check(cert_bio != nullptr && key_bio != nullptr, "BIO_new");
  check(PEM_write_bio_X509(cert_bio.get(), cert.get()) == 1, "PEM_write_bio_X509");
  check(PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr,
                                 nullptr) == 1,
        "PEM_write_bio_PrivateKey");
  return PemPair{bio_text(cert_bio.get()), bio_text(key_bio.get())};
}

PemPair make_self_signed_pem_with_key(std::string_view algorithm, std::string_view parameter,
                                      std::string_view common_name) {
  const std::string name(algorithm);
  const std::string value(parameter);
  std::unique_ptr<EVP_PKEY, PkeyFree> key;
  if (name == "RSA") {
    key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(std::stoul(value))));
  } else if (name == "EC") {
    key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", value.c_str()));
  } else {
    key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, name.c_str()));
  }
  check(key != nullptr, "EVP_PKEY_Q_keygen");
  auto cert = new_certificate(key.get(), common_name, 1);
  check(X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) == 1, "X509_set_issuer_name");
  // EdDSA signs without a separate digest.
  const bool eddsa = name == "ED25519" || name == "ED448";
  check(X509_sign(cert.get(), key.get(), eddsa ? nullptr : EVP_sha256()) > 0, "X509_sign");
  return pem_of(cert.get(), key.get());
}

PemPair make_ca_pem(std::string_view common_name) {
  auto key = new_p256_key();
  auto cert = new_certificate(key.get(), common_name, 1);
  check(X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) == 1, "X509_set_issuer_name");
  add_extension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  check(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0, "X509_sign");
  return pem_of(cert.get(), key.get());
}

PemPair make_server_pem(const PemPair& ca, const CertificateNames& names, std::string_view common_name) {
  std::unique_ptr<X509, X509Free> ca_cert(PEM_read_bio_X509(memory_bio(ca.cert).get(), nullptr, nullptr, nullptr));
  check(ca_cert != nullptr, "PEM_read_bio_X509");
  std::unique_ptr<EVP_PKEY, PkeyFree> ca_key(
      PEM_read_bio_PrivateKey(memory_bio(ca.key).get(), nullptr, nullptr, nullptr));
  check(ca_key != nullptr, "PEM_read_bio_PrivateKey");

  auto key = new_p256_key();
  auto cert = new_certificate(key.get(), common_name, 2);
  check(X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get())) == 1, "X509_set_issuer_name");
  add_extension(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), ca_cert.get(), NID_ext_key_usage, "serverAuth");
  add_extension(cert.get(), ca_cert.get(), NID_authority_key_identifier, "keyid");
  std::string alt_names;
  for (const std::string& dns : names.dns) alt_names += (alt_names.empty() ? "DNS:" : ",DNS:") + dns;
  for (const std::string& ip : names.ip) alt_names += (alt_names.empty() ? "IP:" : ",IP:") + ip;
  if (!alt_names.empty()) add_extension(cert.get(), ca_cert.get(), NID_subject_alt_name, alt_names);
  check(X509_sign(cert.get(), ca_key.get(), EVP_sha256()) > 0, "X509_sign");
  return pem_of(cert.get(), key.get());
}

}  // namespace membraned::test
