#include "server/audit_record.hpp"

#include <algorithm>
#include <charconv>
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
    case Refusal::operation: return "operation";
  }
  return "unknown";
}

std::optional<Refusal> refusal_named(std::string_view reason) {
  for (Refusal refusal : kRefusals) {
    if (to_string(refusal) == reason) return refusal;
  }
  return std::nullopt;
}

namespace {

// A JSON string. The fields are ours and ASCII (ids, addresses, a method, a host); anything else
// goes through the JSON library, which replaces bytes that are not UTF-8.
void append_string(std::string& out, std::string_view text) {
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

// `,"name":` (the object's first field, the time, is written apart).
void append_field(std::string& out, std::string_view name) {
  out.push_back(',');
  out.push_back('"');
  out.append(name);
  out.append("\":");
}

template <class Number>
void append_number(std::string& out, Number value) {
  char digits[32];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, ec == std::errc() ? end : digits);
}

}  // namespace

// Written by hand, straight into the caller's buffer, rather than through a JSON document: every
// audited request formats one, and a document per record cost several percent of the
// invocation rate.
void append_audit_line(std::string& out, const AuditRecord& record) {
  out.append("{\"time\":\"");
  core::append_log_timestamp(out, record.time);
  out.push_back('"');
  append_field(out, "requestId");
  append_string(out, record.request_id);
  if (!record.client_request_id.empty()) {
    append_field(out, "clientRequestId");
    append_string(out, record.client_request_id);
  }
  append_field(out, "operation");
  append_string(out, record.operation);
  if (!record.tenant.empty()) {
    append_field(out, "tenant");
    append_string(out, record.tenant);
  }
  if (!record.membrane.empty()) {
    append_field(out, "membrane");
    append_string(out, record.membrane);
  }
  if (!record.chain.empty()) {
    append_field(out, "grant");
    append_string(out, record.chain.front());
    append_field(out, "chain");
    out.push_back('[');
    for (auto id = record.chain.rbegin(); id != record.chain.rend(); ++id) {
      if (id != record.chain.rbegin()) out.push_back(',');
      append_string(out, *id);
    }
    out.push_back(']');
  } else if (!record.revoked_grant.empty()) {
    // A grant's revoke capability is no grant: the record names the grant it acts on, so that
    // the trail of one grant ends with its revocation.
    append_field(out, "grant");
    append_string(out, record.revoked_grant);
  }
  if (!record.token.empty()) {
    append_field(out, "token");
    append_string(out, record.token);
  }
  if (!record.operator_user.empty()) {
    append_field(out, "operator");
    append_string(out, record.operator_user);
  } else {
    append_field(out, "client");
    append_string(out, record.client.to_string());  // short enough not to allocate, but long IPv6
  }
  if (!record.method.empty()) {
    append_field(out, "method");
    append_string(out, record.method);
  }
  append_field(out, "status");
  append_number(out, record.status);
  if (record.reason) {
    append_field(out, "reason");
    append_string(out, to_string(*record.reason));
  }
  if (record.upstream_status) {
    append_field(out, "upstreamStatus");
    append_number(out, *record.upstream_status);
    append_field(out, "upstreamHost");
    append_string(out, record.upstream_host);
  }
  append_field(out, "durationMs");
  append_number(out, std::round(record.duration_ms * 1000) / 1000);
  append_field(out, "bytesIn");
  append_number(out, record.bytes_in);
  append_field(out, "bytesOut");
  append_number(out, record.bytes_out);
  if (record.cut) {
    append_field(out, "cut");
    append_number(out, *record.cut);
  }
  out.append("}\n");
}

HeldAuditRecord::HeldAuditRecord(const AuditRecord& record) : record_(record) {
  for (std::string_view* text : {&record_.request_id, &record_.client_request_id, &record_.operation, &record_.tenant,
                                 &record_.membrane, &record_.revoked_grant, &record_.token, &record_.method,
                                 &record_.upstream_host, &record_.operator_user}) {
    *text = keep(*text);
  }
  for (std::string_view id : record.chain) chain_.push_back(keep(id));
  record_.chain = chain_;
}

std::string audit_line(const AuditRecord& record) {
  std::string out;
  append_audit_line(out, record);
  return out;
}

}  // namespace membraned::server
