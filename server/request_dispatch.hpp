// The decisions about a request that need no socket: whether its header is refused, where it
// goes, how large its body may be, which answer a chunked body's oversized framing gets, its
// access-log line and the names it is counted under. Pure functions, unit-tested on their own
// (tests/unit/server_dispatch_test.cpp); the session and the request handler only apply them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "storage/store.hpp"

namespace membraned::server {

// A request with an Authorization header goes to its capability whatever its path (contract
// §2), so /healthz and /metrics can never shadow a capability. Requests without one may ask for
// the service's own state.
enum class Route { by_token, health, metrics, not_found };

struct RouteRules {
  bool metrics_only = false;     // the --metrics-listen listener: /metrics and /healthz only
  bool metrics_enabled = false;  // --metrics: /metrics on the service's own listener too
};

Route classify(std::string_view method, std::string_view target, bool has_authorization, const RouteRules& rules);

struct BodyLimits {
  std::uint64_t management = 64 * 1024;
  std::uint64_t invocation = 6 * 1024 * 1024;
};

// The largest body a request may send once its capability is known; a request whose capability
// did not resolve (or that has none) gets the management limit.
std::uint64_t body_limit(std::optional<storage::CapabilityKind> kind, const BodyLimits& limits);

// What of a request's header decides whether it can be read as one message at all.
struct HeaderFacts {
  unsigned version = 11;                            // 10: HTTP/1.0, 11: HTTP/1.1
  std::vector<std::string_view> transfer_encoding;  // the value of each Transfer-Encoding field
  bool content_length = false;                      // a Content-Length field is present
  std::size_t hosts = 0;                            // how many Host fields
};

// Why a request must be refused once its header is in (400, then the connection closes), or
// none (RFC 9112):
// - §3.2: an HTTP/1.1 request without Host, or any request with more than one;
// - §6.1, §6.3: a Transfer-Encoding other than exactly `chunked` (one coding, in any case, over
//   all its fields), one beside Content-Length, or one in HTTP/1.0 leaves the body's length in
//   doubt, and a front end that reads it another way would take the body for a second request.
std::optional<std::string_view> header_refusal(const HeaderFacts& facts);

// The framing of a chunked request body that must be read whole did not fit in the read buffer
// (--header-limit bytes). `unparsed`, what the buffer held, starts at a chunk's size line (after
// the CRLF that ends the previous chunk's data): the trailer section when that line is the last
// chunk's and it ended (fields, like a header block too large: 431), else the size line with its
// extensions (the body's own framing: 413).
enum class OversizedFraming { chunk_header, trailers };
OversizedFraming oversized_framing(std::string_view unparsed);

// The `operation` label of membraned_requests_total.
std::string_view metric_operation(Route route, std::optional<storage::CapabilityKind> kind);

// "membrane" or "tenant" when this answer took something back (membraned_revocations_total).
std::optional<std::string_view> revocation_kind(storage::CapabilityKind kind, int status);

// The access log's and the service's own lines: `text` for a person, `json` (one object per
// line) for a collector.
enum class LogFormat { text, json };
std::optional<LogFormat> log_format_named(std::string_view name);

struct AccessLogEntry {
  std::string_view timestamp;             // UTC, milliseconds
  std::optional<std::string_view> method; // none: the header never arrived whole
  int status = 0;
  double elapsed_ms = 0;
  std::optional<std::string_view> operation;  // none: no capability resolved
  std::string_view capability_log_id;          // Token::log_id(), never the token
  std::string_view client;                     // the requester's address (a trusted proxy's X-Forwarded-For)
  std::string_view request_id;                 // the answer's X-Request-Id
  std::string_view error;                      // a 5xx's cause for the operator; never a secret
};

// Text: `TIME METHOD STATUS 1.234ms op=OPERATION cap=LOGID client=ADDRESS id=REQUESTID`, `op=-`
// (and no cap=) without a capability, then `error="..."` on a 5xx with a cause. JSON: the object
// {"time", "level", "requestId", "client", "method", "status", "durationMs", "operation",
// "token", "error"}, the fields that do not apply left out; level is "error" for a 5xx.
std::string access_log_line(const AccessLogEntry& entry, LogFormat format = LogFormat::text);

struct EventLogEntry {
  std::string_view timestamp;
  std::string_view level;  // info, warning, error
  std::string_view message;
};

// A line of the service's own: `TIME MESSAGE`, or {"time", "level", "message"}.
std::string event_log_line(const EventLogEntry& entry, LogFormat format = LogFormat::text);

}  // namespace membraned::server
