#include "server/admin.hpp"

#include <nlohmann/json.hpp>

#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <thread>
#include <utility>

#include "api/api.hpp"
#include "core/request_id.hpp"
#include "server/audit_log.hpp"
#include "core/time.hpp"

namespace membraned::server {

namespace {

using json = nlohmann::json;
using storage::Store;

// What a subcommand reports: its JSON, and the same in lines for a person (--text).
struct Report {
  json body;
  std::string text;
  std::optional<AdminRevocation> revocation = std::nullopt;
};

using Action = core::Result<Report> (*)(Store&, const AdminArguments&);

std::string time_of_seconds(std::int64_t unix_seconds) {
  return core::format_rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(unix_seconds)));
}

std::optional<std::string> after_of(const AdminArguments& args) {
  if (args.after.empty()) return std::nullopt;
  return args.after;
}

// The last line of a page that is not the last one: how to ask for the next.
std::string more_after(bool completed, const std::string& last) {
  return completed ? std::string() : "(more: --after " + last + ")\n";
}

core::Status require_tenant(Store& store, const std::string& tenant_id) {
  auto tenant = store.find_tenant(tenant_id);
  if (!tenant) return tenant.error();
  if (!*tenant) return core::Error::not_found("no tenant has the id " + tenant_id);
  return core::ok_status();
}

// --- listings --------------------------------------------------------------------------------------

core::Result<Report> list_tenants(Store& store, const AdminArguments& args) {
  auto page = store.list_tenants(after_of(args), args.limit);
  if (!page) return page.error();
  Report report{{{"tenants", json::array()}, {"completed", page->completed}}, {}};
  for (const auto& tenant : page->tenants) {
    report.body["tenants"].push_back(
        {{"id", tenant.id}, {"createdAt", time_of_seconds(tenant.created_at)}, {"deleted", tenant.deleted}});
    report.text += tenant.id + "  created " + time_of_seconds(tenant.created_at) + (tenant.deleted ? "  deleted" : "") + "\n";
  }
  if (!page->tenants.empty()) report.text += more_after(page->completed, page->tenants.back().id);
  return report;
}

// Live membranes only: a revoked one's id may belong to a newer membrane. Their tokens are
// secrets and never printed; ids only.
core::Result<Report> list_membranes(Store& store, const AdminArguments& args) {
  if (auto s = require_tenant(store, args.tenant); !s) return s.error();
  auto page = store.list_membranes(args.tenant, after_of(args), args.limit);
  if (!page) return page.error();
  Report report{{{"tenant", args.tenant}, {"membranes", json::array()}, {"completed", page->completed}}, {}};
  for (const auto& membrane : page->membranes) {
    report.body["membranes"].push_back({{"id", membrane.id}});
    report.text += membrane.id + "\n";
  }
  if (!page->membranes.empty()) report.text += more_after(page->completed, page->membranes.back().id);
  return report;
}

std::string grant_line(const json& entry) {
  auto text_of = [](const json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); };
  std::string line = text_of(entry["id"]) + "  " + text_of(entry["state"]) + "  " + text_of(entry["operation"]);
  if (!entry["target"].is_null()) line += " " + text_of(entry["target"]);
  line += "  uses " + text_of(entry["uses"]);
  if (!entry["label"].is_null()) line += "  label " + entry["label"].dump();
  return line + "\n";
}

// Every key of an inventory entry on a line of its own.
std::string grant_lines(const json& entry) {
  std::string text;
  for (const auto& [key, value] : entry.items()) text += key + ": " + (value.is_string() ? value.get<std::string>() : value.dump()) + "\n";
  return text;
}

core::Result<Report> list_grants(Store& store, const AdminArguments& args) {
  if (auto s = require_tenant(store, args.tenant); !s) return s.error();
  auto membrane = store.find_membrane(args.tenant, args.membrane);
  if (!membrane) return membrane.error();
  if (!*membrane) return core::Error::not_found("the tenant has no live membrane " + json(args.membrane).dump());
  auto page = store.list_grants(args.tenant, args.membrane, after_of(args), args.limit);
  if (!page) return page.error();
  Report report{{{"tenant", args.tenant}, {"membrane", args.membrane}, {"grants", json::array()}, {"completed", page->completed}},
                {}};
  for (const auto& entry : page->grants) {
    json one = api::grant_entry_json(entry);
    report.text += grant_line(one);
    report.body["grants"].push_back(std::move(one));
  }
  if (!page->grants.empty()) report.text += more_after(page->completed, page->grants.back().id);
  return report;
}

core::Result<json> grant_entry(Store& store, const AdminArguments& args) {
  auto entry = store.find_grant(args.tenant, args.grant);
  if (!entry) return entry.error();
  if (!*entry) return core::Error::not_found("the tenant has no grant " + args.grant);
  return api::grant_entry_json(**entry);
}

