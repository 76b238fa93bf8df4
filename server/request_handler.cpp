#include "server/request_handler.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/string.hpp>

#include <algorithm>
#include <iterator>
#include <type_traits>

#include "core/http.hpp"
#include "core/request_id.hpp"
#include "core/requester_address.hpp"
#include "core/time.hpp"
#include "server/server_context.hpp"

namespace membraned::server {

using storage::CapabilityKind;

namespace {

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";

// An API call whose unexpected exception becomes a 500 without detail, never a lost answer.
template <class Call>
api::Response guarded(Call call) {
  try {
    return call();
  } catch (const std::exception&) {
    // Not what() in the log: a parser's message may quote the request's body.
    auto failure = api::Api::error_response(500, "Internal Server Error");
    failure.detail = "unexpected exception in the API";
    return failure;
  }
}

}  // namespace

// A message may quote what a requester sent: bytes that are not UTF-8 become U+FFFD rather than
// an exception (nlohmann's dump() throws on them), which would end the process.
Answer json_answer(const api::Response& response) {
  return Answer{response.status, std::string(kJson),
                response.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), response.retry_after,
                response.performs, response.detail};
}

namespace {

core::IpAddress ip_address_of(const net::ip::address& address) {
  core::IpAddress out;
  if (address.is_v4()) {
    const auto bytes = address.to_v4().to_bytes();
    std::copy(bytes.begin(), bytes.end(), out.bytes.begin());
  } else {
    out.v4 = false;
    const auto bytes = address.to_v6().to_bytes();
    std::copy(bytes.begin(), bytes.end(), out.bytes.begin());
  }
  return out;
}

}  // namespace

RequestHandler::RequestHandler(ServerContext& context, bool metrics_only, const net::ip::address& peer)
    : context_(context), rules_{metrics_only, context.settings.metrics}, peer_(ip_address_of(peer)) {}

void RequestHandler::begin(Clock::time_point started) {
  started_ = started;
  body_room_ = BodyBudget::Lease();  // the previous request's body is gone
  route_ = Route::by_token;
  authorized_.reset();
  authorization_error_.reset();
  stated_operation_refusal_.reset();
  export_request_.reset();
  use_admitted_ = false;
  request_id_ = core::RequestId::next();
  client_request_id_.clear();
  token_log_id_.clear();
  client_ = peer_;
  bytes_in_ = 0;
  refusal_.reset();
  count_cut_ = false;
  relayed_status_.reset();
}

// Runs `work` (a call that reaches the store), then `then(result)` on `executor`. A store that
// waits on the network (PostgreSQL) is called from the store threads, so no I/O thread ever waits
// for it. A local one (SQLite) reads inline (bounded disk work); its management calls and
// exports, which may write, go to the write threads, which wait for the disk and let
// concurrent writes share one commit.
template <class Work, class Then>
void RequestHandler::off_io_thread(Work work, net::any_io_executor executor, Then then, StoreCall call) {
  net::thread_pool* pool = context_.store_pool.get();
  if (pool == nullptr && call == StoreCall::may_write) pool = context_.write_pool.get();
  if (pool == nullptr) return then(work());
  net::post(*pool, [this, executor = std::move(executor), work = std::move(work), then = std::move(then),
                    posted = Clock::now()]() mutable {
    using Result = decltype(work());
    // Queued past the store's own timeouts (the database is down or slow and calls pile up):
    // answer 503 without adding one more call to the backlog.
    const bool stale = Clock::now() - posted > context_.settings.store_queue_timeout;
    auto result = [&]() -> Result {
      if (!stale) return work();
      if constexpr (std::is_same_v<Result, api::Response> || std::is_same_v<Result, std::optional<api::Response>>) {
        return api::Api::error_response(core::Error::unavailable("store call queued too long"));
      } else {
        return core::Error::unavailable("store call queued too long");
      }
    }();
    net::dispatch(executor, [result = std::move(result), then = std::move(then)]() mutable { then(std::move(result)); });
  });
}

std::optional<api::Response> RequestHandler::refuse_header(const Request& request) const {
  HeaderFacts facts;
  facts.version = request.version();
  const auto encodings = request.equal_range(http::field::transfer_encoding);
  for (auto it = encodings.first; it != encodings.second; ++it) {
    facts.transfer_encoding.push_back(it->value());
  }
  facts.content_length = request.find(http::field::content_length) != request.end();
  facts.hosts = request.count(http::field::host);
  if (auto refusal = header_refusal(facts)) return api::Api::error_response(400, std::string(*refusal));
  return std::nullopt;
}

