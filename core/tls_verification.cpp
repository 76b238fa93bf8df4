#include "core/tls_verification.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <string>

#include "core/address_policy.hpp"

namespace membraned::core {
namespace {

Error bad_host(std::string message) { return Error::invalid("host", std::move(message)); }

}  // namespace

Status configure_tls_client(SSL_CTX* context) {
  if (context == nullptr) return Error::internal("no TLS client context");
  if (SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) != 1) {
    return Error::internal("the TLS client context refuses TLS 1.2 as its lowest version");
  }
  SSL_CTX_set_verify(context, SSL_VERIFY_PEER, SSL_CTX_get_verify_callback(context));
  return ok_status();
}

Status verify_peer_name(SSL* connection, std::string_view host) {
  const std::string text(host);
  if (connection == nullptr) return Error::internal("no TLS connection");
  X509_VERIFY_PARAM* param = SSL_get0_param(connection);
  // A wildcard matches only as a whole left-most label, as RFC 9525 and browsers have it.
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (auto address = IpAddress::parse(host)) {
    const std::size_t length = address->v4 ? 4 : 16;
    if (X509_VERIFY_PARAM_set1_ip(param, address->bytes.data(), length) != 1) {
      return bad_host("invalid address " + text);
    }
    return ok_status();
  }
  // OpenSSL refuses a name holding NUL, but takes an empty one as "check no name": refuse it here.
  if (host.empty() || X509_VERIFY_PARAM_set1_host(param, text.data(), text.size()) != 1) {
    return bad_host("invalid host name " + text);
  }
  if (SSL_set_tlsext_host_name(connection, text.c_str()) != 1) return bad_host("cannot set SNI for " + text);
  return ok_status();
}

}  // namespace membraned::core
