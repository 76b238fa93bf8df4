// Bad-input robustness of every parser that sees data from the network: random bytes and
// mutations of valid inputs thrown at Token::parse, CapabilityUri::parse, parse_bearer,
// parse_export_config and cap1::verify. Nothing may throw, every failure must explain itself,
// and no mutation may be mistaken for the original (a changed token, a changed signature).
//
// The generator is seeded with a fixed value (printed with every failure); set
// MEMBRANED_FUZZ_SEED to explore other seeds.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/cap1.hpp"
#include "core/export_config.hpp"
#include "core/http.hpp"
#include "core/token.hpp"
#include "tests/support/test_support.hpp"

namespace {

using namespace membraned::core;
using membraned::test::parse_iso8601_utc;

constexpr int kRandomInputs = 2000;    // purely random byte strings per parser
constexpr int kMutatedInputs = 2500;   // mutations of valid inputs per parser

std::uint64_t seed() {
  if (const char* env = std::getenv("MEMBRANED_FUZZ_SEED"); env != nullptr && *env != '\0') {
    return std::strtoull(env, nullptr, 0);
  }
  return 0x6d656d6272616e65ULL;  // "membrane"
}

std::string seed_trace() { return "seed " + std::to_string(seed()) + " (MEMBRANED_FUZZ_SEED)"; }

constexpr std::string_view kToken =
    "CPBLTY1-Vf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhia4Q";

// Collects property violations and reports the first few in full, so one bug does not print
// thousands of lines.
class Violations {
 public:
  void add(const std::string& what, std::string_view input) {
    if (++count_ <= 20) {
      ADD_FAILURE() << what << "\n  input: " << testing::PrintToString(std::string(input));
    }
  }
  int count() const { return count_; }

 private:
  int count_ = 0;
};

class Fuzzer {
 public:
  explicit Fuzzer(std::uint64_t s) : rng_(s) {}

  std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(rng_() % n); }
  bool chance(int percent) { return below(100) < static_cast<std::size_t>(percent); }

  std::string random_bytes(std::size_t max_length) {
    std::string out(below(max_length + 1), '\0');
    for (char& c : out) c = static_cast<char>(rng_() & 0xFF);
    return out;
  }

  // A byte that is often one the parsers treat specially.
  char interesting_byte() {
    static constexpr std::string_view kInteresting =
        "AQgw09az-_=+/.:@#?% \t\r\n\"'\\{}[],;\x7f\x80\xc3\xff";
    if (chance(60)) return kInteresting[below(kInteresting.size())];
    if (chance(50)) return '\0';
    return static_cast<char>(rng_() & 0xFF);
  }

  // One to three edits: flip a bit, replace, insert, delete, duplicate a run, swap, truncate.
  std::string mutate(std::string s) {
    std::size_t edits = 1 + below(3);
    for (std::size_t e = 0; e < edits; ++e) {
      std::size_t at = below(s.size());
      switch (below(8)) {
        case 0:
          if (!s.empty()) s[at] = static_cast<char>(s[at] ^ (1 << below(8)));
          break;
        case 1:
          if (!s.empty()) s[at] = interesting_byte();
          break;
        case 2:
          s.insert(s.begin() + static_cast<std::ptrdiff_t>(below(s.size() + 1)), interesting_byte());
          break;
        case 3:
          if (!s.empty()) s.erase(at, 1 + below(3));
          break;
        case 4:
          if (!s.empty()) {
            std::string run = s.substr(at, 1 + below(8));
            s.insert(at, run);
          }
          break;
        case 5:
          if (s.size() > 1 && at + 1 < s.size()) std::swap(s[at], s[at + 1]);
          break;
        case 6:
          s.resize(below(s.size() + 1));
          break;
        default:
          if (!s.empty()) s[at] = static_cast<char>(rng_() & 0xFF);
          break;
      }
    }
    return s;
  }

  template <typename T>
  const T& pick(const std::vector<T>& items) {
    return items[below(items.size())];
  }

 private:
  std::mt19937_64 rng_;
};

