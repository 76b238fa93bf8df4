// capi's flags as request pieces (cli/export_flags): the export body of `capi membrane export`
// with the original CLI's conflicts and implications, --header parsing, and the query string of
// `capi membrane query`. No network: every refusal here is one that capi makes before sending.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "cli/export_flags.hpp"
#include "core/grant_limits.hpp"
#include "tests/support/test_pki.hpp"

namespace membraned::cli {
namespace {

constexpr const char* kCapUri =
    "cpblty://127.0.0.1:8080/#CPBLTY1-Vf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhia4Q";
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

ExportFlags uri_only() {
  ExportFlags f;
  f.uri = "https://example.com/path";
  return f;
}

std::string error_of(const ExportFlags& f) {
  auto r = build_export_body(f);
  EXPECT_FALSE(r.ok()) << (r.ok() ? r->dump() : "");
  return r.ok() ? std::string() : r.error().message;
}

// One setter per uri-only flag, with the flag's name.
struct UriOption {
  const char* flag;
  std::function<void(ExportFlags&)> set;
};

std::vector<UriOption> uri_options() {
  return {
      {"--uri", [](ExportFlags& f) { f.uri = "https://example.com/"; }},
      {"--allow-query", [](ExportFlags& f) { f.allow_query = true; }},
      {"--header", [](ExportFlags& f) { f.headers.push_back("X-A: b"); }},
      {"--method", [](ExportFlags& f) { f.method = "POST"; }},
      {"--aws4-hmac-sha256-aws-access-key-id", [](ExportFlags& f) { f.aws4_access_key_id = "AKID"; }},
      {"--aws4-hmac-sha256-secret-access-key", [](ExportFlags& f) { f.aws4_secret_access_key = kSecret; }},
      {"--aws4-hmac-sha256-region", [](ExportFlags& f) { f.aws4_region = "us-east-1"; }},
      {"--aws4-hmac-sha256-service", [](ExportFlags& f) { f.aws4_service = "lambda"; }},
      {"--aws4-hmac-sha256-credentials", [](ExportFlags& f) { f.aws4_credentials = "api-caller"; }},
      {"--cap1-hmac-sha512-key", [](ExportFlags& f) { f.cap1_key = "c2VjcmV0"; }},
      {"--cap1-hmac-sha512-key-id", [](ExportFlags& f) { f.cap1_key_id = "kid"; }},
      {"--timeout-ms", [](ExportFlags& f) { f.timeout_ms = "1000"; }},
      {"--tls-ca", [](ExportFlags& f) { f.tls_ca = "-----BEGIN CERTIFICATE-----"; }},
      {"--tls-cert", [](ExportFlags& f) { f.tls_cert = "-----BEGIN CERTIFICATE-----"; }},
      {"--tls-key", [](ExportFlags& f) { f.tls_key = "-----BEGIN PRIVATE KEY-----"; }},
      {"--tls-reject-unauthorized", [](ExportFlags& f) { f.tls_reject_unauthorized = false; }},
  };
}

TEST(ExportFlags, UriAloneGivesOnlyUri) {
  auto r = build_export_body(uri_only());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->dump(), R"({"uri":"https://example.com/path"})");
}

TEST(ExportFlags, CapabilityToExportAloneGivesOnlyCapability) {
  ExportFlags f;
  f.capability_to_export = kCapUri;
  auto r = build_export_body(f);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->dump(), std::string(R"({"capability":")") + kCapUri + R"("})");
}

TEST(ExportFlags, EveryUriOptionInTheOriginalsKeyOrder) {
  ExportFlags f = uri_only();
  f.allow_query = true;
  f.headers = {"X-Amz-Invocation-Type: RequestResponse", "X-Url:  http://a.example/x:1  "};
  f.method = "post";
  f.timeout_ms = "1500";
  f.aws4_access_key_id = "AKIAIOSFODNN7EXAMPLE";
  f.aws4_secret_access_key = kSecret;
  f.aws4_region = "us-east-1";
  f.aws4_service = "lambda";
  f.tls_reject_unauthorized = false;
  auto r = build_export_body(f);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->dump(),
            std::string(R"({"uri":"https://example.com/path","allowQuery":true,)") +
                R"("headers":{"X-Amz-Invocation-Type":"RequestResponse","X-Url":"http://a.example/x:1"},)" +
                R"("method":"post","timeoutMs":1500,)" +
                R"("hmac":{"aws4-hmac-sha256":{"awsAccessKeyId":"AKIAIOSFODNN7EXAMPLE","region":"us-east-1",)" +
                R"("service":"lambda","secretAccessKey":")" + kSecret + R"("}},)" +
                R"("tls":{"rejectUnauthorized":false}})");
}

// The session token of temporary keys rides with the keys, never alone or with a profile.
TEST(ExportFlags, SessionTokenGoesWithTheKeys) {
  ExportFlags f = uri_only();
  f.aws4_access_key_id = "ASIAIOSFODNN7EXAMPLE";
  f.aws4_secret_access_key = kSecret;
  f.aws4_session_token = "FwoGZXIvYXdzEXAMPLETOKEN";
  f.aws4_region = "us-east-1";
  f.aws4_service = "lambda";
  auto r = build_export_body(f);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["hmac"]["aws4-hmac-sha256"]["sessionToken"], "FwoGZXIvYXdzEXAMPLETOKEN");
  EXPECT_EQ((*r)["hmac"]["aws4-hmac-sha256"]["secretAccessKey"], kSecret);

