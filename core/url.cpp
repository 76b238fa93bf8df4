#include "core/url.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <algorithm>
#include <string>

#include "core/ascii.hpp"
#include "core/http.hpp"

namespace membraned::core {
namespace {

Error bad_uri(std::string message) { return Error::invalid("uri", std::move(message)); }

bool is_reg_name_char(char c) { return is_alnum(c) || c == '-' || c == '.' || c == '_'; }

// host (IPv6 in brackets) and connect_host (without them), lower-cased.
Status take_host(const boost::urls::url_view& view, UpstreamTarget& out) {
  std::string host = to_lower_ascii(std::string_view(view.encoded_host()));
  switch (view.host_type()) {
    case boost::urls::host_type::ipv4: out.connect_host = host; break;
    case boost::urls::host_type::ipv6:
      out.connect_host = to_lower_ascii(std::string_view(view.encoded_host_address()));
      if (host.front() != '[') host = "[" + host + "]";
      break;
    case boost::urls::host_type::name:
      if (host.empty() || !std::all_of(host.begin(), host.end(), is_reg_name_char)) {
        return bad_uri("uri host must be a DNS name or an IP address");
      }
      out.connect_host = host;
      break;
    default: return bad_uri("uri host must be a DNS name or an IP address");
  }
  out.host = std::move(host);
  return ok_status();
}

// The explicit port, or the scheme's default when none is written.
Result<std::uint16_t> take_port(const boost::urls::url_view& view, std::uint16_t default_port) {
  std::string_view port = view.port();
  if (port.empty()) return default_port;
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), is_digit)) {
    return bad_uri("uri port must be a number from 1 to 65535");
  }
  unsigned long number = std::stoul(std::string(port));
  if (number == 0 || number > 65535) return bad_uri("uri port must be a number from 1 to 65535");
  return static_cast<std::uint16_t>(number);
}

}  // namespace

Result<UpstreamTarget> parse_upstream_uri(std::string_view text) {
  if (text.empty()) return bad_uri("uri must not be empty");
  if (text.size() > kMaxUriLength) return bad_uri("uri is too long");
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) return bad_uri("uri must be an absolute http or https URI");
  boost::urls::url_view view = *parsed;
  UpstreamTarget out;
  std::string scheme = to_lower_ascii(view.scheme());
  if (scheme != "http" && scheme != "https") return bad_uri("uri scheme must be http or https");
  out.https = scheme == "https";
  if (!view.has_authority()) return bad_uri("uri must name a host");
  if (view.has_userinfo()) return bad_uri("uri must not hold user information");
  if (auto s = take_host(view, out); !s) return s.error();

  const std::uint16_t default_port = out.https ? 443 : 80;
  auto port = take_port(view, default_port);
  if (!port) return port.error();
  out.port = *port;
  out.authority = out.port == default_port ? out.host : out.host + ":" + std::to_string(out.port);

  out.path = std::string(view.encoded_path());
  // After an authority the path is empty or starts with '/'; anything else means the
  // authority was not what it seemed (e.g. "host:https/" read as host, empty port, "https/").
  if (!out.path.empty() && out.path.front() != '/') {
    return bad_uri("uri port must be a number from 1 to 65535");
  }
  if (out.path.empty()) out.path = "/";
  if (view.has_query()) out.query = std::string(view.encoded_query());

  out.uri = scheme + "://" + out.authority + out.path;
  if (out.query) out.uri += "?" + *out.query;
  return out;
}

}  // namespace membraned::core
