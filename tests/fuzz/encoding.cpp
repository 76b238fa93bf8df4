// The decoders under every other parser (core/encoding, core/http, and CAP1's canonical forms):
// base64 and base64url (canonical), hex, the AWS and JavaScript percent-encodings, form queries. The input's
// first byte picks a length for printable_excerpt; the rest is the text. Properties: what decodes
// encodes back to its canonical spelling, encoders and decoders are inverses, and the canonical
// forms are stable (a canonical path or query canonicalises to itself).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/cap1.hpp"
#include "core/encoding.hpp"
#include "core/http.hpp"
#include "tests/fuzz/support/fuzz_check.hpp"

namespace {

using namespace membraned::core;

bool is_upper_hex_escape(std::string_view s, std::size_t at) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return at + 2 < s.size() && hex(s[at + 1]) && hex(s[at + 2]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t excerpt_max = data[0];
  const std::string_view text = membraned::fuzz::as_text(data + 1, size - 1);

  // Standard base64 need not be canonical (unused bits may be set), but it round-trips.
  if (auto bytes = base64_decode(text)) {
    const std::string again = base64_encode(*bytes);
    FUZZ_CHECK(again.size() >= text.size() && again.size() <= text.size() + 2);
    auto twice = base64_decode(again);
    FUZZ_CHECK(twice && *twice == *bytes);
  }
  if (auto bytes = base64url_decode(text)) {
    FUZZ_CHECK(base64url_encode(*bytes) == text);
    FUZZ_CHECK(text.empty() || is_base64url_text(text));
  }
  if (auto bytes = hex_decode(text)) FUZZ_CHECK(hex_encode(*bytes) == to_lower_ascii(text));

  const std::string aws = aws_uri_encode(text, false);
  FUZZ_CHECK(percent_decode_lenient(aws) == text);
  for (std::size_t i = 0; i < aws.size(); ++i) {
    const auto c = static_cast<unsigned char>(aws[i]);
    FUZZ_CHECK(is_aws_unreserved(c) || (c == '%' && is_upper_hex_escape(aws, i)));
  }
  std::string kept;
  aws_uri_encode_keep_escapes(text, kept);
  std::string kept_again;
  aws_uri_encode_keep_escapes(kept, kept_again);
  FUZZ_CHECK(kept_again == kept);
  if (auto form = form_urldecode(text)) FUZZ_CHECK(form->size() <= text.size());

  if (is_valid_utf8(text)) {
    auto encoded = js_encode_uri_component(text);
    FUZZ_CHECK(encoded.ok());
    auto decoded = js_decode_uri_component(*encoded);
    FUZZ_CHECK(decoded.ok() && *decoded == text);
    if (auto plain = js_decode_uri_component(text)) {
      FUZZ_CHECK(is_valid_utf8(*plain));
      auto re = js_encode_uri_component(*plain);
      FUZZ_CHECK(re.ok());
      FUZZ_CHECK(js_decode_uri_component(*re).ok());
    }
  }

  // CAP1's canonical forms (contract §6): canonical output canonicalises to itself.
  const std::string normal = cap1::posix_normalize(text);
  FUZZ_CHECK(cap1::posix_normalize(normal) == normal);
  if (auto query = cap1::canonical_query(text)) {
    auto again = cap1::canonical_query(*query);
    FUZZ_CHECK(again.ok());
  }
  (void)cap1::canonical_uri(text);
  const std::string trimmed = cap1::trimall(text);
  FUZZ_CHECK(trimmed.size() <= text.size() + 1);

  (void)split_query(text);
  (void)parse_form_query(text);
  std::vector<std::string> tokens;
  append_connection_tokens(text, tokens);
  for (const std::string& t : tokens) FUZZ_CHECK(t == to_lower_ascii(t));

  const std::string excerpt = printable_excerpt(text, excerpt_max);
  FUZZ_CHECK(excerpt == "(unprintable)" || excerpt.size() <= excerpt_max + 3);
  for (char c : excerpt) FUZZ_CHECK(c >= 0x20 && c < 0x7F);
  return 0;
}
