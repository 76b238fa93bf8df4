// capi's commands, one function each: they take the flags main() parsed, talk to the service and
// print what the original CLI prints. Each returns the exit status: 0 on success, 1 on any
// failure, after saying why on stderr (never with a capability token in it).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/export_flags.hpp"

namespace membraned::cli {

inline constexpr double kDefaultTimeoutSeconds = 30;

// Flags every command that talks to the service takes.
struct ServiceFlags {
  std::optional<std::string> capability;  // --capability; absent: the profile's
  std::string profile = "default";
  std::string trusted_ca_path;  // --trustedCA-file-path
  bool plain_http = false;
  double timeout_seconds = kDefaultTimeoutSeconds;
};

// `membrane query`: what to ask for, as given.
struct QueryFlags {
  std::optional<std::string> id;
  std::optional<std::string> last_id;
  std::optional<std::string> limit;
  bool all = false;  // every page (limit kListingPageLimit), printed as one answer
};

// `membrane exports`: whose grants to list, and how.
struct ExportsFlags {
  std::string id;  // the membrane
  std::optional<std::string> last_id;
  std::optional<std::string> limit;
  bool all = false;    // every page (limit kListingPageLimit), printed as one answer
  bool table = false;  // a table for people instead of JSON
};

// `grant show`: one grant of the tenant, by id.
struct GrantShowFlags {
  std::string id;
  bool table = false;  // name and value of each field instead of JSON
};

// `invoke`: the request to send with the capability.
struct InvokeFlags {
  std::optional<std::string> method;
  std::vector<std::string> headers;  // "Name: value", in order
  std::optional<std::string> data;   // TEXT, @FILE, or - / @- for stdin
  std::string path = "/";
  bool include = false;  // write the status line and headers before the body
};

// `config import`: the tenant JSON to store as a profile.
struct ImportFlags {
  std::string profile = "default";
  std::string file;  // - for stdin
  bool plain_http = false;
  bool force = false;  // replace a profile that holds another tenant's capabilities
};

int run_membrane_create(const ServiceFlags& service, const std::string& id);
int run_membrane_query(const ServiceFlags& service, const QueryFlags& query);
// `membrane exports` (the query capability): one page of the inventory of a membrane, printed as
// `membrane query` prints its answer; with --all every page, as one answer holding them all,
// {"completed": true, "exports": [...]} (the keys in the service's order).
// Any page that is not a 200 inventory page stops it with FAILED.
int run_membrane_exports(const ServiceFlags& service, const ExportsFlags& flags);
int run_membrane_export(const ServiceFlags& service, const ExportFlags& export_flags);
int run_membrane_revoke(const ServiceFlags& service);
int run_membrane_delete_self(const ServiceFlags& service);
int run_invoke(const ServiceFlags& service, const InvokeFlags& invoke);
// `grant revoke`: the request `membrane revoke` sends, with a grant's revoke capability.
int run_grant_revoke(const ServiceFlags& service);
// `grant show` (the query capability): the grant's inventory entry; FAILED and exit 1 when the
// tenant has no grant of that id.
int run_grant_show(const ServiceFlags& service, const GrantShowFlags& flags);
int run_config_import(const ImportFlags& import);
// `config list`: each profile's name, tenant, service, plain HTTP and capability names (never a
// token), as JSON.
int run_config_list();

// The flags that may carry a secret (--capability, and export's --capability-to-export, secret
// key, session token, cap1 key and --tls-* PEM) read from @FILE, - or env:NAME when so given
// (cli/flag_sources), in place; `invoke`'s --data - takes standard input first. Errors are usage
// errors naming the flag.
core::Status read_flag_sources(ServiceFlags& service, ExportFlags* export_flags = nullptr,
                               const InvokeFlags* invoke = nullptr);

// "capi: MESSAGE" and a pointer to --help on stderr, tokens redacted; returns 1.
int usage_error(const std::string& message);

}  // namespace membraned::cli
