#include "server/request_dispatch.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "core/http.hpp"

namespace membraned::server {

using storage::CapabilityKind;

Route classify(std::string_view method, std::string_view target, bool has_authorization, const RouteRules& rules) {
  if (has_authorization && !rules.metrics_only) return Route::by_token;
  const std::string_view path = target.substr(0, target.find('?'));
  const bool get = method == "GET" || method == "HEAD";
  if (get && path == "/healthz") return Route::health;
  if (get && path == "/metrics" && (rules.metrics_only || rules.metrics_enabled)) return Route::metrics;
  return rules.metrics_only ? Route::not_found : Route::by_token;
}

std::uint64_t body_limit(std::optional<CapabilityKind> kind, const BodyLimits& limits) {
  return kind == CapabilityKind::uri ? limits.invocation : limits.management;
}

std::optional<std::string_view> header_refusal(const HeaderFacts& facts) {
  if (facts.hosts > 1) return "Host header is given more than once";
  if (facts.hosts == 0 && facts.version >= 11) return "Host header is required";
  if (facts.transfer_encoding.empty()) return std::nullopt;
  if (facts.version < 11) return "Transfer-Encoding is not allowed in HTTP/1.0";
  if (facts.content_length) return "Transfer-Encoding and Content-Length cannot both be given";
  std::vector<std::string> codings;
  for (std::string_view value : facts.transfer_encoding) core::append_connection_tokens(value, codings);
  if (codings.size() != 1 || codings.front() != "chunked") return "Transfer-Encoding must be chunked";
  return std::nullopt;
}

OversizedFraming oversized_framing(std::string_view unparsed) {
  if (unparsed.starts_with("\r\n")) unparsed.remove_prefix(2);
  // The last chunk's size is zero, in one or more digits; trailers follow once its line ended.
  const std::size_t zeros = std::min(unparsed.find_first_not_of('0'), unparsed.size());
  const bool last_chunk =
      zeros > 0 && (zeros == unparsed.size() || !std::isxdigit(static_cast<unsigned char>(unparsed[zeros])));
  if (last_chunk && unparsed.find("\r\n") != std::string_view::npos) return OversizedFraming::trailers;
  return OversizedFraming::chunk_header;
}

std::string_view metric_operation(Route route, std::optional<CapabilityKind> kind) {
  switch (route) {
    case Route::health: return "healthz";
    case Route::metrics: return "metrics";
    case Route::by_token:
    case Route::not_found: break;
  }
  if (!kind) return "none";
  return storage::to_string(*kind);
}

std::optional<std::string_view> revocation_kind(CapabilityKind kind, int status) {
  if (status != 202) return std::nullopt;
  if (kind == CapabilityKind::revoke) return "membrane";
  if (kind == CapabilityKind::revoke_grant) return "grant";
  if (kind == CapabilityKind::delete_self) return "tenant";
  return std::nullopt;
}

std::string access_log_line(const AccessLogEntry& entry) {
  char elapsed[32];
  std::snprintf(elapsed, sizeof elapsed, "%.3fms", entry.elapsed_ms);
  std::string line;
  line.reserve(128);
  line.append(entry.timestamp).push_back(' ');
  line.append(entry.method.value_or("-")).push_back(' ');
  line.append(std::to_string(entry.status)).push_back(' ');
  line.append(elapsed);
  if (entry.operation) {
    line.append(" op=").append(*entry.operation).append(" cap=").append(entry.capability_log_id);
  } else {
    line.append(" op=-");
  }
  return line;
}

}  // namespace membraned::server