  ExportFlags alone = uri_only();
  alone.aws4_session_token = "FwoGZXIvYXdzEXAMPLETOKEN";
  auto refused = build_export_body(alone);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("--aws4-hmac-sha256-session-token goes with"), std::string::npos);
  EXPECT_EQ(refused.error().message.find("FwoGZ"), std::string::npos) << refused.error().message;

  ExportFlags profile = uri_only();
  profile.aws4_credentials = "lambda-caller";
  profile.aws4_region = "us-east-1";
  profile.aws4_service = "lambda";
  profile.aws4_session_token = "FwoGZXIvYXdzEXAMPLETOKEN";
  EXPECT_FALSE(build_export_body(profile).ok());
}

TEST(ExportFlags, Cap1SigningAndTlsMaterial) {
  auto pem = test::make_self_signed_pem("upstream");
  ExportFlags f = uri_only();
  f.cap1_key = "c2VjcmV0LWtleQ";
  f.cap1_key_id = "key-1";
  f.tls_ca = pem.cert;
  f.tls_cert = pem.cert;
  f.tls_key = pem.key;
  auto r = build_export_body(f);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["hmac"].dump(), R"({"cap1-hmac-sha512":{"key":"c2VjcmV0LWtleQ","keyId":"key-1"}})");
  EXPECT_EQ((*r)["tls"]["ca"], pem.cert);
  EXPECT_EQ((*r)["tls"]["cert"], pem.cert);
  EXPECT_EQ((*r)["tls"]["key"], pem.key);
  EXPECT_FALSE((*r)["tls"].contains("rejectUnauthorized"));
}

TEST(ExportFlags, CapabilityToExportConflictsWithEveryUriOption) {
  for (const auto& option : uri_options()) {
    SCOPED_TRACE(option.flag);
    ExportFlags f;
    f.capability_to_export = kCapUri;
    option.set(f);
    std::string message = error_of(f);
    EXPECT_NE(message.find("--capability-to-export"), std::string::npos) << message;
    EXPECT_NE(message.find(option.flag), std::string::npos) << message;
    EXPECT_EQ(message.find(kSecret), std::string::npos) << message;
    EXPECT_EQ(message.find("CPBLTY1-"), std::string::npos) << message;
  }
}

TEST(ExportFlags, Aws4AndCap1FlagsConflict) {
  const std::vector<std::function<void(ExportFlags&)>> aws4 = {
      [](ExportFlags& f) { f.aws4_access_key_id = "AKID"; },
      [](ExportFlags& f) { f.aws4_secret_access_key = kSecret; },
      [](ExportFlags& f) { f.aws4_region = "us-east-1"; },
      [](ExportFlags& f) { f.aws4_service = "lambda"; },
  };
  const std::vector<std::function<void(ExportFlags&)>> cap1 = {
      [](ExportFlags& f) { f.cap1_key = "c2VjcmV0"; },
      [](ExportFlags& f) { f.cap1_key_id = "kid"; },
  };
  for (std::size_t a = 0; a < aws4.size(); ++a) {
    for (std::size_t c = 0; c < cap1.size(); ++c) {
      ExportFlags f = uri_only();
      aws4[a](f);
      cap1[c](f);
      std::string message = error_of(f);
      EXPECT_NE(message.find("cannot be combined"), std::string::npos) << message;
    }
  }
  // Complete sets of both: still refused.
  ExportFlags f = uri_only();
  for (auto& s : aws4) s(f);
  for (auto& s : cap1) s(f);
  EXPECT_NE(error_of(f).find("one scheme"), std::string::npos);
}

