// capi: the command-line client of the membrane service, flag-compatible with the original
// Capability CLI (`capi membrane create|export|query|revoke|delete-self`), plus `capi invoke`,
// `capi membrane exports`, `capi grant revoke|show` and `capi config import`. This file declares
// the commands and their flags, and runs the one given; what each command does is in commands.cpp.
//
// Exit status: 0 on success; 1 on any failure (wrong flags, no capability, no answer, an error
// answer). Management answers are printed as JSON indented by 2 on stdout (or, with --table, as
// a table for people); failures as "FAILED", the message and the error JSON on stderr. A
// capability token is never printed on stderr.
#include <CLI/CLI.hpp>

#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.hpp"
#include "cli/export_flags.hpp"
#include "cli/output.hpp"
#include "core/command_line.hpp"
#include "core/http.hpp"
#include "core/version.hpp"

namespace {

using namespace membraned;
using namespace membraned::cli;

// The forms a flag that carries a secret also takes (cli/flag_sources.hpp).
constexpr const char* kSecretSources = "; or @FILE, - (stdin), env:NAME";

void add_service_flags(CLI::App& cmd, ServiceFlags& flags, bool capability_required = false) {
  auto* capability = cmd.add_option(
      "--capability", flags.capability,
      std::string(capability_required ? "Capability URI to use" : "Capability URI to use (default: from the profile)") +
          kSecretSources);
  if (capability_required) capability->required();
  cmd.add_option("--profile", flags.profile, "Capability profile to use (in ~/.capability/credentials)")
      ->capture_default_str();
  cmd.add_option("--trustedCA-file-path", flags.trusted_ca_path,
                 "JSON file {\"AUTHORITY\": \"PEM CA\"}: the CA to trust for that service authority");
  cmd.add_flag("--plain-http", flags.plain_http,
               "Plain HTTP instead of HTTPS, to a loopback service only (also CAPI_PLAIN_HTTP=1)");
  cmd.add_option("--timeout", flags.timeout_seconds,
                 "Seconds to wait at each step: resolve, connect, TLS handshake, write, each read")
      ->type_name("SECONDS")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 86400.0).description(""));
}

// A boolean flag that may also be absent. CLI11 2.1 writes false into a std::optional<bool> flag
// even when it is not given, so the flag fills a bool, kept only when the flag was given.
class OptionalBoolFlag {
 public:
  OptionalBoolFlag(CLI::App& cmd, const std::string& name, bool default_value, const std::string& description)
      : value_(default_value), flag_(cmd.add_flag(name, value_, description)) {}
  OptionalBoolFlag(const OptionalBoolFlag&) = delete;  // the flag writes into value_
  OptionalBoolFlag& operator=(const OptionalBoolFlag&) = delete;
  void copy_to(std::optional<bool>& into) const {
    if (flag_->count()) into = value_;
  }

 private:
  bool value_;
  CLI::Option* flag_;
};

// `membrane export`'s flags, bound straight into ExportFlags but for the two booleans.
struct ExportCommand {
  ServiceFlags service;
  ExportFlags flags;
  std::optional<OptionalBoolFlag> allow_query;
  std::optional<OptionalBoolFlag> tls_reject_unauthorized;

  ExportFlags parsed() const {
    ExportFlags out = flags;
    allow_query->copy_to(out.allow_query);
    tls_reject_unauthorized->copy_to(out.tls_reject_unauthorized);
    return out;
  }
};

// The grant's own limits, for --uri exports and re-exports alike.
void add_grant_limit_flags(CLI::App& cmd, ExportFlags& f) {
  cmd.add_option("--label", f.label, "The grant's name for its owner (1 to 256 characters)")->type_name("TEXT");
  auto* expires_at = cmd.add_option("--expires-at", f.expires_at,
                                    "When the grant ends, RFC 3339 with an offset (2026-12-31T23:59:59Z)")
                         ->type_name("RFC3339");
  cmd.add_option("--expires-in", f.expires_in, "When the grant ends, from now: 90s, 30m, 2h, 1d, 1h30m")
      ->type_name("DURATION")
      ->excludes(expires_at);
  cmd.add_option("--max-uses", f.max_uses, "At most this many uses of the grant")->type_name("N");
  cmd.add_option("--rate-limit", f.rate_limit, "At most N uses in any window of SECONDS seconds (100/60)")
      ->type_name("N/SECONDS");
  cmd.add_option("--allow-from", f.allow_from,
                 "Address range (CIDR) or address the grant may be used from; repeatable")
      ->type_name("CIDR")
      ->allow_extra_args(false);
}

