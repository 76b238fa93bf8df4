// server/request_dispatch: whether a request's header is refused, where it goes, how large its
// body may be, how oversized chunk framing is answered, what it is counted as and logged as; pure
// functions, no socket.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/request_dispatch.hpp"

namespace {

using membraned::server::access_log_line;
using membraned::server::AccessLogEntry;
using membraned::server::body_limit;
using membraned::server::BodyLimits;
using membraned::server::classify;
using membraned::server::event_log_line;
using membraned::server::header_refusal;
using membraned::server::LogFormat;
using membraned::server::metric_operation;
using membraned::server::oversized_framing;
using membraned::server::OversizedFraming;
using membraned::server::revocation_kind;
using membraned::server::Route;
using membraned::server::RouteRules;
using membraned::storage::CapabilityKind;

const RouteRules kService{false, false};
const RouteRules kServiceWithMetrics{false, true};
const RouteRules kMetricsListener{true, false};

TEST(Classify, ARequestWithACapabilityGoesToItWhateverItsPath) {
  EXPECT_EQ(classify("GET", "/healthz", true, kServiceWithMetrics), Route::by_token);
  EXPECT_EQ(classify("GET", "/metrics", true, kServiceWithMetrics), Route::by_token);
  EXPECT_EQ(classify("POST", "/any/path?x=1", true, kService), Route::by_token);
}

TEST(Classify, WithoutACapabilityOnlyGetOrHeadOfHealthAndMetricsAreTheServicesOwn) {
  EXPECT_EQ(classify("GET", "/healthz", false, kService), Route::health);
  EXPECT_EQ(classify("HEAD", "/healthz?verbose", false, kService), Route::health);
  EXPECT_EQ(classify("POST", "/healthz", false, kService), Route::by_token);  // then 401
  EXPECT_EQ(classify("GET", "/healthz/x", false, kService), Route::by_token);
  EXPECT_EQ(classify("GET", "/", false, kService), Route::by_token);
}

TEST(Classify, MetricsOnlyWhenTurnedOnOrOnTheirOwnListener) {
  EXPECT_EQ(classify("GET", "/metrics", false, kService), Route::by_token);
  EXPECT_EQ(classify("GET", "/metrics", false, kServiceWithMetrics), Route::metrics);
  EXPECT_EQ(classify("GET", "/metrics", false, kMetricsListener), Route::metrics);
}

TEST(Classify, TheMetricsListenerServesNothingElseAndNoCapability) {
  EXPECT_EQ(classify("GET", "/", false, kMetricsListener), Route::not_found);
  EXPECT_EQ(classify("GET", "/", true, kMetricsListener), Route::not_found);
  EXPECT_EQ(classify("GET", "/healthz", true, kMetricsListener), Route::health);
}

TEST(BodyLimit, InvocationsGetTheInvocationLimitEverythingElseTheManagementOne) {
  const BodyLimits limits{100, 5000};
  EXPECT_EQ(body_limit(CapabilityKind::uri, limits), 5000u);
  for (auto kind : {CapabilityKind::create, CapabilityKind::query, CapabilityKind::delete_self,
                    CapabilityKind::export_, CapabilityKind::revoke, CapabilityKind::reexport}) {
    EXPECT_EQ(body_limit(kind, limits), 100u);
  }
  EXPECT_EQ(body_limit(std::nullopt, limits), 100u);  // the capability did not resolve
}

// A request of `version` with these Transfer-Encoding values, Content-Length or not, one Host.
std::optional<std::string_view> refusal(std::vector<std::string_view> transfer_encoding,
                                        bool content_length = false, unsigned version = 11) {
  return header_refusal({version, std::move(transfer_encoding), content_length, 1});
}

TEST(HeaderRefusal, OnlyChunkedAloneOnHttp11IsATransferEncoding) {
  EXPECT_EQ(refusal({}), std::nullopt);
  EXPECT_EQ(refusal({}, true), std::nullopt);
  EXPECT_EQ(refusal({}, true, 10), std::nullopt);
  EXPECT_EQ(refusal({"chunked"}), std::nullopt);
  EXPECT_EQ(refusal({" Chunked "}), std::nullopt);
  EXPECT_EQ(refusal({", chunked,"}), std::nullopt);  // empty list elements are nothing
  const std::string_view not_chunked = "Transfer-Encoding must be chunked";
  EXPECT_EQ(refusal({"xchunked"}), not_chunked);
  EXPECT_EQ(refusal({"identity"}), not_chunked);
  EXPECT_EQ(refusal({"gzip, chunked"}), not_chunked);
  EXPECT_EQ(refusal({"chunked, gzip"}), not_chunked);
  EXPECT_EQ(refusal({"chunked, chunked"}), not_chunked);
  EXPECT_EQ(refusal({"gzip", "chunked"}), not_chunked);
  EXPECT_EQ(refusal({"chunked;x=1"}), not_chunked);
  EXPECT_EQ(refusal({""}), not_chunked);
  const std::string_view both = "Transfer-Encoding and Content-Length cannot both be given";
  EXPECT_EQ(refusal({"chunked"}, true), both);
  EXPECT_EQ(refusal({"xchunked"}, true), both);
  EXPECT_EQ(refusal({"chunked"}, false, 10), "Transfer-Encoding is not allowed in HTTP/1.0");
}

TEST(HeaderRefusal, OneHostInHttp11AtMostOneInHttp10) {
  EXPECT_EQ(header_refusal({11, {}, false, 1}), std::nullopt);
  EXPECT_EQ(header_refusal({10, {}, false, 1}), std::nullopt);
  EXPECT_EQ(header_refusal({10, {}, false, 0}), std::nullopt);
  EXPECT_EQ(header_refusal({11, {}, false, 0}), "Host header is required");
  EXPECT_EQ(header_refusal({11, {}, false, 2}), "Host header is given more than once");
  EXPECT_EQ(header_refusal({10, {}, false, 2}), "Host header is given more than once");
}

TEST(OversizedFraming, TrailersOnlyAfterTheLastChunksLineEnded) {
  EXPECT_EQ(oversized_framing("0\r\nX-Trailer: aaaa"), OversizedFraming::trailers);
  // After the CRLF that ends a chunk's data:
  EXPECT_EQ(oversized_framing("\r\n0\r\nX-Trailer: aaaa"), OversizedFraming::trailers);
  EXPECT_EQ(oversized_framing("000;ext=1\r\nX-T: aaaa"), OversizedFraming::trailers);
  EXPECT_EQ(oversized_framing("4;ext=aaaa"), OversizedFraming::chunk_header);
  EXPECT_EQ(oversized_framing("\r\n4;ext=aaaa"), OversizedFraming::chunk_header);
  EXPECT_EQ(oversized_framing("0;ext=aaaa"), OversizedFraming::chunk_header);  // the last chunk's line itself
  EXPECT_EQ(oversized_framing("0000000000"), OversizedFraming::chunk_header);
  EXPECT_EQ(oversized_framing("00a\r\nxyz"), OversizedFraming::chunk_header);  // a size of 10
  EXPECT_EQ(oversized_framing(""), OversizedFraming::chunk_header);
}

TEST(MetricOperation, NamesTheCapabilitysKindOrTheServicesOwnRoute) {
  EXPECT_EQ(metric_operation(Route::health, std::nullopt), "healthz");
  EXPECT_EQ(metric_operation(Route::metrics, std::nullopt), "metrics");
  EXPECT_EQ(metric_operation(Route::not_found, std::nullopt), "none");
  EXPECT_EQ(metric_operation(Route::by_token, std::nullopt), "none");
  EXPECT_EQ(metric_operation(Route::by_token, CapabilityKind::uri), "invoke");
  EXPECT_EQ(metric_operation(Route::by_token, CapabilityKind::delete_self), "deleteSelf");
  EXPECT_EQ(metric_operation(Route::by_token, CapabilityKind::export_), "export");
}

TEST(RevocationKind, OnlyASuccessfulRevokeOrDeleteSelfTakesSomethingBack) {
  EXPECT_EQ(revocation_kind(CapabilityKind::revoke, 202), "membrane");
  EXPECT_EQ(revocation_kind(CapabilityKind::delete_self, 202), "tenant");
  EXPECT_EQ(revocation_kind(CapabilityKind::revoke, 401), std::nullopt);
  EXPECT_EQ(revocation_kind(CapabilityKind::revoke, 503), std::nullopt);
  EXPECT_EQ(revocation_kind(CapabilityKind::export_, 202), std::nullopt);
}

TEST(AccessLogLine, HasTimeMethodStatusDurationOperationAndTheTokensLogIdOnly) {
  EXPECT_EQ(
      access_log_line({"2026-12-03T09:00:00.123Z", "POST", 201, 1.23456, "export", "a1b2c3d4", "", "", ""}),
      "2026-12-03T09:00:00.123Z POST 201 1.235ms op=export cap=a1b2c3d4");
  EXPECT_EQ(
      access_log_line({"2026-12-03T09:00:00.123Z", std::nullopt, 431, 0.5, std::nullopt, "", "", "", ""}),
      "2026-12-03T09:00:00.123Z - 431 0.500ms op=-");
}

TEST(AccessLogLine, TextEndsWithTheClientTheRequestIdAndAQuotedCause) {
  EXPECT_EQ(
      access_log_line({"2026-12-03T09:00:00.123Z", "POST", 502, 2.0, "invoke", "a1b2c3d4", "10.0.0.7",
                       "0123456789abcdef", "upstream lambda.example:443 connect: Connection refused"}),
      "2026-12-03T09:00:00.123Z POST 502 2.000ms op=invoke cap=a1b2c3d4 client=10.0.0.7 id=0123456789abcdef "
      "error=\"upstream lambda.example:443 connect: Connection refused\"");
}

TEST(AccessLogLine, JsonHasTheSameFieldsAndLeavesOutWhatDoesNotApply) {
  const auto failed = nlohmann::json::parse(access_log_line(
      {"2026-12-03T09:00:00.123Z", "GET", 503, 1.5, "query", "a1b2c3d4", "::1", "00ff", "store \"x\""},
      LogFormat::json));
  EXPECT_EQ(failed, nlohmann::json::parse(
                        R"({"time": "2026-12-03T09:00:00.123Z", "level": "error", "requestId": "00ff",
      "client": "::1", "method": "GET", "status": 503, "durationMs": 1.5, "operation": "query", "token": "a1b2c3d4",
      "error": "store \"x\""})"));
  const auto refused = nlohmann::json::parse(access_log_line(
      {"2026-12-03T09:00:00.123Z", std::nullopt, 431, 0.5, std::nullopt, "", "", "", ""}, LogFormat::json));
  EXPECT_EQ(refused,
            nlohmann::json::parse(R"({"time": "2026-12-03T09:00:00.123Z", "level": "info", "status": 431,
      "durationMs": 0.5, "operation": "none"})"));
}

TEST(EventLogLine, TextIsTimeAndMessageJsonHasTheLevel) {
  EXPECT_EQ(event_log_line({"2026-12-03T09:00:00.123Z", "error", "accept: Too many open files"}),
            "2026-12-03T09:00:00.123Z accept: Too many open files");
  EXPECT_EQ(nlohmann::json::parse(
                event_log_line({"2026-12-03T09:00:00.123Z", "error", "a \"quoted\" word"}, LogFormat::json)),
            nlohmann::json::parse(R"({"time": "2026-12-03T09:00:00.123Z", "level": "error",
                                      "message": "a \"quoted\" word"})"));
}

}  // namespace
