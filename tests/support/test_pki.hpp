// Throw-away PKI material for tests: a fresh key pair and a self-signed certificate, made in
// memory with OpenSSL 3's EVP interfaces (no files, nothing deprecated).
#pragma once

#include <string>
#include <string_view>

namespace membraned::test {

struct PemPair {
  std::string cert;  // "-----BEGIN CERTIFICATE-----" ...
  std::string key;   // unencrypted PKCS#8 "-----BEGIN PRIVATE KEY-----" ...
};

// A new P-256 key and a certificate for it, self-signed, valid from now for `days` days, with
// subject and issuer CN=common_name. Each call makes a different key. Throws std::runtime_error
// when OpenSSL fails.
PemPair make_self_signed_pem(std::string_view common_name = "membraned test", int days = 1);

}  // namespace membraned::test
