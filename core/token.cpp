#include "core/token.hpp"

#include "core/ascii.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"

namespace membraned::core {
namespace {

constexpr std::string_view kUriPrefix = "cpblty://";
constexpr std::string_view kCustomUriPrefix = "cpblty:";
constexpr std::size_t kMinAuthority = 3;  // as the original capability-uri: [^/]{3,}
constexpr std::size_t kMaxAuthority = 255;

// Characters of host[:port] (reg-name, IPv4, bracketed IPv6); nothing that would end the
// authority or break a header.
bool is_authority_char(char c) noexcept {
  auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7F) return false;
  switch (c) {
    case '/': case '#': case '?': case '\\': case '"': case '<': case '>': case '`': case '{':
    case '}': case '|': case '^':
      return false;
    default:
      return true;
  }
}

bool valid_authority(std::string_view authority) {
  if (authority.size() < kMinAuthority || authority.size() > kMaxAuthority) return false;
  for (char c : authority) {
    if (!is_authority_char(c)) return false;
  }
  return true;
}

bool is_scheme_word_char(char c) noexcept {
  return is_alnum(c) || c == '-' || c == '_';
}

}  // namespace

Result<Token> Token::generate() {
  auto bytes = random_bytes(kRandomBytes);
  if (!bytes) return bytes.error();
  std::string text(kPrefix);
  text += base64url_encode(*bytes);
  secure_wipe(*bytes);
  return Token(std::move(text));
}

Result<Token> Token::parse(std::string_view text) {
  constexpr std::string_view kMagic = "CPBLTY";
  if (text.substr(0, kMagic.size()) != kMagic) {
    return Error::invalid("token", "token must start with CPBLTY");
  }
  std::size_t pos = kMagic.size();
  std::size_t version_start = pos;
  while (pos < text.size() && is_digit(text[pos])) ++pos;
  std::string_view version = text.substr(version_start, pos - version_start);
  if (version.empty() || pos >= text.size() || text[pos] != '-') {
    return Error::invalid("token", "token must be CPBLTY<version>-<base64url>");
  }
  std::string_view body = text.substr(pos + 1);
  for (char c : body) {
    if (!is_scheme_word_char(c)) {
      return Error::invalid("token", "token body must be base64url text");
    }
  }
  if (version != "1") return Error::invalid("token", "only token version 1 is accepted");
  if (body.empty()) return Error::invalid("token", "token body is empty");
  if (body.size() != kEncodedBodySize) {
    return Error::invalid("token", "token body must encode 64 bytes");
  }
  auto decoded = base64url_decode(body);
  if (!decoded || decoded->size() != kRandomBytes) {
    return Error::invalid("token", "token body is not canonical base64url of 64 bytes");
  }
  return Token(std::string(text));
}

std::string Token::log_id() const { return sha256_hex(text_).substr(0, 12); }

std::string Token::digest() const { return std::string(digest_view(sha256(text_))); }

bool operator==(const Token& a, const Token& b) noexcept {
  return constant_time_equal(a.text_, b.text_);
}

CapabilityUri::CapabilityUri(std::string authority, Token token)
    : authority_(std::move(authority)), token_(std::move(token)) {}

CapabilityUri::CapabilityUri(std::string authority, bool custom_form,
                             std::optional<std::string> scheme, Token token)
    : authority_(std::move(authority)),
      custom_form_(custom_form),
      scheme_(std::move(scheme)),
      token_(std::move(token)) {}

Result<CapabilityUri> CapabilityUri::parse(std::string_view text) {
  if (text.substr(0, kUriPrefix.size()) == kUriPrefix) {
    std::string_view rest = text.substr(kUriPrefix.size());
    std::size_t end = rest.find("/#");
    if (end == std::string_view::npos) {
      return Error::invalid("capability", "capability URI must be cpblty://AUTHORITY/#TOKEN");
    }
    std::string_view authority = rest.substr(0, end);
    if (!valid_authority(authority)) {
      return Error::invalid("capability", "capability URI has an invalid authority");
    }
    auto token = Token::parse(rest.substr(end + 2));
    if (!token) return Error::invalid("capability", "capability URI: " + token.error().message);
    return CapabilityUri(std::string(authority), false, std::nullopt, std::move(*token));
  }
  if (text.substr(0, kCustomUriPrefix.size()) == kCustomUriPrefix) {
    std::string_view rest = text.substr(kCustomUriPrefix.size());
    std::size_t pos = 0;
    while (pos < rest.size() && is_scheme_word_char(rest[pos])) ++pos;
    std::string_view authority = rest.substr(0, pos);
    std::optional<std::string> scheme;
    if (pos < rest.size() && rest[pos] == '@') {
      std::size_t start = ++pos;
      while (pos < rest.size() && is_scheme_word_char(rest[pos])) ++pos;
      if (pos == start) return Error::invalid("capability", "capability URI has an empty scheme");
      scheme = std::string(rest.substr(start, pos - start));
    }
    if (authority.empty() || pos >= rest.size() || rest[pos] != ':') {
      return Error::invalid("capability", "capability URI must be cpblty:AUTHORITY[@SCHEME]:TOKEN");
    }
    auto token = Token::parse(rest.substr(pos + 1));
    if (!token) return Error::invalid("capability", "capability URI: " + token.error().message);
    return CapabilityUri(std::string(authority), true, std::move(scheme), std::move(*token));
  }
  return Error::invalid("capability", "capability URI must use the cpblty scheme");
}

std::string CapabilityUri::serialize() const {
  if (!custom_form_) return std::string(kUriPrefix) + authority_ + "/#" + token_.text();
  std::string out(kCustomUriPrefix);
  out += authority_;
  if (scheme_) out += "@" + *scheme_;
  out += ":" + token_.text();
  return out;
}

Result<Token> parse_bearer(std::string_view header) {
  auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  while (!header.empty() && is_space(header.front())) header.remove_prefix(1);
  while (!header.empty() && is_space(header.back())) header.remove_suffix(1);
  constexpr std::string_view kScheme = "bearer";
  if (header.size() <= kScheme.size()) return Error::unauthorized("no bearer token");
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    char c = header[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return Error::unauthorized("authorization scheme is not Bearer");
  }
  std::string_view rest = header.substr(kScheme.size());
  if (!is_space(rest.front())) return Error::unauthorized("authorization scheme is not Bearer");
  while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
  auto token = Token::parse(rest);
  if (!token) return Error::unauthorized("malformed token");
  return token;
}

}  // namespace membraned::core
