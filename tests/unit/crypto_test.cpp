// core/crypto: digests (FIPS 180 known answers), HMAC (RFC 4231), constant-time comparison, the
// CSPRNG, AES-256-GCM sealing of secrets at rest, secure wiping and the PEM checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>

#include "core/crypto.hpp"
#include "core/encoding.hpp"

namespace {

using namespace membraned::core;

std::string hex(const Sha256Digest& d) { return hex_encode(digest_view(d)); }
std::string hex(const Sha512Digest& d) { return hex_encode(digest_view(d)); }

// --- digests ------------------------------------------------------------------------------------

TEST(Sha256, Fips180KnownAnswers) {
  EXPECT_EQ(hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha512, Fips180KnownAnswers) {
  EXPECT_EQ(hex(sha512("")),
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
            "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e");
  EXPECT_EQ(hex(sha512("abc")),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
}

TEST(Sha256, DigestsBinaryDataWithEmbeddedNul) {
  const std::string a("a\0b", 3);
  const std::string b("a\0c", 3);
  EXPECT_NE(sha256(a), sha256(b));
  EXPECT_NE(sha256(a), sha256("a"));
}

TEST(Sha256Hasher, PiecesEqualOneShot) {
  {
    Sha256Hasher h;
    h.update("a");
    h.update("");
    h.update("b");
    h.update("c");
    EXPECT_EQ(h.finish(), sha256("abc"));
  }
  {
    Sha256Hasher h;
    EXPECT_EQ(h.finish(), sha256(""));
  }
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  std::string message(10000, '\0');
  for (char& c : message) c = static_cast<char>(byte(rng));
  for (int round = 0; round < 20; ++round) {
    Sha256Hasher h;
    std::size_t at = 0;
    while (at < message.size()) {
      std::size_t n = std::min<std::size_t>(message.size() - at, rng() % 300);
      h.update(std::string_view(message).substr(at, n));
      at += n;
    }
    EXPECT_EQ(h.finish(), sha256(message)) << "round " << round;
  }
}

// --- HMAC (RFC 4231) ------------------------------------------------------------------------------

struct HmacCase {
  const char* name;
  std::string key;
  std::string data;
  const char* sha256;
  const char* sha512;
};

std::vector<HmacCase> rfc4231_cases() {
  return {
      {"case 1", std::string(20, '\x0b'), "Hi There",
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
       "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
       "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
      {"case 2", "Jefe", "what do ya want for nothing?",
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
       "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
       "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
      {"case 6 (131-byte key)", std::string(131, '\xaa'),
       "Test Using Larger Than Block-Size Key - Hash Key First",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
       "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
       "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"},
  };
}

TEST(Hmac, Rfc4231Sha256) {
  for (const auto& c : rfc4231_cases()) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(hex(hmac_sha256(c.key, c.data)), c.sha256);
  }
}

TEST(Hmac, Rfc4231Sha512) {
  for (const auto& c : rfc4231_cases()) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(hex(hmac_sha512(c.key, c.data)), c.sha512);
  }
}

TEST(Hmac, EmptyKeyWorks) {
  EXPECT_EQ(hex(hmac_sha256("", "")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  EXPECT_EQ(hex(hmac_sha512("", "")),
            "b936cee86c9f87aa5d3c6f2e84cb5a4239a5fe50480a6ec66b70ab5b1f4ac673"
            "0c6c515421b327ec1d69402e53dfb49ad7381eb067b338fd7b0cb22247225d47");
  EXPECT_NE(hmac_sha256("", "x"), hmac_sha256("", ""));
}

TEST(Hmac, KeyWithNulBytesIsUsedWhole) {
  const std::string k1("k\0a", 3);
  const std::string k2("k\0b", 3);
  EXPECT_NE(hmac_sha256(k1, "data"), hmac_sha256(k2, "data"));
  EXPECT_NE(hmac_sha512(k1, "data"), hmac_sha512(k2, "data"));
}

// --- constant_time_equal -------------------------------------------------------------------------

TEST(ConstantTimeEqual, ComparesLengthAndBytes) {
  EXPECT_TRUE(constant_time_equal("secret-value", "secret-value"));
  EXPECT_FALSE(constant_time_equal("secret-value", "secret-valuf"));  // last byte
  EXPECT_FALSE(constant_time_equal("Secret-value", "secret-value"));  // first byte
  EXPECT_FALSE(constant_time_equal("secret", "secret-value"));        // length
  EXPECT_FALSE(constant_time_equal("secret-value", "secret"));
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_FALSE(constant_time_equal("", "a"));
  EXPECT_TRUE(constant_time_equal(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(constant_time_equal(std::string("a\0b", 3), std::string("a\0c", 3)));
}

// --- random_bytes ---------------------------------------------------------------------------------

TEST(RandomBytes, GivesTheRequestedLengthAndDiffers) {
  for (std::size_t n : {0u, 1u, 12u, 32u, 64u, 1000u}) {
    auto r = random_bytes(n);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->size(), n);
  }
  auto a = random_bytes(32);
  auto b = random_bytes(32);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_NE(*a, std::string(32, '\0'));
}

// --- AES-256-GCM ----------------------------------------------------------------------------------

class Aead : public ::testing::Test {
 protected:
  void SetUp() override {
    auto k = random_bytes(kAeadKeySize);
    ASSERT_TRUE(k.ok());
    key = *k;
    auto k2 = random_bytes(kAeadKeySize);
    ASSERT_TRUE(k2.ok());
    other_key = *k2;
  }
  std::string seal(std::string_view plaintext, std::string_view ad = "row:1/column:secret") {
    auto s = aead_seal(key, plaintext, ad);
    EXPECT_TRUE(s.ok());
    return s.ok() ? *s : std::string();
  }
  static void expect_unauthorized(const Result<std::string>& r, const std::string& what) {
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.error().kind, ErrorKind::unauthorized) << what;
    EXPECT_FALSE(r.error().message.empty()) << what;
  }
  std::string key;
  std::string other_key;
};

TEST_F(Aead, SealOpenRoundTrip) {
  const std::string plaintext = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  std::string sealed = seal(plaintext);
  EXPECT_EQ(sealed.size(), 1 + 12 + plaintext.size() + 16);
  EXPECT_EQ(static_cast<unsigned char>(sealed[0]), 0x01);
  EXPECT_EQ(sealed.find(plaintext), std::string::npos);
  auto opened = aead_open(key, sealed, "row:1/column:secret");
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(*opened, plaintext);
}

TEST_F(Aead, EmptyPlaintextAndEmptyAssociatedDataRoundTrip) {
  std::string sealed = seal("", "");
  EXPECT_EQ(sealed.size(), 1u + 12u + 16u);
  auto opened = aead_open(key, sealed, "");
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, "");
  std::string binary("\0\x01\xff", 3);
  auto opened_binary = aead_open(key, seal(binary, ""), "");
  ASSERT_TRUE(opened_binary.ok());
  EXPECT_EQ(*opened_binary, binary);
}

TEST_F(Aead, TwoSealsOfTheSamePlaintextDiffer) {
  std::string a = seal("same secret");
  std::string b = seal("same secret");
  EXPECT_NE(a, b);
  EXPECT_NE(a.substr(1, 12), b.substr(1, 12));  // fresh nonce
}

TEST_F(Aead, WrongKeyFails) {
  expect_unauthorized(aead_open(other_key, seal("secret"), "row:1/column:secret"), "wrong key");
}

TEST_F(Aead, WrongAssociatedDataFails) {
  std::string sealed = seal("secret", "row:1/column:secret");
  expect_unauthorized(aead_open(key, sealed, "row:2/column:secret"), "other row");
  expect_unauthorized(aead_open(key, sealed, ""), "no associated data");
  expect_unauthorized(aead_open(key, sealed, "row:1/column:secreT"), "one byte changed");
}

TEST_F(Aead, AnyFlippedBitFails) {
  const std::string sealed = seal("a secret worth protecting");
  // Every bit of the nonce, the ciphertext and the tag (byte 0 is the version).
  for (std::size_t i = 1; i < sealed.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string tampered = sealed;
      tampered[i] = static_cast<char>(tampered[i] ^ (1 << bit));
      expect_unauthorized(aead_open(key, tampered, "row:1/column:secret"),
                          "byte " + std::to_string(i) + " bit " + std::to_string(bit));
    }
  }
}

TEST_F(Aead, TruncatedOrExtendedValueFails) {
  const std::string sealed = seal("secret");
  for (std::size_t n = 0; n < sealed.size(); ++n) {
    expect_unauthorized(aead_open(key, sealed.substr(0, n), "row:1/column:secret"),
                        "truncated to " + std::to_string(n));
  }
  expect_unauthorized(aead_open(key, sealed + "x", "row:1/column:secret"), "extended");
  expect_unauthorized(aead_open(key, sealed.substr(1), "row:1/column:secret"), "first byte cut");
}

TEST_F(Aead, WrongVersionByteFails) {
  std::string sealed = seal("secret");
  for (int version : {0x00, 0x02, 0x81, 0xff}) {
    sealed[0] = static_cast<char>(version);
    expect_unauthorized(aead_open(key, sealed, "row:1/column:secret"),
                        "version " + std::to_string(version));
  }
}

TEST_F(Aead, KeyOfTheWrongSizeIsAnError) {
  const std::string sealed = seal("secret");
  for (std::size_t n : {0u, 16u, 31u, 33u, 64u}) {
    SCOPED_TRACE("key size " + std::to_string(n));
    std::string bad_key(n, 'k');
    auto s = aead_seal(bad_key, "secret", "ad");
    ASSERT_FALSE(s.ok());
    EXPECT_FALSE(s.error().message.empty());
    auto o = aead_open(bad_key, sealed, "row:1/column:secret");
    ASSERT_FALSE(o.ok());
    EXPECT_FALSE(o.error().message.empty());
  }
}

// --- secure_wipe ----------------------------------------------------------------------------------

TEST(SecureWipe, ClearsStringsAndBuffers) {
  std::string secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  secure_wipe(secret);
  EXPECT_TRUE(secret.empty());
  std::string empty;
  secure_wipe(empty);
  EXPECT_TRUE(empty.empty());

  unsigned char buffer[48];
  std::fill(std::begin(buffer), std::end(buffer), static_cast<unsigned char>(0xA5));
  secure_wipe(buffer, sizeof buffer);
  EXPECT_TRUE(std::all_of(std::begin(buffer), std::end(buffer), [](unsigned char c) { return c == 0; }));

  Sha256Digest digest = sha256("x");
  secure_wipe(digest.data(), 16);  // only the first half
  EXPECT_TRUE(std::all_of(digest.begin(), digest.begin() + 16, [](unsigned char c) { return c == 0; }));
  EXPECT_EQ(std::string(digest_view(digest).substr(16)), std::string(digest_view(sha256("x")).substr(16)));
  secure_wipe(nullptr, 0);  // nothing to do, must not crash
}

// --- PEM checks -------------------------------------------------------------------------------------

constexpr const char* kCertificate = R"(-----BEGIN CERTIFICATE-----
MIIBdjCCARugAwIBAgIUAfKqFqpu+fW8GejPO+zqye4WsV8wCgYIKoZIzj0EAwIw
DzENMAsGA1UEAwwEdGVzdDAgFw0yNjExMjQyMDMzMDJaGA8yMTI2MTAzMTIwMzMw
MlowDzENMAsGA1UEAwwEdGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABHCg
DFn7kFgpGAeOURY8B+jKNzU05EnptccVtwMkhxJghby8pT5yRU/x0cZVT+HJC5eA
VfN5Vts9JB6g8ttJxoujUzBRMB0GA1UdDgQWBBSMv0GKo0qtjTJrBauw/tm49gfO
PDAfBgNVHSMEGDAWgBSMv0GKo0qtjTJrBauw/tm49gfOPDAPBgNVHRMBAf8EBTAD
AQH/MAoGCCqGSM49BAMCA0kAMEYCIQC3cnl3FmvbmMxTdMwqYRyji5nfcsoSUfBM
WrGpFvcFgAIhAPat6/gkIe5ua2KmMeTLDHipWbMRHkjKKDUJ3CI4gwbf
-----END CERTIFICATE-----
)";

constexpr const char* kMatchingKey = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgfXiJjiFiE+DUs92S
aAER+5ura5dEWt+uAKGcYMvOekihRANCAARwoAxZ+5BYKRgHjlEWPAfoyjc1NORJ
6bXHFbcDJIcSYIW8vKU+ckVP8dHGVU/hyQuXgFXzeVbbPSQeoPLbScaL
-----END PRIVATE KEY-----
)";

constexpr const char* kOtherKey = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgEtCrJxYb5SRxd9xH
/n4hYogbExPhDTkjkwzCbeGYoxqhRANCAAThrzdFvxedS+7B0oXnButaHGYu+PI5
Slmizwow4yDyARSRu43L/NS5q9UZT2gKbbtlUW31/4AwZc5HNH/44HDK
-----END PRIVATE KEY-----
)";

