// ~/.capability/credentials, as the original CLI keeps it: multi-document YAML, one document per
// profile ("profile: NAME"), membrane capabilities under membrane.capabilities.{create, query,
// deleteSelf}. capi adds two keys of its own, written by `capi config import`: membrane.plainHttp
// (true: talk plain HTTP to this profile's loopback service; --plain-http) and membrane.tenant
// (the tenant's id, to name it when another import would replace it).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace membraned::cli {

// $HOME/.capability/credentials (the passwd entry's home when HOME is unset or empty).
core::Result<std::filesystem::path> default_credentials_path();

struct ProfileLookup {
  bool file_exists = false;
  bool profile_exists = false;
  std::optional<std::string> capability;  // membrane.capabilities.<name>, if a string
  bool plain_http = false;                // membrane.plainHttp is true
  std::optional<std::string> authority;   // of the profile's create/query/deleteSelf capability
};

// Reads the file (absent: file_exists false, no error) and the document whose `profile` is
// `profile` (the last one, if several). A file that is not YAML is an error.
core::Result<ProfileLookup> read_profile(const std::filesystem::path& path, std::string_view profile,
                                         std::string_view capability_name);

// The tenant JSON that `membraned tenant create` prints (and first-tenant.json holds):
// {"id": ..., "capabilities": {"create": URI, "query": URI, "deleteSelf": URI}}.
struct TenantCapabilities {
  std::string id;  // may be empty
  std::string create;
  std::string query;
  std::string delete_self;
};
core::Result<TenantCapabilities> parse_tenant_json(std::string_view text);

// What a profile of the credentials file holds, without a token: `capi config list`.
struct ProfileSummary {
  std::string profile;
  std::string tenant;                     // membrane.tenant; empty when not recorded
  std::optional<std::string> authority;   // of its create/query/deleteSelf capability
  bool plain_http = false;
  std::vector<std::string> capabilities;  // the names under membrane.capabilities, in the file's order
};
// Every profile of the file, in the file's order (none when there is no file).
core::Result<std::vector<ProfileSummary>> list_profiles(const std::filesystem::path& path);

// What an import replaced.
struct ImportOutcome {
  bool replaced_other_tenant = false;  // the profile held another tenant's capabilities (--force)
  std::string previous_tenant;         // that tenant's id, when the profile recorded it
};

// Writes (or replaces) `profile`'s membrane section with these capabilities and the tenant's id
// (membrane.tenant), keeping every other document and every other key of that profile's document.
// Creates the directory (0700) when missing; the file is replaced atomically and is 0600.
// A profile that holds another tenant's capabilities (any of create, query, deleteSelf with
// another token) is left as it is, with an error (conflict) naming the profile and the file,
// unless `force`: a tenant's capabilities may exist nowhere else.
core::Result<ImportOutcome> import_profile(const std::filesystem::path& path, std::string_view profile,
                                           const TenantCapabilities& tenant, bool plain_http, bool force = false);

}  // namespace membraned::cli