CLI::App* add_export_command(CLI::App& membrane, ExportCommand& c) {
  auto* cmd = membrane.add_subcommand("export", "Export capability through membrane");
  add_service_flags(*cmd, c.service);
  ExportFlags& f = c.flags;
  cmd->add_option("--uri", f.uri, "Fully qualified URI");
  cmd->add_option("--capability-to-export", f.capability_to_export,
                  std::string("Existing capability to re-export through the membrane") + kSecretSources);
  c.allow_query.emplace(*cmd, "--allow-query", false,
                        "Append requester's URI query string to requests (also --allow-query true|false, "
                        "--no-allow-query)");
  cmd->add_option("--header", f.headers,
                  "Header to include in requests (ex: --header \"X-My: Header\"); repeatable")
      ->allow_extra_args(false);
  cmd->add_option("--method", f.method, "HTTP method to use in requests");
  cmd->add_option("--aws4-hmac-sha256-aws-access-key-id", f.aws4_access_key_id,
                  "AWS Access Key Id for AWS4-HMAC-SHA256 signature");
  cmd->add_option("--aws4-hmac-sha256-secret-access-key", f.aws4_secret_access_key,
                  std::string("AWS Secret Access Key for AWS4-HMAC-SHA256 signature") + kSecretSources);
  cmd->add_option("--aws4-hmac-sha256-session-token", f.aws4_session_token,
                  std::string("AWS session token of temporary keys, sent as X-Amz-Security-Token") + kSecretSources);
  cmd->add_option("--aws4-hmac-sha256-region", f.aws4_region, "AWS region for AWS4-HMAC-SHA256 signature");
  cmd->add_option("--aws4-hmac-sha256-service", f.aws4_service, "AWS service for AWS4-HMAC-SHA256 signature");
  cmd->add_option(
      "--aws4-hmac-sha256-credentials", f.aws4_credentials,
      "Sign with the service's --aws-config profile instead of stored keys (with region and service)");
  cmd->add_option("--cap1-hmac-sha512-key", f.cap1_key,
                  std::string("Base64url encoded secret key bytes for CAP1-HMAC-SHA512 signature") + kSecretSources);
  cmd->add_option("--cap1-hmac-sha512-key-id", f.cap1_key_id, "Secret key id for CAP1-HMAC-SHA512 signature");
  cmd->add_option("--timeout-ms", f.timeout_ms, "Timeout in milliseconds to end idle connections")
      ->type_name("MS");
  cmd->add_option("--tls-ca", f.tls_ca,
                  std::string("Override default trusted CA to provided CA (PEM text)") + kSecretSources);
  cmd->add_option("--tls-cert", f.tls_cert,
                  std::string("Client-side certificate to use when membrane makes a request (PEM text)") +
                      kSecretSources);
  cmd->add_option("--tls-key", f.tls_key,
                  std::string("Client-side certificate private key (PEM text)") + kSecretSources);
  c.tls_reject_unauthorized.emplace(
      *cmd, "--tls-reject-unauthorized", true,
      "Verify the upstream's certificate, the default: --tls-reject-unauthorized false (or "
      "--no-tls-reject-unauthorized) turns the check off");
  add_grant_limit_flags(*cmd, f);
  return cmd;
}

CLI::App* add_query_command(CLI::App& membrane, ServiceFlags& service, QueryFlags& query) {
  auto* cmd = membrane.add_subcommand("query", "Query membranes");
  add_service_flags(*cmd, service);
  auto* id = cmd->add_option("--id", query.id, "Membrane id to query for");
  cmd->add_option("--last-id", query.last_id, "Id of the last membrane from previous query");
  auto* limit = cmd->add_option("--limit", query.limit,
                                "Limit number of results (the service's default: 1; page on with --last-id "
                                "while \"completed\" is false, or give --all)")
                    ->type_name("N");
  cmd->add_flag("--all", query.all, "Every membrane: all pages (1000 membranes each), printed as one answer")
      ->excludes(limit)
      ->excludes(id);
  return cmd;
}

