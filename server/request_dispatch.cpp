#include "server/request_dispatch.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include <nlohmann/json.hpp>

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

std::optional<LogFormat> log_format_named(std::string_view name) {
  if (name == "text") return LogFormat::text;
  if (name == "json") return LogFormat::json;
  return std::nullopt;
}

namespace {

// A JSON string: ours are ASCII (ids, addresses, a method); anything else goes through the JSON
// library, which replaces bytes that are not UTF-8.
void append_json_string(std::string& out, std::string_view text) {
  const bool plain = std::all_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x80 && c != '"' && c != '\\';
  });
  if (!plain) {
    out += nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return;
  }
  out.push_back('"');
  out.append(text);
  out.push_back('"');
}

void append_json_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(",\"").append(name).append("\":");
  append_json_string(out, value);
}

std::string milliseconds(double elapsed_ms) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f", elapsed_ms);
  return text;
}

std::string access_log_json(const AccessLogEntry& entry) {
  std::string line;
  line.reserve(256);
  line.append("{\"time\":");
  append_json_string(line, entry.timestamp);
  append_json_field(line, "level", entry.status >= 500 ? "error" : "info");
  if (!entry.request_id.empty()) append_json_field(line, "requestId", entry.request_id);
  if (!entry.client.empty()) append_json_field(line, "client", entry.client);
  if (entry.method) append_json_field(line, "method", *entry.method);
  line.append(",\"status\":").append(std::to_string(entry.status));
  line.append(",\"durationMs\":").append(milliseconds(entry.elapsed_ms));
  append_json_field(line, "operation", entry.operation.value_or("none"));
  if (entry.operation && !entry.capability_log_id.empty())
    append_json_field(line, "token", entry.capability_log_id);
  if (!entry.error.empty()) append_json_field(line, "error", entry.error);
  line.push_back('}');
  return line;
}

}  // namespace

std::string access_log_line(const AccessLogEntry& entry, LogFormat format) {
  if (format == LogFormat::json) return access_log_json(entry);
  std::string line;
  line.reserve(160);
  line.append(entry.timestamp).push_back(' ');
  line.append(entry.method.value_or("-")).push_back(' ');
  line.append(std::to_string(entry.status)).push_back(' ');
  line.append(milliseconds(entry.elapsed_ms)).append("ms");
  if (entry.operation) {
    line.append(" op=").append(*entry.operation).append(" cap=").append(entry.capability_log_id);
  } else {
    line.append(" op=-");
  }
  if (!entry.client.empty()) line.append(" client=").append(entry.client);
  if (!entry.request_id.empty()) line.append(" id=").append(entry.request_id);
  if (!entry.error.empty()) {
    line.append(" error=");
    append_json_string(line, entry.error);  // quoted: a cause has spaces
  }
  return line;
}

std::string event_log_line(const EventLogEntry& entry, LogFormat format) {
  std::string line;
  line.reserve(entry.message.size() + 64);
  if (format == LogFormat::text) {
    line.append(entry.timestamp).push_back(' ');
    line.append(entry.message);
    return line;
  }
  line.append("{\"time\":");
  append_json_string(line, entry.timestamp);
  append_json_field(line, "level", entry.level);
  append_json_field(line, "message", entry.message);
  line.push_back('}');
  return line;
}

}  // namespace membraned::server
