// What a request asks for and how it is answered, between the session's reads and writes: its
// route, its capability (a store call, off the I/O threads when the store waits on the network),
// its body limit, the management operation, the export-time address check, the preparation of an
// invocation, and each answer's access-log line and metrics. One per connection, one request at
// a time. No socket here: the session (server/session.hpp) does every read and write.
//
// Lifetimes: the handler is a member of its session, and the request is the session's. Every
// `then` a caller passes must own the session (its shared_ptr): while a continuation is pending,
// that keeps the handler, the request and the session alive.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "api/api.hpp"
#include "core/export_config.hpp"
#include "core/request_id.hpp"
#include "core/upstream_request.hpp"
#include "server/audit_record.hpp"
#include "server/invocation.hpp"
#include "server/request_dispatch.hpp"
#include "server/server_context.hpp"

namespace membraned::server {

struct ServerContext;
using Request = boost::beast::http::request<boost::beast::http::string_body>;

// On every answer, the id of the request it answers (its audit record's requestId).
inline constexpr std::string_view kRequestIdField = "X-Request-Id";

// After the header: answer at once and close without reading the body (too large, or no room
// for it now), or read a body of at most `limit` bytes.
struct BodyPlan {
  std::optional<api::Response> refuse;
  std::uint64_t limit = 0;
};

// After the body: an answer to send, or a prepared upstream request to relay.
struct Answer {
  int status = 200;
  std::string content_type;
  std::string body;
  std::optional<std::uint32_t> retry_after = std::nullopt;  // a 429's Retry-After, in seconds
  std::string capability_operation = {};  // a refused stated operation: X-Capability-Operation
  std::string detail = {};  // a 5xx's cause, for the access log (api::Response::detail); never sent
};
struct Relay {
  core::UpstreamRequest upstream;
};
using Outcome = std::variant<Answer, Relay>;

Answer json_answer(const api::Response& response);

class RequestHandler {
 public:
  // `peer`: the connection's remote address (the requester, unless a trusted proxy names another).
  RequestHandler(ServerContext& context, bool metrics_only, const boost::asio::ip::address& peer = {});

  // A new request, with an id of its own; `started` is when its header was in (or when it failed).
  void begin(std::chrono::steady_clock::time_point started);
  std::chrono::steady_clock::time_point started() const { return started_; }
  std::string_view request_id() const { return request_id_.text(); }

  // The header is in (`announced`: its Content-Length, if any). `then` runs on `executor` (the
  // session's strand) once the capability is known, with the plan for the body. The request must
  // stay alive until then.
  void after_header(const Request& request, std::optional<std::uint64_t> announced,
                    boost::asio::any_io_executor executor, std::function<void(BodyPlan)> then);
  // The body is in. `then` runs on `executor`.
  void after_body(const Request& request, boost::asio::any_io_executor executor, std::function<void(Outcome)> then);
  // The header is in: a request that cannot be read as one message (no Host, a body's framing
  // that cannot be trusted) is refused before anything else (400, then the connection closes;
  // server/request_dispatch.hpp).
  std::optional<api::Response> refuse_header(const Request& request) const;
  // 413, unless the capability could not be looked up because the store is down: its limit is
  // then unknown, and the client should retry rather than take the size for the reason.
  api::Response too_large() const;
  // The request's body is freed: its room goes back to the budget before the answer is written,
  // not when the next request begins (a keep-alive connection may idle for long).
  void body_freed() { body_room_ = BodyBudget::Lease(); }
  // The export configuration of the invocation being relayed (after a Relay outcome).
  const core::UriExport& invoked_config() const { return *authorized_->resolved.uri; }
  // The tenant whose export that is.
  const std::string& invoked_tenant() const { return authorized_->resolved.tenant_id; }
  // The relay's send-time check of that invocation's capability (server/invocation.hpp).
  SendCheck send_check();

