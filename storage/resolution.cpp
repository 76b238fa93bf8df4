#include "storage/resolution.hpp"

#include <variant>

#include "core/crypto.hpp"
#include "storage/sealing.hpp"

namespace membraned::storage {

using core::Error;

Result<Resolved> resolve_links(const std::map<CapabilityRow, Link>& links, const std::string& digest,
                               const MasterKey& key) {
  const Error dead = Error::unauthorized("unknown or revoked capability");
  std::optional<CapabilityRow> presented;
  for (const auto& [row, link] : links) {
    if (link.digest == digest) presented = row;
  }
  if (!presented || links.size() > kMaxDependencies) return dead;

  // The acting capability: follow re-exports to the end.
  CapabilityRow terminal = *presented;
  int depth = 0;
  while (links.at(terminal).parent) {
    auto next = links.find(*links.at(terminal).parent);
    if (next == links.end()) return dead;
    terminal = next->first;
    ++depth;
  }
  for (const auto& [row, link] : links) {
    if (link.tenant_deleted) return dead;
    // A membrane's own revoke capability outlives the revocation it performs (revoke is
    // idempotent); everything else dies with any revoked membrane it depends on.
    bool own_revoke = row == terminal && link.kind == CapabilityKind::revoke;
    if (link.membrane_revoked && !own_revoke) return dead;
  }

  const Link& last = links.at(terminal);
  Resolved out;
  out.kind = last.kind;
  out.tenant_id = last.tenant_id;
  out.membrane = last.membrane;
  out.presented = *presented;
  out.depth = depth;
  out.walked = links.size();
  if (last.kind == CapabilityKind::uri) {
    auto opened = key.open(last.config, sealing::uri_config_context(last.digest));
    if (!opened) return Error::internal("a stored export configuration does not open");
    auto parsed = core::parse_export_config(*opened, {.max_timeout_ms = UINT64_MAX, .check_tls_key = false});
    core::secure_wipe(*opened);
    if (!parsed || !std::holds_alternative<core::UriExport>(*parsed)) {
      return Error::internal("a stored export configuration does not parse");
    }
    out.uri = std::get<core::UriExport>(std::move(*parsed));
  }
  return out;
}

}  // namespace membraned::storage
