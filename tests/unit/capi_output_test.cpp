// What capi prints (cli/output) and where it connects (cli/authority): the original CLI's
// success and FAILED formats, token redaction, authority parsing and the loopback-only rule of
// plain HTTP.
#include <gtest/gtest.h>

#include <string>

#include "cli/authority.hpp"
#include "cli/output.hpp"

namespace membraned::cli {
namespace {

constexpr const char* kToken =
    "CPBLTY1-Vf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhia4Q";

TEST(CapiOutput, SuccessIsIndentedByTwoInTheServicesKeyOrder) {
  auto out = judge_management_answer(201, R"({"id":"m","capabilities":{"revoke":"r","export":"e"}})");
  ASSERT_TRUE(out.ok);
  EXPECT_EQ(out.stdout_text,
            "{\n  \"id\": \"m\",\n  \"capabilities\": {\n    \"revoke\": \"r\",\n    \"export\": \"e\"\n  }\n}\n");
  auto accepted = judge_management_answer(202, R"({"statusCode":202,"message":"Accepted"})");
  ASSERT_TRUE(accepted.ok);
  EXPECT_EQ(accepted.stdout_text, "{\n  \"statusCode\": 202,\n  \"message\": \"Accepted\"\n}\n");
  auto empty = judge_management_answer(200, "");
  ASSERT_TRUE(empty.ok);
  EXPECT_EQ(empty.stdout_text, "");
}

// The service's 409 for a stated operation the capability does not perform (contract §2) names
// what it performs in X-Capability-Operation: capi says what was given, that nothing was done, and
// which command takes it.
TEST(CapiOutput, WrongCapabilityNamesWhatWasGivenAndThatNothingWasDone) {
  const std::string body =
      R"({"statusCode":409,"error":"Conflict","message":"this capability performs revoke, not export; nothing was done"})";
  auto f = wrong_capability(409, {{"X-Capability-Operation", "revoke"}}, "export", body);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->message,
            "The capability given is a membrane's revoke capability (it revokes the membrane), not a membrane's "
            "export capability (it exports capabilities through the membrane). Nothing was done. (Use it with: "
            "capi membrane revoke)");
  EXPECT_EQ(f->error["statusCode"], 409);
  EXPECT_EQ(f->error["message"], "this capability performs revoke, not export; nothing was done");
  auto tenant = wrong_capability(409, {{"x-capability-operation", "deleteSelf"}}, "create", body);
  ASSERT_TRUE(tenant);
  EXPECT_NE(tenant->message.find("deletes the tenant"), std::string::npos) << tenant->message;
  EXPECT_NE(tenant->message.find("capi membrane delete-self"), std::string::npos) << tenant->message;
}

TEST(CapiOutput, OtherConflictsAreNotAWrongCapability) {
  // create's 409 for a membrane id in use carries no such header; nor does any other status.
  EXPECT_FALSE(wrong_capability(409, {}, "create", R"({"statusCode":409})"));
  EXPECT_FALSE(wrong_capability(400, {{"X-Capability-Operation", "revoke"}}, "export", ""));
  EXPECT_FALSE(wrong_capability(409, {{"X-Capability-Operation", "export"}}, "export", ""));
}

TEST(CapiOutput, ErrorStatusBecomesTheSdksErrorObject) {
  auto out = judge_management_answer(409, R"({"statusCode":409,"error":"Conflict","message":"membrane exists"})");
  ASSERT_FALSE(out.ok);
  EXPECT_EQ(out.failure.message, "membrane exists");
  EXPECT_EQ(format_failure(out.failure),
            "FAILED\nmembrane exists\n{\n  \"error\": \"Conflict\",\n  \"statusCode\": 409,\n"
            "  \"message\": \"membrane exists\"\n}\n");
}

TEST(CapiOutput, NonJsonAnswerIsAParsingFailure) {
  auto out = judge_management_answer(502, "<html>bad gateway</html>");
  ASSERT_FALSE(out.ok);
  EXPECT_EQ(out.failure.error["error"], "Parsing response failed");
  EXPECT_EQ(out.failure.error["statusCode"], 502);
  EXPECT_NE(out.failure.message.find("<html>bad gateway</html>"), std::string::npos);
  auto huge = judge_management_answer(200, std::string(100000, 'x'));
  ASSERT_FALSE(huge.ok);
  EXPECT_LT(huge.failure.message.size(), 1000u);  // quoted in part only
}

TEST(CapiOutput, SuccessStatusWithAnErrorBodyIsAFailure) {
  auto out = judge_management_answer(200, R"({"error":"Oops","message":"nope"})");
  ASSERT_FALSE(out.ok);
  EXPECT_EQ(out.failure.message, "nope");
  auto coded = judge_management_answer(200, R"({"statusCode":500,"message":"inside"})");
  EXPECT_FALSE(coded.ok);
}

TEST(CapiOutput, RequestFailureHasTheSdksShape) {
  auto f = request_failure("connecting to http://127.0.0.1:1: Connection refused");
  EXPECT_EQ(f.exit_status, membraned::cli::kExitNoAnswer);
  EXPECT_EQ(format_failure(f),
            "FAILED\nRequest failed: connecting to http://127.0.0.1:1: Connection refused\n{\n"
            "  \"error\": \"Request failed\",\n"
            "  \"message\": \"Request failed: connecting to http://127.0.0.1:1: Connection refused\"\n}\n");
}

TEST(CapiOutput, TokensAreRedactedFromFailures) {
  std::string text = std::string("bad cpblty://h/#") + kToken + " and " + kToken + ".";
  EXPECT_EQ(redact_tokens(text), "bad cpblty://h/#CPBLTY1-<redacted> and CPBLTY1-<redacted>.");
  EXPECT_EQ(redact_tokens("CPBLTY CPBLTY- CPBLTY1- plain"), "CPBLTY CPBLTY- CPBLTY1- plain");
  auto out = judge_management_answer(400, std::string(R"({"error":"Bad Request","message":"capability )") + kToken +
                                               R"( is bad"})");
  std::string printed = format_failure(out.failure);
  EXPECT_EQ(printed.find(kToken), std::string::npos) << printed;
  EXPECT_NE(printed.find("CPBLTY1-<redacted>"), std::string::npos) << printed;
}