  // An answer of the service's own with `status` and `body_bytes` of body goes out for the
  // current request (`method`: none when its header never arrived whole): its access-log line
  // (with `detail`, a 5xx's cause), metrics and audit record.
  void answered(std::optional<std::string_view> method, int status, std::uint64_t body_bytes,
                std::string_view detail = {});
  // The upstream's answer with `status` begins to go out: its access-log line and metrics. Its
  // audit record waits for the end (relay_ended), which knows how much went out.
  void relay_begins(std::string_view method, int status);
  // The relayed answer ended, whole or broken, after `body_bytes` bytes of body went out.
  void relay_ended(std::uint64_t body_bytes);

 private:
  // What a store call does, which decides the threads it runs on (see off_io_thread).
  enum class StoreCall { reads, may_write };
  template <class Work, class Then>
  void off_io_thread(Work work, boost::asio::any_io_executor executor, Then then,
                     StoreCall call = StoreCall::reads);
  BodyPlan plan_body(std::optional<std::uint64_t> announced);
  std::optional<std::string> stated_operation(const Request& request);
  void answer_without_capability(boost::asio::any_io_executor executor, const std::function<void(Outcome)>& then);
  void handle_management(const Request& request, boost::asio::any_io_executor executor,
                         std::function<void(Outcome)> then);
  void answer_after_settling(api::Response response, boost::asio::any_io_executor executor,
                             std::function<void(Outcome)> then);
  void export_after_address_check(const Request& request, boost::asio::any_io_executor executor,
                                  std::function<void(Outcome)> then);
  void export_parsed(boost::asio::any_io_executor executor, std::function<void(Outcome)> then);
  void prepare_invocation(const Request& request, boost::asio::any_io_executor executor,
                          std::function<void(Outcome)> then);
  Outcome sign_invocation(const Request& request, const core::AwsCredentials* credentials);
  core::IpAddress requester(const Request& request) const;
  void admit_use(boost::asio::any_io_executor executor, std::function<void(std::optional<api::Response>)> done);
  void log_and_count_answer(std::optional<std::string_view> method, int status, std::string_view detail = {});
  std::optional<Refusal> refusal_reason(int status) const;
  bool audited() const;
  // The record of this request, as far as it is known; its views stay valid while this request
  // is the handler's.
  AuditRecord audit_record(std::optional<std::string_view> method, int status);
  void record_after_counting_cut(const AuditRecord& record);
  // Token::log_id() of the authorized capability, worked out once per request.
  std::string_view token_log_id();

  ServerContext& context_;
  RouteRules rules_;
  Route route_ = Route::by_token;
  std::optional<api::Authorized> authorized_;
  // The answer to a request whose X-Capability-Operation is malformed (400) or names another
  // operation than its capability's (409): decided once the header is in, sent once the body is,
  // before anything acts on it.
  std::optional<api::Response> stated_operation_refusal_;
  std::optional<core::Error> authorization_error_;
  std::optional<core::ExportRequest> export_request_;
  core::IpAddress peer_;
  bool use_admitted_ = false;  // this request's use was counted (the send-time check runs again on a retry)
  core::RequestId request_id_;
  std::string client_request_id_;  // the requester's own, when recordable; else empty
  core::IpAddress client_;                        // the requester (peer_ until the header is in)
  std::uint64_t bytes_in_ = 0;                    // the request's body, once read
  std::optional<Refusal> refusal_;                // decided where the status alone does not tell
  bool count_cut_ = false;                        // an accepted revoke: its record waits for the count
  std::string token_log_id_;                      // token_log_id(), once known this request
  std::vector<std::string_view> audit_chain_;     // the chain's grant ids, for the audit record
  std::optional<int> relayed_status_;             // a relayed answer's, until it ends
  std::string relayed_method_;                    // its request's method
  BodyBudget::Lease body_room_;  // this request's share of the bodies held at once
  std::chrono::steady_clock::time_point started_;
};

}  // namespace membraned::server
