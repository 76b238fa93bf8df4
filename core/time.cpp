#include "core/time.hpp"

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <optional>

#include "core/ascii.hpp"
#include "core/encoding.hpp"

namespace membraned::core {
namespace {

// `count` decimal digits at `pos`, or nullopt.
std::optional<int> digits(std::string_view s, std::size_t pos, std::size_t count) {
  if (pos + count > s.size()) return std::nullopt;
  int value = 0;
  for (std::size_t i = pos; i < pos + count; ++i) {
    if (!is_digit(s[i])) return std::nullopt;
    value = value * 10 + (s[i] - '0');
  }
  return value;
}

// The fraction of a second at `pos` (".123", up to 9 digits), moving `pos` past it: zero when
// there is none, nullopt when it is malformed.
std::optional<std::chrono::nanoseconds> take_fraction(std::string_view text, std::size_t& pos) {
  if (pos >= text.size() || text[pos] != '.') return std::chrono::nanoseconds{0};
  ++pos;
  const std::size_t start = pos;
  std::int64_t value = 0;
  while (pos < text.size() && is_digit(text[pos])) {
    if (pos - start == 9) return std::nullopt;  // more precision than a nanosecond
    value = value * 10 + (text[pos] - '0');
    ++pos;
  }
  if (pos == start) return std::nullopt;
  for (std::size_t n = pos - start; n < 9; ++n) value *= 10;
  return std::chrono::nanoseconds{value};
}

// The zone at `pos` ("Z", "+HH:MM", "+HHMM", "-HH:MM", "-HHMM") as an offset from UTC, moving
// `pos` past it; nullopt when it is missing or malformed.
std::optional<std::chrono::minutes> take_zone(std::string_view text, std::size_t& pos) {
  using std::chrono::hours;
  using std::chrono::minutes;
  if (pos >= text.size()) return std::nullopt;
  if (text[pos] == 'Z') {
    ++pos;
    return minutes{0};
  }
  if (text[pos] != '+' && text[pos] != '-') return std::nullopt;
  const bool negative = text[pos] == '-';
  ++pos;
  auto offset_hours = digits(text, pos, 2);
  if (!offset_hours) return std::nullopt;
  pos += 2;
  if (pos < text.size() && text[pos] == ':') ++pos;
  auto offset_minutes = digits(text, pos, 2);
  if (!offset_minutes || *offset_hours > 23 || *offset_minutes > 59) return std::nullopt;
  pos += 2;
  const minutes offset = hours{*offset_hours} + minutes{*offset_minutes};
  return negative ? -offset : offset;
}

// A time's UTC calendar date and time of day, to the millisecond (digits below it cut).
struct UtcTime {
  std::chrono::year_month_day date;
  std::chrono::hh_mm_ss<std::chrono::milliseconds> time_of_day;
};

UtcTime utc_time(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto in_ms = floor<milliseconds>(t);
  const auto day = floor<days>(in_ms);
  return {year_month_day{day}, hh_mm_ss{in_ms - day}};
}

// "YYYY-MM-DDTHH:MM:SS"
std::string date_and_seconds(const UtcTime& utc) {
  char out[32];
  std::snprintf(out, sizeof out, "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(utc.date.year()),
                static_cast<unsigned>(utc.date.month()), static_cast<unsigned>(utc.date.day()),
                static_cast<int>(utc.time_of_day.hours().count()),
                static_cast<int>(utc.time_of_day.minutes().count()),
                static_cast<int>(utc.time_of_day.seconds().count()));
  return out;
}

// ".mmm"
std::string milliseconds_text(const UtcTime& utc) {
  char out[8];
  std::snprintf(out, sizeof out, ".%03d", static_cast<int>(utc.time_of_day.subseconds().count()));
  return out;
}

}  // namespace

std::string format_iso8601_basic(std::chrono::system_clock::time_point t) {
  std::time_t seconds = std::chrono::system_clock::to_time_t(std::chrono::floor<std::chrono::seconds>(t));
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[17];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string format_log_timestamp(std::chrono::system_clock::time_point t) {
  std::string out;
  append_log_timestamp(out, t);
  return out;
}

void append_log_timestamp(std::string& out, std::chrono::system_clock::time_point t) {
  const UtcTime utc = utc_time(t);
  char text[] = "0000-00-00T00:00:00.000Z";
  auto put = [&text](std::size_t at, std::size_t width, unsigned value) {
    for (std::size_t i = at + width; i-- > at; value /= 10) text[i] = static_cast<char>('0' + value % 10);
  };
  put(0, 4, static_cast<unsigned>(static_cast<int>(utc.date.year())));  // 1678..2262: system_clock's range
  put(5, 2, static_cast<unsigned>(utc.date.month()));
  put(8, 2, static_cast<unsigned>(utc.date.day()));
  put(11, 2, static_cast<unsigned>(utc.time_of_day.hours().count()));
  put(14, 2, static_cast<unsigned>(utc.time_of_day.minutes().count()));
  put(17, 2, static_cast<unsigned>(utc.time_of_day.seconds().count()));
  put(20, 3, static_cast<unsigned>(utc.time_of_day.subseconds().count()));
  out.append(text, sizeof text - 1);
}

std::string format_rfc3339(std::chrono::system_clock::time_point t) {
  const UtcTime utc = utc_time(t);
  const bool whole_second = utc.time_of_day.subseconds().count() == 0;
  return date_and_seconds(utc) + (whole_second ? std::string() : milliseconds_text(utc)) + "Z";
}

Result<std::chrono::system_clock::time_point> parse_iso8601(std::string_view text, std::string_view field) {
  using namespace std::chrono;
  auto invalid = [&] {
    return Error::invalid(std::string(field), std::string(field) +
                                                  " is not an ISO 8601 date-time with a zone (" +
                                                  printable_excerpt(text, 40) + ")");
  };
  // YYYY-MM-DDTHH:MM:SS
  if (text.size() < 20) return invalid();
  auto year = digits(text, 0, 4);
  auto month = digits(text, 5, 2);
  auto day = digits(text, 8, 2);
  auto hour = digits(text, 11, 2);
  auto minute = digits(text, 14, 2);
  auto second = digits(text, 17, 2);
  if (!year || !month || !day || !hour || !minute || !second || text[4] != '-' || text[7] != '-' ||
      text[10] != 'T' || text[13] != ':' || text[16] != ':') {
    return invalid();
  }
  const year_month_day date{std::chrono::year{*year}, std::chrono::month{static_cast<unsigned>(*month)},
                            std::chrono::day{static_cast<unsigned>(*day)}};
  if (!date.ok() || *hour > 23 || *minute > 59 || *second > 59) return invalid();

  std::size_t pos = 19;
  const auto fraction = take_fraction(text, pos);
  if (!fraction) return invalid();
  const auto offset = take_zone(text, pos);  // a zone is required
  if (!offset || pos != text.size()) return invalid();

  // Local time minus the offset is UTC.
  auto t = sys_days{date} + hours{*hour} + minutes{*minute} + seconds{*second} - *offset;
  // system_clock counts nanoseconds in 64 bits (about 1678 to 2262): a date it cannot hold is
  // refused, not overflowed.
  if (t <= floor<seconds>(system_clock::time_point::min()) || t >= floor<seconds>(system_clock::time_point::max())) {
    return invalid();
  }
  return time_point_cast<system_clock::duration>(t + *fraction);
}

}  // namespace membraned::core
