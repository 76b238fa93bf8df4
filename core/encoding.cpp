#include "core/encoding.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>

namespace membraned::core {
namespace {

constexpr char kHexUpper[] = "0123456789ABCDEF";
constexpr char kHexLower[] = "0123456789abcdef";

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_base64url_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

bool is_base64_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// Decodes standard-alphabet text whose length is a multiple of 4 (padding included) with
// OpenSSL; the caller has validated the alphabet and padding already.
std::optional<std::string> decode_padded_base64(std::string_view padded, std::size_t pad) {
  std::string out(padded.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(padded.data()),
                          static_cast<int>(padded.size()));
  if (n < 0) return std::nullopt;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

// The byte a well-formed "%XX" escape at `at` stands for, or -1.
int escaped_byte_at(std::string_view in, std::size_t at) noexcept {
  if (at + 2 >= in.size() || in[at] != '%') return -1;
  int hi = hex_value(in[at + 1]);
  int lo = hex_value(in[at + 2]);
  if (hi < 0 || lo < 0) return -1;
  return hi << 4 | lo;
}

void append_percent(unsigned char c, std::string& out) {
  out.push_back('%');
  out.push_back(kHexUpper[c >> 4]);
  out.push_back(kHexUpper[c & 0xF]);
}

// Length of the UTF-8 sequence a lead byte starts, 0 when it cannot start one.
int utf8_sequence_length(unsigned char lead) noexcept {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Checks continuation bytes and rejects overlong forms, surrogates and code points > U+10FFFF.
bool is_valid_utf8_sequence(const unsigned char* p, int len) noexcept {
  for (int i = 1; i < len; ++i) {
    if ((p[i] & 0xC0) != 0x80) return false;
  }
  if (len == 3) {
    if (p[0] == 0xE0 && p[1] < 0xA0) return false;  // overlong
    if (p[0] == 0xED && p[1] >= 0xA0) return false;  // UTF-16 surrogate
  } else if (len == 4) {
    if (p[0] == 0xF0 && p[1] < 0x90) return false;  // overlong
    if (p[0] == 0xF4 && p[1] >= 0x90) return false;  // above U+10FFFF
  }
  return true;
}

}  // namespace

std::string base64_encode(std::span<const unsigned char> bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string base64url_encode(std::span<const unsigned char> bytes) {
  std::string out = base64_encode(bytes);
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    else if (c == '/') c = '_';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::size_t pad = 0;
  while (pad < text.size() && pad < 2 && text[text.size() - 1 - pad] == '=') ++pad;
  std::string_view body = text.substr(0, text.size() - pad);
  if (pad > 0 && text.size() % 4 != 0) return std::nullopt;
  if (body.size() % 4 == 1) return std::nullopt;
  for (char c : body) {
    if (!is_base64_char(c)) return std::nullopt;
  }
  std::string padded(body);
  std::size_t missing = (4 - body.size() % 4) % 4;
  padded.append(missing, '=');
  return decode_padded_base64(padded, missing);
}

bool is_base64url_text(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (!is_base64url_char(c)) return false;
  }
  return true;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string padded;
  padded.reserve(text.size() + 3);
  for (char c : text) {
    if (!is_base64url_char(c)) return std::nullopt;
    padded.push_back(c == '-' ? '+' : c == '_' ? '/' : c);
  }
  std::size_t missing = (4 - text.size() % 4) % 4;
  padded.append(missing, '=');
  auto decoded = decode_padded_base64(padded, missing);
  // Canonical spelling only: re-encoding must give the same text back (no stray low bits).
  if (!decoded || base64url_encode(*decoded) != text) return std::nullopt;
  return decoded;
}

std::string hex_encode(std::span<const unsigned char> bytes) {
  std::string out;
  out.resize(bytes.size() * 2);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kHexLower[bytes[i] >> 4];
    out[2 * i + 1] = kHexLower[bytes[i] & 0xF];
  }
  return out;
}

std::optional<std::string> hex_decode(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  std::string out(text.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = hex_value(text[2 * i]);
    int lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<char>(hi << 4 | lo);
  }
  return out;
}

bool is_aws_unreserved(unsigned char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

void aws_uri_encode(std::string_view in, bool keep_slash, std::string& out) {
  auto kept = [keep_slash](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return is_aws_unreserved(c) || (keep_slash && c == '/');
  };
  std::size_t i = 0;
  while (i < in.size()) {
    // Runs of characters that need no escape are copied at once.
    std::size_t run = i;
    while (run < in.size() && kept(in[run])) ++run;
    out.append(in.data() + i, run - i);
    if (run < in.size()) append_percent(static_cast<unsigned char>(in[run++]), out);
    i = run;
  }
}

std::string aws_uri_encode(std::string_view in, bool keep_slash) {
  std::string out;
  out.reserve(in.size() + in.size() / 2);
  aws_uri_encode(in, keep_slash, out);
  return out;
}

void aws_uri_encode_keep_escapes(std::string_view in, std::string& out) {
  for (std::size_t i = 0; i < in.size(); ++i) {
    auto c = static_cast<unsigned char>(in[i]);
    if (int b = escaped_byte_at(in, i); b >= 0) {
      append_percent(static_cast<unsigned char>(b), out);
      i += 2;
    } else if (is_aws_unreserved(c) || c == '/') {
      out.push_back(in[i]);
    } else {
      append_percent(c, out);
    }
  }
}

std::string percent_decode_lenient(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (int b = escaped_byte_at(in, i); b >= 0) {
      out.push_back(static_cast<char>(b));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

std::optional<std::string> form_urldecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out += ' ';
    } else if (in[i] == '%') {
      int b = escaped_byte_at(in, i);
      if (b < 0) return std::nullopt;
      out += static_cast<char>(b);
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

bool is_valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t i = 0;
  while (i < s.size()) {
    int len = utf8_sequence_length(p[i]);
    if (len == 0 || i + static_cast<std::size_t>(len) > s.size() ||
        !is_valid_utf8_sequence(p + i, len)) {
      return false;
    }
    i += static_cast<std::size_t>(len);
  }
  return true;
}

Result<std::string> js_decode_uri_component(std::string_view in) {
  auto malformed = [] { return Error::invalid("", "URI malformed"); };
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size();) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      ++i;
      continue;
    }
    int first = escaped_byte_at(in, i);
    if (first < 0) return malformed();
    int len = utf8_sequence_length(static_cast<unsigned char>(first));
    if (len == 0) return malformed();
    std::array<unsigned char, 4> seq{static_cast<unsigned char>(first)};
    for (int k = 1; k < len; ++k) {
      int b = escaped_byte_at(in, i + 3 * static_cast<std::size_t>(k));
      if (b < 0) return malformed();
      seq[static_cast<std::size_t>(k)] = static_cast<unsigned char>(b);
    }
    if (!is_valid_utf8_sequence(seq.data(), len)) return malformed();
    out.append(reinterpret_cast<const char*>(seq.data()), static_cast<std::size_t>(len));
    i += 3 * static_cast<std::size_t>(len);
  }
  return out;
}

Result<std::string> js_encode_uri_component(std::string_view in) {
  if (!is_valid_utf8(in)) return Error::invalid("", "URI malformed");
  std::string out;
  out.reserve(in.size() + in.size() / 2);
  for (char ch : in) {
    auto c = static_cast<unsigned char>(ch);
    bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.' || c == '!' || c == '~' || c == '*' || c == '\'' ||
                c == '(' || c == ')';
    if (keep) {
      out.push_back(ch);
    } else {
      append_percent(c, out);
    }
  }
  return out;
}

std::string printable_excerpt(std::string_view value, std::size_t max) {
  const bool printable = std::all_of(value.begin(), value.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7F;
  });
  if (!printable) return "(unprintable)";
  if (value.size() > max) return std::string(value.substr(0, max)) + "...";
  return std::string(value);
}

}  // namespace membraned::core