TEST(CapiAuthority, Parses) {
  auto a = parse_authority("127.0.0.1:8080", 443);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);
  EXPECT_TRUE(a->ip_literal);
  a = parse_authority("Membrane.Example.COM", 443);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "membrane.example.com");
  EXPECT_EQ(a->port, 443);
  EXPECT_EQ(a->text, "Membrane.Example.COM");
  EXPECT_FALSE(a->ip_literal);
  a = parse_authority("[::1]:9443", 443);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 9443);
  EXPECT_TRUE(a->ip_literal);
  a = parse_authority("localhost", 80);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->port, 80);
  for (const char* bad : {"", ":80", "h:0", "h:65536", "h:x", "h:", "[::1", "[zz]:1", "a b", "h/x", "::1"}) {
    EXPECT_FALSE(parse_authority(bad, 443).ok()) << bad;
  }
}

TEST(CapiAuthority, LoopbackHosts) {
  for (const char* yes : {"localhost", "LOCALHOST", "localhost.", "api.localhost", "127.0.0.1", "127.255.0.9", "::1",
                          "[::1]", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"}) {
    EXPECT_TRUE(is_loopback_host(yes)) << yes;
  }
  for (const char* no : {"example.com", "localhost.example.com", "128.0.0.1", "10.0.0.1", "0.0.0.0", "::", "::2",
                         "::ffff:10.0.0.1", "127.0.0.1.nip.io", "", "fe80::1"}) {
    EXPECT_FALSE(is_loopback_host(no)) << no;
  }
}

TEST(CapiAuthority, PlainHttpOnlyToLoopback) {
  auto local = parse_authority("127.0.0.1:8080", 80);
  ASSERT_TRUE(local.ok());
  EXPECT_TRUE(check_plain_http_allowed(*local).ok());
  auto remote = parse_authority("membrane.example.com", 80);
  ASSERT_TRUE(remote.ok());
  auto s = check_plain_http_allowed(*remote);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("in clear"), std::string::npos);
  auto custom = core::CapabilityUri::parse(std::string("cpblty:bWVtYnJhbmU:") + kToken);
  ASSERT_TRUE(custom.ok());
  EXPECT_FALSE(capability_authority(*custom, false).ok());
  auto usual = core::CapabilityUri::parse(std::string("cpblty://127.0.0.1/#") + kToken);
  ASSERT_TRUE(usual.ok());
  auto https = capability_authority(*usual, false);
  ASSERT_TRUE(https.ok());
  EXPECT_EQ(https->port, 443);
  auto plain = capability_authority(*usual, true);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->port, 80);
}

}  // namespace
}  // namespace membraned::cli
