#include "storage/resolution.hpp"

#include <variant>

#include "core/crypto.hpp"
#include "storage/sealing.hpp"

namespace membraned::storage {

using core::Error;

namespace {

Error dead(std::string_view why) { return Error::unauthorized("unknown or revoked capability", std::string(why)); }

// From the presented capability up its re-exports to the one that acts, presented first; empty
// when a link is missing.
std::vector<CapabilityRow> parent_chain(const std::map<CapabilityRow, Link>& links, CapabilityRow presented) {
  std::vector<CapabilityRow> chain{presented};
  while (const auto& parent = links.at(chain.back()).parent) {
    if (!links.contains(*parent)) return {};
    chain.push_back(*parent);
  }
  return chain;
}

// Why a capability walked is dead at `now` ("revoked" or "expired"), or nothing when all live;
// then `earliest_expiry` is the earliest expiry among them.
std::optional<std::string_view> why_dead(const std::map<CapabilityRow, Link>& links, CapabilityRow terminal,
                                         std::chrono::system_clock::time_point now,
                                         std::optional<std::chrono::system_clock::time_point>& earliest_expiry) {
  std::optional<std::string_view> expired;
  for (const auto& [row, link] : links) {
    if (link.tenant_deleted) return "revoked";
    // A membrane's own revoke capability outlives the revocation it performs (revoke is
    // idempotent); everything else dies with any revoked membrane it depends on.
    const bool own_revoke = row == terminal && link.kind == CapabilityKind::revoke;
    if (link.membrane_revoked && !own_revoke) return "revoked";
    if (!link.grant) continue;
    if (link.grant->revoked_at_ms) return "revoked";
    if (link.grant->expires_at_ms) {
      const auto expires = from_unix_ms(*link.grant->expires_at_ms);
      if (now >= expires) expired = "expired";  // a revocation anywhere says more
      if (!earliest_expiry || expires < *earliest_expiry) earliest_expiry = expires;
    }
  }
  return expired;
}

Result<ChainGrant> chain_grant(CapabilityRow row, const StoredGrant& grant) {
  auto allow_from = parse_allow_from(grant.allow_from);
  if (!allow_from) return allow_from.error();
  ChainGrant out{row, grant.id, std::nullopt, std::nullopt, std::move(*allow_from)};
  if (grant.max_uses) out.max_uses = static_cast<std::uint64_t>(*grant.max_uses);
  if (grant.rate_requests && grant.rate_seconds) {
    out.rate_limit = core::RateLimit{static_cast<std::uint32_t>(*grant.rate_requests),
                                     static_cast<std::uint32_t>(*grant.rate_seconds)};
  }
  return out;
}

// The configuration of a uri capability, and the SHA-256 of its unsealed text.
Result<std::pair<std::shared_ptr<const core::UriExport>, std::string>> unseal_uri(const Link& link,
                                                                                   const MasterKey& key,
                                                                                   const KnownConfig& known) {
  auto opened = key.open(link.config, sealing::uri_config_context(link.digest));
  if (!opened) return Error::internal("a stored export configuration does not open");
  const auto sum = core::sha256(*opened);
  std::string config_digest(sum.begin(), sum.end());
  if (known) {
    if (auto shared = known(config_digest)) {
      core::secure_wipe(*opened);
      return std::pair{std::move(shared), std::move(config_digest)};
    }
  }
  auto parsed = core::parse_export_config(*opened, {.max_timeout_ms = UINT64_MAX, .check_tls_key = false});
  core::secure_wipe(*opened);
  if (!parsed || !std::holds_alternative<core::UriExport>(*parsed)) {
    return Error::internal("a stored export configuration does not parse");
  }
  return std::pair{core::share_wiped(std::get<core::UriExport>(std::move(*parsed))), std::move(config_digest)};
}

}  // namespace

Result<Resolved> resolve_links(const std::map<CapabilityRow, Link>& links, const std::string& digest,
                               const MasterKey& key, std::chrono::system_clock::time_point now,
                               const KnownConfig& known) {
  std::optional<CapabilityRow> presented;
  for (const auto& [row, link] : links) {
    if (link.digest == digest) presented = row;
  }
  if (!presented) return dead("unknown");
  if (links.size() > kMaxDependencies) return dead("revoked");
  const std::vector<CapabilityRow> chain = parent_chain(links, *presented);
  if (chain.empty()) return dead("revoked");
  const CapabilityRow terminal = chain.back();

  Resolved out;
  if (auto why = why_dead(links, terminal, now, out.expires_at)) return dead(*why);
  const Link& last = links.at(terminal);
  out.kind = last.kind;
  out.tenant_id = last.tenant_id;
  out.membrane = last.membrane;
  out.presented = *presented;
  out.membrane_id = links.at(*presented).membrane_id;
  out.depth = static_cast<int>(chain.size()) - 1;
  out.walked = links.size();
  out.target = last.target;
  out.target_grant_id = last.target_grant_id;
  for (CapabilityRow row : chain) {
    if (const auto& grant = links.at(row).grant) {
      auto link = chain_grant(row, *grant);
      if (!link) return link.error();
      out.chain.push_back(std::move(*link));
    }
  }
  if (last.kind == CapabilityKind::uri) {
    auto uri = unseal_uri(last, key, known);
    if (!uri) return uri.error();
    out.uri = std::move(uri->first);
    out.config_digest = std::move(uri->second);
  }
  return out;
}

std::chrono::system_clock::time_point from_unix_ms(std::int64_t ms) {
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
}

std::int64_t to_unix_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string allow_from_text(const std::vector<core::Cidr>& allow_from) {
  std::string text;
  for (const auto& cidr : allow_from) {
    if (!text.empty()) text += ',';
    text += cidr.to_string();
  }
  return text;
}

StoredGrant stored_grant(const std::string& id, const core::GrantLimits& limits) {
  StoredGrant out;
  out.id = id;
  out.label = limits.label;
  if (limits.expires_at) out.expires_at_ms = to_unix_ms(*limits.expires_at);
  if (limits.max_uses) out.max_uses = static_cast<std::int64_t>(*limits.max_uses);
  if (limits.rate_limit) {
    out.rate_requests = limits.rate_limit->requests;
    out.rate_seconds = limits.rate_limit->per_seconds;
  }
  out.allow_from = allow_from_text(limits.allow_from);
  return out;
}

Result<std::vector<core::Cidr>> parse_allow_from(const std::string& text) {
  std::vector<core::Cidr> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    auto cidr = core::Cidr::parse(std::string_view(text).substr(start, end - start));
    if (!cidr) return Error::internal("a stored allowFrom does not parse");
    out.push_back(*cidr);
    start = end + 1;
  }
  return out;
}

}  // namespace membraned::storage