CLI::App* add_exports_command(CLI::App& membrane, ServiceFlags& service, ExportsFlags& exports) {
  auto* cmd = membrane.add_subcommand(
      "exports", "List the grants exported through a membrane (the inventory; the query capability)");
  add_service_flags(*cmd, service);
  cmd->add_option("--id", exports.id, "Membrane id whose grants to list")->required();
  cmd->add_option("--last-id", exports.last_id, "Id of the last grant from the previous page");
  auto* limit =
      cmd->add_option("--limit", exports.limit, "Limit number of results (the service's default: 1)")
          ->type_name("N");
  cmd->add_flag("--all", exports.all, "Every page (1000 grants each), printed as one answer")
      ->excludes(limit);
  cmd->add_flag("--table", exports.table, "A table for people instead of JSON");
  return cmd;
}

CLI::App* add_grant_show_command(CLI::App& grant, ServiceFlags& service, GrantShowFlags& show) {
  auto* cmd = grant.add_subcommand("show", "Show one grant of the tenant by id (the query capability)");
  add_service_flags(*cmd, service);
  cmd->add_option("id", show.id, "Grant id (g_..., the \"id\" its export answered)")->required();
  cmd->add_flag("--table", show.table, "Each field's name and value instead of JSON");
  return cmd;
}

CLI::App* add_invoke_command(CLI::App& app, ServiceFlags& service, InvokeFlags& invoke) {
  auto* cmd = app.add_subcommand(
      "invoke", "Send a request with an exported capability; the answer's body goes to stdout");
  add_service_flags(*cmd, service, /*capability_required=*/true);
  cmd->add_option("--method,-X", invoke.method, "HTTP method (default: POST with --data, else GET)");
  cmd->add_option("--header,-H", invoke.headers, "Request header \"Name: value\"; repeatable")
      ->allow_extra_args(false);
  cmd->add_option("--data,-d", invoke.data, "Request body: TEXT, @FILE, or - (stdin); sent byte for byte");
  cmd->add_option("--path", invoke.path,
                  "Request path and query (the query reaches the upstream with allowQuery)")
      ->capture_default_str();
  cmd->add_flag("--include,-i", invoke.include, "Write the status line and headers before the body");
  return cmd;
}

CLI::App* add_import_command(CLI::App& config, ImportFlags& import) {
  auto* cmd = config.add_subcommand("import",
                                    "Store a tenant's capabilities (the JSON of `membraned tenant create` or "
                                    "first-tenant.json) as a profile");
  cmd->add_option("--profile", import.profile, "Capability profile to write")->capture_default_str();
  cmd->add_flag("--plain-http", import.plain_http,
                "Use plain HTTP for this profile's service (loopback only)");
  cmd->add_flag("--force", import.force,
                "Replace the profile even when it holds another tenant's capabilities (they may exist nowhere else)");
  cmd->add_option("file", import.file, "Tenant JSON file (- for stdin)")->required();
  return cmd;
}

// `--flag true|false` (as yargs reads booleans) becomes `--flag=true|false`, and `--no-flag`
// becomes `--flag=false`, for the boolean flags of the original CLI.
std::vector<std::string> normalise_boolean_flags(int argc, char** argv) {
  static const char* const kBooleans[] = {"--allow-query", "--tls-reject-unauthorized"};
  std::vector<std::string> out;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    bool handled = false;
    for (const char* name : kBooleans) {
      const std::string negated = std::string("--no-") + (name + 2);
      if (arg == negated) {
        out.push_back(std::string(name) + "=false");
        handled = true;
      } else if (arg == name && i + 1 < argc) {
        std::string next = core::to_lower_ascii(argv[i + 1]);
        if (next == "true" || next == "false") {
          out.push_back(arg + "=" + next);
          ++i;
          handled = true;
        }
      }
      if (handled) break;
    }
    if (!handled) out.push_back(std::move(arg));
  }
  return out;
}

