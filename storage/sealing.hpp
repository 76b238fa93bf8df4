// Where each sealed value belongs, shared by the backends: the associated data of AES-256-GCM
// names a value's place, so a sealed value copied into another row does not open.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/crypto.hpp"
#include "core/encoding.hpp"

namespace membraned::storage::sealing {

// A value sealed under the master key when a database is made; a key that cannot open it is
// the wrong key for that database.
inline constexpr std::string_view kKeyCheckContext = "membraned/meta/key-check";
inline constexpr std::string_view kKeyCheckPlaintext = "membraned master key check v1";

inline std::string membrane_token_context(std::string_view which, const std::string& tenant_id,
                                          const std::string& membrane_id) {
  return "membraned/membrane-token/" + std::string(which) + "/" + tenant_id + "/" +
         core::sha256_hex(membrane_id);
}

inline std::string uri_config_context(std::string_view digest) {
  return "membraned/uri-config/" + core::hex_encode(digest);
}

// Where a grant leads, shown by the inventory: sealed like the configuration it comes from.
inline std::string grant_target_context(std::string_view grant_id) {
  return "membraned/grant-target/" + std::string(grant_id);
}

}  // namespace membraned::storage::sealing
