// core/tls_verification: real certificates made here (test_pki) and real TLS handshakes between
// an OpenSSL client and server joined by a BIO pair in memory, no sockets. The client is set up
// the way capi (and the service, once it adopts the policy) sets up its connections.
#include <gtest/gtest.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "core/tls_verification.hpp"
#include "tests/support/test_pki.hpp"

namespace membraned::core {
namespace {

using test::CertificateNames;
using test::PemPair;

struct SslCtxFree {
  void operator()(SSL_CTX* p) const noexcept { SSL_CTX_free(p); }
};
struct SslFree {
  void operator()(SSL* p) const noexcept { SSL_free(p); }
};
struct X509Free {
  void operator()(X509* p) const noexcept { X509_free(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const noexcept { BIO_free(p); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

std::unique_ptr<X509, X509Free> read_certificate(const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return std::unique_ptr<X509, X509Free>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

std::unique_ptr<EVP_PKEY, PkeyFree> read_key(const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return std::unique_ptr<EVP_PKEY, PkeyFree>(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

// A server context presenting `server` (its certificate and key).
CtxPtr server_context(const PemPair& server) {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  auto cert = read_certificate(server.cert);
  auto key = read_key(server.key);
  EXPECT_TRUE(ctx && cert && key);
  EXPECT_EQ(SSL_CTX_use_certificate(ctx.get(), cert.get()), 1);
  EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx.get(), key.get()), 1);
  return ctx;
}

// A client context under the shared policy, trusting only `ca`.
CtxPtr client_context(const PemPair& ca) {
  CtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  EXPECT_TRUE(configure_tls_client(ctx.get()).ok());
  auto ca_cert = read_certificate(ca.cert);
  EXPECT_EQ(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca_cert.get()), 1);
  return ctx;
}

struct Outcome {
  bool connected = false;
  long verify_result = X509_V_OK;             // the client's verdict on the certificate
  std::optional<std::string> server_saw_sni;  // what the server received as SNI
};

// One handshake between `client` (already given its peer name) and a server on `server_ctx`,
// over a BIO pair; each side runs until both finish or one fails.
Outcome handshake(SSL* client, SSL_CTX* server_ctx) {
  SslPtr server(SSL_new(server_ctx));
  BIO* client_end = nullptr;
  BIO* server_end = nullptr;
  EXPECT_EQ(BIO_new_bio_pair(&client_end, 0, &server_end, 0), 1);
  SSL_set_bio(client, client_end, client_end);
  SSL_set_bio(server.get(), server_end, server_end);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server.get());

  auto pending = [](SSL* ssl, int rc) {
    const int error = SSL_get_error(ssl, rc);
    return error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE;
  };
  Outcome out;
  for (int round = 0; round < 32; ++round) {
    const int client_rc = SSL_do_handshake(client);
    const int server_rc = SSL_do_handshake(server.get());
    if (client_rc == 1 && server_rc == 1) {
      out.connected = true;
      break;
    }
    if ((client_rc != 1 && !pending(client, client_rc)) ||
        (server_rc != 1 && !pending(server.get(), server_rc))) {
      break;
    }
  }
  ERR_clear_error();
  out.verify_result = SSL_get_verify_result(client);
  if (const char* sni = SSL_get_servername(server.get(), TLSEXT_NAMETYPE_host_name)) out.server_saw_sni = sni;
  return out;
}

// A client under the policy, connecting to `host`, against a server presenting `server`.
Outcome connect_to(std::string_view host, const PemPair& ca, const PemPair& server) {
  CtxPtr client_ctx = client_context(ca);
  CtxPtr server_ctx = server_context(server);
  SslPtr client(SSL_new(client_ctx.get()));
  EXPECT_TRUE(verify_peer_name(client.get(), host).ok()) << host;
  return handshake(client.get(), server_ctx.get());
}

class TlsVerification : public ::testing::Test {
 protected:
  const PemPair ca_ = test::make_ca_pem();
  const PemPair named_ = test::make_server_pem(ca_, CertificateNames{{"upstream.test", "*.wild.test"}, {}});
  const PemPair addressed_ = test::make_server_pem(ca_, CertificateNames{{}, {"127.0.0.1", "::1"}});
};

TEST_F(TlsVerification, TheClientContextAsksForTls12AndVerifiesThePeer) {
  CtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  ASSERT_TRUE(configure_tls_client(ctx.get()).ok());
  EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx.get()), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_verify_mode(ctx.get()), SSL_VERIFY_PEER);
  EXPECT_FALSE(configure_tls_client(nullptr).ok());
}

TEST_F(TlsVerification, TheRightNameIsAccepted) {
  Outcome out = connect_to("upstream.test", ca_, named_);
  EXPECT_TRUE(out.connected);
  EXPECT_EQ(out.verify_result, X509_V_OK) << X509_verify_cert_error_string(out.verify_result);
}

TEST_F(TlsVerification, AWrongNameIsRefused) {
  Outcome out = connect_to("other.test", ca_, named_);
  EXPECT_FALSE(out.connected);
  EXPECT_EQ(out.verify_result, X509_V_ERR_HOSTNAME_MISMATCH);
}

TEST_F(TlsVerification, ACertificateFromAnotherCaIsRefused) {
  Outcome out = connect_to("upstream.test", test::make_ca_pem("another CA"), named_);
  EXPECT_FALSE(out.connected);
  EXPECT_NE(out.verify_result, X509_V_OK);
}

TEST_F(TlsVerification, AWholeLabelWildcardMatchesOneLabel) {
  EXPECT_TRUE(connect_to("api.wild.test", ca_, named_).connected);
  EXPECT_FALSE(connect_to("a.b.wild.test", ca_, named_).connected);
  EXPECT_FALSE(connect_to("wild.test", ca_, named_).connected);
}

TEST_F(TlsVerification, APartialWildcardIsRefused) {
  const PemPair partial = test::make_server_pem(ca_, CertificateNames{{"api*.partial.test"}, {}});
  Outcome out = connect_to("api1.partial.test", ca_, partial);
  EXPECT_FALSE(out.connected);
  EXPECT_EQ(out.verify_result, X509_V_ERR_HOSTNAME_MISMATCH);

  // The control: OpenSSL's own default (no flag) would have taken it. The policy is what refuses.
  CtxPtr client_ctx = client_context(ca_);
  CtxPtr server_ctx = server_context(partial);
  SslPtr lenient(SSL_new(client_ctx.get()));
  ASSERT_EQ(X509_VERIFY_PARAM_set1_host(SSL_get0_param(lenient.get()), "api1.partial.test", 0), 1);
  EXPECT_TRUE(handshake(lenient.get(), server_ctx.get()).connected);
}

TEST_F(TlsVerification, AnIpAddressMatchesAnIpSubjectAltName) {
  for (std::string_view host : {"127.0.0.1", "::1", "[::1]"}) {
    SCOPED_TRACE(host);
    Outcome out = connect_to(host, ca_, addressed_);
    EXPECT_TRUE(out.connected);
    EXPECT_EQ(out.verify_result, X509_V_OK) << X509_verify_cert_error_string(out.verify_result);
  }
  Outcome other = connect_to("127.0.0.2", ca_, addressed_);
  EXPECT_FALSE(other.connected);
  EXPECT_EQ(other.verify_result, X509_V_ERR_IP_ADDRESS_MISMATCH);
  // A certificate that holds only names does not cover an address, nor one with only addresses a name.
  EXPECT_FALSE(connect_to("127.0.0.1", ca_, named_).connected);
  EXPECT_FALSE(connect_to("upstream.test", ca_, addressed_).connected);
}

TEST_F(TlsVerification, SniIsSentForANameAndNeverForAnAddress) {
  EXPECT_EQ(connect_to("upstream.test", ca_, named_).server_saw_sni, "upstream.test");
  EXPECT_EQ(connect_to("127.0.0.1", ca_, addressed_).server_saw_sni, std::nullopt);
  EXPECT_EQ(connect_to("::1", ca_, addressed_).server_saw_sni, std::nullopt);
}

// The service's rejectUnauthorized: false turns verification off on its context; the name
// check then does not stop the handshake either.
TEST_F(TlsVerification, WithoutPeerVerificationTheNameIsNotEnforced) {
  CtxPtr client_ctx = client_context(ca_);
  SSL_CTX_set_verify(client_ctx.get(), SSL_VERIFY_NONE, nullptr);
  CtxPtr server_ctx = server_context(named_);
  SslPtr client(SSL_new(client_ctx.get()));
  ASSERT_TRUE(verify_peer_name(client.get(), "other.test").ok());
  Outcome out = handshake(client.get(), server_ctx.get());
  EXPECT_TRUE(out.connected);
  EXPECT_EQ(out.verify_result, X509_V_ERR_HOSTNAME_MISMATCH);
}

TEST_F(TlsVerification, HostsThatCannotBeCheckedAreErrors) {
  CtxPtr ctx = client_context(ca_);
  SslPtr client(SSL_new(ctx.get()));
  for (std::string_view host : {std::string_view(""), std::string_view("a\0b.test", 8)}) {
    auto s = verify_peer_name(client.get(), host);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().kind, ErrorKind::invalid_input);
    EXPECT_EQ(s.error().field, "host");
  }
  auto too_long = verify_peer_name(client.get(), std::string(300, 'a'));
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().message, "cannot set SNI for " + std::string(300, 'a'));
  EXPECT_FALSE(verify_peer_name(nullptr, "upstream.test").ok());
  ERR_clear_error();
}

}  // namespace
}  // namespace membraned::core
