// core/encoding: base64 (both alphabets), hex, AWS percent-encoding and JavaScript's
// encodeURIComponent / decodeURIComponent.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/encoding.hpp"

namespace {

using namespace membraned::core;

std::string random_string(std::mt19937_64& rng, std::size_t length) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::string out(length, '\0');
  for (char& c : out) c = static_cast<char>(byte(rng));
  return out;
}

// --- base64 / base64url / hex round trips ----------------------------------------------------

TEST(Base64, RoundTripsRandomBytesOfEveryLengthUpTo70) {
  std::mt19937_64 rng(0x5eed0001);
  for (std::size_t n = 0; n <= 70; ++n) {
    SCOPED_TRACE("length " + std::to_string(n));
    std::string bytes = random_string(rng, n);
    std::string text = base64_encode(bytes);
    EXPECT_EQ(text.size(), 4 * ((n + 2) / 3));
    EXPECT_EQ(text.size() % 4, 0u);
    auto decoded = base64_decode(text);
    ASSERT_TRUE(decoded.has_value()) << text;
    EXPECT_EQ(*decoded, bytes);
    // Padding is optional on input.
    std::string unpadded = text;
    while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
    auto decoded_unpadded = base64_decode(unpadded);
    ASSERT_TRUE(decoded_unpadded.has_value()) << unpadded;
    EXPECT_EQ(*decoded_unpadded, bytes);
  }
}

TEST(Base64Url, RoundTripsRandomBytesOfEveryLengthUpTo70) {
  std::mt19937_64 rng(0x5eed0002);
  for (std::size_t n = 0; n <= 70; ++n) {
    SCOPED_TRACE("length " + std::to_string(n));
    std::string bytes = random_string(rng, n);
    std::string text = base64url_encode(bytes);
    EXPECT_EQ(text.size(), (4 * n + 2) / 3);  // unpadded
    EXPECT_EQ(text.find_first_of("=+/"), std::string::npos) << text;
    if (n > 0) {
      EXPECT_TRUE(is_base64url_text(text)) << text;
    }
    auto decoded = base64url_decode(text);
    ASSERT_TRUE(decoded.has_value()) << text;
    EXPECT_EQ(*decoded, bytes);
  }
}

TEST(Hex, RoundTripsRandomBytesOfEveryLengthUpTo70) {
  std::mt19937_64 rng(0x5eed0003);
  for (std::size_t n = 0; n <= 70; ++n) {
    SCOPED_TRACE("length " + std::to_string(n));
    std::string bytes = random_string(rng, n);
    std::string text = hex_encode(bytes);
    EXPECT_EQ(text.size(), 2 * n);
    EXPECT_EQ(text.find_first_not_of("0123456789abcdef"), std::string::npos) << text;
    auto decoded = hex_decode(text);
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(*decoded, bytes);
  }
}

// --- base64 known answers (RFC 4648 section 10) ----------------------------------------------

TEST(Base64, Rfc4648Section10KnownAnswers) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : cases) {
    SCOPED_TRACE(plain);
    EXPECT_EQ(base64_encode(plain), encoded);
    auto decoded = base64_decode(encoded);
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(*decoded, plain);
    // The URL-safe form is the same text without padding for these inputs.
    std::string unpadded = encoded.substr(0, encoded.find('='));
    EXPECT_EQ(base64url_encode(plain), unpadded);
    auto url_decoded = base64url_decode(unpadded);
    ASSERT_TRUE(url_decoded.has_value());
    EXPECT_EQ(*url_decoded, plain);
  }
}

TEST(Base64, AlphabetsDifferOnlyInTheLastTwoSymbols) {
  const std::string bytes("\xfb\xff\xbf", 3);
  EXPECT_EQ(base64_encode(bytes), "+/+/");
  EXPECT_EQ(base64url_encode(bytes), "-_-_");
  EXPECT_EQ(base64_encode(std::string("\xfb\xff", 2)), "+/8=");
  EXPECT_EQ(base64url_encode(std::string("\xfb\xff", 2)), "-_8");
  auto decoded = base64url_decode("-_8");
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, std::string("\xfb\xff", 2));
  // Each decoder refuses the other alphabet.
  EXPECT_FALSE(base64_decode("-_-_").has_value());
  EXPECT_FALSE(base64url_decode("+/+/").has_value());
}

