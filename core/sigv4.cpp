#include "core/sigv4.hpp"

#include <algorithm>

#include "core/encoding.hpp"
#include "core/time.hpp"

namespace membraned::core::sigv4 {
namespace {

constexpr std::string_view kTerminator = "aws4_request";

bool is_header_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Appends the canonical form of a header value: trimmed, runs of white space (folded lines
// included) collapsed to one space.
void append_canonical_value(std::string_view raw, std::string& out) {
  bool pending_space = false;
  bool started = false;
  std::size_t i = 0;
  while (i < raw.size()) {
    if (is_header_space(raw[i])) {
      pending_space = started;
      ++i;
      continue;
    }
    std::size_t run = i;
    while (run < raw.size() && !is_header_space(raw[run])) ++run;
    if (pending_space) out += ' ';
    out.append(raw.data() + i, run - i);
    pending_space = false;
    started = true;
    i = run;
  }
}

bool iless(std::string_view a, std::string_view b) noexcept {
  std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    char x = to_lower_ascii(a[i]);
    char y = to_lower_ascii(b[i]);
    if (x != y) return static_cast<unsigned char>(x) < static_cast<unsigned char>(y);
  }
  return a.size() < b.size();
}

void append_lower(std::string_view name, std::string& out) {
  for (char c : name) out += to_lower_ascii(c);
}

// Canonical headers over the selected headers, optionally leaving one name out (a session
// token that is sent but, for some services, not signed). Works on views of the request's
// headers and writes straight into the result: this runs on every invocation.
CanonicalHeaders build_canonical_headers(const Headers& headers, const HeaderSelection& selection,
                                         std::string_view excluded) {
  std::vector<const Header*> entries;
  entries.reserve(headers.size());
  std::size_t size = 0;
  for (const Header& h : headers) {
    if (!excluded.empty() && iequals(h.name, excluded)) continue;
    if (!selection.selects(h.name)) continue;
    entries.push_back(&h);
    size += h.name.size() + h.value.size() + 2;
  }
  // Stable, so repeated headers keep their order when their values are joined. Usually a
  // handful of headers: insertion sort then, since std::stable_sort allocates a buffer; many
  // (a requester may send lots of x-amz-*): std::stable_sort, to stay O(n log n).
  auto less = [](const Header* a, const Header* b) { return iless(a->name, b->name); };
  if (entries.size() <= 16) {
    for (std::size_t i = 1; i < entries.size(); ++i) {
      const Header* moving = entries[i];
      std::size_t j = i;
      for (; j > 0 && less(moving, entries[j - 1]); --j) entries[j] = entries[j - 1];
      entries[j] = moving;
    }
  } else {
    std::stable_sort(entries.begin(), entries.end(), less);
  }
  CanonicalHeaders out;
  out.block.reserve(size);
  out.signed_headers.reserve(size / 2);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (i > 0 && iequals(entries[i]->name, entries[i - 1]->name)) {
      out.block.back() = ',';  // replaces the previous line's '\n'
      append_canonical_value(entries[i]->value, out.block);
      out.block += '\n';
      continue;
    }
    if (!out.signed_headers.empty()) out.signed_headers += ';';
    append_lower(entries[i]->name, out.signed_headers);
    append_lower(entries[i]->name, out.block);
    out.block += ':';
    append_canonical_value(entries[i]->value, out.block);
    out.block += '\n';
  }
  return out;
}

std::string build_canonical_request(std::string_view method, std::string_view canonical_uri_text,
                                    std::string_view canonical_query_text,
                                    const CanonicalHeaders& headers, std::string_view payload_hash) {
  std::string out;
  out.reserve(method.size() + canonical_uri_text.size() + canonical_query_text.size() +
              headers.block.size() + headers.signed_headers.size() + payload_hash.size() + 8);
  out += method;
  out += '\n';
  out += canonical_uri_text;
  out += '\n';
  out += canonical_query_text;
  out += '\n';
  out += headers.block;
  out += '\n';
  out += headers.signed_headers;
  out += '\n';
  out += payload_hash;
  return out;
}

Sha256Digest signing_key(const Credentials& credentials, std::string_view date8,
                         const Params& params, SigningKeyCache* cache) {
  if (cache != nullptr) {
    return cache->get(credentials.secret_access_key, date8, params.region, params.service);
  }
  return derive_signing_key(credentials.secret_access_key, date8, params.region, params.service);
}

Signature finish(std::string canonical_request, std::string_view amz_date, std::string_view scope,
                 const Credentials& credentials, const Params& params, SigningKeyCache* cache) {
  Signature out;
  out.string_to_sign = string_to_sign(amz_date, scope, canonical_request);
  Sha256Digest key = signing_key(credentials, amz_date.substr(0, 8), params, cache);
  out.signature = hex_encode(hmac_sha256(digest_view(key), out.string_to_sign));
  secure_wipe(key.data(), key.size());
  out.canonical_request = std::move(canonical_request);
  return out;
}

}  // namespace