TEST(ExportFlags, IncompleteAws4SetNamesWhatIsMissing) {
  const std::vector<std::pair<const char*, std::function<void(ExportFlags&)>>> aws4 = {
      {"--aws4-hmac-sha256-aws-access-key-id", [](ExportFlags& f) { f.aws4_access_key_id = "AKID"; }},
      {"--aws4-hmac-sha256-secret-access-key", [](ExportFlags& f) { f.aws4_secret_access_key = kSecret; }},
      {"--aws4-hmac-sha256-region", [](ExportFlags& f) { f.aws4_region = "us-east-1"; }},
      {"--aws4-hmac-sha256-service", [](ExportFlags& f) { f.aws4_service = "lambda"; }},
  };
  // Every non-empty proper subset of the four flags.
  for (unsigned mask = 1; mask < 15; ++mask) {
    SCOPED_TRACE(mask);
    ExportFlags f = uri_only();
    for (unsigned i = 0; i < 4; ++i) {
      if (mask & (1u << i)) aws4[i].second(f);
    }
    std::string message = error_of(f);
    for (unsigned i = 0; i < 4; ++i) {
      if (!(mask & (1u << i))) {
        EXPECT_NE(message.find(std::string("missing")), std::string::npos) << message;
        EXPECT_NE(message.find(aws4[i].first), std::string::npos) << message;
      }
    }
    EXPECT_EQ(message.find(kSecret), std::string::npos) << message;
  }
}

TEST(ExportFlags, Aws4ProfileStandsInForTheKeysNotBesideThem) {
  ExportFlags f = uri_only();
  f.aws4_credentials = "api-caller";
  f.aws4_region = "us-east-1";
  f.aws4_service = "execute-api";
  auto body = build_export_body(f);
  ASSERT_TRUE(body.ok()) << body.error().message;
  EXPECT_EQ((*body)["hmac"].dump(),
            R"({"aws4-hmac-sha256":{"credentials":"api-caller","region":"us-east-1","service":"execute-api"}})");

  ExportFlags with_key = f;
  with_key.aws4_access_key_id = "AKID";
  EXPECT_NE(error_of(with_key).find("not both"), std::string::npos);
  ExportFlags with_secret = f;
  with_secret.aws4_secret_access_key = kSecret;
  std::string message = error_of(with_secret);
  EXPECT_NE(message.find("not both"), std::string::npos);
  EXPECT_EQ(message.find(kSecret), std::string::npos);

  ExportFlags no_region = f;
  no_region.aws4_region.reset();
  message = error_of(no_region);
  EXPECT_NE(message.find("--aws4-hmac-sha256-region"), std::string::npos) << message;
  EXPECT_EQ(message.find("access-key-id"), std::string::npos) << message;  // the profile replaces it

  ExportFlags bad_name = f;
  bad_name.aws4_credentials = "bad name!";
  EXPECT_NE(error_of(bad_name).find("--aws4-hmac-sha256-credentials"), std::string::npos) << error_of(bad_name);
}

TEST(ExportFlags, IncompleteCap1SetIsRefused) {
  ExportFlags key_only = uri_only();
  key_only.cap1_key = "c2VjcmV0";
  EXPECT_NE(error_of(key_only).find("--cap1-hmac-sha512-key-id"), std::string::npos);
  ExportFlags id_only = uri_only();
  id_only.cap1_key_id = "kid";
  std::string message = error_of(id_only);
  EXPECT_NE(message.find("missing --cap1-hmac-sha512-key"), std::string::npos) << message;
}

