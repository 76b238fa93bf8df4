// ~/.capability/credentials, as the original CLI keeps it: multi-document YAML, one document per
// profile ("profile: NAME"), membrane capabilities under membrane.capabilities.{create, query,
// deleteSelf}. capi adds one key of its own, membrane.plainHttp (true: talk plain HTTP to this
// profile's loopback service), written by `capi config import --plain-http`.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

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

// Writes (or replaces) `profile`'s membrane section with these capabilities, keeping every other
// document and every other key of that profile's document. Creates the directory (0700) when
// missing; the file is replaced atomically and is 0600.
core::Status import_profile(const std::filesystem::path& path, std::string_view profile,
                            const TenantCapabilities& tenant, bool plain_http);

}  // namespace membraned::cli
