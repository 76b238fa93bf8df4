// Cryptographic primitives on OpenSSL 3's EVP interfaces: digests, HMACs, authenticated
// encryption for secrets at rest, a CSPRNG and constant-time comparison.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "core/result.hpp"

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header

namespace membraned::core {

using Sha256Digest = std::array<unsigned char, 32>;
using Sha512Digest = std::array<unsigned char, 64>;

inline std::string_view digest_view(const Sha256Digest& d) {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}
inline std::string_view digest_view(const Sha512Digest& d) {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

Sha256Digest sha256(std::string_view data);
Sha512Digest sha512(std::string_view data);
std::string sha256_hex(std::string_view data);

// Incremental SHA-256, for bodies that arrive in pieces.
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;
  void update(std::string_view data);
  Sha256Digest finish();

 private:
  ::evp_md_ctx_st* ctx_;
};

Sha256Digest hmac_sha256(std::string_view key, std::string_view data);
Sha512Digest hmac_sha512(std::string_view key, std::string_view data);

// Equal length and equal bytes, in time that depends only on the lengths.
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

// `count` bytes from OpenSSL's CSPRNG (RAND_bytes).
Result<std::string> random_bytes(std::size_t count);

// Overwrites the bytes of a buffer that held a secret (OPENSSL_cleanse cannot be optimised out).
void secure_wipe(std::string& secret) noexcept;
void secure_wipe(void* data, std::size_t size) noexcept;

// --- AES-256-GCM for secrets at rest ---------------------------------------------------------
// Sealed layout: version byte 0x01 | 12-byte random nonce | ciphertext | 16-byte tag. The
// associated data binds a sealed value to where it belongs (for example a row id and column), so
// a sealed value copied elsewhere fails to open.
inline constexpr std::size_t kAeadKeySize = 32;
Result<std::string> aead_seal(std::string_view key, std::string_view plaintext,
                              std::string_view associated_data);
// Fails with ErrorKind::unauthorized when the key, the data or the associated data do not match.
Result<std::string> aead_open(std::string_view key, std::string_view sealed,
                              std::string_view associated_data);

// PEM checks for the TLS material an export may carry (parsed from memory, never prompting for
// a passphrase).
bool is_pem_certificates(std::string_view pem);  // one or more X.509 certificates
bool is_pem_private_key(std::string_view pem);   // an unencrypted private key
bool pem_key_matches_certificate(std::string_view cert_pem, std::string_view key_pem);
// A private key whose signatures cost at most an RSA 4096 one, of a kind TLS clients use: RSA
// (or RSA-PSS) of at most 4096 bits, EC on P-256, P-384 or P-521, Ed25519, Ed448. Every TLS
// handshake signs with an export's client key on an I/O thread (a 16384-bit RSA key costs about
// 250 ms each time); larger RSA keys, other curves, explicit curve parameters and DSA are refused.
inline constexpr int kMaxTlsClientRsaBits = 4096;
bool is_supported_tls_client_key(std::string_view key_pem);

}  // namespace membraned::core