TEST(ExportFlags, UriOptionsWithoutUriAreRefused) {
  EXPECT_NE(error_of(ExportFlags{}).find("--uri"), std::string::npos);
  for (const auto& option : uri_options()) {
    if (std::string(option.flag) == "--uri") continue;
    SCOPED_TRACE(option.flag);
    ExportFlags f;
    option.set(f);
    // Flags of an incomplete signing set may be reported as incomplete first; either way, refused.
    EXPECT_FALSE(build_export_body(f).ok());
  }
  ExportFlags method_only;
  method_only.method = "GET";
  EXPECT_NE(error_of(method_only).find("--method need(s) --uri"), std::string::npos);
}

TEST(ExportFlags, HeaderFlags) {
  auto h = parse_header_flag("X-My: Header");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->name, "X-My");
  EXPECT_EQ(h->value, "Header");
  h = parse_header_flag("X-Url:http://a.example:8080/");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->value, "http://a.example:8080/");  // split at the first ':' only
  h = parse_header_flag("X-Empty:");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->value, "");
  EXPECT_FALSE(parse_header_flag("no colon").ok());
  EXPECT_FALSE(parse_header_flag(": value").ok());
  EXPECT_FALSE(parse_header_flag("Bad Name: value").ok());
  EXPECT_FALSE(parse_header_flag("X-A: a\r\nX-Injected: b").ok());
}

TEST(ExportFlags, RepeatedHeaderLastOneWinsAndCaseVariantsAreRefused) {
  ExportFlags f = uri_only();
  f.headers = {"X-A: 1", "X-A: 2"};
  auto r = build_export_body(f);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["headers"].dump(), R"({"X-A":"2"})");
  f.headers = {"X-A: 1", "x-a: 2"};
  EXPECT_NE(error_of(f).find("--header"), std::string::npos);
  f.headers = {"bad"};
  EXPECT_NE(error_of(f).find("Name: value"), std::string::npos);
}

TEST(ExportFlags, TimeoutMsMustBeAPositiveWholeNumber) {
  for (const char* bad : {"", "0", "-5", "1.5", "abc", "10ms", "99999999999999999999999"}) {
    SCOPED_TRACE(bad);
    ExportFlags f = uri_only();
    f.timeout_ms = bad;
    EXPECT_NE(error_of(f).find("--timeout-ms"), std::string::npos);
  }
}

TEST(ExportFlags, ServiceRulesAreCheckedBeforeSending) {
  ExportFlags f = uri_only();
  f.uri = "ftp://example.com/";
  EXPECT_NE(error_of(f).find("--uri"), std::string::npos);
  f = uri_only();
  f.method = "NOT A METHOD";
  EXPECT_NE(error_of(f).find("--method"), std::string::npos);
  f = uri_only();
  f.tls_ca = "not a certificate";
  EXPECT_NE(error_of(f).find("--tls-ca"), std::string::npos);
  f = uri_only();
  f.headers = {"X-Amz-Date: 20240101T000000Z"};  // a header the signer writes
  f.aws4_access_key_id = "AKID";
  f.aws4_secret_access_key = kSecret;
  f.aws4_region = "us-east-1";
  f.aws4_service = "lambda";
  EXPECT_NE(error_of(f).find("--header"), std::string::npos);
  ExportFlags re;
  re.capability_to_export = "cpblty://example.com/#CPBLTY1-tooshort";
  std::string message = error_of(re);
  EXPECT_NE(message.find("--capability-to-export"), std::string::npos) << message;
  // Secrets never appear in an error, even when the flag holding one is wrong.
  f = uri_only();
  f.aws4_access_key_id = "not valid!";
  f.aws4_secret_access_key = kSecret;
  f.aws4_region = "us-east-1";
  f.aws4_service = "lambda";
  message = error_of(f);
  EXPECT_NE(message.find("--aws4-hmac-sha256-aws-access-key-id"), std::string::npos) << message;
  EXPECT_EQ(message.find(kSecret), std::string::npos) << message;
}

TEST(ExportFlags, GivenFlagsAreListed) {
  ExportFlags f = uri_only();
  f.capability_to_export = kCapUri;
  f.headers = {"X-A: b"};
  EXPECT_EQ(given_export_flags(f), (std::vector<std::string>{"--capability-to-export", "--uri", "--header"}));
}