template <typename T>
void check_result(const Result<T>& r, ErrorKind expected_kind, std::string_view input, Violations& v) {
  if (r.ok()) return;
  if (r.error().message.empty()) v.add("error without a message", input);
  if (r.error().kind != expected_kind) v.add("unexpected error kind", input);
}

// --- Token::parse ------------------------------------------------------------------------------------

TEST(ParserRobustness, TokenParse) {
  SCOPED_TRACE(seed_trace());
  Fuzzer f(seed());
  Violations v;
  int parsed = 0;
  const std::string original(kToken);
  auto check = [&](const std::string& input) {
    Result<Token> r = Error::internal("not run");
    EXPECT_NO_THROW(r = Token::parse(input)) << testing::PrintToString(input);
    check_result(r, ErrorKind::invalid_input, input, v);
    if (r.ok()) {
      ++parsed;
      if (r->text() != input) v.add("parsed token differs from its text", input);
      if (input != original && r->text() == original) v.add("a changed token parsed as the original", input);
      if (r->text().size() != Token::kSize) v.add("accepted token of the wrong size", input);
    }
  };
  for (int i = 0; i < kRandomInputs; ++i) check(f.random_bytes(200));
  for (int i = 0; i < kRandomInputs / 2; ++i) {  // random bodies behind a valid prefix
    std::string body;
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::size_t n = 80 + f.below(12);
    for (std::size_t k = 0; k < n; ++k) body += alphabet[f.below(alphabet.size())];
    check("CPBLTY1-" + body);
  }
  int changed = 0;
  for (int i = 0; i < kMutatedInputs; ++i) {
    std::string m = f.mutate(original);
    changed += m != original ? 1 : 0;
    check(m);
  }
  EXPECT_EQ(v.count(), 0);
  EXPECT_GT(changed, kMutatedInputs * 9 / 10);
  EXPECT_GT(parsed, 0);  // some mutations (and random canonical bodies) are valid tokens
}

// --- CapabilityUri::parse ----------------------------------------------------------------------------

TEST(ParserRobustness, CapabilityUriParse) {
  SCOPED_TRACE(seed_trace());
  Fuzzer f(seed() + 1);
  Violations v;
  const std::vector<std::string> valid = {
      "cpblty://membrane.amzn-us-east-1.capability.io/#" + std::string(kToken),
      "cpblty://[::1]:8080/#" + std::string(kToken),
      "cpblty:bWVtYnJhbmUuZXhhbXBsZQ@https:" + std::string(kToken),
      "cpblty:bWVtYnJhbmU:" + std::string(kToken),
  };
  for (const auto& text : valid) {
    auto r = CapabilityUri::parse(text);
    ASSERT_TRUE(r.ok()) << text;
  }
  auto check = [&](const std::string& input, const std::string* original) {
    Result<CapabilityUri> r = Error::internal("not run");
    EXPECT_NO_THROW(r = CapabilityUri::parse(input)) << testing::PrintToString(input);
    check_result(r, ErrorKind::invalid_input, input, v);
    if (!r.ok()) return;
    if (r->serialize() != input) v.add("accepted URI does not serialize back to itself", input);
    if (!Token::parse(r->token().text()).ok()) v.add("URI carries an invalid token", input);
    if (input.size() < Token::kSize || input.substr(input.size() - Token::kSize) != r->token().text()) {
      v.add("token is not the end of the URI", input);
    }
    if (original != nullptr && input != *original) {
      auto o = CapabilityUri::parse(*original);
      if (r->token() == o->token() && r->authority() == o->authority() &&
          r->is_custom_form() == o->is_custom_form() && r->authority_scheme() == o->authority_scheme()) {
        v.add("a changed URI parsed as the original", input);
      }
    }
  };
  for (int i = 0; i < kRandomInputs; ++i) check(f.random_bytes(200), nullptr);
  for (int i = 0; i < kRandomInputs / 2; ++i) {
    check((f.chance(50) ? "cpblty://" : "cpblty:") + f.random_bytes(20) + std::string(kToken), nullptr);
  }
  for (int i = 0; i < kMutatedInputs; ++i) {
    const std::string& original = f.pick(valid);
    check(f.mutate(original), &original);
  }
  EXPECT_EQ(v.count(), 0);
}

