// One record of the audit log (contract §12): who did what with which capability, and how it
// ended. Made on an I/O thread from what the request handler knows, written as one line of JSON
// by the audit log's own thread (server/audit_log.hpp). Pure: no I/O, no Asio.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/address_policy.hpp"

namespace membraned::server {

// Why a capability refused a request: the record's `reason`, and the label of
// membraned_refusals_total.
// `operation`: the request stated an operation (X-Capability-Operation) the capability does
// not perform.
enum class Refusal { unknown, revoked, expired, used_up, rate, address, operation };
inline constexpr std::array kRefusals = {Refusal::unknown, Refusal::revoked, Refusal::expired, Refusal::used_up,
                                         Refusal::rate,    Refusal::address, Refusal::operation};
std::string_view to_string(Refusal reason);
// The refusal a core::Error or api::Response reason names; none for an empty or unknown one.
std::optional<Refusal> refusal_named(std::string_view reason);

// Never a token, a secret, a body, a query string or a header's value: the capability appears as
// Token::log_id(), the requester's own X-Request-Id only when core::is_recordable_client_request_id.
// The text fields are views of what the request handler holds: a record lives only for the call
// that formats it (AuditLog::record), so an audited request copies nothing into it.
struct AuditRecord {
  std::chrono::system_clock::time_point time;  // when the answer went out (a relayed one: ended)
  std::string_view request_id;
  std::string_view client_request_id;   // empty: none, or none recordable
  std::string_view operation = "none";  // the capability's kind as the access log names it
  std::string_view tenant;              // empty: no capability resolved
  std::string_view membrane;            // the presented capability's membrane; empty: none
  std::span<const std::string_view> chain;  // grant ids, presented first (storage::Resolved::chain)
  std::string_view revoked_grant;       // a grant's revoke capability: the grant it revokes
  std::string_view token;               // Token::log_id() of the resolved capability, else empty
  core::IpAddress client;
  std::string_view method;  // empty: the request's header never arrived whole
  int status = 0;
  std::optional<Refusal> reason;
  std::optional<int> upstream_status;  // an invocation whose upstream answered
  std::string_view upstream_host;      // with it: the export's host
  double duration_ms = 0;
  std::uint64_t bytes_in = 0;   // the request's body
  std::uint64_t bytes_out = 0;  // the answer's body, as far as it went out
  std::optional<std::int64_t> cut;  // a revoke: the grants it cut
  // `membraned admin`'s record: the local user who ran it, written instead of a client address.
  std::string_view operator_user;
};

// A record that owns what it names, to be written after its request is gone (a revoke's, once
// the grants it cut are counted). Neither copied nor moved: its record points into it.
class HeldAuditRecord {
 public:
  explicit HeldAuditRecord(const AuditRecord& record);
  HeldAuditRecord(const HeldAuditRecord&) = delete;
  HeldAuditRecord& operator=(const HeldAuditRecord&) = delete;
  AuditRecord& record() { return record_; }

 private:
  std::string_view keep(std::string_view text) { return texts_.emplace_back(text); }

  std::deque<std::string> texts_;  // a deque: its strings stay where they are as it grows
  std::vector<std::string_view> chain_;
  AuditRecord record_;
};

// The record as one JSON object and a newline, its fields in the order of contract §12: the
// grant presented as `grant`, the chain from the root down. Appended to `out`.
void append_audit_line(std::string& out, const AuditRecord& record);
// The same as a string of its own.
std::string audit_line(const AuditRecord& record);

}  // namespace membraned::server