TEST(ExportFlags, QueryTarget) {
  auto t = query_target(std::nullopt, std::nullopt, std::nullopt);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, "/");
  t = query_target(std::string("a b&c/d"), std::nullopt, std::nullopt);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, "/?id=a%20b%26c%2Fd");
  t = query_target(std::nullopt, std::string("m-1"), std::string("10"));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, "/?lastId=m-1&limit=10");
  t = query_target(std::string("x"), std::string("w"), std::string("2"));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, "/?id=x&lastId=w&limit=2");
  for (const char* bad : {"0", "-1", "abc", "1.5", ""}) {
    SCOPED_TRACE(bad);
    auto r = query_target(std::nullopt, std::nullopt, std::string(bad));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("--limit"), std::string::npos);
  }
}

// --- the grant's own limits ---------------------------------------------------------------------

const std::chrono::system_clock::time_point kNow =
    std::chrono::sys_days{std::chrono::year{2026} / 6 / 1} + std::chrono::hours{12};

nlohmann::ordered_json body_ok(const ExportFlags& f) {
  auto r = build_export_body(f, kNow);
  if (!r.ok()) {
    ADD_FAILURE() << r.error().message;
    return {};
  }
  return *r;
}

std::string grant_error_of(const ExportFlags& f) {
  auto r = build_export_body(f, kNow);
  EXPECT_FALSE(r.ok()) << (r.ok() ? r->dump() : "");
  return r.ok() ? std::string() : r.error().message;
}

TEST(CapiGrantFlags, EveryGrantFlagBecomesItsFieldAfterTheConfiguration) {
  ExportFlags f = uri_only();
  f.method = "POST";
  f.label = "partner feed";
  f.expires_at = "2026-12-31T23:59:59Z";
  f.max_uses = "100";
  f.rate_limit = "10/60";
  f.allow_from = {"10.0.0.0/8", "2001:db8::/32"};
  EXPECT_EQ(body_ok(f).dump(),
            R"({"uri":"https://example.com/path","method":"POST","label":"partner feed",)"
            R"("expiresAt":"2026-12-31T23:59:59Z","maxUses":100,"rateLimit":{"requests":10,"perSeconds":60},)"
            R"("allowFrom":["10.0.0.0/8","2001:db8::/32"]})");
}

TEST(CapiGrantFlags, AReExportTakesTheGrantFlagsToo) {
  ExportFlags f;
  f.capability_to_export = kCapUri;
  f.label = "for B";
  f.expires_in = "1h30m";
  f.max_uses = "5";
  EXPECT_EQ(body_ok(f).dump(), std::string(R"({"capability":")") + kCapUri +
                                   R"(","label":"for B","expiresAt":"2026-06-01T13:30:00Z","maxUses":5})");
  EXPECT_EQ(given_export_flags(f),
            (std::vector<std::string>{"--capability-to-export", "--label", "--expires-in", "--max-uses"}));
}

TEST(CapiGrantFlags, ExpiresInCountsFromNowAndExcludesExpiresAt) {
  ExportFlags f = uri_only();
  f.expires_in = "90s";
  EXPECT_EQ(body_ok(f)["expiresAt"], "2026-06-01T12:01:30Z");
  f.expires_in = "1d";
  EXPECT_EQ(body_ok(f)["expiresAt"], "2026-06-02T12:00:00Z");
  f.expires_at = "2026-12-31T23:59:59Z";
  EXPECT_EQ(grant_error_of(f),
            "--expires-at and --expires-in cannot be combined: give the time or the duration");
}

