#include "core/http.hpp"

#include <algorithm>
#include <array>

#include "core/encoding.hpp"

namespace membraned::core {

char to_lower_ascii(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string to_lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = to_lower_ascii(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (to_lower_ascii(a[i]) != to_lower_ascii(b[i])) return false;
  }
  return true;
}

bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

bool is_http_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!ok) {
      switch (c) {
        case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
        case '.': case '^': case '_': case '`': case '|': case '~':
          ok = true;
          break;
        default:
          break;
      }
    }
    if (!ok) return false;
  }
  return true;
}

bool is_safe_header_value(std::string_view s) noexcept {
  return std::none_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

std::optional<std::string> standard_method(std::string_view name) {
  static constexpr std::array<std::string_view, 9> kMethods = {
      "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  for (std::string_view m : kMethods) {
    if (iequals(m, name)) return std::string(m);
  }
  return std::nullopt;
}

bool is_hop_by_hop_header(std::string_view name) noexcept {
  static constexpr std::array<std::string_view, 8> kHopByHop = {
      "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
      "te",         "trailer",    "transfer-encoding",  "upgrade"};
  return std::any_of(kHopByHop.begin(), kHopByHop.end(),
                     [&](std::string_view h) { return iequals(h, name); });
}

std::vector<std::pair<std::string_view, std::string_view>> split_query(std::string_view query) {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  std::size_t start = 0;
  while (start <= query.size()) {
    std::size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    std::string_view piece = query.substr(start, end - start);
    start = end + 1;
    if (piece.empty()) continue;
    std::size_t eq = piece.find('=');
    out.emplace_back(piece.substr(0, eq), eq == std::string_view::npos ? std::string_view{} : piece.substr(eq + 1));
  }
  return out;
}

void append_connection_tokens(std::string_view value, std::vector<std::string>& out) {
  while (!value.empty()) {
    std::size_t comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (!item.empty()) out.push_back(to_lower_ascii(item));
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

Result<std::vector<std::pair<std::string, std::string>>> parse_form_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto [raw_name, raw_value] : split_query(query)) {
    auto name = form_urldecode(raw_name);
    if (!name) return Error::invalid("query", "query parameter name is not valid percent-encoding");
    auto value = form_urldecode(raw_value);
    // The name is the requester's, any bytes: quoted only as a printable excerpt.
    if (!value) return Error::invalid(*name, printable_excerpt(*name) + " is not valid percent-encoding");
    out.emplace_back(std::move(*name), std::move(*value));
  }
  return out;
}

const Header* find_header(const Headers& headers, std::string_view name) noexcept {
  for (const Header& h : headers) {
    if (iequals(h.name, name)) return &h;
  }
  return nullptr;
}

std::size_t erase_headers(Headers& headers, std::string_view name) {
  return std::erase_if(headers, [&](const Header& h) { return iequals(h.name, name); });
}

void set_header(Headers& headers, std::string_view name, std::string value) {
  erase_headers(headers, name);
  headers.push_back({std::string(name), std::move(value)});
}

}  // namespace membraned::core
