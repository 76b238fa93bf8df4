// The answer of AWS STS AssumeRole (core/sts: parse_assume_role_answer, expat), which comes from
// the network. Properties: accepted credentials are valid; a service error has a code and its
// describe() is safe for a log line (no control character, bounded, valid UTF-8); an error
// message never quotes the SecretAccessKey or SessionToken of the answer.
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "core/aws_credentials.hpp"
#include "core/encoding.hpp"
#include "core/sts.hpp"
#include "tests/fuzz/support/fuzz_check.hpp"
#include "tests/fuzz/support/secrets.hpp"

namespace {

using namespace membraned::core;

// The text of every <NAME>...</NAME> in `xml` becomes a secret and is cut out of `rest`.
void take_elements(std::string_view xml, std::string_view name, membraned::fuzz::Secrets& secrets,
                   std::string& rest) {
  const std::string open = "<" + std::string(name) + ">";
  const std::string close = "</" + std::string(name) + ">";
  for (std::size_t at = xml.find(open); at != std::string_view::npos; at = xml.find(open, at + 1)) {
    const std::size_t from = at + open.size();
    const std::size_t to = xml.find(close, from);
    if (to == std::string_view::npos) break;
    secrets.add(xml.substr(from, to - from));
    if (auto cut = rest.find(xml.substr(from, to - from)); cut != std::string::npos)
      rest.erase(cut, to - from);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view xml = membraned::fuzz::as_text(data, size);
  auto answer = parse_assume_role_answer(xml);
  if (!answer) {
    FUZZ_CHECK(answer.error().field == "sts");
    membraned::fuzz::Secrets secrets;
    std::string rest(xml);
    take_elements(xml, "SecretAccessKey", secrets, rest);
    take_elements(xml, "SessionToken", secrets, rest);
    secrets.add_public(rest);
    FUZZ_CHECK(!secrets.quoted_in(answer.error().message));
    return 0;
  }
  if (const auto* credentials = std::get_if<AwsCredentials>(&*answer)) {
    FUZZ_CHECK(validate_credentials(*credentials).ok());
    FUZZ_CHECK(credentials->session_token.has_value() && credentials->expiration.has_value());
    return 0;
  }
  const auto& error = std::get<StsServiceError>(*answer);
  FUZZ_CHECK(!error.code.empty());
  const std::string described = error.describe();
  FUZZ_CHECK(described.size() <= 512 + 3);
  for (char c : described) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7F);
  // expat hands over UTF-8 only, and the cut must not break a sequence.
  FUZZ_CHECK(is_valid_utf8(error.code) && is_valid_utf8(error.message));
  FUZZ_CHECK(is_valid_utf8(described));
  return 0;
}
