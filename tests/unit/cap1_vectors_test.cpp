// Every vector of tests/vectors/cap1-vectors.json (cap1-hmac-sha512 v1.4.3), quirks included.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/cap1.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "tests/support/test_support.hpp"

namespace {

using namespace membraned::core;
using json = nlohmann::ordered_json;  // header order matters: the reference keeps object order

const json& vectors() {
  static const json v =
      json::parse(membraned::test::read_file(membraned::test::vectors_dir() / "cap1-vectors.json"));
  return v;
}

std::string as_text(const json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

Headers headers_of(const json& object) {
  Headers out;
  for (const auto& [name, value] : object.items()) out.push_back({name, as_text(value)});
  return out;
}

cap1::SignInput sign_input_of(const json& input) {
  cap1::SignInput in;
  in.headers = headers_of(input.at("headers"));
  in.key = input.at("key").get<std::string>();
  in.key_id = input.at("keyId").get<std::string>();
  if (input.contains("httpRequestMethod")) in.method = input.at("httpRequestMethod").get<std::string>();
  if (input.contains("path")) in.path = input.at("path").get<std::string>();
  if (input.contains("queryString") && !input.at("queryString").is_null()) {
    in.query = input.at("queryString").get<std::string>();
  }
  return in;
}

TEST(Cap1Vectors, FileHoldsTheExpectedNumberOfVectors) {
  EXPECT_EQ(vectors().at("generatedSignVectors").size(), 8u);
  EXPECT_EQ(vectors().at("verifyTestJs").at("cases").size(), 13u);
}

TEST(Cap1Vectors, EverySignVectorMatchesEveryStage) {
  const json& all = vectors().at("generatedSignVectors");
  ASSERT_FALSE(all.empty());
  for (const json& v : all) {
    SCOPED_TRACE(v.at("name").get<std::string>());
    auto out = cap1::sign(sign_input_of(v.at("input")));
    ASSERT_TRUE(out.ok()) << out.error().message;
    const json& mid = v.at("intermediate");
    EXPECT_EQ(out->canonical_request, mid.at("canonicalRequest").get<std::string>());
    EXPECT_EQ(out->string_to_sign, mid.at("stringToSign").get<std::string>());
    EXPECT_EQ(base64url_encode(sha512(out->canonical_request)),
              mid.at("canonicalRequestSha512Base64url").get<std::string>());
    const json& expected = v.at("expected");
    EXPECT_EQ(out->authorization, expected.at("authorization").get<std::string>());
    EXPECT_EQ(out->credential, expected.at("credential").get<std::string>());
    EXPECT_EQ(out->cap_date, expected.at("x-cap-date").get<std::string>());
    EXPECT_EQ(out->signed_headers, expected.at("signedHeaders").get<std::string>());
    EXPECT_EQ(out->signature, expected.at("signature").get<std::string>());
    EXPECT_EQ(cap1::kAlgorithm, expected.at("algorithm").get<std::string>());
  }
}

TEST(Cap1Vectors, DerivedKeysFollowTheLatin1ToUtf8Quirk) {
  int checked = 0;
  for (const json& v : vectors().at("generatedSignVectors")) {
    if (!v.contains("derivedKeys")) continue;
    const json& keys = v.at("derivedKeys");
    const json& input = v.at("input");
    std::string date8 = v.at("expected").at("x-cap-date").get<std::string>().substr(0, 8);
    std::string host = input.at("headers").at("host").get<std::string>();
    EXPECT_EQ("CAP1" + input.at("key").get<std::string>(),
              keys.at("hmacKeyForKDate_utf8").get<std::string>());
    auto k_date = hmac_sha512(keys.at("hmacKeyForKDate_utf8").get<std::string>(), date8);
    EXPECT_EQ(hex_encode(k_date), keys.at("kDate_digest_hex").get<std::string>());
    std::string k_date_key = cap1::latin1_to_utf8(digest_view(k_date));
    EXPECT_EQ(hex_encode(k_date_key), keys.at("kDate_as_key_bytes_hex").get<std::string>());
    EXPECT_EQ(k_date_key.size(), keys.at("kDate_as_key_len").get<std::size_t>());
    auto k_host = hmac_sha512(k_date_key, host);
    EXPECT_EQ(hex_encode(k_host), keys.at("kHost_digest_hex").get<std::string>());
    std::string k_host_key = cap1::latin1_to_utf8(digest_view(k_host));
    EXPECT_EQ(hex_encode(k_host_key), keys.at("kHost_as_key_bytes_hex").get<std::string>());
    EXPECT_EQ(k_host_key.size(), keys.at("kHost_as_key_len").get<std::size_t>());
    auto k_signing = hmac_sha512(k_host_key, "cap1_request");
    EXPECT_EQ(hex_encode(k_signing), keys.at("kSigning_digest_hex").get<std::string>());
    std::string k_signing_key = cap1::latin1_to_utf8(digest_view(k_signing));
    EXPECT_EQ(hex_encode(k_signing_key), keys.at("kSigning_as_key_bytes_hex").get<std::string>());
    EXPECT_EQ(k_signing_key.size(), keys.at("kSigning_as_key_len").get<std::size_t>());
    ++checked;
  }
  EXPECT_GE(checked, 1);
}

// Raw digests as keys give a different signature: the quirk is load-bearing.
TEST(Cap1Vectors, RawDigestKeysGiveTheWrongSignatureOfTheDemo) {
  const json& demo = vectors().at("nodeKeyQuirkDemo");
  const json& readme = vectors().at("generatedSignVectors").at(4);
  ASSERT_NE(readme.at("name").get<std::string>().find("README demo"), std::string::npos);
  auto out = cap1::sign(sign_input_of(readme.at("input")));
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->signature, demo.at("correctSignature").get<std::string>());
  auto k_date = hmac_sha512("CAP1mySecret", "20170702");
  auto k_host = hmac_sha512(digest_view(k_date), "localhost:8888");
  auto k_signing = hmac_sha512(digest_view(k_host), "cap1_request");
  std::string wrong = base64url_encode(hmac_sha512(digest_view(k_signing), out->string_to_sign));
  EXPECT_EQ(wrong, demo.at("signatureIfRawDigestBytesAreUsedAsKeys_WRONG").get<std::string>());
  EXPECT_NE(wrong, out->signature);
}

TEST(Cap1Vectors, HistoricalVectorThatSignedConnection) {
  const json& h = vectors().at("historicalPre140Vector");
  cap1::SignInput in = sign_input_of(h.at("input"));
  in.drop_hop_by_hop = false;
  auto out = cap1::sign(in);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->canonical_request, h.at("canonicalRequest").get<std::string>());
  EXPECT_EQ(out->authorization, h.at("expectedAuthorization").get<std::string>());

