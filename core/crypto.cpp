#include "core/crypto.hpp"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <memory>
#include <stdexcept>

#include "core/encoding.hpp"

namespace membraned::core {
namespace {

// Algorithms are fetched once: fetching by name on every call costs more than hashing a
// kilobyte. Fetched objects are reference counted and safe to share between threads.
const EVP_MD* fetched_sha256() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}
const EVP_MD* fetched_sha512() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA512", nullptr);
  return md;
}
const EVP_CIPHER* fetched_aes_256_gcm() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}
EVP_MAC* fetched_hmac() {
  static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}

[[noreturn]] void crypto_failure(const char* what) {
  // Only reachable when OpenSSL itself is broken (allocation failure, missing provider).
  throw std::runtime_error(what);
}

template <typename Digest>
Digest digest(const EVP_MD* md, std::string_view data) {
  Digest out{};
  unsigned int len = 0;
  if (md == nullptr || EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1) {
    crypto_failure("EVP_Digest failed");
  }
  return out;
}

struct MacCtxFree {
  void operator()(EVP_MAC_CTX* ctx) const { EVP_MAC_CTX_free(ctx); }
};

// One HMAC context per thread and digest, its digest chosen once: re-initialising it with a new
// key (and no parameters) skips the allocation and the by-name digest fetch that a fresh
// EVP_MAC_CTX costs on every call, which is most of an HMAC's time for short inputs.
EVP_MAC_CTX* thread_hmac_context(const char* digest_name) {
  struct Contexts {
    std::unique_ptr<EVP_MAC_CTX, MacCtxFree> sha256;
    std::unique_ptr<EVP_MAC_CTX, MacCtxFree> sha512;
  };
  thread_local Contexts contexts;
  const bool is_sha256 = std::string_view(digest_name) == "SHA256";
  auto& slot = is_sha256 ? contexts.sha256 : contexts.sha512;
  if (!slot) {
    slot.reset(EVP_MAC_CTX_new(fetched_hmac()));
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(digest_name), 0),
        OSSL_PARAM_construct_end()};
    if (!slot || EVP_MAC_CTX_set_params(slot.get(), params) != 1) {
      slot.reset();
      crypto_failure("HMAC context");
    }
  }
  return slot.get();
}

template <typename Digest>
Digest hmac(const char* digest_name, std::string_view key, std::string_view data) {
  EVP_MAC_CTX* ctx = thread_hmac_context(digest_name);
  // EVP_MAC_init rejects a null key pointer even when its length is 0.
  static const unsigned char empty_key = 0;
  const auto* key_bytes =
      key.empty() ? &empty_key : reinterpret_cast<const unsigned char*>(key.data());
  Digest out{};
  std::size_t len = 0;
  if (EVP_MAC_init(ctx, key_bytes, key.size(), nullptr) != 1 ||
      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1 ||
      EVP_MAC_final(ctx, out.data(), &len, out.size()) != 1 || len != out.size()) {
    crypto_failure("HMAC failed");
  }
  return out;
}

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};

constexpr unsigned char kSealVersion = 0x01;
constexpr std::size_t kNonceSize = 12;
constexpr std::size_t kTagSize = 16;

}  // namespace

Sha256Digest sha256(std::string_view data) { return digest<Sha256Digest>(fetched_sha256(), data); }
Sha512Digest sha512(std::string_view data) { return digest<Sha512Digest>(fetched_sha512(), data); }
std::string sha256_hex(std::string_view data) { return hex_encode(sha256(data)); }

Sha256Hasher::Sha256Hasher() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex2(ctx_, fetched_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx_);
    crypto_failure("EVP_DigestInit_ex2 failed");
  }
}
Sha256Hasher::~Sha256Hasher() { EVP_MD_CTX_free(ctx_); }
void Sha256Hasher::update(std::string_view data) {
  if (EVP_DigestUpdate(ctx_, data.data(), data.size()) != 1) crypto_failure("EVP_DigestUpdate");
}
Sha256Digest Sha256Hasher::finish() {
  Sha256Digest out{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_, out.data(), &len) != 1) crypto_failure("EVP_DigestFinal_ex");
  return out;
}

Sha256Digest hmac_sha256(std::string_view key, std::string_view data) {
  return hmac<Sha256Digest>("SHA256", key, data);
}
Sha512Digest hmac_sha512(std::string_view key, std::string_view data) {
  return hmac<Sha512Digest>("SHA512", key, data);
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<std::string> random_bytes(std::size_t count) {
  std::string out(count, '\0');
  if (count > 0 &&
      RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(count)) != 1) {
    return Error::internal("the random number generator failed");
  }
  return out;
}

void secure_wipe(std::string& secret) noexcept {
  if (!secret.empty()) OPENSSL_cleanse(secret.data(), secret.size());
  secret.clear();
}
void secure_wipe(void* data, std::size_t size) noexcept {
  if (size > 0) OPENSSL_cleanse(data, size);
}

