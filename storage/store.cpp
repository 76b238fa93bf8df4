#include "storage/store.hpp"

namespace membraned::storage {

std::string_view to_string(GrantState state) {
  switch (state) {
    case GrantState::active: return "active";
    case GrantState::revoked: return "revoked";
    case GrantState::cut: return "cut";
    case GrantState::expired: return "expired";
    case GrantState::used_up: return "used-up";
  }
  return "active";
}

std::string_view to_string(CapabilityKind kind) {
  switch (kind) {
    case CapabilityKind::create: return "create";
    case CapabilityKind::query: return "query";
    case CapabilityKind::delete_self: return "deleteSelf";
    case CapabilityKind::export_: return "export";
    case CapabilityKind::revoke: return "revoke";
    case CapabilityKind::uri: return "invoke";
    case CapabilityKind::reexport: return "reexport";
    case CapabilityKind::revoke_grant: return "revokeGrant";
  }
  return "unknown";
}

}  // namespace membraned::storage
