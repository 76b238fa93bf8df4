#include "core/cap1.hpp"

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include "core/ascii.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/time.hpp"

namespace membraned::core::cap1 {
namespace {

constexpr std::string_view kTerminator = "cap1_request";

// Length in bytes of the JavaScript white space character (\s, which String.prototype.trim also
// strips) starting at s[i], or 0.
std::size_t js_space_length(std::string_view s, std::size_t i) noexcept {
  auto at = [&](std::size_t k) -> unsigned char {
    return k < s.size() ? static_cast<unsigned char>(s[k]) : 0;
  };
  unsigned char c = at(i);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return 1;
  if (c == 0xC2 && at(i + 1) == 0xA0) return 2;                        // U+00A0
  if (c == 0xE1 && at(i + 1) == 0x9A && at(i + 2) == 0x80) return 3;  // U+1680
  if (c == 0xE2 && at(i + 1) == 0x80) {
    unsigned char d = at(i + 2);
    if ((d >= 0x80 && d <= 0x8A) || d == 0xA8 || d == 0xA9 || d == 0xAF) return 3;  // U+2000-200A, 2028, 2029, 202F
  }
  if (c == 0xE2 && at(i + 1) == 0x81 && at(i + 2) == 0x9F) return 3;  // U+205F
  if (c == 0xE3 && at(i + 1) == 0x80 && at(i + 2) == 0x80) return 3;  // U+3000
  if (c == 0xEF && at(i + 1) == 0xBB && at(i + 2) == 0xBF) return 3;  // U+FEFF
  return 0;
}

// value.replace(/\s+/g, " ")
void append_collapsed(std::string_view part, std::string& out) {
  std::size_t i = 0;
  while (i < part.size()) {
    std::size_t n = js_space_length(part, i);
    if (n == 0) {
      out += part[i++];
      continue;
    }
    out += ' ';
    while (i < part.size() && (n = js_space_length(part, i)) != 0) i += n;
  }
}

std::string js_trim(std::string_view s) {
  std::size_t start = 0;
  while (start < s.size()) {
    std::size_t n = js_space_length(s, start);
    if (n == 0) break;
    start += n;
  }
  // Trailing: scan forward, remembering where the last non-space character ended.
  std::size_t end = start;
  std::size_t i = start;
  while (i < s.size()) {
    std::size_t n = js_space_length(s, i);
    if (n == 0) {
      ++i;
      end = i;
    } else {
      i += n;
    }
  }
  return std::string(s.substr(start, end - start));
}

// UTF-16 code units of a UTF-8 string, for comparing as JavaScript's default sort does. Bytes
// that are not valid UTF-8 count as one unit each.
std::u16string utf16_units(std::string_view s) {
  std::u16string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = p[i];
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size() || !is_valid_utf8(s.substr(i, len))) {
      out.push_back(c);
      ++i;
      continue;
    }
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out.push_back(static_cast<char16_t>(0xD800 + (cp >> 10)));
      out.push_back(static_cast<char16_t>(0xDC00 + (cp & 0x3FF)));
    } else {
      out.push_back(static_cast<char16_t>(cp));
    }
    i += len;
  }
  return out;
}

bool js_less(std::string_view a, std::string_view b) {
  bool ascii = std::all_of(a.begin(), a.end(), [](char c) { return (c & 0x80) == 0; }) &&
               std::all_of(b.begin(), b.end(), [](char c) { return (c & 0x80) == 0; });
  if (ascii) return a < b;
  return utf16_units(a) < utf16_units(b);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    std::size_t end = s.find(sep, start);
    if (end == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
}

// A JavaScript object with string keys: insertion order kept, assignment to an existing key
// replaces the value in place.
class JsObject {
 public:
  void set(std::string_view key, std::string_view value) {
    for (auto& [k, v] : entries_) {
      if (k == key) {
        v = value;
        return;
      }
    }
    entries_.emplace_back(key, value);
  }
  const std::vector<std::pair<std::string, std::string>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_digit);
}

