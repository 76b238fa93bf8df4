// Throw-away PKI material for tests: fresh key pairs, self-signed certificates, and a CA with the
// server certificates it signs, made in memory with OpenSSL 3's EVP interfaces (no files,
// nothing deprecated).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace membraned::test {

struct PemPair {
  std::string cert;  // "-----BEGIN CERTIFICATE-----" ...
  std::string key;   // unencrypted PKCS#8 "-----BEGIN PRIVATE KEY-----" ...
};

// A new P-256 key and a certificate for it, self-signed, valid from now for `days` days, with
// subject and issuer CN=common_name. Each call makes a different key. Throws std::runtime_error
// when OpenSSL fails.
PemPair make_self_signed_pem(std::string_view common_name = "membraned test", int days = 1);

// The same with a key of another kind: `algorithm` "RSA" (`parameter`: its size in bits, "4096"),
// "EC" (`parameter`: the curve, "P-384", "secp256k1"), "ED25519" or "ED448" (no parameter).
PemPair make_self_signed_pem_with_key(std::string_view algorithm, std::string_view parameter,
                                      std::string_view common_name = "membraned test");

// A new P-256 CA certificate (CA:TRUE, keyCertSign), self-signed, valid from now for a day.
PemPair make_ca_pem(std::string_view common_name = "membraned test CA");

// What a server certificate is issued for: subjectAltName DNS and IP entries, as written
// ("*.example.test", "127.0.0.1", "::1").
struct CertificateNames {
  std::vector<std::string> dns;
  std::vector<std::string> ip;
};

// A new P-256 server certificate (CA:FALSE, serverAuth) for `names`, signed by `ca` (from
// make_ca_pem), with CN=common_name, valid from now for a day.
PemPair make_server_pem(const PemPair& ca, const CertificateNames& names,
                        std::string_view common_name = "membraned test server");

}  // namespace membraned::test