TEST(Base64, RejectsMalformedText) {
  EXPECT_FALSE(base64_decode("Zm9vYg=").has_value());    // padding present but incomplete
  EXPECT_FALSE(base64_decode("Zm9v YmFy").has_value());  // white space
  EXPECT_FALSE(base64_decode("Zm9vY").has_value());      // length % 4 == 1
  EXPECT_FALSE(base64_decode("Zm=vYmFy").has_value());   // '=' inside
  EXPECT_FALSE(base64_decode("Zm9v====").has_value());   // too much padding
  EXPECT_FALSE(base64_decode("Zm9vYg==\n").has_value());
}

// --- base64url strictness ---------------------------------------------------------------------

TEST(Base64Url, RejectsPaddingForeignAlphabetAndWhiteSpace) {
  EXPECT_FALSE(base64url_decode("Zg==").has_value());
  EXPECT_FALSE(base64url_decode("Zm8=").has_value());
  EXPECT_FALSE(base64url_decode("ab+c").has_value());
  EXPECT_FALSE(base64url_decode("ab/c").has_value());
  EXPECT_FALSE(base64url_decode("ab c").has_value());
  EXPECT_FALSE(base64url_decode(" abc").has_value());
  EXPECT_FALSE(base64url_decode("abc\n").has_value());
  EXPECT_FALSE(base64url_decode("ab.c").has_value());
}

TEST(Base64Url, RejectsLengthOneModuloFour) {
  EXPECT_FALSE(base64url_decode("A").has_value());
  EXPECT_FALSE(base64url_decode("AAAAA").has_value());
  EXPECT_FALSE(base64url_decode("AAAAAAAAA").has_value());
}

TEST(Base64Url, RejectsNonCanonicalTrailingBits) {
  // "AA" is the only spelling of the single byte 0x00; "AB" sets spare bits.
  auto aa = base64url_decode("AA");
  ASSERT_TRUE(aa.has_value());
  EXPECT_EQ(*aa, std::string(1, '\0'));
  EXPECT_FALSE(base64url_decode("AB").has_value());
  EXPECT_FALSE(base64url_decode("AP").has_value());
  // Two bytes: three symbols, two spare bits.
  auto aaa = base64url_decode("AAA");
  ASSERT_TRUE(aaa.has_value());
  EXPECT_EQ(*aaa, std::string(2, '\0'));
  EXPECT_FALSE(base64url_decode("AAB").has_value());
  EXPECT_FALSE(base64url_decode("Zh").has_value());  // "Zg" is canonical for "f"
  auto zg = base64url_decode("Zg");
  ASSERT_TRUE(zg.has_value());
  EXPECT_EQ(*zg, "f");
}

TEST(Base64Url, EmptyTextDecodesToEmptyButIsNotBase64UrlText) {
  auto empty = base64url_decode("");
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(*empty, "");
  EXPECT_FALSE(is_base64url_text(""));
  EXPECT_TRUE(is_base64url_text("Az09-_"));
  EXPECT_FALSE(is_base64url_text("Az09-_="));
  EXPECT_FALSE(is_base64url_text("a+b"));
  EXPECT_FALSE(is_base64url_text("a b"));
}

// --- hex ------------------------------------------------------------------------------------------

TEST(Hex, EncodesLowerCaseAndDecodesEitherCase) {
  EXPECT_EQ(hex_encode(std::string("\x00\x01\xab\xff", 4)), "0001abff");
  auto lower = hex_decode("deadbeef");
  auto upper = hex_decode("DEADBEEF");
  auto mixed = hex_decode("DeAdBeEf");
  ASSERT_TRUE(lower.has_value());
  ASSERT_TRUE(upper.has_value());
  ASSERT_TRUE(mixed.has_value());
  EXPECT_EQ(*lower, std::string("\xde\xad\xbe\xef", 4));
  EXPECT_EQ(*upper, *lower);
  EXPECT_EQ(*mixed, *lower);
  auto empty = hex_decode("");
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(*empty, "");
}

TEST(Hex, RejectsOddLengthAndNonHexDigits) {
  EXPECT_FALSE(hex_decode("a").has_value());
  EXPECT_FALSE(hex_decode("abc").has_value());
  EXPECT_FALSE(hex_decode("zz").has_value());
  EXPECT_FALSE(hex_decode("0g").has_value());
  EXPECT_FALSE(hex_decode("0x00").has_value());
  EXPECT_FALSE(hex_decode("00 ").has_value());
}

// --- AWS percent-encoding -----------------------------------------------------------------------