api::Response RequestHandler::too_large() const {
  if (authorization_error_ && authorization_error_->kind == core::ErrorKind::unavailable) {
    return api::Api::error_response(*authorization_error_);
  }
  return api::Api::error_response(413, "request body is too large");
}

void RequestHandler::after_header(const Request& request, std::optional<std::uint64_t> announced,
                                  net::any_io_executor executor, std::function<void(BodyPlan)> then) {
  const bool has_authorization = request.find(http::field::authorization) != request.end();
  route_ = classify(request.method_string(), request.target(), has_authorization, rules_);
  if (route_ != Route::by_token) return then(plan_body(announced));
  client_ = requester(request);
  if (context_.audit) {
    // Recorded beside ours, never taken for it: a requester can write anything there.
    if (const auto own = request[kRequestIdField]; core::is_recordable_client_request_id(own)) {
      client_request_id_.assign(own);
    }
    // A refused token is recorded too (its log id, never the token), so that the attempts
    // after a revoke line up with the grant's earlier records.
    if (auto presented = core::parse_bearer(request[http::field::authorization])) token_log_id_ = presented->log_id();
  }
  auto stated = stated_operation(request);
  if (stated_operation_refusal_) return then(plan_body(announced));  // malformed: no store call
  off_io_thread([this, &request] { return context_.api.authorize(request[http::field::authorization]); },
                std::move(executor),
                [this, announced, stated = std::move(stated), then = std::move(then)](core::Result<api::Authorized> acting) {
                  if (!acting) {
                    authorization_error_ = acting.error();
                    return then(plan_body(announced));
                  }
                  authorized_.emplace(std::move(*acting));
                  // contract §11: an address a grant does not admit is refused before its body.
                  if (auto refused = context_.api.check_address(*authorized_, client_)) {
                    return then({std::move(*refused), 0});
                  }
                  // contract §2: decided now, answered once the body is in (read, not acted on),
                  // so that the connection stays usable.
                  if (stated) stated_operation_refusal_ = api::Api::check_stated_operation(*authorized_, *stated);
                  then(plan_body(announced));
                });
}

// X-Capability-Operation, when given once with an operation's name; a malformed one sets the 400
// the request gets.
std::optional<std::string> RequestHandler::stated_operation(const Request& request) {
  const auto fields = request.equal_range(core::kCapabilityOperationHeader);
  if (fields.first == fields.second) return std::nullopt;
  if (std::next(fields.first) != fields.second) {
    stated_operation_refusal_ =
        api::Api::error_response(400, std::string(core::kCapabilityOperationHeader) + " is given more than once");
    return std::nullopt;
  }
  const std::string_view value = fields.first->value();
  stated_operation_refusal_ = api::Api::check_operation_name(value);
  if (stated_operation_refusal_) return std::nullopt;
  return std::string(value);
}

// The capability decides how large the body may be; the body budget, whether there is room for
// it now. A body of unknown length (chunked) reserves the whole limit.
BodyPlan RequestHandler::plan_body(std::optional<std::uint64_t> announced) {
  const std::uint64_t limit = body_limit(authorized_ ? std::optional(authorized_->resolved.kind) : std::nullopt,
                                         {context_.settings.management_body_limit, context_.settings.invoke_body_limit});
  if (announced && *announced > limit) return {too_large(), limit};
  auto room = context_.bodies.reserve(announced.value_or(limit));
  if (!room) return {api::Api::error_response(core::Error::unavailable("no room for another request body")), limit};
  body_room_ = std::move(*room);
  return {std::nullopt, limit};
}

void RequestHandler::after_body(const Request& request, net::any_io_executor executor,
                                std::function<void(Outcome)> then) {
  bytes_in_ = request.body().size();
  if (route_ != Route::by_token) return answer_without_capability(std::move(executor), then);
  if (stated_operation_refusal_) {
    refusal_ = refusal_named(stated_operation_refusal_->reason);
    return then(json_answer(*stated_operation_refusal_));
  }
  if (!authorized_) {
    return then(json_answer(api::Api::error_response(authorization_error_.value_or(core::Error::unauthorized("")))));
  }
  switch (authorized_->resolved.kind) {
    case CapabilityKind::uri: return prepare_invocation(request, std::move(executor), std::move(then));
    case CapabilityKind::export_: return export_after_address_check(request, std::move(executor), std::move(then));
    default: return handle_management(request, std::move(executor), std::move(then));
  }
}

