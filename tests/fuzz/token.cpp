// Tokens and capability URIs (contract §1) and the Authorization header: Token::parse,
// CapabilityUri::parse (both forms) and parse_bearer, on arbitrary text. Besides never crashing:
// what parses is canonical (a token is its own text; a URI serializes back to a URI that parses
// to the same value), and parse_bearer finds nothing that Token::parse would not take.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/token.hpp"
#include "tests/fuzz/support/fuzz_check.hpp"

using membraned::core::CapabilityUri;
using membraned::core::parse_bearer;
using membraned::core::Token;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = membraned::fuzz::as_text(data, size);

  if (auto token = Token::parse(text)) {
    FUZZ_CHECK(token->text() == text);
    FUZZ_CHECK(token->text().size() == Token::kSize);
    FUZZ_CHECK(token->log_id().size() == 12);
  }

  if (auto uri = CapabilityUri::parse(text)) {
    const std::string serialized = uri->serialize();
    auto again = CapabilityUri::parse(serialized);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->token() == uri->token());
    FUZZ_CHECK(again->authority() == uri->authority());
    FUZZ_CHECK(again->is_custom_form() == uri->is_custom_form());
    FUZZ_CHECK(again->authority_scheme() == uri->authority_scheme());
    FUZZ_CHECK(again->serialize() == serialized);
    FUZZ_CHECK(Token::parse(uri->token().text()).ok());
  } else {
    FUZZ_CHECK(!uri.error().message.empty());
  }

  if (auto bearer = parse_bearer(text)) {
    FUZZ_CHECK(text.find(bearer->text()) != std::string_view::npos);
    FUZZ_CHECK(Token::parse(bearer->text()).ok());
  }
  return 0;
}
