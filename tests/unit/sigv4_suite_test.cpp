// The official AWS SigV4 suite (tests/vectors/sigv4-suite, from aws-c-auth): every case, both
// the header form and the query form, every stage compared with the file.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <regex>

#include "core/sigv4.hpp"
#include "tests/support/test_support.hpp"

namespace {

namespace fs = std::filesystem;
using namespace membraned::core;
using membraned::test::read_file;

constexpr const char* kStageFiles[] = {
    "context.json",
    "request.txt",
    "header-canonical-request.txt",
    "header-string-to-sign.txt",
    "header-signature.txt",
    "header-signed-request.txt",
    "query-canonical-request.txt",
    "query-string-to-sign.txt",
    "query-signature.txt",
    "query-signed-request.txt",
};

fs::path suite_dir() { return membraned::test::vectors_dir() / "sigv4-suite" / "v4"; }

// Every folder of the suite, read when the test binary runs (ctest lists tests at test time).
std::vector<std::string> list_cases() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(suite_dir(), ec)) {
    if (entry.is_directory()) names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// request.txt: request line, headers (a line starting with white space continues the previous
// header; kept raw so the signed request can be reproduced byte for byte), blank line, body.
struct RawRequest {
  std::string method;
  std::string path;
  std::string query;
  Headers headers;
  std::string body;
};

RawRequest parse_request_file(const std::string& text) {
  RawRequest r;
  std::size_t header_end = text.find("\n\n");
  std::string head = header_end == std::string::npos ? text : text.substr(0, header_end);
  if (header_end != std::string::npos) r.body = text.substr(header_end + 2);
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start <= head.size()) {
    std::size_t end = head.find('\n', start);
    if (end == std::string::npos) end = head.size();
    lines.push_back(head.substr(start, end - start));
    start = end + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  const std::string& request_line = lines.at(0);
  std::size_t first_space = request_line.find(' ');
  std::size_t last_space = request_line.rfind(' ');
  r.method = request_line.substr(0, first_space);
  std::string target = request_line.substr(first_space + 1, last_space - first_space - 1);
  std::size_t q = target.find('?');
  r.path = target.substr(0, q);
  if (q != std::string::npos) r.query = target.substr(q + 1);
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      r.headers.back().value += "\n" + line;
      continue;
    }
    std::size_t colon = line.find(':');
    r.headers.push_back({line.substr(0, colon), line.substr(colon + 1)});
  }
  return r;
}

std::string serialize_request(const sigv4::Request& r, std::string_view body) {
  std::string out = r.method + " " + r.path;
  if (!r.query.empty()) out += "?" + r.query;
  out += " HTTP/1.1\n";
  for (const Header& h : r.headers) out += h.name + ":" + h.value + "\n";
  out += "\n";
  out += body;
  return out;
}

struct CaseSetup {
  RawRequest raw;
  sigv4::Credentials credentials;
  sigv4::Params params;
};

CaseSetup load_case(const fs::path& dir) {
  CaseSetup c;
  auto context = nlohmann::json::parse(read_file(dir / "context.json"));
  c.raw = parse_request_file(read_file(dir / "request.txt"));
  const auto& creds = context.at("credentials");
  c.credentials.access_key_id = creds.at("access_key_id").get<std::string>();
  c.credentials.secret_access_key = creds.at("secret_access_key").get<std::string>();
  if (creds.contains("token")) c.credentials.session_token = creds.at("token").get<std::string>();
  c.params.region = context.at("region").get<std::string>();
  c.params.service = context.at("service").get<std::string>();
  c.params.time = membraned::test::parse_iso8601_utc(context.at("timestamp").get<std::string>());
  // In the suite the path in request.txt is written unencoded; normalising services encode it
  // once (as they would encode an already-encoded wire path a second time), S3 keeps it.
  bool normalize = context.value("normalize", true);
  c.params.normalize_path = normalize;
  c.params.double_encode_path = normalize;
  c.params.add_content_sha256_header = context.value("sign_body", false);
  c.params.omit_session_token = context.value("omit_session_token", false);
  c.params.expires = std::chrono::seconds(context.value("expiration_in_seconds", 3600));
  c.params.headers.all = true;  // the suite signs every header of the request
  return c;
}

sigv4::Request to_request(const RawRequest& raw) {
  return sigv4::Request{raw.method, raw.path, raw.query, raw.headers, raw.body};
}

class SigV4SuiteCase : public ::testing::TestWithParam<std::string> {};

TEST_P(SigV4SuiteCase, HeaderFormMatchesEveryStage) {
  fs::path dir = suite_dir() / GetParam();
  CaseSetup c = load_case(dir);
  sigv4::Request request = to_request(c.raw);
  sigv4::Signature sig = sigv4::sign_headers(request, c.credentials, c.params);
  EXPECT_EQ(sig.canonical_request, read_file(dir / "header-canonical-request.txt"));
  EXPECT_EQ(sig.string_to_sign, read_file(dir / "header-string-to-sign.txt"));
  EXPECT_EQ(sig.signature, read_file(dir / "header-signature.txt"));
  EXPECT_EQ(serialize_request(request, c.raw.body), read_file(dir / "header-signed-request.txt"));
}

TEST_P(SigV4SuiteCase, QueryFormMatchesEveryStage) {
  fs::path dir = suite_dir() / GetParam();
  CaseSetup c = load_case(dir);
  sigv4::Request request = to_request(c.raw);
  sigv4::Signature sig = sigv4::presign_query(request, c.credentials, c.params);
  EXPECT_EQ(sig.canonical_request, read_file(dir / "query-canonical-request.txt"));
  EXPECT_EQ(sig.string_to_sign, read_file(dir / "query-string-to-sign.txt"));
  EXPECT_EQ(sig.signature, read_file(dir / "query-signature.txt"));
  EXPECT_EQ(serialize_request(request, c.raw.body), read_file(dir / "query-signed-request.txt"));
}

TEST_P(SigV4SuiteCase, SigningKeyCacheGivesTheSameSignature) {
  fs::path dir = suite_dir() / GetParam();
  CaseSetup c = load_case(dir);
  sigv4::SigningKeyCache cache;
  for (int i = 0; i < 2; ++i) {
    sigv4::Request request = to_request(c.raw);
    auto sig = sigv4::sign_headers(request, c.credentials, c.params, &cache);
    EXPECT_EQ(sig.signature, read_file(dir / "header-signature.txt"));
  }
  EXPECT_EQ(cache.derivations(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Official, SigV4SuiteCase, ::testing::ValuesIn(list_cases()),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           std::string name = param_info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// No case may be skipped silently: the folder must hold as many complete cases as the suite's
// README announces, and at least the 38 this project was given.
TEST(SigV4Suite, EveryCaseIsPresentAndComplete) {
  std::string readme = read_file(suite_dir().parent_path() / "README.md");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(readme, m, std::regex(R"(## Cases \((\d+)\))")));
  std::size_t announced = std::stoul(m[1].str());
  std::vector<std::string> cases = list_cases();
  EXPECT_GE(announced, 38u);
  EXPECT_EQ(cases.size(), announced);
  for (const std::string& name : cases) {
    for (const char* file : kStageFiles) {
      EXPECT_TRUE(fs::is_regular_file(suite_dir() / name / file)) << name << "/" << file;
    }
  }
}

}  // namespace