void RequestHandler::answer_without_capability(net::any_io_executor executor, const std::function<void(Outcome)>& then) {
  switch (route_) {
    case Route::health:
      return off_io_thread([this] { return context_.api.health(); }, std::move(executor),
                           [then](api::Response response) { then(json_answer(response)); });
    case Route::metrics:
      return then(Answer{200, std::string(kPrometheusText),
                         context_.metrics.render(context_.api.resolution_cache_stats())});
    default:
      return then(json_answer(api::Api::error_response(404, "this listener serves /metrics and /healthz only")));
  }
}

void RequestHandler::handle_management(const Request& request, net::any_io_executor executor,
                                       std::function<void(Outcome)> then) {
  off_io_thread(
      [this, &request] {
        return guarded([&] { return context_.api.handle(*authorized_, request.target(), request.body()); });
      },
      executor, [this, executor, then = std::move(then)](api::Response response) mutable {
        if (auto refusal = refusal_named(response.reason)) refusal_ = refusal;
        count_cut_ = response.count_cut;
        if (revocation_kind(authorized_->resolved.kind, response.status)) {
          return answer_after_settling(std::move(response), std::move(executor), std::move(then));
        }
        then(json_answer(response));
      },
      StoreCall::may_write);
}

// A revoke's 202 goes out once no instance can still send a request on what it cut: every
// invocation is checked again at the moment it is sent, against a view of the revocation epoch
// no older than the store's bound (docs/architecture.md, "Revocation at send time").
void RequestHandler::answer_after_settling(api::Response response, net::any_io_executor executor,
                                           std::function<void(Outcome)> then) {
  auto settle = std::make_shared<net::steady_timer>(executor, context_.api.revocation_settle());
  settle->async_wait([settle, response = std::move(response), then = std::move(then)](beast::error_code) {
    then(json_answer(response));
  });
}

// Asked by the relay at the last moment before it writes the request upstream. Nothing revoked
// since the capability was resolved: go on (no round trip; SQLite reads its epoch now and then,
// PostgreSQL's is watched). Otherwise the token is resolved again, off the I/O threads when the
// store waits on the network, and only a capability that still resolves to this invocation goes
// on. Then its use is counted (contract §11), once, however often the relay asks.
SendCheck RequestHandler::send_check() {
  return [this](net::any_io_executor executor, std::function<void(std::optional<api::Response>)> done) {
    auto admit = [this, executor, done = std::move(done)](bool current, std::string_view why) mutable {
      if (!current) {
        refusal_ = refusal_named(why).value_or(Refusal::revoked);
        return done(api::Api::error_response(core::Error::unauthorized("")));
      }
      if (use_admitted_) return done(std::nullopt);
      use_admitted_ = true;
      admit_use(std::move(executor), [this, done = std::move(done)](std::optional<api::Response> refused) {
        if (refused) refusal_ = refusal_named(refused->reason);
        done(std::move(refused));
      });
    };
    if (context_.api.still_current(*authorized_)) return admit(true, {});
    off_io_thread([this] { return context_.api.reauthorize(authorized_->token); }, executor,
                  [admit = std::move(admit)](core::Result<api::Authorized> again) mutable {
                    admit(again && again->resolved.kind == CapabilityKind::uri, again ? "revoked" : again.error().reason);
                  });
  };
}

// Rates and uses in memory first; when the store must reserve uses, on a store thread if it
// waits on the network (a local store's reservation is a short local write).
void RequestHandler::admit_use(net::any_io_executor executor, std::function<void(std::optional<api::Response>)> done) {
  auto admission = context_.api.admit_use(*authorized_, Clock::now(), !context_.api.waits_on_network());
  if (admission.decided) return done(std::move(admission.refusal));
  off_io_thread([this] { return context_.api.take_use(*authorized_, true).refusal; }, std::move(executor),
                [done = std::move(done)](std::optional<api::Response> refusal) { done(std::move(refusal)); });
}

core::IpAddress RequestHandler::requester(const Request& request) const {
  std::string forwarded;
  const auto fields = request.equal_range("X-Forwarded-For");
  for (auto it = fields.first; it != fields.second; ++it) {
    if (!forwarded.empty()) forwarded += ',';
    forwarded.append(it->value());
  }
  return core::requester_address(peer_, forwarded, context_.settings.trusted_proxies);
}