// --- parse_bearer --------------------------------------------------------------------------------------

TEST(ParserRobustness, ParseBearer) {
  SCOPED_TRACE(seed_trace());
  Fuzzer f(seed() + 2);
  Violations v;
  const std::vector<std::string> valid = {"Bearer " + std::string(kToken), "bearer   " + std::string(kToken),
                                          "  BEARER\t" + std::string(kToken) + " "};
  auto check = [&](const std::string& input) {
    Result<Token> r = Error::internal("not run");
    EXPECT_NO_THROW(r = parse_bearer(input)) << testing::PrintToString(input);
    check_result(r, ErrorKind::unauthorized, input, v);
    if (!r.ok()) return;
    if (!Token::parse(r->text()).ok()) v.add("bearer gave an invalid token", input);
    // What was accepted is exactly: blanks, "bearer" in any case, blanks, the token, blanks.
    std::string_view rest(input);
    auto blank = [](char c) { return c == ' ' || c == '\t'; };
    while (!rest.empty() && blank(rest.front())) rest.remove_prefix(1);
    while (!rest.empty() && blank(rest.back())) rest.remove_suffix(1);
    if (!istarts_with(rest, "bearer")) {
      v.add("accepted without the Bearer scheme", input);
      return;
    }
    rest.remove_prefix(6);
    if (rest.empty() || !blank(rest.front())) v.add("no blank after the scheme", input);
    while (!rest.empty() && blank(rest.front())) rest.remove_prefix(1);
    if (rest != r->text()) v.add("token is not the rest of the header", input);
  };
  for (int i = 0; i < kRandomInputs; ++i) check(f.random_bytes(200));
  for (int i = 0; i < kMutatedInputs; ++i) check(f.mutate(f.pick(valid)));
  EXPECT_EQ(v.count(), 0);
}

// --- parse_export_config (text) ------------------------------------------------------------------------

TEST(ParserRobustness, ParseExportConfig) {
  SCOPED_TRACE(seed_trace());
  Fuzzer f(seed() + 3);
  Violations v;
  // The Lambda tutorial's export body, with its placeholders filled in; a CAP1 export; a
  // re-export.
  const std::vector<std::string> valid = {
      R"({"uri":"https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-function/invocations",)"
      R"("method":"POST","allowQuery":false,"headers":{"X-Amz-Invocation-Type": "RequestResponse",)"
      R"("X-Amz-Log-Type":"None"},"hmac":{"aws4-hmac-sha256":{"awsAccessKeyId":"AKIDEXAMPLE",)"
      R"("region":"us-east-1","service":"lambda","secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}}})",
      R"({"uri":"http://api.example.com:8080/v1/items?x=1","allowQuery":true,"timeoutMs":5000,)"
      R"("headers":{"X-Num":12,"X-Bool":true},"hmac":{"cap1-hmac-sha512":{"key":"c2VjcmV0LWtleQ","keyId":"key-1"}}})",
      R"({"capability":"cpblty://membrane.example.com/#)" + std::string(kToken) + R"("})",
  };
  for (const auto& body : valid) {
    auto r = parse_export_config(std::string_view(body));
    ASSERT_TRUE(r.ok()) << body << "\n" << r.error().message;
  }
  int accepted = 0;
  auto check = [&](const std::string& input) {
    Result<ExportConfig> r = Error::internal("not run");
    EXPECT_NO_THROW(r = parse_export_config(std::string_view(input))) << testing::PrintToString(input);
    check_result(r, ErrorKind::invalid_input, input, v);
    if (!r.ok()) return;
    ++accepted;
    // A parsed value is valid: its JSON form parses back to the same value.
    if (const auto* uri_export = std::get_if<UriExport>(&*r)) {
      nlohmann::json again;
      std::string again_text;
      EXPECT_NO_THROW(again = to_json(*uri_export); again_text = again.dump());
      auto back = parse_export_config(std::string_view(again_text));
      if (!back.ok()) {
        v.add("to_json of an accepted export does not parse: " + back.error().message, input);
      } else if (const auto* b = std::get_if<UriExport>(&*back); b == nullptr || to_json(*b) != again) {
        v.add("to_json round trip changed the export", input);
      }
    }
  };
  for (int i = 0; i < kRandomInputs; ++i) check(f.random_bytes(200));
  for (int i = 0; i < kMutatedInputs; ++i) check(f.mutate(f.pick(valid)));
  EXPECT_EQ(v.count(), 0);
  EXPECT_GT(accepted, 0);
}