Result<std::string> aead_seal(std::string_view key, std::string_view plaintext,
                              std::string_view associated_data) {
  if (key.size() != kAeadKeySize) return Error::internal("sealing key must be 32 bytes");
  auto nonce = random_bytes(kNonceSize);
  if (!nonce) return nonce.error();
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx(EVP_CIPHER_CTX_new());
  std::string out;
  out.resize(1 + kNonceSize + plaintext.size() + kTagSize);
  out[0] = static_cast<char>(kSealVersion);
  out.replace(1, kNonceSize, *nonce);
  auto* cipher_out = reinterpret_cast<unsigned char*>(out.data() + 1 + kNonceSize);
  int len = 0;
  bool ok = ctx && EVP_EncryptInit_ex2(ctx.get(), fetched_aes_256_gcm(),
                                       reinterpret_cast<const unsigned char*>(key.data()),
                                       reinterpret_cast<const unsigned char*>(nonce->data()),
                                       nullptr) == 1;
  ok = ok && EVP_EncryptUpdate(ctx.get(), nullptr, &len,
                               reinterpret_cast<const unsigned char*>(associated_data.data()),
                               static_cast<int>(associated_data.size())) == 1;
  ok = ok && EVP_EncryptUpdate(ctx.get(), cipher_out, &len,
                               reinterpret_cast<const unsigned char*>(plaintext.data()),
                               static_cast<int>(plaintext.size())) == 1;
  ok = ok && EVP_EncryptFinal_ex(ctx.get(), cipher_out + len, &len) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kTagSize),
                                 cipher_out + plaintext.size()) == 1;
  if (!ok) return Error::internal("sealing failed");
  return out;
}

Result<std::string> aead_open(std::string_view key, std::string_view sealed,
                              std::string_view associated_data) {
  if (key.size() != kAeadKeySize) return Error::internal("sealing key must be 32 bytes");
  if (sealed.size() < 1 + kNonceSize + kTagSize ||
      static_cast<unsigned char>(sealed[0]) != kSealVersion) {
    return Error::unauthorized("sealed value is malformed");
  }
  std::string_view nonce = sealed.substr(1, kNonceSize);
  std::string_view ciphertext = sealed.substr(1 + kNonceSize, sealed.size() - 1 - kNonceSize - kTagSize);
  std::string tag(sealed.substr(sealed.size() - kTagSize));
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx(EVP_CIPHER_CTX_new());
  std::string out(ciphertext.size(), '\0');
  auto* plain_out = reinterpret_cast<unsigned char*>(out.data());
  int len = 0;
  bool ok = ctx && EVP_DecryptInit_ex2(ctx.get(), fetched_aes_256_gcm(),
                                       reinterpret_cast<const unsigned char*>(key.data()),
                                       reinterpret_cast<const unsigned char*>(nonce.data()),
                                       nullptr) == 1;
  ok = ok && EVP_DecryptUpdate(ctx.get(), nullptr, &len,
                               reinterpret_cast<const unsigned char*>(associated_data.data()),
                               static_cast<int>(associated_data.size())) == 1;
  ok = ok && EVP_DecryptUpdate(ctx.get(), plain_out, &len,
                               reinterpret_cast<const unsigned char*>(ciphertext.data()),
                               static_cast<int>(ciphertext.size())) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTagSize),
                                 tag.data()) == 1;
  if (!ok) {
    secure_wipe(out);
    return Error::internal("opening failed");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), plain_out + len, &len) != 1) {
    secure_wipe(out);
    return Error::unauthorized("sealed value does not authenticate");
  }
  return out;
}

}  // namespace membraned::core

namespace membraned::core {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<BIO, BioFree> memory_bio(std::string_view pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Refuses to supply a passphrase, so an encrypted key fails instead of prompting on a terminal.
int no_passphrase(char*, int, int, void*) { return -1; }

std::unique_ptr<EVP_PKEY, PkeyFree> read_private_key(std::string_view pem) {
  auto bio = memory_bio(pem);
  if (!bio) return nullptr;
  return std::unique_ptr<EVP_PKEY, PkeyFree>(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
}

}  // namespace

bool is_pem_certificates(std::string_view pem) {
  auto bio = memory_bio(pem);
  if (!bio) return false;
  int count = 0;
  while (true) {
    std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
    if (!cert) break;
    ++count;
  }
  ERR_clear_error();
  return count > 0;
}

bool is_pem_private_key(std::string_view pem) {
  bool ok = read_private_key(pem) != nullptr;
  ERR_clear_error();
  return ok;
}

bool pem_key_matches_certificate(std::string_view cert_pem, std::string_view key_pem) {
  auto bio = memory_bio(cert_pem);
  if (!bio) return false;
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
  auto key = read_private_key(key_pem);
  bool ok = cert && key && X509_check_private_key(cert.get(), key.get()) == 1;
  ERR_clear_error();
  return ok;
}

bool is_supported_tls_client_key(std::string_view key_pem) {
  auto key = read_private_key(key_pem);
  bool ok = false;
  if (key && (EVP_PKEY_is_a(key.get(), "RSA") || EVP_PKEY_is_a(key.get(), "RSA-PSS"))) {
    ok = EVP_PKEY_get_bits(key.get()) <= kMaxTlsClientRsaBits;
  } else if (key && EVP_PKEY_is_a(key.get(), "EC")) {
    // Named curves only: a key with explicit parameters has no group name.
    char group[64] = {};
    size_t length = 0;
    if (EVP_PKEY_get_group_name(key.get(), group, sizeof group, &length) == 1) {
      const std::string_view name(group, length);
      ok = name == "prime256v1" || name == "secp384r1" || name == "secp521r1" || name == "P-256" ||
           name == "P-384" || name == "P-521";
    }
  } else if (key) {
    ok = EVP_PKEY_is_a(key.get(), "ED25519") || EVP_PKEY_is_a(key.get(), "ED448");
  }
  ERR_clear_error();
  return ok;
}

}  // namespace membraned::core
