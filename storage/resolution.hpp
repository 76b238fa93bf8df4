// The rule of resolution, shared by the backends: from every capability a token depends on (as
// one query returns them), whether it acts, and as what.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "storage/master_key.hpp"
#include "storage/store.hpp"

namespace membraned::storage {

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
};

// The capability acts only if everything it depends on is alive (a membrane's own revoke
// capability outlives its membrane's revocation), and acts as the end of its parent chain.
// Unknown, cut or beyond kMaxDependencies: unauthorized. A uri capability's configuration is
// unsealed with `key`.
Result<Resolved> resolve_links(const std::map<CapabilityRow, Link>& links, const std::string& digest,
                               const MasterKey& key);

}  // namespace membraned::storage