TEST(ParserRobustness, ParseExportConfigDeepNesting) {
  // Deep nesting must be rejected as a body, never overflow the stack.
  for (std::string_view open : {"[", "{\"a\":"}) {
    std::string body;
    for (int i = 0; i < 20000; ++i) body += open;
    Result<ExportConfig> r = Error::internal("not run");
    EXPECT_NO_THROW(r = parse_export_config(std::string_view(body)));
    ASSERT_FALSE(r.ok());
    EXPECT_FALSE(r.error().message.empty());
  }
  std::string closed = std::string(5000, '[') + std::string(5000, ']');
  auto r = parse_export_config(std::string_view(closed));
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().message.empty());
}

// --- cap1::verify -------------------------------------------------------------------------------------

const auto kNow = parse_iso8601_utc("2017-07-02T20:46:57Z");
constexpr const char* kKey = "c2VjcmV0LWtleQ";

struct SignedRequest {
  cap1::VerifyInput input;
  std::string authorization;
};

SignedRequest signed_request() {
  cap1::SignInput in;
  in.headers = {{"Host", "api.example.com"}, {"Content-Type", "application/json; charset=utf-8"}};
  in.method = "POST";
  in.path = "/v1/items/caf%C3%A9";
  in.query = "page=12&sort=asc";
  in.key = kKey;
  in.key_id = "key-1";
  in.now = kNow;
  auto out = cap1::sign(in);
  EXPECT_TRUE(out.ok());
  SignedRequest r;
  r.authorization = out->authorization;
  r.input.headers = {{"host", "api.example.com"},
                     {"content-type", "application/json; charset=utf-8"},
                     {"x-cap-date", out->cap_date},
                     {"authorization", out->authorization}};
  r.input.method = in.method;
  r.input.path = in.path;
  r.input.query = in.query;
  r.input.secret = [](std::string_view id) -> std::optional<std::string> {
    if (id == "key-1") return std::string(kKey);
    return std::nullopt;
  };
  r.input.now = kNow;
  return r;
}

