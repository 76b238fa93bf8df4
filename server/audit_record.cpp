#include "server/audit_record.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

#include "core/time.hpp"

namespace membraned::server {

std::string_view to_string(Refusal reason) {
  switch (reason) {
    case Refusal::unknown: return "unknown";
    case Refusal::revoked: return "revoked";
    case Refusal::expired: return "expired";
    case Refusal::used_up: return "used-up";
    case Refusal::rate: return "rate";
    case Refusal::address: return "address";
  }
  return "unknown";
}

std::optional<Refusal> refusal_named(std::string_view reason) {
  for (Refusal refusal : kRefusals) {
    if (to_string(refusal) == reason) return refusal;
  }
  return std::nullopt;
}

std::string audit_line(const AuditRecord& record) {
  nlohmann::ordered_json line;
  line["time"] = core::format_log_timestamp(record.time);
  line["requestId"] = record.request_id;
  if (record.client_request_id) line["clientRequestId"] = *record.client_request_id;
  line["operation"] = record.operation;
  if (!record.tenant.empty()) line["tenant"] = record.tenant;
  if (!record.chain.empty()) {
    line["grant"] = record.chain.front();
    line["chain"] = std::vector<std::string>(record.chain.rbegin(), record.chain.rend());
  }
  if (!record.token.empty()) line["token"] = record.token;
  line["client"] = record.client.to_string();
  if (!record.method.empty()) line["method"] = record.method;
  line["status"] = record.status;
  if (record.reason) line["reason"] = to_string(*record.reason);
  if (record.upstream_status) {
    line["upstreamStatus"] = *record.upstream_status;
    line["upstreamHost"] = record.upstream_host;
  }
  line["durationMs"] = std::round(record.duration_ms * 1000) / 1000;
  line["bytesIn"] = record.bytes_in;
  line["bytesOut"] = record.bytes_out;
  // A method is a token of ASCII letters, the rest is ours: nothing here is not UTF-8, but a
  // replacement character is better than an exception on the writer's thread.
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  text.push_back('\n');
  return text;
}

}  // namespace membraned::server