core::Result<Report> show_grant(Store& store, const AdminArguments& args) {
  auto entry = grant_entry(store, args);
  if (!entry) return entry.error();
  std::string text = grant_lines(*entry);
  return Report{{{"tenant", args.tenant}, {"grant", std::move(*entry)}}, std::move(text)};
}

// --- revocations -----------------------------------------------------------------------------------

// After the commit, what was revoked cut, counted while the settle time runs (a read: the revoke
// never walks what it cuts); null if the count fails, which changes nothing revoked.
json count_cut(Store& store, const storage::OperatorRevoke& revoked) {
  auto cut = store.grants_cut_by(revoked);
  if (!cut) {
    std::cerr << "membraned admin: revoked, but counting what it cut failed: " << cut.error().message << "\n";
    return nullptr;
  }
  return *cut;
}

std::optional<std::int64_t> cut_count(const json& cut) {
  if (!cut.is_number_integer()) return std::nullopt;
  return cut.get<std::int64_t>();
}

// The name of the local user running the command, for the audit record.
std::string operator_user() {
  const uid_t uid = ::geteuid();
  if (const passwd* entry = ::getpwuid(uid); entry != nullptr && entry->pw_name != nullptr) return entry->pw_name;
  return "uid " + std::to_string(uid);
}

// Returns once Store::revocation_settle() has passed since `committed` (taken after the commit
// returned): from then on no instance on the store can still send a request on what was cut.
std::int64_t settle(Store& store, std::chrono::steady_clock::time_point committed) {
  const auto wait = store.revocation_settle();
  std::this_thread::sleep_until(committed + wait);
  return wait.count();
}

core::Result<Report> revoke_membrane(Store& store, const AdminArguments& args) {
  auto revoked = store.revoke_membrane_by_id(args.tenant, args.membrane);
  if (!revoked) return revoked.error();
  const auto committed = std::chrono::steady_clock::now();
  json cut = count_cut(store, *revoked);
  const std::int64_t settled = settle(store, committed);
  Report report{{{"revoked", "membrane"},
                 {"tenant", args.tenant},
                 {"membrane", args.membrane},
                 {"cut", cut},
                 {"settledMs", settled}},
                {}};
  report.text = "revoked membrane " + json(args.membrane).dump() + " of tenant " + args.tenant + "; grants cut: " +
                cut.dump() + "; every instance refuses it now (waited " + std::to_string(settled) + " ms)\n";
  report.revocation = AdminRevocation{"adminRevokeMembrane", args.membrane, "", cut_count(cut)};
  return report;
}

core::Result<Report> revoke_grant(Store& store, const AdminArguments& args) {
  auto revoked = store.revoke_grant_by_id(args.tenant, args.grant);
  if (!revoked) return revoked.error();
  const auto committed = std::chrono::steady_clock::now();
  json cut = count_cut(store, *revoked);
  auto entry = grant_entry(store, args);  // as it is now: revoked
  const std::int64_t settled = settle(store, committed);
  if (!entry) return entry.error();
  Report report{{{"revoked", "grant"},
                 {"tenant", args.tenant},
                 {"grant", *entry},
                 {"alreadyRevoked", revoked->already},
                 {"cut", cut},
                 {"settledMs", settled}},
                {}};
  report.text = "revoked grant " + args.grant + " of tenant " + args.tenant +
                (revoked->already ? " (it was revoked before)" : "") + "; grants cut: " + cut.dump() +
                "; every instance refuses it now (waited " + std::to_string(settled) + " ms)\n";
  report.revocation = AdminRevocation{"adminRevokeGrant", "", args.grant, cut_count(cut)};
  return report;
}

core::Result<Report> delete_tenant(Store& store, const AdminArguments& args) {
  auto deleted = store.delete_tenant_by_id(args.tenant);
  if (!deleted) return deleted.error();
  const std::int64_t settled = settle(store, std::chrono::steady_clock::now());
  Report report{{{"deleted", "tenant"}, {"tenant", args.tenant}, {"alreadyDeleted", deleted->already}, {"settledMs", settled}},
                {}};
  report.text = "deleted tenant " + args.tenant + (deleted->already ? " (it was deleted before)" : "") +
                "; every instance refuses its capabilities now (waited " + std::to_string(settled) + " ms)\n";
  report.revocation = AdminRevocation{"adminDeleteTenant", "", "", std::nullopt};
  return report;
}

}  // namespace

