// capi's HTTP client: one request per call, synchronous for the caller, over HTTPS (OpenSSL 3,
// the shared policy of core/tls_verification: TLS 1.2+, the server certificate verified against
// the system trust store or a given CA, host name or address checked, SNI set for a name) or, only to loopback addresses, plain HTTP. Every wait (name
// resolution, connect, TLS handshake, write, each read) has the same timeout. The only unit of
// cli/ that includes Beast and Asio.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/http.hpp"
#include "core/result.hpp"

namespace membraned::cli {

struct HttpTarget {
  std::string host;         // name or IP address, without brackets
  std::uint16_t port = 0;
  std::string host_header;  // the authority as written ("host:port")
  bool plain_http = false;  // false: HTTPS
  bool ip_literal = false;
  std::optional<std::string> ca_pem;  // HTTPS: trust only these CA certificates (else the system's)
};

struct HttpRequest {
  std::string method = "GET";
  std::string target = "/";
  core::Headers headers;  // Host, Content-Length and Connection are set by the client
  std::string body;
};

struct HttpResponseHead {
  unsigned status = 0;
  std::string reason;
  unsigned version = 11;  // 11 for HTTP/1.1, 10 for HTTP/1.0
  core::Headers headers;
};

struct HttpOptions {
  std::chrono::milliseconds timeout{30000};
  std::size_t max_body = 0;  // http_fetch: the largest body it collects (0: no limit)
};

using HeadSink = std::function<void(const HttpResponseHead&)>;
// Returns false to stop reading (the exchange then fails with `abort_message`).
using BodySink = std::function<bool(std::string_view)>;

// Sends the request and streams the answer: on_head once, then on_body for each piece as it
// arrives. Errors (invalid_input with a message for a person, never holding a header value) for
// anything that kept a complete answer from arriving.
core::Result<HttpResponseHead> http_exchange(const HttpTarget& target, const HttpRequest& request,
                                             const HttpOptions& options, const HeadSink& on_head,
                                             const BodySink& on_body);

struct HttpResponse {
  HttpResponseHead head;
  std::string body;
};

// The same, with the body collected in memory (options.max_body bounds it).
core::Result<HttpResponse> http_fetch(const HttpTarget& target, const HttpRequest& request,
                                      const HttpOptions& options);

}  // namespace membraned::cli
