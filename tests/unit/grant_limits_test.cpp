// core/grant_limits: the five grant fields of an export body (label, expiresAt, maxUses,
// rateLimit, allowFrom). Each rule is fed valid and violating values and must give the value or
// an invalid_input error naming the field; the whole body goes through parse_export_request;
// the 201 answer's form parses back; a re-export's limits narrow its parent's; allowFrom admits
// the addresses it lists and no others. `now` is a fixed time: no clock is read.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "core/address_policy.hpp"
#include "core/export_config.hpp"
#include "core/grant_limits.hpp"
#include "core/result.hpp"
#include "tests/support/test_support.hpp"

namespace membraned::core {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using std::chrono::system_clock;

constexpr std::string_view kCapUri =
    "cpblty://membrane.amzn-us-east-1.capability.io/#CPBLTY1-Vf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13"
    "oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhia4Q";

system_clock::time_point at(std::string_view iso) { return test::parse_iso8601_utc(iso); }

const system_clock::time_point kNow = at("2026-06-01T12:00:00Z");

GrantLimits parse_ok(const json& body) {
  auto limits = parse_grant_limits(body, kNow);
  if (!limits.ok()) {
    ADD_FAILURE() << "refused " << body.dump() << ": " << limits.error().field << ": "
                  << limits.error().message;
    return {};
  }
  return *limits;
}

// The error for a body that must be refused, checked to be invalid_input naming `field`.
Error refusal(const json& body, std::string_view field) {
  auto limits = parse_grant_limits(body, kNow);
  if (limits.ok()) {
    ADD_FAILURE() << "accepted " << body.dump();
    return {};
  }
  EXPECT_EQ(limits.error().kind, ErrorKind::invalid_input);
  EXPECT_EQ(limits.error().field, field) << limits.error().message;
  return limits.error();
}

// The message of the refusal of {key: value}.
std::string message_for(std::string_view key, const json& value, std::string_view field) {
  return refusal(json{{std::string(key), value}}, field).message;
}

std::string repeated(std::string_view piece, std::size_t times) {
  std::string out;
  for (std::size_t i = 0; i < times; ++i) out += piece;
  return out;
}

Cidr cidr(std::string_view text) { return Cidr::parse(text).value(); }

IpAddress address(std::string_view text) { return IpAddress::parse(text).value(); }

// --- all fields together --------------------------------------------------------------------------

TEST(GrantLimits, NoGrantFieldsMeansNoLimitsAndOtherKeysAreIgnored) {
  const GrantLimits none = parse_ok({{"uri", "https://a.example/"}, {"method", "GET"}});
  EXPECT_EQ(none, GrantLimits{});
  EXPECT_FALSE(none.limits_use());
  EXPECT_TRUE(none.allow_from.empty());
}

TEST(GrantLimits, EveryFieldIsRead) {
  const GrantLimits limits = parse_ok({{"label", "partner feed"},
                                       {"expiresAt", "2026-12-31T23:59:59Z"},
                                       {"maxUses", 100},
                                       {"rateLimit", {{"requests", 10}, {"perSeconds", 60}}},
                                       {"allowFrom", {"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"}}});
  EXPECT_EQ(limits.label, "partner feed");
  EXPECT_EQ(limits.expires_at, at("2026-12-31T23:59:59Z"));
  EXPECT_EQ(limits.max_uses, 100u);
  EXPECT_EQ(limits.rate_limit, (RateLimit{10, 60}));
  ASSERT_EQ(limits.allow_from.size(), 3u);
  EXPECT_EQ(limits.allow_from[0], cidr("10.0.0.0/8"));
  EXPECT_EQ(limits.allow_from[1], cidr("2001:db8::/32"));
  EXPECT_EQ(limits.allow_from[2], cidr("192.0.2.7/32"));
}

TEST(GrantLimits, OnlyUseCountingFieldsLimitUse) {
  EXPECT_TRUE(parse_ok({{"maxUses", 1}}).limits_use());
  EXPECT_TRUE(parse_ok({{"rateLimit", {{"requests", 1}, {"perSeconds", 1}}}}).limits_use());
  EXPECT_FALSE(
      parse_ok(
          {{"label", "x"}, {"expiresAt", "2027-01-01T00:00:00Z"}, {"allowFrom", json::array({"10.0.0.1"})}})
          .limits_use());
}

TEST(GrantLimits, ABodyThatIsNotAnObjectIsRefused) {
  EXPECT_EQ(refusal(json::array(), "body").message, "body must be a JSON object");
}

// --- label -----------------------------------------------------------------------------------------

TEST(GrantLimitsLabel, UpTo256CodePointsOfAnyWidth) {
  EXPECT_EQ(parse_ok({{"label", "a"}}).label, "a");
  const std::string ascii = repeated("a", 256);
  EXPECT_EQ(parse_ok({{"label", ascii}}).label, ascii);
  // 256 code points of 2, 3 and 4 bytes: 512 to 1024 bytes, still 256 characters.
  for (std::string_view wide : {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x94\x91"}) {
    const std::string label = repeated(wide, 256);
    EXPECT_EQ(parse_ok({{"label", label}}).label, label);
  }
}

TEST(GrantLimitsLabel, LongerLabelsAreRefused) {
  EXPECT_EQ(message_for("label", repeated("a", 257), "label"), "label must be at most 256 characters");
  EXPECT_EQ(message_for("label", repeated("\xE2\x82\xAC", 257), "label"),
            "label must be at most 256 characters");
}

TEST(GrantLimitsLabel, ControlCharactersAreRefused) {
  using namespace std::string_literals;
  for (const std::string& text : {"line\nbreak"s, "tab\there"s, "nul\0x"s, "del\x7f"s, "esc\x1b[31m"s,
                                  "c1 \xC2\x85 next line"s, "c1 \xC2\x9F"s}) {
    EXPECT_EQ(message_for("label", text, "label"), "label must not contain control characters") << text;
  }
  // U+00A0 (0xC2 0xA0) is the first code point after C1: allowed.
  EXPECT_TRUE(parse_grant_limits({{"label",
                                   "no\xC2\xA0"
                                   "break"}},
                                 kNow)
                  .ok());
}

TEST(GrantLimitsLabel, EmptyNonStringAndInvalidUtf8AreRefused) {
  EXPECT_EQ(message_for("label", "", "label"), "label must not be empty");
  EXPECT_EQ(message_for("label", 7, "label"), "label must be a string");
  EXPECT_EQ(message_for("label", nullptr, "label"), "label must be a string");
  EXPECT_EQ(message_for("label", "bad \xC3", "label"), "label must be valid UTF-8");
  EXPECT_EQ(message_for("label", "overlong \xC0\xAF", "label"), "label must be valid UTF-8");
}

// --- expiresAt -------------------------------------------------------------------------------------

TEST(GrantLimitsExpiresAt, AFutureTimeIsKept) {
  EXPECT_EQ(parse_ok({{"expiresAt", "2026-12-31T23:59:59Z"}}).expires_at, at("2026-12-31T23:59:59Z"));
  EXPECT_EQ(parse_ok({{"expiresAt", "2026-06-01T12:00:00.001Z"}}).expires_at, kNow + 1ms);
}

TEST(GrantLimitsExpiresAt, OffsetsAreConvertedToUtc) {
  EXPECT_EQ(parse_ok({{"expiresAt", "2027-01-01T01:30:00+02:00"}}).expires_at, at("2026-12-31T23:30:00Z"));
  EXPECT_EQ(parse_ok({{"expiresAt", "2026-12-31T18:00:00-05:00"}}).expires_at, at("2026-12-31T23:00:00Z"));
}

TEST(GrantLimitsExpiresAt, FractionsAreKeptToTheMillisecond) {
  EXPECT_EQ(parse_ok({{"expiresAt", "2026-12-31T23:59:59.5Z"}}).expires_at,
            at("2026-12-31T23:59:59Z") + 500ms);
  EXPECT_EQ(parse_ok({{"expiresAt", "2026-12-31T23:59:59.123999999Z"}}).expires_at,
            at("2026-12-31T23:59:59Z") + 123ms);
}

TEST(GrantLimitsExpiresAt, NowAndThePastAreRefused) {
  for (std::string_view text : {"2026-06-01T12:00:00Z", "2026-06-01T11:59:59.999Z", "2020-01-01T00:00:00Z",
                                "2026-06-01T14:00:00+02:00",
                                // Later than now by less than a millisecond: cut to now.
                                "2026-06-01T12:00:00.000999Z"}) {
    EXPECT_EQ(message_for("expiresAt", std::string(text), "expiresAt"), "expiresAt must be in the future")
        << text;
  }
}

TEST(GrantLimitsExpiresAt, WhatIsNotADateTimeWithAZoneIsRefused) {
  for (std::string_view text : {"tomorrow", "2026-12-31", "2026-12-31T23:59:59", "2026-12-31 23:59:59Z",
                                "2026-02-30T00:00:00Z", "2026-12-31T23:59:60Z", "1798761599", ""}) {
    const std::string message = message_for("expiresAt", std::string(text), "expiresAt");
    EXPECT_EQ(message.rfind("expiresAt is not an ISO 8601 date-time with a zone (", 0), 0u) << message;
  }
  EXPECT_EQ(message_for("expiresAt", 1798761599, "expiresAt"), "expiresAt must be a string");
}

// --- maxUses -----------------------------------------------------------------------------------------

TEST(GrantLimitsMaxUses, PositiveIntegersUpToTheLargest) {
  EXPECT_EQ(parse_ok({{"maxUses", 1}}).max_uses, 1u);
  EXPECT_EQ(parse_ok(json::parse(R"({"maxUses": 1000000000000000})")).max_uses, kLargestMaxUses);
  EXPECT_EQ(kLargestMaxUses, 1'000'000'000'000'000u);
}

TEST(GrantLimitsMaxUses, AnythingElseIsRefused) {
  for (const char* body : {R"({"maxUses": 0})", R"({"maxUses": -1})", R"({"maxUses": 1.5})",
                           R"({"maxUses": 3.0})", R"({"maxUses": 1e3})", R"({"maxUses": "3"})",
                           R"({"maxUses": true})", R"({"maxUses": null})", R"({"maxUses": [3]})"}) {
    EXPECT_EQ(refusal(json::parse(body), "maxUses").message, "maxUses must be a positive integer") << body;
  }
}

TEST(GrantLimitsMaxUses, HugeCountsAreRefusedSayingTheLargest) {
  for (const char* body : {R"({"maxUses": 1000000000000001})", R"({"maxUses": 18446744073709551615})",
                           R"({"maxUses": 100000000000000000000000000})"}) {
    EXPECT_EQ(refusal(json::parse(body), "maxUses").message, "maxUses must be at most 1000000000000000")
        << body;
  }
}

// --- rateLimit ---------------------------------------------------------------------------------------

TEST(GrantLimitsRateLimit, BothBoundsAreAccepted) {
  EXPECT_EQ(parse_ok({{"rateLimit", {{"requests", 1}, {"perSeconds", 1}}}}).rate_limit, (RateLimit{1, 1}));
  EXPECT_EQ(parse_ok({{"rateLimit", {{"requests", 1000000}, {"perSeconds", 86400}}}}).rate_limit,
            (RateLimit{1000000, 86400}));
}

TEST(GrantLimitsRateLimit, MissingAndUnknownKeysAreRefused) {
  EXPECT_EQ(message_for("rateLimit", {{"perSeconds", 60}}, "rateLimit.requests"),
            "rateLimit.requests is required");
  EXPECT_EQ(message_for("rateLimit", {{"requests", 10}}, "rateLimit.perSeconds"),
            "rateLimit.perSeconds is required");
  EXPECT_EQ(message_for("rateLimit", {{"requests", 10}, {"perSeconds", 60}, {"burst", 5}}, "rateLimit.burst"),
            "rateLimit.burst is not a known field");
  EXPECT_EQ(message_for("rateLimit", json::object(), "rateLimit.requests"), "rateLimit.requests is required");
}

TEST(GrantLimitsRateLimit, ValuesOutOfRangeOrNotIntegersAreRefused) {
  const std::string requests = "rateLimit.requests must be an integer from 1 to 1000000";
  const std::string per_seconds = "rateLimit.perSeconds must be an integer from 1 to 86400";
  for (const json& bad :
       {json(0), json(-5), json(1000001), json(2.5), json("10"), json(true), json(nullptr)}) {
    EXPECT_EQ(message_for("rateLimit", {{"requests", bad}, {"perSeconds", 60}}, "rateLimit.requests"),
              requests)
        << bad.dump();
    EXPECT_EQ(message_for("rateLimit", {{"requests", 10}, {"perSeconds", bad}}, "rateLimit.perSeconds"),
              per_seconds)
        << bad.dump();
  }
  EXPECT_EQ(message_for("rateLimit", {{"requests", 10}, {"perSeconds", 86401}}, "rateLimit.perSeconds"),
            per_seconds);
  EXPECT_EQ(message_for("rateLimit", {{"requests", 10}, {"perSeconds", 4294967297}}, "rateLimit.perSeconds"),
            per_seconds);
}

TEST(GrantLimitsRateLimit, NotAnObjectIsRefused) {
  for (const json& bad : {json("100/60"), json(100), json::array({100, 60}), json(nullptr)}) {
    EXPECT_EQ(message_for("rateLimit", bad, "rateLimit"), "rateLimit must be an object") << bad.dump();
  }
}

// --- allowFrom ---------------------------------------------------------------------------------------

TEST(GrantLimitsAllowFrom, Ipv4Ipv6AndSingleAddressesAreReadMasked) {
  const GrantLimits limits =
      parse_ok({{"allowFrom", {"10.1.2.3/8", "2001:db8::1/32", "::1", "198.51.100.9"}}});
  ASSERT_EQ(limits.allow_from.size(), 4u);
  EXPECT_EQ(limits.allow_from[0].to_string(), "10.0.0.0/8");
  EXPECT_EQ(limits.allow_from[1].to_string(), "2001:db8::/32");
  EXPECT_EQ(limits.allow_from[2].to_string(), "::1/128");
  EXPECT_EQ(limits.allow_from[3].to_string(), "198.51.100.9/32");
}

TEST(GrantLimitsAllowFrom, EmptyOrNotAnArrayIsRefused) {
  EXPECT_EQ(message_for("allowFrom", json::array(), "allowFrom"), "allowFrom must not be empty");
  EXPECT_EQ(message_for("allowFrom", "10.0.0.0/8", "allowFrom"),
            "allowFrom must be an array of CIDR strings");
  EXPECT_EQ(message_for("allowFrom", {{"a", "10.0.0.0/8"}}, "allowFrom"),
            "allowFrom must be an array of CIDR strings");
}

TEST(GrantLimitsAllowFrom, ABadEntryIsNamedByItsIndex) {
  EXPECT_EQ(message_for("allowFrom", {"10.0.0.0/8", "::1", "10.0.0.0/33"}, "allowFrom[2]"),
            "allowFrom[2] is not a CIDR: 10.0.0.0/33");
  EXPECT_EQ(message_for("allowFrom", json::array({"example.com"}), "allowFrom[0]"),
            "allowFrom[0] is not a CIDR: example.com");
  EXPECT_EQ(message_for("allowFrom", json::array({"fe80::1%eth0"}), "allowFrom[0]"),
            "allowFrom[0] is not a CIDR: fe80::1%eth0");
  EXPECT_EQ(message_for("allowFrom", json::array({"10.0.0.1", 10}), "allowFrom[1]"),
            "allowFrom[1] must be a string");
  // Quoted safely: a control character is not echoed.
  EXPECT_EQ(message_for("allowFrom", json::array({"10.0.0.1\n"}), "allowFrom[0]"),
            "allowFrom[0] is not a CIDR: (unprintable)");
}

TEST(GrantLimitsAllowFrom, AtMost64Entries) {
  json entries = json::array();
  for (int i = 0; i < 64; ++i) entries.push_back("10.0.0." + std::to_string(i));
  EXPECT_EQ(parse_ok({{"allowFrom", entries}}).allow_from.size(), 64u);
  entries.push_back("10.0.0.64");
  EXPECT_EQ(message_for("allowFrom", entries, "allowFrom"), "allowFrom must hold at most 64 entries");
}

// --- the whole export body -----------------------------------------------------------------------------

Result<ExportRequest> request(const json& body) { return parse_export_request(body.dump(), {}, kNow); }

TEST(GrantLimitsInExportBody, AUriExportCarriesTheGrantFields) {
  auto r = request({{"uri", "https://upstream.example/path"},
                    {"method", "POST"},
                    {"label", "billing"},
                    {"expiresAt", "2026-12-31T23:59:59Z"},
                    {"maxUses", 3},
                    {"rateLimit", {{"requests", 100}, {"perSeconds", 60}}},
                    {"allowFrom", json::array({"203.0.113.0/24"})}});
  ASSERT_TRUE(r.ok()) << r.error().field << ": " << r.error().message;
  const auto* uri = std::get_if<UriExport>(&r->config);
  ASSERT_NE(uri, nullptr);
  EXPECT_EQ(uri->target.uri, "https://upstream.example/path");
  EXPECT_EQ(uri->method, "POST");
  EXPECT_EQ(r->grant.label, "billing");
  EXPECT_EQ(r->grant.expires_at, at("2026-12-31T23:59:59Z"));
  EXPECT_EQ(r->grant.max_uses, 3u);
  EXPECT_EQ(r->grant.rate_limit, (RateLimit{100, 60}));
  EXPECT_EQ(r->grant.allow_from, std::vector<Cidr>{cidr("203.0.113.0/24")});
  // What is sealed for the configuration holds none of them.
  const json sealed = to_json(*uri);
  for (std::string_view key : kGrantLimitFields) EXPECT_FALSE(sealed.contains(std::string(key))) << key;
}

TEST(GrantLimitsInExportBody, AReExportCarriesTheGrantFieldsAndNothingElse) {
  auto r = request({{"capability", kCapUri},
                    {"label", "for the partner"},
                    {"maxUses", 10},
                    {"expiresAt", "2026-07-01T00:00:00Z"},
                    {"rateLimit", {{"requests", 1}, {"perSeconds", 1}}},
                    {"allowFrom", json::array({"::ffff:10.0.0.0/104"})}});
  ASSERT_TRUE(r.ok()) << r.error().field << ": " << r.error().message;
  const auto* re_export = std::get_if<ReExport>(&r->config);
  ASSERT_NE(re_export, nullptr);
  EXPECT_EQ(re_export->capability.serialize(), kCapUri);
  EXPECT_EQ(r->grant.label, "for the partner");
  EXPECT_EQ(r->grant.max_uses, 10u);

  auto with_method = request({{"capability", kCapUri}, {"label", "x"}, {"method", "GET"}});
  ASSERT_FALSE(with_method.ok());
  EXPECT_EQ(with_method.error().field, "method");
  EXPECT_EQ(with_method.error().message, "method cannot be given with capability");
}

TEST(GrantLimitsInExportBody, UnknownFieldsAreStillRefused) {
  for (const json& body : {json{{"uri", "https://a.example/"}, {"maxUses", 1}, {"maxuses", 1}},
                           json{{"capability", kCapUri}, {"expiresIn", "1h"}}}) {
    auto r = request(body);
    ASSERT_FALSE(r.ok()) << body.dump();
    EXPECT_EQ(r.error().kind, ErrorKind::invalid_input);
    EXPECT_TRUE(r.error().message.ends_with(" is not a known field") ||
                r.error().message.ends_with(" cannot be given with capability"))
        << r.error().message;
  }
  auto r = request({{"uri", "https://a.example/"}, {"maxuses", 1}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "maxuses");
  EXPECT_EQ(r.error().message, "maxuses is not a known field");
}

TEST(GrantLimitsInExportBody, GrantErrorsNameTheirFieldAndConfigurationErrorsComeFirst) {
  auto bad_rate =
      request({{"uri", "https://a.example/"}, {"rateLimit", {{"requests", 0}, {"perSeconds", 1}}}});
  ASSERT_FALSE(bad_rate.ok());
  EXPECT_EQ(bad_rate.error().field, "rateLimit.requests");

  auto past = request({{"capability", kCapUri}, {"expiresAt", "2001-01-01T00:00:00Z"}});
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().message, "expiresAt must be in the future");

  auto both_bad = request({{"uri", "ftp://a.example/"}, {"maxUses", 0}});
  ASSERT_FALSE(both_bad.ok());
  EXPECT_EQ(both_bad.error().field, "uri");

  auto grant_only = request({{"label", "orphan"}});
  ASSERT_FALSE(grant_only.ok());
  EXPECT_EQ(grant_only.error().field, "uri");
}

TEST(GrantLimitsInExportBody, TheBodyRulesStillHold) {
  for (auto [body, field] :
       {std::pair<std::string_view, std::string_view>{R"({"uri":)", "body"},
        {R"([{"uri":"https://a.example/"}])", "body"},
        {R"({"uri":"https://a.example/","label":"a","label":"b"})", "label"},
        {R"({"uri":"https://a.example/","rateLimit":{"requests":1,"requests":2,"perSeconds":1}})",
         "rateLimit.requests"}}) {
    auto r = parse_export_request(body, {}, kNow);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.error().field, field) << r.error().message;
  }
}

TEST(GrantLimitsInExportBody, ABodyWithoutGrantFieldsParsesAsBefore) {
  const std::string body =
      R"({"uri":"https://a.example/x","method":"PUT","headers":{"X-A":"1"},"timeoutMs":99999999})";
  auto r = parse_export_request(body, ExportLimits{5000}, kNow);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto before = parse_export_config(body, ExportLimits{5000});
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(to_json(std::get<UriExport>(r->config)), to_json(std::get<UriExport>(*before)));
  EXPECT_EQ(std::get<UriExport>(r->config).timeout_ms, 5000u);
  EXPECT_EQ(r->grant, GrantLimits{});
}

// --- the answer's form --------------------------------------------------------------------------------

TEST(GrantLimitsJson, ReportsEveryFieldCanonicallyAndParsesBack) {
  const GrantLimits limits = parse_ok({{"label", "caf\xC3\xA9"},
                                       {"expiresAt", "2027-01-01T01:00:00.250+01:00"},
                                       {"maxUses", 7},
                                       {"rateLimit", {{"perSeconds", 60}, {"requests", 100}}},
                                       {"allowFrom", {"10.9.8.7/8", "2001:DB8:0:0::1"}}});
  const json reported = grant_limits_json(limits);
  EXPECT_EQ(reported, json::parse(R"({"label": "café", "expiresAt": "2027-01-01T00:00:00.250Z", "maxUses": 7,
                                      "rateLimit": {"requests": 100, "perSeconds": 60},
                                      "allowFrom": ["10.0.0.0/8", "2001:db8::1/128"]})"));
  EXPECT_EQ(parse_ok(reported), limits);
}

TEST(GrantLimitsJson, WholeSecondsHaveNoFractionAndAbsentFieldsAreOmitted) {
  EXPECT_EQ(grant_limits_json(GrantLimits{}), json::object());
  GrantLimits limits;
  limits.expires_at = at("2026-12-31T23:59:59Z");
  EXPECT_EQ(grant_limits_json(limits).dump(), R"({"expiresAt":"2026-12-31T23:59:59Z"})");
  limits.max_uses = kLargestMaxUses;
  EXPECT_EQ(grant_limits_json(limits).dump(),
            R"({"expiresAt":"2026-12-31T23:59:59Z","maxUses":1000000000000000})");
}

// --- re-exports ------------------------------------------------------------------------------------------

TEST(GrantLimitsNarrowed, TheEarlierExpiryAndTheSmallerCount) {
  GrantLimits parent;
  parent.expires_at = at("2026-09-01T00:00:00Z");
  parent.max_uses = 100;
  GrantLimits own;
  own.expires_at = at("2026-12-01T00:00:00Z");
  own.max_uses = 5;
  GrantLimits effective = narrowed(parent, own);
  EXPECT_EQ(effective.expires_at, at("2026-09-01T00:00:00Z"));
  EXPECT_EQ(effective.max_uses, 5u);

  std::swap(parent.expires_at, own.expires_at);
  std::swap(parent.max_uses, own.max_uses);
  effective = narrowed(parent, own);
  EXPECT_EQ(effective.expires_at, at("2026-09-01T00:00:00Z"));
  EXPECT_EQ(effective.max_uses, 5u);
}

TEST(GrantLimitsNarrowed, AFieldGivenOnOneSideOnlyIsKept) {
  GrantLimits parent;
  parent.expires_at = at("2026-09-01T00:00:00Z");
  parent.rate_limit = RateLimit{10, 1};
  GrantLimits own;
  own.max_uses = 3;
  const GrantLimits effective = narrowed(parent, own);
  EXPECT_EQ(effective.expires_at, at("2026-09-01T00:00:00Z"));
  EXPECT_EQ(effective.max_uses, 3u);
  EXPECT_EQ(effective.rate_limit, (RateLimit{10, 1}));
  EXPECT_EQ(narrowed(GrantLimits{}, GrantLimits{}), GrantLimits{});
}

TEST(GrantLimitsNarrowed, TheRateWithFewerUsesPerSecondAndTheSmallerBurstOnATie) {
  GrantLimits parent;
  GrantLimits own;
  parent.rate_limit = RateLimit{100, 60};  // 1.67 per second
  own.rate_limit = RateLimit{1, 1};        // 1 per second
  EXPECT_EQ(narrowed(parent, own).rate_limit, (RateLimit{1, 1}));
  EXPECT_EQ(narrowed(own, parent).rate_limit, (RateLimit{1, 1}));
  parent.rate_limit = RateLimit{60, 60};  // the same average
  EXPECT_EQ(narrowed(parent, own).rate_limit, (RateLimit{1, 1}));
  EXPECT_EQ(narrowed(own, parent).rate_limit, (RateLimit{1, 1}));
  // Largest values: the cross products do not overflow.
  parent.rate_limit = RateLimit{kLargestRateRequests, 1};
  own.rate_limit = RateLimit{kLargestRateRequests - 1, 1};
  EXPECT_EQ(narrowed(parent, own).rate_limit, (RateLimit{kLargestRateRequests - 1, 1}));
}

TEST(GrantLimitsNarrowed, OwnLabelOnlyAndOwnAllowFromElseTheParents) {
  GrantLimits parent;
  parent.label = "the owner's";
  parent.allow_from = {cidr("10.0.0.0/8")};
  GrantLimits own;
  GrantLimits effective = narrowed(parent, own);
  EXPECT_EQ(effective.label, std::nullopt);
  EXPECT_EQ(effective.allow_from, std::vector<Cidr>{cidr("10.0.0.0/8")});
  own.label = "mine";
  own.allow_from = {cidr("10.1.0.0/16"), cidr("192.0.2.0/24")};
  effective = narrowed(parent, own);
  EXPECT_EQ(effective.label, "mine");
  EXPECT_EQ(effective.allow_from, own.allow_from);
}

// --- allowFrom at use time
// -----------------------------------------------------------------------------------

TEST(GrantLimitsAdmitsAddress, AnEmptyListAdmitsEveryone) {
  for (std::string_view a : {"10.0.0.1", "::1", "2001:db8::5", "::ffff:1.2.3.4"}) {
    EXPECT_TRUE(admits_address({}, address(a))) << a;
  }
}

TEST(GrantLimitsAdmitsAddress, OnlyAddressesInsideAListedRange) {
  const std::vector<Cidr> allow = {cidr("10.0.0.0/8"), cidr("192.0.2.7"), cidr("2001:db8::/32")};
  for (std::string_view a : {"10.0.0.1", "10.255.255.255", "192.0.2.7", "2001:db8::1", "2001:db8:ffff::9"}) {
    EXPECT_TRUE(admits_address(allow, address(a))) << a;
  }
  for (std::string_view a : {"11.0.0.1", "9.255.255.255", "192.0.2.8", "2001:db9::1", "::1", "127.0.0.1"}) {
    EXPECT_FALSE(admits_address(allow, address(a))) << a;
  }
}

TEST(GrantLimitsAdmitsAddress, AnIpv4PeerMatchesInEitherSpelling) {
  // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
  EXPECT_TRUE(admits_address({cidr("10.0.0.0/8")}, address("::ffff:10.1.2.3")));
  EXPECT_FALSE(admits_address({cidr("10.0.0.0/8")}, address("::ffff:11.1.2.3")));
  // And a range written in the mapped form admits the plain IPv4 peer.
  EXPECT_TRUE(admits_address({cidr("::ffff:10.0.0.0/104")}, address("10.1.2.3")));
  EXPECT_TRUE(admits_address({cidr("::ffff:10.0.0.0/104")}, address("::ffff:10.1.2.3")));
  EXPECT_FALSE(admits_address({cidr("::ffff:10.0.0.0/104")}, address("11.1.2.3")));
}

TEST(GrantLimitsAdmitsAddress, OtherIpv6FormsCarryingAnIpv4AddressAreIpv6Peers) {
  // IPv4-compatible and NAT64 addresses are not the IPv4 host they embed.
  EXPECT_FALSE(admits_address({cidr("10.0.0.0/8")}, address("::10.1.2.3")));
  EXPECT_FALSE(admits_address({cidr("10.0.0.0/8")}, address("64:ff9b::10.1.2.3")));
  EXPECT_TRUE(admits_address({cidr("64:ff9b::/96")}, address("64:ff9b::10.1.2.3")));
}

}  // namespace
}  // namespace membraned::core
