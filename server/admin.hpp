// `membraned admin`: the operator's tools, run on the host against the store with the same store
// flags as `serve` (contract §13). They list tenants, membranes and grants, and revoke a membrane
// or a grant or delete a tenant without any capability, with the guarantees of the API's revoke:
// committed durably, the revocation epoch set anew, and the command returns only once the settle
// time has passed, so that every instance on the store refuses what it cut. JSON on stdout
// (`--text`: lines for a person); no token or secret is ever printed.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "storage/open_store.hpp"

namespace membraned::server {

// Exit statuses of `membraned admin` besides 0 (done) and 2 (a command line not understood).
inline constexpr int kAdminFailed = 1;    // the store could not be opened or answered an error
inline constexpr int kAdminNotFound = 3;  // no such tenant, live membrane or grant: nothing changed

// The audit log a revocation is recorded in: one record, written before the command returns.
inline constexpr std::size_t kAdminAuditQueueBytes = 64 * 1024;
inline constexpr std::chrono::seconds kAdminAuditDrain{5};

// What a revocation changed, for its audit record.
struct AdminRevocation {
  std::string operation;  // adminRevokeMembrane, adminRevokeGrant, adminDeleteTenant
  std::string membrane;
  std::string grant;
  std::optional<std::int64_t> cut;
};

struct AdminArguments {
  std::string tenant;
  std::string membrane;
  std::string grant;
  std::string after;  // listings: strictly after this id
  std::size_t limit = 1000;
  bool text = false;
};

class AdminCommand {
 public:
  // Registers `admin` and its subcommands on `parent`. `store_settings` gives, once the flags are
  // parsed, the store `serve` would open; `audit_log`, serve's --audit-log (empty: none), where a
  // revocation is recorded too.
  AdminCommand(CLI::App& parent, std::function<storage::StoreSettings()> store_settings,
               std::function<std::string()> audit_log);

  CLI::App* command() const { return admin_; }
  bool parsed() const { return admin_->parsed(); }
  // Runs the subcommand given; its exit status.
  int run();

 private:
  CLI::App* listing(const std::string& name, const std::string& help);
  void record(const AdminRevocation& revocation, std::chrono::steady_clock::duration took) const;

  std::function<storage::StoreSettings()> store_settings_;
  std::function<std::string()> audit_log_;
  AdminArguments args_;
  CLI::App* admin_ = nullptr;
  CLI::App* tenants_ = nullptr;
  CLI::App* membranes_ = nullptr;
  CLI::App* grants_ = nullptr;
  CLI::App* grant_ = nullptr;
  CLI::App* revoke_membrane_ = nullptr;
  CLI::App* revoke_grant_ = nullptr;
  CLI::App* delete_tenant_ = nullptr;
};

}  // namespace membraned::server
