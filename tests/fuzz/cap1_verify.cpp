// The CAP1-HMAC-SHA512 verifier (core/cap1: verify, contract §6), which reads a request from
// anyone. The input is a request head as text: "METHOD PATH[?QUERY]" on the first line, then
// "Name: value" lines. The verifier's clock is the known-answer vectors' (2017-07-02T20:46:57Z),
// and it knows the vectors' keys ("someId", "secretId"), so the seeds verify. Properties: verify
// never throws nor crashes; and what the signer signs, the verifier accepts, for every request
// whose header names are HTTP tokens (the signer's output, verified against the same clock).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "core/cap1.hpp"
#include "core/http.hpp"
#include "tests/fuzz/support/fuzz_check.hpp"

namespace {

using namespace membraned::core;

constexpr std::chrono::system_clock::time_point kNow{
    std::chrono::seconds(1499028417)};  // 2017-07-02T20:46:57Z

std::optional<std::string> secret_for(std::string_view key_id) {
  if (key_id == "someId") return std::string("mySecret");
  if (key_id == "secretId") return std::string("secret");
  if (key_id == "throws") throw std::runtime_error("the key store failed");
  return std::nullopt;
}

struct Request {
  std::string method;
  std::string path;
  std::string query;
  Headers headers;
};

Request read_request(std::string_view text) {
  Request r;
  auto next_line = [&text] {
    const std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
  };
  const std::string_view first = next_line();
  const std::size_t space = first.find(' ');
  r.method = std::string(first.substr(0, space));
  const std::string_view target =
      space == std::string_view::npos ? std::string_view() : first.substr(space + 1);
  const std::size_t question = target.find('?');
  r.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) r.query = std::string(target.substr(question + 1));
  while (!text.empty()) {
    const std::string_view line = next_line();
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    r.headers.push_back({std::string(line.substr(0, colon)), std::string(value)});
  }
  return r;
}

bool plain_host(std::string_view host) {
  if (host.empty()) return false;
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '-' || c == ':';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const Request request = read_request(membraned::fuzz::as_text(data, size));
  (void)cap1::verify({request.headers, request.method, request.path, request.query, secret_for, kNow});

  // Sign the same request (without its Authorization and X-Cap-Date: the signer dates it now),
  // then verify what came out.
  cap1::SignInput sign;
  bool signable = true;
  for (const Header& h : request.headers) {
    if (iequals(h.name, "Authorization") || iequals(h.name, cap1::kDateHeader)) continue;
    signable = signable && is_http_token(h.name) && is_safe_header_value(h.value);
    if (iequals(h.name, "Host")) signable = signable && plain_host(h.value);
    sign.headers.push_back(h);
  }
  if (!signable) return 0;
  sign.method = request.method;
  sign.path = request.path;
  sign.query = request.query;
  sign.key = "mySecret";
  sign.key_id = "someId";
  sign.now = kNow;
  auto signed_request = cap1::sign(sign);
  if (!signed_request) return 0;
  Headers headers = sign.headers;
  headers.push_back({std::string(cap1::kDateHeader), signed_request->cap_date});
  headers.push_back({std::string(cap1::kAuthorizationHeader), signed_request->authorization});
  FUZZ_CHECK(cap1::verify({headers, request.method, request.path, request.query, secret_for, kNow}));
  return 0;
}