constexpr const char* kEncryptedKey = R"(-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAgBR6LwW0h38QICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEIsuOQl8WzyhO8WJNBXBHmcEgZAc
S0Ara3zEmwb63KIXkzgkTsQ6BOALkxBp+lE7QYdL0wqLJ+xLJV0wnn6fd7G1cpwe
XrEqkGeyg44cDR0aSZSBpuFcPZWsnvifNHFyL31hbog052cdJj+8O8EcnybvmMPa
2zAOZFBQ0CvoMDSPUp5GET77AlePjMHH8Ynz8WDo7V3HiNrla/sWDu5qRdbWgGM=
-----END ENCRYPTED PRIVATE KEY-----
)";

TEST(Pem, RecognisesCertificates) {
  EXPECT_TRUE(is_pem_certificates(kCertificate));
  EXPECT_TRUE(is_pem_certificates(std::string(kCertificate) + kCertificate));
  EXPECT_FALSE(is_pem_certificates(""));
  EXPECT_FALSE(is_pem_certificates("not pem"));
  EXPECT_FALSE(is_pem_certificates(kMatchingKey));
}

TEST(Pem, RecognisesUnencryptedPrivateKeysOnly) {
  EXPECT_TRUE(is_pem_private_key(kMatchingKey));
  EXPECT_TRUE(is_pem_private_key(kOtherKey));
  EXPECT_FALSE(is_pem_private_key(kEncryptedKey));  // no passphrase prompt, just false
  EXPECT_FALSE(is_pem_private_key(kCertificate));
  EXPECT_FALSE(is_pem_private_key(""));
}

TEST(Pem, KeyMatchesOnlyItsCertificate) {
  EXPECT_TRUE(pem_key_matches_certificate(kCertificate, kMatchingKey));
  EXPECT_FALSE(pem_key_matches_certificate(kCertificate, kOtherKey));
  EXPECT_FALSE(pem_key_matches_certificate(kCertificate, kEncryptedKey));
  EXPECT_FALSE(pem_key_matches_certificate("", kMatchingKey));
}

}  // namespace