TEST(AwsUriEncode, KeepsUnreservedAndEncodesTheRest) {
  const std::string unreserved =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
  EXPECT_EQ(aws_uri_encode(unreserved, false), unreserved);
  EXPECT_EQ(aws_uri_encode(" ", false), "%20");
  EXPECT_EQ(aws_uri_encode("+", false), "%2B");
  EXPECT_EQ(aws_uri_encode("*", false), "%2A");
  EXPECT_EQ(aws_uri_encode("%", false), "%25");
  EXPECT_EQ(aws_uri_encode("=&?#!'()", false), "%3D%26%3F%23%21%27%28%29");
  EXPECT_EQ(aws_uri_encode(std::string(1, '\0'), false), "%00");
  for (int c = 0; c < 256; ++c) {
    auto u = static_cast<unsigned char>(c);
    std::string encoded = aws_uri_encode(std::string(1, static_cast<char>(c)), false);
    if (is_aws_unreserved(u)) {
      EXPECT_EQ(encoded.size(), 1u) << c;
    } else {
      EXPECT_EQ(encoded.size(), 3u) << c;
      EXPECT_EQ(encoded[0], '%');
    }
  }
}

TEST(AwsUriEncode, SlashKeptOnlyWhenAsked) {
  EXPECT_EQ(aws_uri_encode("/a/b c/", true), "/a/b%20c/");
  EXPECT_EQ(aws_uri_encode("/a/b c/", false), "%2Fa%2Fb%20c%2F");
}

TEST(AwsUriEncode, Utf8BytesBecomeUpperCaseEscapes) {
  EXPECT_EQ(aws_uri_encode("\xC3\xA9", false), "%C3%A9");          // é
  EXPECT_EQ(aws_uri_encode("\xE2\x98\x95", false), "%E2%98%95");  // ☕
  EXPECT_EQ(aws_uri_encode("\xff", false), "%FF");
}

TEST(AwsUriEncode, AppendsToTheGivenBuffer) {
  std::string out = "x=";
  aws_uri_encode("a b", false, out);
  EXPECT_EQ(out, "x=a%20b");
}

TEST(AwsUriEncodeKeepEscapes, KeepsValidEscapesAndUpperCasesThem) {
  auto enc = [](std::string_view in) {
    std::string out;
    aws_uri_encode_keep_escapes(in, out);
    return out;
  };
  EXPECT_EQ(enc("/a%20b"), "/a%20b");
  EXPECT_EQ(enc("/a%2fb"), "/a%2Fb");
  EXPECT_EQ(enc("/a b"), "/a%20b");
  EXPECT_EQ(enc("/a/b/"), "/a/b/");
  EXPECT_EQ(enc("%zz"), "%25zz");    // not an escape: the '%' itself is encoded
  EXPECT_EQ(enc("100%"), "100%25");
  EXPECT_EQ(enc("%4"), "%254");
  EXPECT_EQ(enc("\xC3\xA9"), "%C3%A9");
  EXPECT_EQ(enc("a+b"), "a%2Bb");
}

TEST(PercentDecodeLenient, DecodesValidEscapesAndKeepsTheRest) {
  EXPECT_EQ(percent_decode_lenient("a%20b"), "a b");
  EXPECT_EQ(percent_decode_lenient("%41%42"), "AB");
  EXPECT_EQ(percent_decode_lenient("%e2%98%95"), "\xE2\x98\x95");
  EXPECT_EQ(percent_decode_lenient("%zz"), "%zz");
  EXPECT_EQ(percent_decode_lenient("%"), "%");
  EXPECT_EQ(percent_decode_lenient("%4"), "%4");
  EXPECT_EQ(percent_decode_lenient("a%"), "a%");
  EXPECT_EQ(percent_decode_lenient("a+b"), "a+b");
  EXPECT_EQ(percent_decode_lenient("%2B"), "+");
  EXPECT_EQ(percent_decode_lenient("%2525"), "%25");  // one level only
  EXPECT_EQ(percent_decode_lenient(""), "");
}

// --- JavaScript decodeURIComponent / encodeURIComponent ----------------------------------------

TEST(JsDecodeUriComponent, RejectsWhatJavaScriptRejects) {
  for (std::string_view bad : {"%", "%E", "%FF", "%C3", "%C0%AF", "%ED%A0%80", "%E2%98", "%80",
                               "%C3%28", "%F4%90%80%80", "%F8%88%80%80%80", "%G0", "a%2", "%%41",
                               "%E0%80%AF", "%F0%80%80%AF"}) {
    SCOPED_TRACE(std::string(bad));
    auto r = js_decode_uri_component(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, ErrorKind::invalid_input);
    EXPECT_FALSE(r.error().message.empty());
  }
}