// The reference reads X-Cap-Date by slicing it as YYYYMMDD?HHMMSS (the 9th character and
// anything after the 15th are ignored) and re-printing it through Date; an impossible date
// throws there, and is an error here.
Result<std::string> iso_date_basic_from_header(std::string_view value) {
  auto bad = [] { return Error::invalid("X-Cap-Date", "X-Cap-Date is not YYYYMMDDTHHMMSSZ"); };
  if (value.size() < 15) return bad();
  std::string_view year = value.substr(0, 4), month = value.substr(4, 2), day = value.substr(6, 2),
                   hour = value.substr(9, 2), minute = value.substr(11, 2),
                   second = value.substr(13, 2);
  for (std::string_view part : {year, month, day, hour, minute, second}) {
    if (!all_digits(part)) return bad();
  }
  int y = std::stoi(std::string(year)), mo = std::stoi(std::string(month)),
      d = std::stoi(std::string(day)), h = std::stoi(std::string(hour)),
      mi = std::stoi(std::string(minute)), s = std::stoi(std::string(second));
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12) return bad();
  int days_in_month = kDays[mo - 1] + (mo == 2 && leap ? 1 : 0);
  if (d < 1 || d > days_in_month || h > 23 || mi > 59 || s > 59) return bad();
  std::string out;
  out.reserve(16);
  out.append(year).append(month).append(day).append("T").append(hour).append(minute).append(second).append("Z");
  return out;
}

// YYYYMMDDTHHMMSSZ (already validated) as milliseconds since the epoch, as JavaScript's Date
// holds it. Calendar arithmetic in 64-bit milliseconds: any four-digit year fits.
std::chrono::sys_time<std::chrono::milliseconds> parse_iso_date_basic(std::string_view basic) {
  using namespace std::chrono;
  auto number = [&](std::size_t at, std::size_t len) { return std::stoi(std::string(basic.substr(at, len))); };
  sys_days day = year{number(0, 4)} / month{static_cast<unsigned>(number(4, 2))} /
                 std::chrono::day{static_cast<unsigned>(number(6, 2))};
  return day + hours{number(9, 2)} + minutes{number(11, 2)} + seconds{number(13, 2)};
}

// HMAC-SHA512 whose key is a previous digest as Node passes a 'binary' string: latin1 in,
// UTF-8 out.
Sha512Digest hmac_with_digest_key(const Sha512Digest& previous, std::string_view data) {
  std::string key = latin1_to_utf8(digest_view(previous));
  Sha512Digest out = hmac_sha512(key, data);
  secure_wipe(key);
  return out;
}

// The part of the Authorization value that SignedHeaders=(.+),Signature captures.
std::optional<std::string_view> signed_headers_field(std::string_view authorization) {
  constexpr std::string_view kStart = "SignedHeaders=";
  constexpr std::string_view kEnd = ",Signature";
  std::size_t start = authorization.find(kStart);
  if (start == std::string_view::npos) return std::nullopt;
  start += kStart.size();
  // '.' does not match line terminators: the capture may not cross one.
  std::size_t line_end = authorization.find_first_of("\n\r", start);
  std::string_view line = authorization.substr(0, line_end);
  std::size_t end = line.rfind(kEnd);
  if (end == std::string_view::npos || end <= start) return std::nullopt;
  return line.substr(start, end - start);
}

// Credential=KEYID/date/host/cap1_request as the reference's parser reads it; nullopt (false)
// when the shape is wrong or the key id is empty.
std::optional<std::string> key_id_of(std::string_view authorization) {
  std::string prefix = std::string(kAlgorithm) + " ";
  if (authorization.substr(0, prefix.size()) != prefix) return std::nullopt;
  std::string rest = js_trim(authorization.substr(prefix.size()));
  auto parts = split(rest, ',');
  if (parts.size() != 3) return std::nullopt;
  constexpr std::string_view kCredential = "Credential=";
  if (parts[0].substr(0, kCredential.size()) != kCredential) return std::nullopt;
  auto credential = split(parts[0].substr(kCredential.size()), '/');
  if (credential.size() != 4 || credential[0].empty()) return std::nullopt;
  return std::string(credential[0]);
}

}  // namespace

