// The export body of contract §4.1 (core/export_config: parse_export_config, nlohmann-json), which
// any holder of an export capability sends. Properties: a refusal names its field; an accepted
// uri export is valid (its headers writable, its timeout within the limit) and survives the trip
// through storage: to_json (what is sealed) parses back to the same value, and the same JSON.
// With its grant fields (parse_export_request): a refusal names its field too, and accepted
// limits are reported (grant_limits_json) in a form that parses back to them.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "core/export_config.hpp"
#include "core/grant_limits.hpp"
#include "core/http.hpp"
#include "tests/fuzz/support/fuzz_check.hpp"

using namespace membraned::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body = membraned::fuzz::as_text(data, size);
  const ExportLimits limits{30000};
  const auto now = std::chrono::sys_days{std::chrono::year{2026} / 1 / 1};  // a fixed time: replays repeat
  auto request = parse_export_request(body, limits, now);
  if (!request) {
    FUZZ_CHECK(!request.error().field.empty());
    FUZZ_CHECK(!request.error().message.empty());
  } else {
    auto reported = parse_grant_limits(grant_limits_json(request->grant), now);
    FUZZ_CHECK(reported.ok());
    FUZZ_CHECK(*reported == request->grant);
  }

  auto config = parse_export_config(body, limits);
  if (!config) {
    FUZZ_CHECK(!config.error().field.empty());
    FUZZ_CHECK(!config.error().message.empty());
    return 0;
  }
  if (const auto* re_export = std::get_if<ReExport>(&*config)) {
    FUZZ_CHECK(CapabilityUri::parse(re_export->capability.serialize()).ok());
    return 0;
  }
  const auto& uri = std::get<UriExport>(*config);
  FUZZ_CHECK(!uri.target.uri.empty());
  if (uri.timeout_ms) FUZZ_CHECK(*uri.timeout_ms <= limits.max_timeout_ms);
  if (uri.method) FUZZ_CHECK(is_http_token(*uri.method));
  for (const Header& h : uri.headers) FUZZ_CHECK(is_http_token(h.name) && is_safe_header_value(h.value));

  const nlohmann::json sealed = to_json(uri);
  auto reopened = parse_export_json(sealed, limits);
  FUZZ_CHECK(reopened.ok());
  const auto* again = std::get_if<UriExport>(&*reopened);
  FUZZ_CHECK(again != nullptr);
  FUZZ_CHECK(to_json(*again) == sealed);
  FUZZ_CHECK(again->target.uri == uri.target.uri && again->method == uri.method &&
             again->allow_query == uri.allow_query && again->headers == uri.headers &&
             again->timeout_ms == uri.timeout_ms);
  // And through the text the store holds.
  auto from_text = parse_export_config(sealed.dump(), limits);
  FUZZ_CHECK(from_text.ok());
  FUZZ_CHECK(to_json(std::get<UriExport>(*from_text)) == sealed);
  return 0;
}
