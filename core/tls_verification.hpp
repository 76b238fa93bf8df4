// One TLS peer-verification policy for every client in the project: capi, and the service's
// upstream and credentials calls. OpenSSL only, no I/O: the caller owns the context, the
// connection and the trust store; this sets what a certificate must prove.
//
// The policy: TLS 1.2 or later; the peer's chain verified against the context's trust store;
// the certificate issued for the host asked for. A DNS name must match a subjectAltName DNS
// entry, where a wildcard counts only as a whole left-most label ("*.example.com" matches
// "api.example.com", "api*.example.com" matches nothing); an IP address must match an IP
// subjectAltName entry. A DNS name is sent as SNI, an IP address never (RFC 6066 forbids it).
#pragma once

#include <openssl/types.h>

#include <string_view>

#include "core/result.hpp"

namespace membraned::core {

// A client context: TLS 1.2 at least, and the peer's certificate chain verified (SSL_VERIFY_PEER,
// keeping any verify callback already set). Trust stays the caller's: load the system store or
// a given CA into the context as well. Errors are internal (OpenSSL refused).
Status configure_tls_client(SSL_CTX* context);

// For one connection, before its handshake: the certificate must be for `host`, a DNS name or an
// IP address (an IPv6 one with or without brackets), and SNI is set for a name. Enforced when
// the connection's context verifies the peer; under SSL_VERIFY_NONE (an export's
// rejectUnauthorized: false) the handshake completes whatever the name. Errors (invalid_input,
// field "host"): "invalid host name H", "invalid address H" or "cannot set SNI for H".
Status verify_peer_name(SSL* connection, std::string_view host);

}  // namespace membraned::core