// Contract §10 at export: an upstream that is, or resolves to, a closed address is 400. The body
// is parsed once, here, and the parsed value stored. Names are resolved off the I/O threads
// (the upstream client's resolver pool, in the exporting tenant's share), for a few seconds at
// most; a name that does not resolve by then is left to the check every invocation makes on the
// address it connects to.
void RequestHandler::export_after_address_check(const Request& request, net::any_io_executor executor,
                                                std::function<void(Outcome)> then) {
  auto config = context_.api.parse_export(request.body());
  if (!config) return then(json_answer(api::Api::error_response(config.error())));
  export_request_ = std::move(*config);
  const auto* uri = std::get_if<core::UriExport>(&export_request_->config);
  if (uri == nullptr) return export_parsed(std::move(executor), std::move(then));
  context_.upstream.check_name(uri->target.connect_host, uri->target.port, authorized_->resolved.tenant_id, executor,
                               [this, executor, then = std::move(then)](core::Status verdict) mutable {
                                 if (!verdict) return then(json_answer(api::Api::error_response(verdict.error())));
                                 export_parsed(std::move(executor), std::move(then));
                               });
}

void RequestHandler::export_parsed(net::any_io_executor executor, std::function<void(Outcome)> then) {
  off_io_thread([this] { return guarded([&] { return context_.api.export_parsed(*authorized_, *export_request_); }); },
      std::move(executor), [then = std::move(then)](api::Response response) { then(json_answer(response)); },
      StoreCall::may_write);
}

// Contract §5: the upstream request built and signed by core/. An export that names a profile
// (contract §9) signs with the operator's credentials for it, which may first have to be fetched:
// the request waits, and goes on on the session's strand.
void RequestHandler::prepare_invocation(const Request& request, net::any_io_executor executor,
                                        std::function<void(Outcome)> then) {
  const core::UriExport& config = invoked_config();
  const auto* aws4 = std::get_if<core::Aws4Signing>(&config.signing);
  if (aws4 == nullptr || !aws4->credentials_profile) return then(sign_invocation(request, nullptr));
  context_.credentials.get(*aws4->credentials_profile, [this, &request, executor, then = std::move(then)](
                                                           CredentialsResult credentials) {
    net::dispatch(executor, [this, &request, then, credentials = std::move(credentials)] {
      if (!credentials) {
        auto failure = api::Api::error_response(502, credentials.error().message);
        failure.detail = "credentials: " + credentials.error().message;
        return then(json_answer(failure));
      }
      then(sign_invocation(request, credentials->get()));
    });
  });
}

// `credentials`: a profile's, or null when the export holds its own keys.
Outcome RequestHandler::sign_invocation(const Request& request, const core::AwsCredentials* credentials) {
  core::Headers headers;
  headers.reserve(static_cast<std::size_t>(std::distance(request.begin(), request.end())));
  for (const auto& field : request) headers.push_back({std::string(field.name_string()), std::string(field.value())});
  core::IncomingRequest incoming{request.method_string(), request.target(), headers, request.body()};
  auto prepared = core::prepare_upstream_request(
      invoked_config(), incoming,
      core::SigningContext{std::chrono::system_clock::now(), &context_.key_cache, credentials});
  if (!prepared) return json_answer(api::Api::error_response(prepared.error()));
  return Relay{std::move(*prepared)};
}

void RequestHandler::answered(std::optional<std::string_view> method, int status, std::uint64_t body_bytes,
                              std::string_view detail) {
  log_and_count_answer(method, status, detail);
  const std::optional<Refusal> reason = refusal_reason(status);
  if (reason) context_.metrics.refusal(*reason);
  if (!audited()) return;
  AuditRecord record = audit_record(method, status);
  record.reason = reason;
  record.bytes_out = body_bytes;
  if (count_cut_ && status == 202) return record_after_counting_cut(record);
  context_.audit->record(record);
}

// A revoke's record says how many grants it cut. The count walks what was cut (as long as the
// subtree is large), so it runs after the 202, which never waits for it, and off the I/O
// threads; the record is written when it is done. The pools are joined before the audit log
// drains at shutdown, so no such record is lost then.
void RequestHandler::record_after_counting_cut(const AuditRecord& record) {
  auto held = std::make_shared<HeldAuditRecord>(record);
  auto count_and_record = [&context = context_, held, revoker = authorized_->resolved] {
    held->record().cut = context.api.grants_cut_by(revoker);
    context.audit->record(held->record());
  };
  net::thread_pool* pool = context_.store_pool ? context_.store_pool.get() : context_.write_pool.get();
  if (pool == nullptr) return count_and_record();  // --write-threads 0: writes are inline too
  net::post(*pool, std::move(count_and_record));
}