TEST(JsDecodeUriComponent, DecodesWellFormedEscapes) {
  auto coffee = js_decode_uri_component("%E2%98%95");
  ASSERT_TRUE(coffee.ok());
  EXPECT_EQ(*coffee, "\xE2\x98\x95");  // U+2615
  auto lower = js_decode_uri_component("%e2%98%95");
  ASSERT_TRUE(lower.ok());
  EXPECT_EQ(*lower, "\xE2\x98\x95");
  auto mixed = js_decode_uri_component("a%20b%2Fc%25d+e");
  ASSERT_TRUE(mixed.ok());
  EXPECT_EQ(*mixed, "a b/c%d+e");  // '+' is not a space here
  auto emoji = js_decode_uri_component("%F0%9F%98%80");  // U+1F600
  ASSERT_TRUE(emoji.ok());
  EXPECT_EQ(*emoji, "\xF0\x9F\x98\x80");
  auto max = js_decode_uri_component("%F4%8F%BF%BF");  // U+10FFFF
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(*max, "\xF4\x8F\xBF\xBF");
  auto empty = js_decode_uri_component("");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");
}

TEST(JsDecodeUriComponent, RawNonAsciiPassesThrough) {
  auto r = js_decode_uri_component("caf\xC3\xA9 \xE2\x98\x95");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "caf\xC3\xA9 \xE2\x98\x95");
}

TEST(JsEncodeUriComponent, KeepsTheUnescapedSetAndEncodesTheRest) {
  const std::string kept =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()";
  auto same = js_encode_uri_component(kept);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, kept);
  auto reserved = js_encode_uri_component(" /?#[]@:;,$&=+%\"<>");
  ASSERT_TRUE(reserved.ok());
  EXPECT_EQ(*reserved, "%20%2F%3F%23%5B%5D%40%3A%3B%2C%24%26%3D%2B%25%22%3C%3E");
  auto coffee = js_encode_uri_component("\xE2\x98\x95");
  ASSERT_TRUE(coffee.ok());
  EXPECT_EQ(*coffee, "%E2%98%95");
  auto control = js_encode_uri_component(std::string("\x00\x7f", 2));
  ASSERT_TRUE(control.ok());
  EXPECT_EQ(*control, "%00%7F");
}

TEST(JsEncodeUriComponent, RejectsInvalidUtf8) {
  for (std::string_view bad : {std::string_view("\xC3"), std::string_view("\xFF"),
                               std::string_view("\xED\xA0\x80"), std::string_view("\xC0\xAF"),
                               std::string_view("a\x80"), std::string_view("\xE2\x98")}) {
    auto r = js_encode_uri_component(bad);
    ASSERT_FALSE(r.ok()) << testing::PrintToString(std::string(bad));
    EXPECT_EQ(r.error().kind, ErrorKind::invalid_input);
  }
}

TEST(JsUriComponent, EncodeThenDecodeRoundTripsValidUtf8) {
  const std::string text = "/a b/c?d=e&f#g caf\xC3\xA9 \xF0\x9F\x98\x80 100%";
  auto encoded = js_encode_uri_component(text);
  ASSERT_TRUE(encoded.ok());
  auto decoded = js_decode_uri_component(*encoded);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, text);
}

TEST(IsValidUtf8, AcceptsWellFormedAndRejectsMalformed) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("ascii"));
  EXPECT_TRUE(is_valid_utf8("\xC3\xA9\xE2\x98\x95\xF0\x9F\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("\xC3"));
  EXPECT_FALSE(is_valid_utf8("\xC1\xBF"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xED\xBF\xBF"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xBF"));
}

TEST(PrintableExcerpt, QuotesPrintableAsciiBoundedAndNothingElse) {
  EXPECT_EQ(printable_excerpt("lambda-invoker"), "lambda-invoker");
  EXPECT_EQ(printable_excerpt(std::string(80, 'a')), std::string(80, 'a'));
  EXPECT_EQ(printable_excerpt(std::string(81, 'a')), std::string(80, 'a') + "...");
  EXPECT_EQ(printable_excerpt("abcdef", 3), "abc...");
  EXPECT_EQ(printable_excerpt("line\nbreak"), "(unprintable)");
  EXPECT_EQ(printable_excerpt("caf\xC3\xA9"), "(unprintable)");
  EXPECT_EQ(printable_excerpt(""), "");
}

}  // namespace
