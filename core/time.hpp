// Dates as text, in one place: the ISO 8601 forms the signers write, the one credential documents
// carry, and the one log lines start with. Pure: every function takes the time it formats.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace membraned::core {

// YYYYMMDDTHHMMSSZ in UTC (the "basic" ISO 8601 form of X-Amz-Date and X-Cap-Date).
std::string format_iso8601_basic(std::chrono::system_clock::time_point t);

// YYYY-MM-DDTHH:MM:SS.mmmZ in UTC, milliseconds truncated: the timestamp of a log line.
std::string format_log_timestamp(std::chrono::system_clock::time_point t);
// The same appended to `out`: written digit by digit, with no allocation of its own, for the
// lines written once per request.
void append_log_timestamp(std::string& out, std::chrono::system_clock::time_point t);

// RFC 3339 in UTC: YYYY-MM-DDTHH:MM:SSZ, with ".mmm" only when the time is not a whole second
// (digits below the millisecond are cut, not rounded): how an answer reports a grant's expiry.
std::string format_rfc3339(std::chrono::system_clock::time_point t);

// ISO 8601 / RFC 3339 date-time with a zone: "2026-11-24T12:00:00Z", "...12:00:00.123Z",
// "...12:00:00+02:00" (also "+0200"). Seconds are required; fractions of up to 9 digits are
// kept. Impossible dates (2026-02-30), leap seconds (":60"), a missing zone, lower-case 't'/'z',
// trailing text and dates system_clock cannot hold (before 1678 or after 2261) are errors.
// Errors name `field`: by default "Expiration", where credential documents and STS answers
// carry such dates.
Result<std::chrono::system_clock::time_point> parse_iso8601(std::string_view text,
                                                            std::string_view field = "Expiration");

}  // namespace membraned::core