TEST(CapiGrantFlags, ValuesTheServiceWouldRefuseAreRefusedNamingTheFlag) {
  struct Case {
    std::function<void(ExportFlags&)> set;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](ExportFlags& f) { f.label = "two\nlines"; }, "--label: label must not contain control characters"},
      {[](ExportFlags& f) { f.label = ""; }, "--label: label must not be empty"},
      {[](ExportFlags& f) { f.expires_at = "2026-01-01T00:00:00Z"; },
       "--expires-at: expiresAt must be in the future"},
      {[](ExportFlags& f) { f.expires_at = "next week"; },
       "--expires-at: expiresAt is not an ISO 8601 date-time with a zone (next week)"},
      {[](ExportFlags& f) { f.max_uses = "0"; }, "--max-uses must be a positive whole number"},
      {[](ExportFlags& f) { f.max_uses = "-1"; }, "--max-uses must be a positive whole number"},
      {[](ExportFlags& f) { f.max_uses = "1.5"; }, "--max-uses must be a positive whole number"},
      {[](ExportFlags& f) { f.max_uses = "ten"; }, "--max-uses must be a positive whole number"},
      {[](ExportFlags& f) { f.max_uses = "1000000000000001"; },
       "--max-uses must be at most 1000000000000000"},
      {[](ExportFlags& f) {
         f.allow_from = {"10.0.0.0/8", "::1", "example.com"};
       },
       "--allow-from: allowFrom[2] is not a CIDR: example.com"},
      {[](ExportFlags& f) { f.rate_limit = "100"; },
       "--rate-limit must be REQUESTS/SECONDS, such as 100/60 for at most 100 uses in any 60 seconds (got "
       "\"100\")"},
  };
  for (const Case& c : cases) {
    ExportFlags f = uri_only();
    c.set(f);
    EXPECT_EQ(grant_error_of(f), c.message);
  }
  ExportFlags f = uri_only();
  for (int i = 0; i < 65; ++i) f.allow_from.push_back("10.0.0." + std::to_string(i));
  EXPECT_EQ(grant_error_of(f), "--allow-from: allowFrom must hold at most 64 entries");
}

TEST(CapiDurationFlag, UnitsAndTheirCombinations) {
  using namespace std::chrono_literals;
  const std::pair<const char*, std::chrono::seconds> cases[] = {
      {"90s", 90s},         {"30m", 30min},   {"2h", 2h},
      {"1d", 24h},          {"1h30m", 90min}, {"1d12h", 36h},
      {"1d2h3m4s", 93784s}, {"0h1s", 1s},     {"36500d", std::chrono::days(36500)},
  };
  for (const auto& [text, expected] : cases) {
    auto d = parse_duration_flag(text);
    ASSERT_TRUE(d.ok()) << text << ": " << d.error().message;
    EXPECT_EQ(*d, expected) << text;
  }
}

TEST(CapiDurationFlag, MalformedZeroAndTooLongDurationsAreRefused) {
  for (const char* text : {"", "90", "s", "1x", "1.5h", "-1h", "+1h", "1h 30m", "30m1h", "1h1h", "1H", "1hm",
                           "h1", " 1h", "1w"}) {
    auto d = parse_duration_flag(text);
    ASSERT_FALSE(d.ok()) << text;
    EXPECT_EQ(
        d.error().message.rfind("--expires-in must be a duration such as 90s, 30m, 2h, 1d or 1h30m (got ", 0),
        0u)
        << d.error().message;
  }
  for (const char* text : {"0s", "0d0h0m0s"}) {
    auto d = parse_duration_flag(text);
    ASSERT_FALSE(d.ok()) << text;
    EXPECT_EQ(d.error().message, "--expires-in must be longer than 0 seconds");
  }
  for (const char* text :
       {"36501d", "36500d1s", "876001h", "99999999999999999999s", "18446744073709551615d"}) {
    auto d = parse_duration_flag(text);
    ASSERT_FALSE(d.ok()) << text;
    EXPECT_EQ(d.error().message, "--expires-in must be at most 36500d");
  }
}

TEST(CapiRateLimitFlag, RequestsPerSeconds) {
  auto r = parse_rate_limit_flag("100/60");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, (core::RateLimit{100, 60}));
  r = parse_rate_limit_flag("1000000/86400");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, (core::RateLimit{1000000, 86400}));
  r = parse_rate_limit_flag("1/1");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, (core::RateLimit{1, 1}));
}

TEST(CapiRateLimitFlag, MalformedAndOutOfRangeRatesAreRefused) {
  for (const char* text :
       {"", "100", "/60", "100/", "100/60/2", "100 / 60", "1.5/60", "-1/60", "100/1m", "a/b", "100:60"}) {
    auto r = parse_rate_limit_flag(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().message.rfind("--rate-limit must be REQUESTS/SECONDS, such as 100/60", 0), 0u)
        << r.error().message;
  }
  for (const char* text : {"0/60", "1000001/60", "99999999999/60"}) {
    auto r = parse_rate_limit_flag(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().message, "--rate-limit: REQUESTS must be from 1 to 1000000");
  }
  for (const char* text : {"10/0", "10/86401"}) {
    auto r = parse_rate_limit_flag(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().message, "--rate-limit: SECONDS must be from 1 to 86400");
  }
}

}  // namespace
}  // namespace membraned::cli