bool HeaderSelection::selects(std::string_view name) const {
  if (all) return true;
  if (iequals(name, "host") || iequals(name, "content-type") || iequals(name, "content-md5") ||
      istarts_with(name, "x-amz-")) {
    return true;
  }
  return std::any_of(extra.begin(), extra.end(),
                     [&](const std::string& e) { return iequals(e, name); });
}

Params Params::for_service(std::string region, std::string service,
                           std::chrono::system_clock::time_point time) {
  Params p;
  bool s3 = service == "s3";
  p.region = std::move(region);
  p.service = std::move(service);
  p.time = time;
  p.normalize_path = !s3;
  p.double_encode_path = !s3;
  return p;
}

std::string format_amz_date(std::chrono::system_clock::time_point t) { return format_iso8601_basic(t); }

std::string remove_dot_segments(std::string_view path) {
  if (path.empty()) return "/";
  std::vector<std::string_view> kept;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view segment = path.substr(start, end - start);
    if (segment == "..") {
      if (!kept.empty()) kept.pop_back();
    } else if (!segment.empty() && segment != ".") {
      kept.push_back(segment);
    }
    start = end + 1;
  }
  std::string out;
  if (path.front() == '/') out += '/';
  for (std::size_t i = 0; i < kept.size(); ++i) {
    if (i > 0) out += '/';
    out += kept[i];
  }
  if (path.back() == '/' && !kept.empty()) out += '/';
  if (out.empty()) out.push_back('/');  // (not `out = "/"`: GCC 12 -O2 warns falsely, -Wrestrict)
  return out;
}

std::string canonical_uri(std::string_view path, bool normalize, bool double_encode) {
  if (path.empty()) return "/";
  std::string normalized = normalize ? remove_dot_segments(path) : std::string(path);
  std::string out;
  out.reserve(normalized.size() + normalized.size() / 2);
  if (double_encode) {
    aws_uri_encode(normalized, /*keep_slash=*/true, out);
  } else {
    aws_uri_encode_keep_escapes(normalized, out);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> parse_query(std::string_view raw_query) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto [name, value] : split_query(raw_query)) {
    out.emplace_back(percent_decode_lenient(name), percent_decode_lenient(value));
  }
  return out;
}

std::string canonical_query(std::vector<std::pair<std::string, std::string>> params) {
  for (auto& [name, value] : params) {
    name = aws_uri_encode(name, false);
    value = aws_uri_encode(value, false);
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) out += '&';
    out += name;
    out += '=';
    out += value;
  }
  return out;
}

std::string canonical_header_value(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  append_canonical_value(raw, out);
  return out;
}

CanonicalHeaders canonical_headers(const Headers& headers, const HeaderSelection& selection) {
  return build_canonical_headers(headers, selection, {});
}

std::string credential_scope(std::string_view date8, std::string_view region,
                             std::string_view service) {
  std::string out;
  out.reserve(date8.size() + region.size() + service.size() + kTerminator.size() + 3);
  out += date8;
  out += '/';
  out += region;
  out += '/';
  out += service;
  out += '/';
  out += kTerminator;
  return out;
}

std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                           std::string_view canonical_request) {
  std::string out;
  out.reserve(kAlgorithm.size() + amz_date.size() + scope.size() + 64 + 3);
  out += kAlgorithm;
  out += '\n';
  out += amz_date;
  out += '\n';
  out += scope;
  out += '\n';
  out += sha256_hex(canonical_request);
  return out;
}

Sha256Digest derive_signing_key(std::string_view secret, std::string_view date8,
                                std::string_view region, std::string_view service) {
  std::string k_secret = "AWS4";
  k_secret += secret;
  Sha256Digest k_date = hmac_sha256(k_secret, date8);
  secure_wipe(k_secret);
  Sha256Digest k_region = hmac_sha256(digest_view(k_date), region);
  Sha256Digest k_service = hmac_sha256(digest_view(k_region), service);
  Sha256Digest k_signing = hmac_sha256(digest_view(k_service), kTerminator);
  secure_wipe(k_date.data(), k_date.size());
  secure_wipe(k_region.data(), k_region.size());
  secure_wipe(k_service.data(), k_service.size());
  return k_signing;
}