std::string latin1_to_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out.push_back(ch);
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

std::string trimall(std::string_view value) {
  std::string str;
  str.reserve(value.size() + 2);
  auto parts = split(value, '"');
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i % 2 == 0) {
      append_collapsed(parts[i], str);
    } else {
      str += '"';
      str += parts[i];
      str += '"';
    }
  }
  return js_trim(str);
}

std::string posix_normalize(std::string_view path) {
  if (path.empty()) return ".";
  const bool absolute = path.front() == '/';
  const bool trailing = path.back() == '/';
  std::vector<std::string_view> segments;
  for (std::string_view segment : split(path, '/')) {
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") {
      if (!segments.empty() && segments.back() != "..") {
        segments.pop_back();
      } else if (!absolute) {
        segments.push_back(segment);
      }
      continue;
    }
    segments.push_back(segment);
  }
  std::string res;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    if (i > 0) res += '/';
    res += segments[i];
  }
  if (res.empty()) {
    if (absolute) return "/";
    return trailing ? "./" : ".";
  }
  if (trailing) res += '/';
  return absolute ? "/" + res : res;
}

Result<std::string> canonical_uri(std::string_view path) {
  auto decoded = js_decode_uri_component(path);
  if (!decoded) return Error::invalid("path", "path is not valid percent-encoded UTF-8");
  auto encoded = js_encode_uri_component(posix_normalize(*decoded));
  if (!encoded) return Error::invalid("path", "path is not valid UTF-8");
  return encoded;
}

Result<std::string> canonical_query(std::string_view query) {
  if (query.empty()) return std::string();
  auto pieces = split(query, '&');
  std::stable_sort(pieces.begin(), pieces.end(), js_less);
  std::string out;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    auto pair = split(pieces[i], '=');
    std::string_view name = pair[0];
    std::string_view value = pair.size() > 1 ? pair[1] : std::string_view("undefined");
    auto name_decoded = js_decode_uri_component(name);
    auto value_decoded = js_decode_uri_component(value);
    if (!name_decoded || !value_decoded) {
      return Error::invalid("query", "query string is not valid percent-encoded UTF-8");
    }
    auto name_encoded = js_encode_uri_component(*name_decoded);
    auto value_encoded = js_encode_uri_component(*value_decoded);
    if (!name_encoded || !value_encoded) {
      return Error::invalid("query", "query string is not valid UTF-8");
    }
    if (i > 0) out += '&';
    out += *name_encoded;
    out += '=';
    out += *value_encoded;
  }
  return out;
}