  // v1.4.3 no longer signs Connection, so it does not verify that old signature.
  cap1::VerifyInput verify;
  verify.headers = headers_of(h.at("input").at("headers"));
  verify.headers.push_back({"authorization", h.at("expectedAuthorization").get<std::string>()});
  verify.method = "GET";
  verify.path = "/somewhere";
  verify.query = "page=12";
  verify.now = membraned::test::parse_iso8601_utc("2017-07-02T20:46:57Z");
  verify.secret = [](std::string_view) { return std::optional<std::string>("mySecret"); };
  EXPECT_FALSE(cap1::verify(verify));
}

TEST(Cap1Vectors, EveryVerifyCaseGivesTheExpectedAnswer) {
  const json& cases = vectors().at("verifyTestJs").at("cases");
  ASSERT_FALSE(cases.empty());
  for (const json& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const json& input = c.at("input");
    cap1::VerifyInput in;
    in.headers = headers_of(input.at("headers"));
    in.method = input.at("httpRequestMethod").get<std::string>();
    in.path = input.at("path").get<std::string>();
    in.query = input.at("queryString").get<std::string>();
    in.now = membraned::test::parse_iso8601_utc(input.at("now").get<std::string>());
    const json& secrets = input.at("secrets");
    if (secrets.is_object()) {
      in.secret = [secrets](std::string_view id) -> std::optional<std::string> {
        auto it = secrets.find(std::string(id));
        if (it == secrets.end()) return std::nullopt;
        return it->get<std::string>();
      };
    } else if (secrets.get<std::string>().find("error") != std::string::npos) {
      in.secret = [](std::string_view) -> std::optional<std::string> {
        throw std::runtime_error("secret lookup fails with an error");
      };
    } else {
      in.secret = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
    }
    EXPECT_EQ(cap1::verify(in), c.at("expected").at("authorized").get<bool>());
  }
}

// referenceVerifyEdgeBehaviour: where the reference throws, the verifier answers false.
TEST(Cap1Vectors, ReferenceEdgeBehaviourAnswersFalse) {
  ASSERT_TRUE(vectors().contains("referenceVerifyEdgeBehaviour"));
  const json& fixture = vectors().at("verifyTestJs").at("fixture");
  auto base = [&] {
    cap1::VerifyInput in;
    in.headers = headers_of(fixture.at("headers"));
    in.method = "GET";
    in.path = "/somewhere";
    in.query = "page=12";
    in.now = membraned::test::parse_iso8601_utc("2017-07-02T20:46:57Z");
    in.secret = [](std::string_view) { return std::optional<std::string>("mySecret"); };
    return in;
  };
  ASSERT_TRUE(cap1::verify(base()));

  auto no_authorization = base();
  erase_headers(no_authorization.headers, "authorization");
  EXPECT_FALSE(cap1::verify(no_authorization));

  // Host not among the signed headers: the reference's sign() throws "Host header not found."
  auto host_unsigned = base();
  cap1::SignInput s;
  s.headers = {{"x-cap-date", "20170702T204657Z"}, {"x-other", "1"}, {"host", "localhost:8888"}};
  s.key = "mySecret";
  s.key_id = "someId";
  s.path = "/somewhere";
  s.query = "page=12";
  auto signed_out = cap1::sign(s);
  ASSERT_TRUE(signed_out.ok());
  std::string tampered = signed_out->authorization;
  tampered.replace(tampered.find("host;"), 5, "");
  set_header(host_unsigned.headers, "authorization", tampered);
  EXPECT_FALSE(cap1::verify(host_unsigned));

  // Key ids with '/' or ',' sign, but the reference's parser can never verify them.
  for (std::string key_id : {"some/Id", "some,Id"}) {
    cap1::SignInput k;
    k.headers = {{"host", "localhost:8888"}, {"x-cap-date", "20170702T204657Z"}};
    k.key = "mySecret";
    k.key_id = key_id;
    k.path = "/somewhere";
    k.query = "page=12";
    auto out = cap1::sign(k);
    ASSERT_TRUE(out.ok());
    auto in = base();
    in.headers = k.headers;
    in.headers.push_back({"authorization", out->authorization});
    in.secret = [](std::string_view) { return std::optional<std::string>("mySecret"); };
    EXPECT_FALSE(cap1::verify(in)) << key_id;
  }
}

}  // namespace