Sha256Digest SigningKeyCache::get(std::string_view secret, std::string_view date8,
                                  std::string_view region, std::string_view service) {
  std::string cache_key(digest_view(sha256(secret)));
  cache_key += '\0';
  cache_key += date8;
  cache_key += '\0';
  cache_key += region;
  cache_key += '\0';
  cache_key += service;
  {
    std::lock_guard lock(mutex_);
    if (auto it = keys_.find(cache_key); it != keys_.end()) return it->second;
  }
  Sha256Digest key = derive_signing_key(secret, date8, region, service);
  std::lock_guard lock(mutex_);
  ++derivations_;
  if (keys_.size() >= max_entries_) keys_.clear();
  keys_.emplace(std::move(cache_key), key);
  return key;
}

std::size_t SigningKeyCache::size() const {
  std::lock_guard lock(mutex_);
  return keys_.size();
}

std::size_t SigningKeyCache::derivations() const {
  std::lock_guard lock(mutex_);
  return derivations_;
}

Signature sign_headers(Request& request, const Credentials& credentials, const Params& params,
                       SigningKeyCache* cache) {
  const std::string amz_date = format_amz_date(params.time);
  const std::string scope = credential_scope(std::string_view(amz_date).substr(0, 8),
                                             params.region, params.service);
  const std::string payload_hash = sha256_hex(request.body);

  for (std::string_view name : kWrittenHeaders) erase_headers(request.headers, name);
  const bool has_token = !credentials.session_token.empty();
  if (has_token) request.headers.push_back({std::string(kSecurityTokenHeader), credentials.session_token});
  request.headers.push_back({std::string(kDateHeader), amz_date});
  if (params.add_content_sha256_header) {
    request.headers.push_back({std::string(kContentSha256Header), payload_hash});
  }

  CanonicalHeaders headers = build_canonical_headers(
      request.headers, params.headers,
      has_token && params.omit_session_token ? kSecurityTokenHeader : std::string_view());
  std::string canonical_request = build_canonical_request(
      request.method, canonical_uri(request.path, params.normalize_path, params.double_encode_path),
      canonical_query(parse_query(request.query)), headers, payload_hash);

  Signature out = finish(std::move(canonical_request), amz_date, scope, credentials, params, cache);

  std::string authorization;
  authorization.reserve(200);
  authorization += kAlgorithm;
  authorization += " Credential=";
  authorization += credentials.access_key_id;
  authorization += '/';
  authorization += scope;
  authorization += ", SignedHeaders=";
  authorization += headers.signed_headers;
  authorization += ", Signature=";
  authorization += out.signature;
  request.headers.push_back({std::string(kAuthorizationHeader), std::move(authorization)});
  return out;
}

Signature presign_query(Request& request, const Credentials& credentials, const Params& params,
                        SigningKeyCache* cache) {
  const std::string amz_date = format_amz_date(params.time);
  const std::string scope = credential_scope(std::string_view(amz_date).substr(0, 8),
                                             params.region, params.service);
  const std::string payload_hash = sha256_hex(request.body);
  const std::string credential = credentials.access_key_id + "/" + scope;
  const std::string expires = std::to_string(params.expires.count());
  const bool has_token = !credentials.session_token.empty();

  CanonicalHeaders headers = canonical_headers(request.headers, params.headers);

  auto query_params = parse_query(request.query);
  query_params.emplace_back("X-Amz-Algorithm", std::string(kAlgorithm));
  query_params.emplace_back("X-Amz-Credential", credential);
  query_params.emplace_back("X-Amz-Date", amz_date);
  query_params.emplace_back("X-Amz-Expires", expires);
  query_params.emplace_back("X-Amz-SignedHeaders", headers.signed_headers);
  if (has_token && !params.omit_session_token) {
    query_params.emplace_back("X-Amz-Security-Token", credentials.session_token);
  }
  std::string canonical_request = build_canonical_request(
      request.method, canonical_uri(request.path, params.normalize_path, params.double_encode_path),
      canonical_query(std::move(query_params)), headers, payload_hash);

  Signature out = finish(std::move(canonical_request), amz_date, scope, credentials, params, cache);

  std::string& q = request.query;
  auto append = [&q](std::string_view name, std::string_view value) {
    if (!q.empty()) q += '&';
    q += name;
    q += '=';
    aws_uri_encode(value, false, q);
  };
  append("X-Amz-Algorithm", kAlgorithm);
  append("X-Amz-Credential", credential);
  append("X-Amz-Date", amz_date);
  append("X-Amz-SignedHeaders", headers.signed_headers);
  append("X-Amz-Expires", expires);
  if (has_token) append("X-Amz-Security-Token", credentials.session_token);
  append("X-Amz-Signature", out.signature);
  return out;
}

}  // namespace membraned::core::sigv4