std::string upper(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

bool call_verify(const cap1::VerifyInput& input) {
  bool result = false;
  EXPECT_NO_THROW(result = cap1::verify(input));
  return result;
}

TEST(ParserRobustness, Cap1VerifyRejectsEveryMeaningfulMutation) {
  SCOPED_TRACE(seed_trace());
  Fuzzer f(seed() + 4);
  Violations v;
  const SignedRequest base = signed_request();
  ASSERT_TRUE(cap1::verify(base.input));
  const std::vector<std::string> signed_names = {"host", "content-type", "x-cap-date", "authorization"};
  auto canonical_or_error = [](const Result<std::string>& r) { return r.ok() ? "ok:" + *r : std::string("error"); };

  int signature_changes = 0;
  for (int i = 0; i < kMutatedInputs * 2; ++i) {
    cap1::VerifyInput in = base.input;
    std::string described;
    std::optional<bool> expected;  // nullopt: the mutation may or may not matter
    switch (f.below(9)) {
      case 0:
      case 1: {  // the Authorization value, often only its signature bytes
        std::string& auth = in.headers[3].value;
        if (f.chance(50)) {
          std::size_t sig = auth.find(",Signature=") + 11;
          auth = auth.substr(0, sig) + f.mutate(auth.substr(sig));
          if (auth != base.authorization) ++signature_changes;
        } else {
          auth = f.mutate(auth);
        }
        described = "authorization " + auth;
        if (auth != base.authorization) expected = false;
        break;
      }
      case 2: {  // a signed header's value
        std::size_t h = f.below(3);
        std::string old = in.headers[h].value;
        in.headers[h].value = f.mutate(old);
        described = in.headers[h].name + ": " + in.headers[h].value;
        if (cap1::trimall(in.headers[h].value) != cap1::trimall(old)) {
          expected = false;
        } else if (h == 1) {
          expected = true;  // content-type: only its canonical form is signed
        }
        break;
      }
      case 3: {  // a header's name
        std::size_t h = f.below(4);
        std::string old = in.headers[h].name;
        in.headers[h].name = f.mutate(old);
        described = "name " + in.headers[h].name;
        expected = to_lower_ascii(in.headers[h].name) == old;
        break;
      }
      case 4:  // the method
        in.method = f.mutate(in.method);
        described = "method " + in.method;
        expected = upper(in.method) == "POST";
        break;
      case 5:  // the path
        in.path = f.mutate(in.path);
        described = "path " + in.path;
        expected = canonical_or_error(cap1::canonical_uri(in.path)) ==
                   canonical_or_error(cap1::canonical_uri(base.input.path));
        break;
      case 6:  // the query
        in.query = f.mutate(in.query);
        described = "query " + in.query;
        expected = canonical_or_error(cap1::canonical_query(in.query)) ==
                   canonical_or_error(cap1::canonical_query(base.input.query));
        break;
      case 7: {  // a signed header removed
        std::size_t h = f.below(4);
        described = "removed " + in.headers[h].name;
        in.headers.erase(in.headers.begin() + static_cast<std::ptrdiff_t>(h));
        expected = false;
        break;
      }
      default: {  // an extra header
        std::string name = f.mutate("x-extra");
        std::string value = f.random_bytes(30);
        in.headers.push_back({name, value});
        described = "added " + name + ": " + value;
        std::string lower = to_lower_ascii(name);
        if (std::find(signed_names.begin(), signed_names.end(), lower) == signed_names.end()) {
          expected = true;
        }
        break;
      }
    }
    bool result = call_verify(in);
    if (expected.has_value() && result != *expected) {
      v.add(std::string(result ? "verified" : "rejected") + " after mutating " + described, described);
    }
  }
  EXPECT_EQ(v.count(), 0);
  EXPECT_GT(signature_changes, kMutatedInputs / 6);
}

TEST(ParserRobustness, Cap1VerifyRandomRequestsNeverVerify) {
  SCOPED_TRACE(seed_trace());
  Fuzzer f(seed() + 5);
  Violations v;
  const SignedRequest base = signed_request();
  for (int i = 0; i < kRandomInputs * 2; ++i) {
    cap1::VerifyInput in;
    in.secret = base.input.secret;
    in.now = kNow;
    in.method = f.random_bytes(8);
    in.path = f.random_bytes(40);
    in.query = f.random_bytes(40);
    std::size_t n = f.below(6);
    for (std::size_t k = 0; k < n; ++k) in.headers.push_back({f.random_bytes(20), f.random_bytes(60)});
    // Half the time, structured enough to reach the signature comparison.
    if (f.chance(50)) {
      in.headers.push_back({"x-cap-date", "20170702T204657Z"});
      in.headers.push_back({"host", f.chance(50) ? std::string("api.example.com") : f.random_bytes(20)});
      in.headers.push_back(
          {"authorization", "CAP1-HMAC-SHA512 Credential=key-1/20170702/api.example.com/cap1_request,"
                            "SignedHeaders=" + (f.chance(50) ? std::string("host;x-cap-date") : f.random_bytes(30)) +
                                ",Signature=" + f.random_bytes(90)});
    } else if (f.chance(50)) {
      in.headers.push_back({"authorization", f.random_bytes(200)});
    }
    if (call_verify(in)) v.add("a random request verified", in.path);
  }
  // Random bytes as the whole Authorization of an otherwise valid request.
  for (int i = 0; i < kRandomInputs; ++i) {
    cap1::VerifyInput in = base.input;
    in.headers[3].value = f.random_bytes(200);
    if (call_verify(in)) v.add("a random Authorization verified", in.headers[3].value);
  }
  EXPECT_EQ(v.count(), 0);
}

}  // namespace
