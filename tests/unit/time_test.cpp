// core/time: the dates the signers write, the log-line timestamp, and the ISO 8601 expirations
// of credential documents. Times are checked against test::parse_iso8601_utc, which shares no
// code with core.
#include <gtest/gtest.h>

#include <chrono>
#include <string_view>

#include "core/result.hpp"
#include "core/time.hpp"
#include "tests/support/test_support.hpp"

namespace membraned::core {
namespace {

using namespace std::chrono_literals;
using std::chrono::system_clock;

system_clock::time_point at(std::string_view iso) { return test::parse_iso8601_utc(iso); }

// --- formatting ---------------------------------------------------------------------------------

TEST(Iso8601Basic, WholeSecondsInUtc) {
  EXPECT_EQ(format_iso8601_basic(at("2015-08-30T12:36:00Z")), "20150830T123600Z");
  EXPECT_EQ(format_iso8601_basic(at("2026-01-02T03:04:05Z") + 999ms), "20260102T030405Z");
  EXPECT_EQ(format_iso8601_basic(system_clock::time_point{}), "19700101T000000Z");
}

TEST(LogTimestamp, MillisecondsInUtc) {
  EXPECT_EQ(format_log_timestamp(at("2026-12-03T09:21:51Z")), "2026-12-03T09:21:51.000Z");
  EXPECT_EQ(format_log_timestamp(at("2026-01-02T03:04:05Z") + 7ms), "2026-01-02T03:04:05.007Z");
  EXPECT_EQ(format_log_timestamp(at("2024-02-29T23:59:59Z") + 999ms), "2024-02-29T23:59:59.999Z");
  EXPECT_EQ(format_log_timestamp(system_clock::time_point{}), "1970-01-01T00:00:00.000Z");
}

TEST(LogTimestamp, FractionsBelowAMillisecondAreCutNotRounded) {
  EXPECT_EQ(format_log_timestamp(at("2026-12-31T23:59:59Z") + 999999us), "2026-12-31T23:59:59.999Z");
  EXPECT_EQ(format_log_timestamp(at("2026-06-01T00:00:00Z") + 1500us), "2026-06-01T00:00:00.001Z");
}

TEST(Rfc3339, WholeSecondsCarryNoFraction) {
  EXPECT_EQ(format_rfc3339(at("2026-12-31T23:59:59Z")), "2026-12-31T23:59:59Z");
  EXPECT_EQ(format_rfc3339(system_clock::time_point{}), "1970-01-01T00:00:00Z");
  EXPECT_EQ(format_rfc3339(at("1969-12-31T23:59:59Z")), "1969-12-31T23:59:59Z");
}

TEST(Rfc3339, OtherTimesCarryMillisecondsCutNotRounded) {
  EXPECT_EQ(format_rfc3339(at("2026-01-02T03:04:05Z") + 7ms), "2026-01-02T03:04:05.007Z");
  EXPECT_EQ(format_rfc3339(at("2026-12-31T23:59:59Z") + 999999us), "2026-12-31T23:59:59.999Z");
  // Below a millisecond there is nothing to show: the whole second.
  EXPECT_EQ(format_rfc3339(at("2026-06-01T00:00:00Z") + 999us), "2026-06-01T00:00:00Z");
}

TEST(Rfc3339, ParsesBackToTheSameTime) {
  for (auto t : {at("2026-12-31T23:59:59Z"), at("2024-02-29T12:00:00Z") + 123ms}) {
    auto again = parse_iso8601(format_rfc3339(t));
    ASSERT_TRUE(again.ok()) << again.error().message;
    EXPECT_EQ(*again, t);
  }
}

// --- parsing ------------------------------------------------------------------------------------

TEST(Iso8601, ZuluForm) {
  auto t = parse_iso8601("2026-11-24T12:00:00Z");
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(*t, at("2026-11-24T12:00:00Z"));
  EXPECT_NE(*t, at("2026-11-24T12:00:01Z"));
}

TEST(Iso8601, OffsetsAreConvertedToUtc) {
  auto plus = parse_iso8601("2026-11-24T14:30:00+02:30");
  ASSERT_TRUE(plus.ok()) << plus.error().message;
  EXPECT_EQ(*plus, at("2026-11-24T12:00:00Z"));
  auto minus = parse_iso8601("2026-11-24T06:00:00-0600");
  ASSERT_TRUE(minus.ok()) << minus.error().message;
  EXPECT_EQ(*minus, at("2026-11-24T12:00:00Z"));
  // Crossing midnight and a year.
  auto wrap = parse_iso8601("2027-01-01T01:00:00+02:00");
  ASSERT_TRUE(wrap.ok());
  EXPECT_EQ(*wrap, at("2026-12-31T23:00:00Z"));
  auto zero = parse_iso8601("2026-11-24T12:00:00-00:00");
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(*zero, at("2026-11-24T12:00:00Z"));
}

TEST(Iso8601, FractionsAreKept) {
  auto t = parse_iso8601("2011-07-15T23:28:33.359Z");
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(*t - at("2011-07-15T23:28:33Z"), std::chrono::milliseconds(359));
  auto nine = parse_iso8601("2011-07-15T23:28:33.000000001+00:00");
  ASSERT_TRUE(nine.ok());
  EXPECT_EQ(*nine - at("2011-07-15T23:28:33Z"), std::chrono::nanoseconds(1));
}

TEST(Iso8601, LeapDayOnlyInLeapYears) {
  EXPECT_TRUE(parse_iso8601("2024-02-29T00:00:00Z").ok());
  EXPECT_TRUE(parse_iso8601("2000-02-29T00:00:00Z").ok());
  EXPECT_FALSE(parse_iso8601("2026-02-29T00:00:00Z").ok());
  EXPECT_FALSE(parse_iso8601("1900-02-29T00:00:00Z").ok());
}

TEST(Iso8601, RejectsGarbage) {
  for (std::string_view text :
       {"", "garbage", "2026-11-24", "2026-11-24T12:00:00", "2026-11-24T12:00Z",
        "2026-11-24 12:00:00Z", "2026-11-24t12:00:00Z", "2026-11-24T12:00:00z",
        "2026-11-24T12:00:00Zjunk", "2026-11-24T12:00:00Z ", " 2026-11-24T12:00:00Z",
        "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-04-31T00:00:00Z",
        "2026-11-00T00:00:00Z", "2026-11-24T24:00:00Z", "2026-11-24T12:60:00Z",
        "2026-11-24T12:00:60Z", "2026-11-24T12:00:00.Z", "2026-11-24T12:00:00.1234567890Z",
        "2026-11-24T12:00:00+24:00", "2026-11-24T12:00:00+02:60", "2026-11-24T12:00:00+2",
        "2026-11-24T12:00:00+02:0", "2026-11-24T12:00:00+", "+026-11-24T12:00:00Z",
        "2026-1-24T12:00:00Z", "1764000000", "2026-11-24T12:00:00.5"}) {
    auto t = parse_iso8601(text);
    EXPECT_FALSE(t.ok()) << "accepted: '" << text << "'";
    if (!t.ok()) {
      EXPECT_EQ(t.error().field, "Expiration");
    }
  }
}

TEST(Iso8601, ErrorsNameTheFieldTheCallerGives) {
  auto t = parse_iso8601("tomorrow", "expiresAt");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().field, "expiresAt");
  EXPECT_EQ(t.error().message, "expiresAt is not an ISO 8601 date-time with a zone (tomorrow)");
}

// Found by fuzzing (tests/fuzz/regressions/credentials_json): a credential document that expires
// in 4052 overflowed system_clock's 64-bit nanoseconds (undefined behaviour) instead of being refused.
TEST(Iso8601, DatesTheClockCannotHoldAreRefused) {
  for (std::string_view text : {"4052-11-24T12:00:00Z", "9999-12-31T23:59:59.999999999Z", "2262-04-12T00:00:00Z",
                                "2262-04-11T23:47:16Z", "0001-01-01T00:00:00Z", "1677-09-21T00:00:00Z"}) {
    auto t = parse_iso8601(text);
    EXPECT_FALSE(t.ok()) << "accepted: '" << text << "'";
    if (!t.ok()) {
      EXPECT_EQ(t.error().field, "Expiration");
    }
  }
  EXPECT_EQ(parse_iso8601("2261-12-31T23:59:59Z").value(), at("2261-12-31T23:59:59Z"));
  EXPECT_EQ(parse_iso8601("1678-01-01T00:00:00Z").value(), at("1678-01-01T00:00:00Z"));
}

}  // namespace
}  // namespace membraned::core