Result<SignOutput> sign(const SignInput& input) {
  JsObject headers;
  std::optional<std::string> host;
  std::optional<std::string> cap_date_header;
  for (const Header& h : input.headers) {
    if (iequals(h.name, "host")) host = h.value;
    if (iequals(h.name, kDateHeader)) cap_date_header = h.value;
    if (!input.drop_hop_by_hop || !is_hop_by_hop_header(h.name)) headers.set(h.name, h.value);
  }
  if (!host || host->empty()) return Error::invalid("Host", "Host header not found");

  std::string iso_date_basic;
  if (cap_date_header) {
    auto parsed = iso_date_basic_from_header(*cap_date_header);
    if (!parsed) return parsed.error();
    iso_date_basic = std::move(*parsed);
  } else {
    iso_date_basic = format_iso8601_basic(input.now);
    headers.set(kDateHeader, iso_date_basic);
  }
  const std::string date8 = iso_date_basic.substr(0, 8);

  // Canonical headers: lower-cased keys (a later duplicate wins), sorted.
  JsObject lowercase;
  for (const auto& [name, value] : headers.entries()) lowercase.set(to_lower_ascii(name), value);
  std::vector<std::pair<std::string, std::string>> sorted = lowercase.entries();
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return js_less(a.first, b.first); });
  std::string canonical_headers;
  for (const auto& [name, value] : sorted) {
    canonical_headers += name;
    canonical_headers += ':';
    canonical_headers += trimall(value);
    canonical_headers += '\n';
  }
  // Signed headers come from the original keys, so case-variant duplicates appear twice.
  std::vector<std::string> names;
  for (const auto& [name, value] : headers.entries()) names.push_back(to_lower_ascii(name));
  std::stable_sort(names.begin(), names.end(), js_less);
  SignOutput out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out.signed_headers += ';';
    out.signed_headers += names[i];
  }

  const std::string scope = date8 + "/" + to_lower_ascii(*host) + "/" + std::string(kTerminator);
  out.credential = input.key_id + "/" + scope;
  auto query = canonical_query(input.query);
  if (!query) return query.error();
  auto uri = canonical_uri(input.path);
  if (!uri) return uri.error();

  std::string method = input.method;
  for (char& c : method) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  out.canonical_request =
      method + "\n" + *uri + "\n" + *query + "\n" + canonical_headers + "\n" + out.signed_headers;
  out.string_to_sign = std::string(kAlgorithm) + "\n" + iso_date_basic + "\n" + scope + "\n" +
                       base64url_encode(sha512(out.canonical_request));

  std::string k_secret = "CAP1" + input.key;
  Sha512Digest k_date = hmac_sha512(k_secret, date8);
  secure_wipe(k_secret);
  Sha512Digest k_host = hmac_with_digest_key(k_date, *host);
  Sha512Digest k_signing = hmac_with_digest_key(k_host, kTerminator);
  out.signature = base64url_encode(hmac_with_digest_key(k_signing, out.string_to_sign));
  secure_wipe(k_date.data(), k_date.size());
  secure_wipe(k_host.data(), k_host.size());
  secure_wipe(k_signing.data(), k_signing.size());

  out.cap_date = iso_date_basic;
  out.authorization = std::string(kAlgorithm) + " Credential=" + out.credential +
                      ",SignedHeaders=" + out.signed_headers + ",Signature=" + out.signature;
  return out;
}

bool verify(const VerifyInput& input) noexcept {
  try {
    std::optional<std::string> authorization;
    std::optional<std::string> cap_date;
    std::set<std::string, std::less<>> signed_names;
    for (const Header& h : input.headers) {
      if (iequals(h.name, kAuthorizationHeader)) {
        authorization = h.value;
        signed_names.clear();
        if (auto field = signed_headers_field(h.value)) {
          for (std::string_view name : split(*field, ';')) signed_names.emplace(name);
        }
      } else if (iequals(h.name, kDateHeader)) {
        cap_date = h.value;
      }
    }
    if (!cap_date || !authorization) return false;
    auto iso_date_basic = iso_date_basic_from_header(*cap_date);
    if (!iso_date_basic) return false;
    const auto signed_at = parse_iso_date_basic(*iso_date_basic);
    const auto now = std::chrono::floor<std::chrono::milliseconds>(input.now);
    const auto skew = now > signed_at ? now - signed_at : signed_at - now;
    if (skew > kMaxClockSkew) return false;

    auto key_id = key_id_of(*authorization);
    if (!key_id || !input.secret) return false;
    std::optional<std::string> key = input.secret(*key_id);
    if (!key || key->empty()) return false;

    SignInput resign;
    for (const Header& h : input.headers) {
      if (signed_names.contains(to_lower_ascii(h.name))) resign.headers.push_back(h);
    }
    resign.method = input.method;
    resign.path = input.path;
    resign.query = input.query;
    resign.key = std::move(*key);
    resign.key_id = *key_id;
    resign.now = input.now;
    auto expected = sign(resign);
    secure_wipe(resign.key);
    if (!expected) return false;
    return constant_time_equal(expected->authorization, *authorization);
  } catch (...) {
    return false;
  }
}

}  // namespace membraned::core::cap1