// Runs a command; an exception that escapes it is a failure, reported without any token.
int run_guarded(const std::function<int()>& command) {
  try {
    return command();
  } catch (const std::exception& e) {
    std::cerr << "FAILED\n" << redact_tokens(e.what()) << "\n";
    return kExitRefused;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"capi: command-line client of the membrane service (membraned)", "capi"};
  app.set_version_flag("--version",
                       std::string("capi ") + core::kVersion + " (commit " + core::kCommit + ")");
  app.require_subcommand(1);

  auto* membrane = app.add_subcommand("membrane", "Membrane Service operations");
  membrane->require_subcommand(1);
  ServiceFlags create_service;
  std::string create_id;
  auto* create = membrane->add_subcommand("create", "Create membrane");
  add_service_flags(*create, create_service);
  create->add_option("--id", create_id, "Membrane id")->required();
  ServiceFlags query_service;
  QueryFlags query_flags;
  auto* query = add_query_command(*membrane, query_service, query_flags);
  ServiceFlags exports_service;
  ExportsFlags exports_flags;
  auto* exports = add_exports_command(*membrane, exports_service, exports_flags);
  ExportCommand export_command;
  auto* export_ = add_export_command(*membrane, export_command);
  ServiceFlags revoke_service;
  auto* revoke = membrane->add_subcommand("revoke", "Revoke membrane");
  add_service_flags(*revoke, revoke_service);
  ServiceFlags delete_service;
  auto* delete_self =
      membrane->add_subcommand("delete-self", "Delete self (the tenant and all its membranes)");
  add_service_flags(*delete_self, delete_service);

  ServiceFlags invoke_service;
  InvokeFlags invoke_flags;
  auto* invoke = add_invoke_command(app, invoke_service, invoke_flags);

  auto* grant = app.add_subcommand("grant", "Operations on one grant (an exported capability)");
  grant->require_subcommand(1);
  ServiceFlags grant_revoke_service;
  auto* grant_revoke =
      grant->add_subcommand("revoke", "Revoke a grant with the revoke capability its export answered");
  add_service_flags(*grant_revoke, grant_revoke_service, /*capability_required=*/true);
  ServiceFlags grant_show_service;
  GrantShowFlags grant_show_flags;
  auto* grant_show = add_grant_show_command(*grant, grant_show_service, grant_show_flags);

  auto* config = app.add_subcommand("config", "Capability CLI (capi) configuration");
  config->require_subcommand(1);
  ImportFlags import_flags;
  auto* import = add_import_command(*config, import_flags);
  auto* config_list = config->add_subcommand(
      "list", "The profiles of ~/.capability/credentials: tenant, service, plain HTTP, capability names (no token)");

  auto args = normalise_boolean_flags(argc, argv);
  std::vector<std::string> reversed(args.rbegin(),
                                    args.rend() - 1);  // CLI11 takes them reversed, without argv[0]
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    return usage_error(core::explain_parse_error(app, e, {args.begin() + 1, args.end()}));
  }

  // The secret-carrying flags read their @FILE, - or env:NAME now, before anything is sent.
  const std::pair<CLI::App*, ServiceFlags*> kServiceCommands[] = {
      {create, &create_service},   {query, &query_service},         {exports, &exports_service},
      {export_, &export_command.service}, {revoke, &revoke_service}, {delete_self, &delete_service},
      {invoke, &invoke_service},   {grant_revoke, &grant_revoke_service}, {grant_show, &grant_show_service}};
  for (const auto& [cmd, service] : kServiceCommands) {
    if (!cmd->parsed()) continue;
    auto read = read_flag_sources(*service, cmd == export_ ? &export_command.flags : nullptr,
                                  cmd == invoke ? &invoke_flags : nullptr);
    if (!read) return usage_error(read.error().message);
  }

  if (create->parsed()) return run_guarded([&] { return run_membrane_create(create_service, create_id); });
  if (query->parsed()) return run_guarded([&] { return run_membrane_query(query_service, query_flags); });
  if (exports->parsed()) {
    return run_guarded([&] { return run_membrane_exports(exports_service, exports_flags); });
  }
  if (export_->parsed()) {
    return run_guarded([&] { return run_membrane_export(export_command.service, export_command.parsed()); });
  }
  if (revoke->parsed()) return run_guarded([&] { return run_membrane_revoke(revoke_service); });
  if (delete_self->parsed()) return run_guarded([&] { return run_membrane_delete_self(delete_service); });
  if (invoke->parsed()) return run_guarded([&] { return run_invoke(invoke_service, invoke_flags); });
  if (grant_revoke->parsed()) return run_guarded([&] { return run_grant_revoke(grant_revoke_service); });
  if (grant_show->parsed()) {
    return run_guarded([&] { return run_grant_show(grant_show_service, grant_show_flags); });
  }
  if (import->parsed()) return run_guarded([&] { return run_config_import(import_flags); });
  if (config_list->parsed()) return run_guarded([] { return run_config_list(); });
  return usage_error("no command given");
}
