// Capability tokens ("CPBLTY1-" + unpadded base64url of 64 CSPRNG bytes) and the two capability
// URI forms of contract §1.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace membraned::core {

class Token {
 public:
  static constexpr std::string_view kPrefix = "CPBLTY1-";
  static constexpr std::size_t kRandomBytes = 64;
  static constexpr std::size_t kEncodedBodySize = 86;  // base64url of 64 bytes, no padding
  static constexpr std::size_t kSize = 8 + kEncodedBodySize;  // 94 characters in all

  // A new token from RAND_bytes.
  static Result<Token> generate();
  // Accepts exactly ^CPBLTY([0-9]+)-([-_A-Za-z0-9]*)$ with version 1 and a body that is the
  // canonical base64url spelling of 64 bytes. Anything else is an invalid_input error.
  static Result<Token> parse(std::string_view text);

  const std::string& text() const noexcept { return text_; }
  // Short correlation id for logs: the first 12 hex digits of SHA-256(token). Never log text().
  std::string log_id() const;
  // SHA-256 of the token text: the only form in which a token is ever stored.
  std::string digest() const;

  friend bool operator==(const Token& a, const Token& b) noexcept;

 private:
  explicit Token(std::string text) : text_(std::move(text)) {}
  std::string text_;
};

// cpblty://AUTHORITY/#TOKEN, or the custom form cpblty:B64AUTH[@SCHEME]:TOKEN.
class CapabilityUri {
 public:
  // The usual form, for an authority "host[:port]".
  CapabilityUri(std::string authority, Token token);

  static Result<CapabilityUri> parse(std::string_view text);

  const Token& token() const noexcept { return token_; }
  // For the usual form, the authority; for the custom form, the base64url capability authority.
  const std::string& authority() const noexcept { return authority_; }
  bool is_custom_form() const noexcept { return custom_form_; }
  const std::optional<std::string>& authority_scheme() const noexcept { return scheme_; }

  std::string serialize() const;

 private:
  CapabilityUri(std::string authority, bool custom_form, std::optional<std::string> scheme,
                Token token);
  std::string authority_;
  bool custom_form_ = false;
  std::optional<std::string> scheme_;
  Token token_;
};

// Reads "Bearer TOKEN" (scheme word case-insensitive, one or more spaces) from an
// Authorization header value.
Result<Token> parse_bearer(std::string_view authorization_header);

}  // namespace membraned::core
