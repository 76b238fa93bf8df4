#include "core/upstream_request.hpp"

#include <algorithm>
#include <vector>

#include "core/cap1.hpp"

namespace membraned::core {
namespace {

bool method_carries_body(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

// Names listed in the requester's Connection headers are hop-by-hop for this hop too.
std::vector<std::string> connection_listed_names(const Headers& headers) {
  std::vector<std::string> names;
  for (const Header& h : headers) {
    if (iequals(h.name, "connection")) append_connection_tokens(h.value, names);
  }
  return names;
}

std::vector<std::string> configured_names(const UriExport& config) {
  std::vector<std::string> names;
  names.reserve(config.headers.size());
  for (const Header& h : config.headers) names.push_back(to_lower_ascii(h.name));
  return names;
}

void split_target(std::string_view target, std::string& path, std::string& query) {
  std::size_t q = target.find('?');
  path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) query = std::string(target.substr(q + 1));
}

Status sign_aws4(UpstreamRequest& request, const UriExport& config, const Aws4Signing& aws4,
                 const SigningContext& context) {
  if (aws4.credentials_profile && context.aws_credentials == nullptr) {
    return Error::internal("no credentials were supplied for AWS profile \"" +
                           *aws4.credentials_profile + "\"");
  }
  sigv4::Request r;
  r.method = request.method;
  split_target(request.target, r.path, r.query);
  r.headers = std::move(request.headers);
  r.body = request.body;
  sigv4::Params params = sigv4::Params::for_service(aws4.region, aws4.service, context.now);
  params.headers.extra = configured_names(config);
  sigv4::Credentials credentials =
      aws4.credentials_profile
          ? to_sigv4_credentials(*context.aws_credentials)
          : sigv4::Credentials{aws4.access_key_id, aws4.secret_access_key, aws4.session_token};
  sigv4::sign_headers(r, credentials, params, context.key_cache);
  secure_wipe(credentials.secret_access_key);
  secure_wipe(credentials.session_token);
  request.headers = std::move(r.headers);
  return ok_status();
}

// CAP1 signs host, content-type, content-md5, x-cap-* and the configured headers: the same
// choice as for SigV4, so that intermediaries adding headers cannot break a signature.
Status sign_cap1(UpstreamRequest& request, const UriExport& config, const Cap1Signing& cap1_config,
                 const SigningContext& context) {
  for (std::string_view name : cap1::kWrittenHeaders) erase_headers(request.headers, name);
  std::vector<std::string> extra = configured_names(config);
  cap1::SignInput input;
  for (const Header& h : request.headers) {
    std::string lower = to_lower_ascii(h.name);
    bool selected = lower == "host" || lower == "content-type" || lower == "content-md5" ||
                    lower.starts_with("x-cap-") ||
                    std::find(extra.begin(), extra.end(), lower) != extra.end();
    if (selected) input.headers.push_back(h);
  }
  input.method = request.method;
  split_target(request.target, input.path, input.query);
  input.key = cap1_config.key;
  input.key_id = cap1_config.key_id;
  input.now = context.now;
  auto signed_out = cap1::sign(input);
  secure_wipe(input.key);
  if (!signed_out) return signed_out.error();
  request.headers.push_back({std::string(cap1::kDateHeader), signed_out->cap_date});
  request.headers.push_back({std::string(cap1::kAuthorizationHeader), std::move(signed_out->authorization)});
  return ok_status();
}

}  // namespace

bool is_dropped_requester_header(std::string_view name) noexcept {
  return is_hop_by_hop_header(name) || iequals(name, "authorization") || iequals(name, "host") ||
         iequals(name, "content-length") || iequals(name, "expect") || iequals(name, kCapabilityOperationHeader);
}

UpstreamRequest build_upstream_request(const UriExport& config, const IncomingRequest& incoming) {
  const UpstreamTarget& t = config.target;
  UpstreamRequest out;
  out.https = t.https;
  out.connect_host = t.connect_host;
  out.port = t.port;
  out.method = config.method ? *config.method : std::string(incoming.method);

  out.target = t.path;
  if (t.query) out.target += "?" + *t.query;
  if (config.allow_query) {
    std::size_t q = incoming.target.find('?');
    std::string_view requester_query =
        q == std::string_view::npos ? std::string_view{} : incoming.target.substr(q + 1);
    if (!requester_query.empty()) {
      if (!t.query) {
        out.target += '?';
      } else if (!t.query->empty()) {
        out.target += '&';
      }
      out.target += requester_query;
    }
  }

  std::vector<std::string> listed = connection_listed_names(incoming.headers);
  out.headers.reserve(incoming.headers.size() + config.headers.size() + 4);
  for (const Header& h : incoming.headers) {
    if (is_dropped_requester_header(h.name)) continue;
    std::string lower = to_lower_ascii(h.name);
    if (std::find(listed.begin(), listed.end(), lower) != listed.end()) continue;
    if (find_header(config.headers, h.name) != nullptr) continue;  // configured value wins
    out.headers.push_back(h);
  }
  for (const Header& h : config.headers) out.headers.push_back(h);
  out.headers.push_back({"Host", t.authority});
  out.body = incoming.body;
  if (!out.body.empty() || method_carries_body(out.method)) {
    out.headers.push_back({"Content-Length", std::to_string(out.body.size())});
  }
  return out;
}

Status sign_upstream_request(UpstreamRequest& request, const UriExport& config,
                             const SigningContext& context) {
  if (const auto* aws4 = std::get_if<Aws4Signing>(&config.signing)) {
    return sign_aws4(request, config, *aws4, context);
  }
  if (const auto* cap1_config = std::get_if<Cap1Signing>(&config.signing)) {
    return sign_cap1(request, config, *cap1_config, context);
  }
  return ok_status();
}

Result<UpstreamRequest> prepare_upstream_request(const UriExport& config,
                                                 const IncomingRequest& incoming,
                                                 const SigningContext& context) {
  UpstreamRequest request = build_upstream_request(config, incoming);
  if (auto s = sign_upstream_request(request, config, context); !s) return s.error();
  return request;
}

}  // namespace membraned::core