AdminCommand::AdminCommand(CLI::App& parent, std::function<storage::StoreSettings()> store_settings,
                           std::function<std::string()> audit_log)
    : store_settings_(std::move(store_settings)), audit_log_(std::move(audit_log)) {
  admin_ = parent.add_subcommand(
      "admin", "The operator's tools on the store (no capability needed): list, revoke, delete. JSON on stdout");
  admin_->require_subcommand(1);
  admin_->add_flag("--text", args_.text, "Print lines for a person instead of JSON");

  tenants_ = listing("tenants", "List the tenants (id, creation, whether deleted)");
  membranes_ = listing("membranes", "List a tenant's live membranes (ids only)");
  membranes_->add_option("--tenant", args_.tenant, "The tenant's id")->required();
  grants_ = listing("grants", "List the grants exported through a tenant's live membrane (the inventory, contract §12)");
  grants_->add_option("--tenant", args_.tenant, "The tenant's id")->required();
  grants_->add_option("--membrane", args_.membrane, "The membrane's id")->required();
  grant_ = admin_->add_subcommand("grant", "Show one grant of a tenant (revoked ones too)");
  grant_->add_option("--tenant", args_.tenant, "The tenant's id")->required();
  grant_->add_option("grant", args_.grant, "The grant's id (g_...)")->required();

  revoke_membrane_ = admin_->add_subcommand(
      "revoke-membrane", "Revoke a tenant's live membrane and everything that depends on it; returns once every "
                         "instance refuses it");
  revoke_membrane_->add_option("--tenant", args_.tenant, "The tenant's id")->required();
  revoke_membrane_->add_option("--membrane", args_.membrane, "The membrane's id")->required();
  revoke_grant_ = admin_->add_subcommand(
      "revoke-grant", "Revoke one grant, its re-exports and what was made through them; returns once every instance "
                      "refuses it");
  revoke_grant_->add_option("--tenant", args_.tenant, "The tenant's id")->required();
  revoke_grant_->add_option("grant", args_.grant, "The grant's id (g_...)")->required();
  delete_tenant_ = admin_->add_subcommand(
      "delete-tenant", "Delete a tenant as its deleteSelf would: all its capabilities and what depends on them die; "
                       "returns once every instance refuses them");
  delete_tenant_->add_option("--tenant", args_.tenant, "The tenant's id")->required();
}

CLI::App* AdminCommand::listing(const std::string& name, const std::string& help) {
  CLI::App* command = admin_->add_subcommand(name, help);
  command->add_option("--after", args_.after, "Only ids after this one (byte order): the next page");
  command->add_option("--limit", args_.limit, "At most this many")->check(CLI::Range(1, 1000000))->capture_default_str();
  return command;
}

// The operator's revocation in serve's audit log (a file; with "-" serve's standard output is not
// ours to write), so that a grant's trail reads to its end whoever cut it. The revocation holds
// whether or not the record could be written: a failure is said on stderr.
void AdminCommand::record(const AdminRevocation& revocation, std::chrono::steady_clock::duration took) const {
  const std::string path = audit_log_();
  if (path.empty() || path == "-") return;
  auto log = AuditLog::open(
      path, kAdminAuditQueueBytes, [](AuditLog::Delivery, std::uint64_t) {},
      [](const std::string& line) { std::cerr << "membraned admin: audit log: " << line << "\n"; });
  if (!log) {
    std::cerr << "membraned admin: done, but not recorded in the audit log: " << log.error().message << "\n";
    return;
  }
  const std::string user = operator_user();
  const core::RequestId id = core::RequestId::next();
  AuditRecord record;
  record.time = std::chrono::system_clock::now();
  record.request_id = id.text();
  record.operation = revocation.operation;
  record.tenant = args_.tenant;
  record.membrane = revocation.membrane;
  record.revoked_grant = revocation.grant;
  record.operator_user = user;
  record.status = 202;
  record.duration_ms = std::chrono::duration<double, std::milli>(took).count();
  record.cut = revocation.cut;
  (*log)->record(record);
  (*log)->stop(kAdminAuditDrain);
}

int AdminCommand::run() {
  const std::pair<CLI::App*, Action> actions[] = {
      {tenants_, &list_tenants},       {membranes_, &list_membranes},         {grants_, &list_grants},
      {grant_, &show_grant},           {revoke_membrane_, &revoke_membrane}, {revoke_grant_, &revoke_grant},
      {delete_tenant_, &delete_tenant},
  };
  Action action = nullptr;
  for (const auto& [command, one] : actions) {
    if (command->parsed()) action = one;
  }
  if (action == nullptr) return kAdminFailed;

  storage::StoreSettings settings = store_settings_();
  settings.create = false;  // a wrong --data-dir or --store must not open an empty store
  auto store = storage::open_store(settings);
  if (!store) {
    std::cerr << "membraned admin: " << store.error().message << "\n";
    return kAdminFailed;
  }
  const auto started = std::chrono::steady_clock::now();
  auto report = action(**store, args_);
  if (!report) {
    std::cerr << "membraned admin: " << report.error().message << "\n";
    return report.error().kind == core::ErrorKind::not_found ? kAdminNotFound : kAdminFailed;
  }
  if (report->revocation) record(*report->revocation, std::chrono::steady_clock::now() - started);
  if (args_.text) {
    std::cout << report->text << std::flush;
  } else {
    std::cout << report->body.dump(2) << std::endl;
  }
  return 0;
}

}  // namespace membraned::server