void RequestHandler::relay_begins(std::string_view method, int status) {
  log_and_count_answer(method, status);
  if (!audited()) return;
  relayed_status_ = status;
  relayed_method_.assign(method);
}

void RequestHandler::relay_ended(std::uint64_t body_bytes) {
  if (!relayed_status_) return;
  AuditRecord record = audit_record(relayed_method_, *relayed_status_);
  record.upstream_status = relayed_status_;
  record.upstream_host = invoked_config().target.host;
  record.bytes_out = body_bytes;
  context_.audit->record(record);
  relayed_status_.reset();
}

// Why a capability refused this request, for an answer of the service's own (a relayed answer
// is the upstream's, whatever its status). 401, 403 and 429 are never anything else here.
std::optional<Refusal> RequestHandler::refusal_reason(int status) const {
  if (refusal_) return refusal_;
  if (route_ != Route::by_token) return std::nullopt;
  if (status == 401 && !authorized_) {
    // The store said why the token did not resolve; a missing or malformed one is unknown.
    return authorization_error_ ? refusal_named(authorization_error_->reason).value_or(Refusal::unknown)
                                : Refusal::unknown;
  }
  if (!authorized_) return std::nullopt;
  switch (status) {
    case 401: return Refusal::revoked;  // revoked between authorisation and the write
    case 403: return Refusal::address;
    case 429: return Refusal::rate;
    default: return std::nullopt;
  }
}

// Every request to a capability (or to none) is recorded; the service's own endpoints and the
// metrics listener are not.
bool RequestHandler::audited() const {
  return context_.audit && !rules_.metrics_only && route_ == Route::by_token;
}

AuditRecord RequestHandler::audit_record(std::optional<std::string_view> method, int status) {
  AuditRecord record;
  record.time = std::chrono::system_clock::now();
  record.request_id = request_id_.text();
  record.client_request_id = client_request_id_;
  if (authorized_) {
    record.operation = authorized_->operation();
    record.tenant = authorized_->resolved.tenant_id;
    record.membrane = authorized_->resolved.membrane_id;
    audit_chain_.clear();
    for (const auto& grant : authorized_->resolved.chain) audit_chain_.push_back(grant.id);
    record.chain = audit_chain_;
    record.revoked_grant = authorized_->resolved.target_grant_id;
  }
  record.token = token_log_id();
  record.client = client_;
  if (method) record.method = *method;
  record.status = status;
  record.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
  record.bytes_in = bytes_in_;
  return record;
}

// The presented token's, once it was seen (the audit log reads it as the header arrives), or the
// authorized capability's.
std::string_view RequestHandler::token_log_id() {
  if (authorized_ && token_log_id_.empty()) token_log_id_ = authorized_->token.log_id();
  return token_log_id_;
}

void RequestHandler::log_and_count_answer(std::optional<std::string_view> method, int status,
                                          std::string_view detail) {
  const std::optional<CapabilityKind> kind = authorized_ ? std::optional(authorized_->resolved.kind) : std::nullopt;
  context_.metrics.request(metric_operation(route_, kind), status);
  if (kind) {
    if (auto revoked = revocation_kind(*kind, status)) context_.metrics.revocation(*revoked);
  }
  if (!context_.log) return;
  // A balancer's or an orchestrator's health checks would fill the log (one every few seconds).
  if (route_ == Route::health && !context_.settings.log_health_checks) return;
  const std::string timestamp = core::format_log_timestamp(std::chrono::system_clock::now());
  const std::string_view log_id = authorized_ ? token_log_id() : std::string_view();  // a resolved capability only (§8)
  const std::string client = client_.to_string();
  const AccessLogEntry entry{timestamp,
                             method,
                             status,
                             std::chrono::duration<double, std::milli>(Clock::now() - started_).count(),
                             authorized_ ? std::optional(authorized_->operation()) : std::nullopt,
                             log_id,
                             client,
                             request_id_.text(),
                             status >= 500 ? detail : std::string_view()};
  context_.log(access_log_line(entry, context_.settings.log_format));
}

}  // namespace membraned::server
