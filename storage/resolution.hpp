// The rule of resolution, shared by the backends: from every capability a token depends on (as
// one query returns them), whether it acts, and as what.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "storage/master_key.hpp"
#include "storage/store.hpp"

namespace membraned::storage {

// A grant's own row (contract §11-12): its public handle, its limits, and whether it was revoked.
// Times are Unix milliseconds.
struct StoredGrant {
  std::string id;
  std::optional<std::string> label;
  std::optional<std::int64_t> expires_at_ms;
  std::optional<std::int64_t> max_uses;
  std::optional<std::int64_t> rate_requests;
  std::optional<std::int64_t> rate_seconds;
  std::string allow_from;  // CIDRs, comma-separated; empty: any address
  std::optional<std::int64_t> revoked_at_ms;
};

// One capability reached by the walk, with the state of its tenant and membrane.
struct Link {
  std::string digest;
  CapabilityKind kind;
  std::string tenant_id;
  std::optional<MembraneRow> membrane;
  std::optional<CapabilityRow> parent;
  std::string config;  // uri: the sealed export configuration
  bool tenant_deleted = false;
  bool membrane_revoked = false;
  std::optional<StoredGrant> grant;      // an export or re-export: its grant
  std::optional<CapabilityRow> target;  // revoke_grant: the grant it revokes
  std::string membrane_id;              // its membrane's id; empty: none
  std::string target_grant_id;          // revoke_grant: the id of the grant it revokes
};

// The capability acts only if everything it depends on is alive (a membrane's own revoke
// capability outlives its membrane's revocation; no grant on which it depends is revoked or
// expired at `now`), and acts as the end of its parent chain. Unknown, cut, expired or beyond
// kMaxDependencies: unauthorized. A uri capability's configuration is unsealed with `key`.
//
// `known` (optional) answers a configuration already parsed, by the SHA-256 of its unsealed text:
// a configuration shared by many grants is then parsed once, not once per token.
using KnownConfig = std::function<std::shared_ptr<const core::UriExport>(const std::string& config_digest)>;
Result<Resolved> resolve_links(const std::map<CapabilityRow, Link>& links, const std::string& digest,
                               const MasterKey& key, std::chrono::system_clock::time_point now,
                               const KnownConfig& known = {});

// The grant columns as the store keeps them, and back.
StoredGrant stored_grant(const std::string& id, const core::GrantLimits& limits);
std::string allow_from_text(const std::vector<core::Cidr>& allow_from);
Result<std::vector<core::Cidr>> parse_allow_from(const std::string& text);
std::chrono::system_clock::time_point from_unix_ms(std::int64_t ms);
std::int64_t to_unix_ms(std::chrono::system_clock::time_point t);

}  // namespace membraned::storage
