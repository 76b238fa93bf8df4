#include "cli/commands.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cli/authority.hpp"
#include "cli/credentials.hpp"
#include "cli/flag_sources.hpp"
#include "cli/http_client.hpp"
#include "cli/inventory.hpp"
#include "cli/output.hpp"
#include "core/http.hpp"
#include "core/token.hpp"

namespace membraned::cli {
namespace {

constexpr std::size_t kManagementAnswerLimit = 16 * 1024 * 1024;

int print_failure(const Failure& f) {
  std::cerr << format_failure(f);
  return f.exit_status;
}

std::optional<bool> env_flag(const char* name, std::string& error) {
  const char* raw = std::getenv(name);
  if (!raw) return std::nullopt;
  std::string v = core::to_lower_ascii(raw);
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v.empty() || v == "0" || v == "false" || v == "no" || v == "off") return false;
  error = std::string(name) + " must be 1 or 0";
  return std::nullopt;
}

bool write_stdout(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(STDOUT_FILENO, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// An answer's bytes go to stdout as they are. On a terminal, one that does not end with a line
// end gets one, so that the prompt or capi's next line on stderr starts on a line of its own;
// a pipe or a file gets the bytes exactly.
class TerminalLineEnd {
 public:
  bool write(std::string_view bytes) {
    if (!bytes.empty()) open_line_ = bytes.back() != '\n';
    return write_stdout(bytes);
  }
  void finish() {
    if (open_line_ && ::isatty(STDOUT_FILENO) == 1) write_stdout("\n");
    open_line_ = false;
  }

 private:
  bool open_line_ = false;
};

// --- reaching the service ------------------------------------------------------------------------

// Where and how to reach the service for one capability, and the operation the command means
// (sent as X-Capability-Operation: the service refuses a capability that performs another one).
struct Connection {
  core::Token token;
  HttpTarget target;
  HttpOptions options;
  std::string operation;
};

// The capability's text and the profile it may have come from.
struct ChosenCapability {
  std::string text;
  std::optional<ProfileLookup> profile;
};

// --capability, else the profile's membrane.capabilities.NAME. A profile that cannot be read only
// matters when it is needed. nullopt: the failure has been printed.
std::optional<ChosenCapability> choose_capability(const ServiceFlags& flags,
                                                  const std::string& capability_name) {
  const bool from_flag = flags.capability.has_value();
  ChosenCapability out;
  auto path = default_credentials_path();
  if (path) {
    auto looked_up = read_profile(*path, flags.profile, capability_name);
    if (looked_up) {
      out.profile = std::move(*looked_up);
    } else if (!from_flag) {
      print_failure({looked_up.error().message, nullptr, kExitUsage});
      return std::nullopt;
    }
  } else if (!from_flag) {
    print_failure({path.error().message, nullptr, kExitUsage});
    return std::nullopt;
  }

  if (from_flag) {
    out.text = *flags.capability;
  } else if (out.profile && out.profile->capability) {
    out.text = *out.profile->capability;
  } else {
    std::cerr << "FAILED\nNo membrane \"" << capability_name << "\" capability found for profile \""
              << flags.profile
              << "\"\n(give --capability, or import a tenant with: capi config import --profile "
              << flags.profile << " TENANT.json)\n";
    return std::nullopt;
  }
  return out;
}

// Plain HTTP when --plain-http or CAPI_PLAIN_HTTP asks for it, or when the profile asks for it
// and the capability points at that profile's own service (nothing else).
core::Result<bool> plain_http_wanted(const ServiceFlags& flags, const std::optional<ProfileLookup>& profile,
                                     const core::CapabilityUri& uri) {
  std::string env_error;
  const auto env_plain = env_flag("CAPI_PLAIN_HTTP", env_error);
  if (!env_error.empty()) return core::Error::invalid("plain-http", env_error);
  if (flags.plain_http || env_plain.value_or(false)) return true;
  return profile && profile->plain_http && profile->authority && !uri.is_custom_form() &&
         core::iequals(*profile->authority, uri.authority());
}

// The CA that --trustedCA-file-path ({"AUTHORITY": "PEM"}) gives for `authority` (matched exactly,
// else case-insensitively), if any. Errors hold the whole message for the user.
core::Result<std::optional<std::string>> trusted_ca_for(const std::string& path,
                                                        const std::string& authority) {
  if (path.empty()) return std::optional<std::string>();
  auto raw = read_file_bytes(path);
  if (!raw) return core::Error::invalid("trustedCA", "--trustedCA-file-path: " + raw.error().message);
  auto json = nlohmann::json::parse(*raw, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return core::Error::invalid(
        "trustedCA", "--trustedCA-file-path: " + path + " is not a JSON object {\"AUTHORITY\": \"PEM\"}");
  }
  const nlohmann::json* entry = nullptr;
  if (json.contains(authority)) {
    entry = &json[authority];
  } else {
    for (const auto& [key, value] : json.items()) {
      if (core::iequals(key, authority)) entry = &value;
    }
  }
  if (!entry) return std::optional<std::string>();
  if (!entry->is_string()) {
    return core::Error::invalid("trustedCA",
                                "--trustedCA-file-path: the entry for " + authority + " is not a PEM string");
  }
  return std::optional<std::string>(entry->get<std::string>());
}

// The capability, the transport (HTTPS unless plain HTTP is asked for and the authority is
// loopback) and the CA to trust, for a command that means `operation`. nullopt: the failure has
// been printed.
std::optional<Connection> prepare(const ServiceFlags& flags, const std::string& capability_name,
                                  const std::string& operation) {
  auto capability = choose_capability(flags, capability_name);
  if (!capability) return std::nullopt;
  if (flags.capability && flags.capability->empty()) {
    usage_error("--capability is empty (was the variable it came from set?)");
    return std::nullopt;
  }
  auto uri = core::CapabilityUri::parse(capability->text);
  if (!uri) {
    usage_error(flags.capability ? "Failed parsing capability: --capability is not a capability URI"
                                 : "Failed parsing capability: membrane.capabilities." + capability_name +
                                       " of profile \"" + flags.profile + "\" is not a capability URI");
    return std::nullopt;
  }
  auto plain = plain_http_wanted(flags, capability->profile, *uri);
  if (!plain) {
    usage_error(plain.error().message);
    return std::nullopt;
  }
  auto authority = capability_authority(*uri, *plain);
  if (!authority) {
    usage_error(authority.error().message);
    return std::nullopt;
  }
  if (*plain) {
    if (auto s = check_plain_http_allowed(*authority); !s) {
      usage_error(s.error().message);
      return std::nullopt;
    }
  }
  auto ca = trusted_ca_for(flags.trusted_ca_path, authority->text);
  if (!ca) {
    usage_error(ca.error().message);
    return std::nullopt;
  }

  HttpTarget target;
  target.host = authority->host;
  target.port = authority->port;
  target.host_header = authority->text;
  target.plain_http = *plain;
  target.ip_literal = authority->ip_literal;
  if (!*plain) target.ca_pem = std::move(*ca);
  HttpOptions options;
  options.timeout =
      std::chrono::milliseconds(static_cast<std::int64_t>(flags.timeout_seconds * 1000.0 + 0.5));
  return Connection{uri->token(), std::move(target), options, operation};
}

// One management request on a prepared connection: the answer (of any status), or the failure
// of a request that got none.
core::Result<HttpResponse> management_request(const Connection& connection, const std::string& method,
                                              const std::string& request_target,
                                              const std::optional<std::string>& body) {
  HttpRequest request;
  request.method = method;
  request.target = request_target;
  request.headers.push_back({"Authorization", "Bearer " + connection.token.text()});
  request.headers.push_back({"Accept", "application/json"});
  request.headers.push_back({std::string(core::kCapabilityOperationHeader), connection.operation});
  if (body) {
    request.headers.push_back({"Content-Type", "application/json"});
    request.body = *body;
  }
  HttpOptions options = connection.options;
  options.max_body = kManagementAnswerLimit;
  return http_fetch(connection.target, request, options);
}

// One management call meaning `operation`: prints the JSON answer (exit 0) or FAILED (exit 1).
int management_call(const ServiceFlags& flags, const std::string& capability_name, const std::string& operation,
                    const std::string& method, const std::string& request_target,
                    const std::optional<std::string>& body) {
  auto connection = prepare(flags, capability_name, operation);
  if (!connection) return kExitUsage;
  auto response = management_request(*connection, method, request_target, body);
  if (!response) return print_failure(request_failure(response.error().message));
  if (auto wrong = wrong_capability(response->head.status, response->head.headers, operation, response->body)) {
    return print_failure(*wrong);
  }
  auto outcome = judge_management_answer(response->head.status, response->body);
  if (!outcome.ok) return print_failure(outcome.failure);
  if (!write_stdout(outcome.stdout_text)) return 1;
  return 0;
}

// --- listings: the membrane query and the inventory ----------------------------------------------

// A page of a listing and the answer as a management call would print it.
struct FetchedPage {
  ListingPage page;
  std::string printed;
};

// GET request_target with the query capability: the page (entries under `list`) of a 200 answer,
// or nullopt after printing FAILED (an error answer as for every management call, any other
// status than 200, or an answer that is not such a page) and setting `exit_status`. `context`,
// when given, leads the message: which page failed.
std::optional<FetchedPage> fetch_page(const Connection& connection, const std::string& request_target,
                                      const std::string& list, const std::string& context, int& exit_status) {
  auto in_context = [&](Failure f) {
    if (!context.empty()) f.message = context + ": " + f.message;
    exit_status = print_failure(f);
    return std::nullopt;
  };
  auto response = management_request(connection, "GET", request_target, std::nullopt);
  if (!response) return in_context(request_failure(response.error().message));
  if (auto wrong = wrong_capability(response->head.status, response->head.headers, connection.operation,
                                    response->body)) {
    return in_context(*wrong);
  }
  auto outcome = judge_management_answer(response->head.status, response->body);
  if (!outcome.ok) return in_context(outcome.failure);
  if (response->head.status != 200) {
    return in_context(
        {"the service answered " + std::to_string(response->head.status) + ", not 200", nullptr});
  }
  auto page = parse_listing_page(response->body, list);
  if (!page) return in_context({page.error().message, nullptr});
  return FetchedPage{std::move(*page), std::move(outcome.stdout_text)};
}

std::string indented(const nlohmann::ordered_json& json) {
  return json.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

// The request target of the page after lastId `after` (none: the first).
using PageTarget = std::function<core::Result<std::string>(const std::optional<std::string>& after)>;

// --all: every page, each after the last id of the one before (the first after `after`), until
// the service says completed. The entries, or nullopt after printing FAILED and setting
// `exit_status`.
std::optional<nlohmann::ordered_json> fetch_all(const Connection& connection, const std::string& list,
                                                const PageTarget& target_after, std::optional<std::string> after,
                                                int& exit_status) {
  auto all = nlohmann::ordered_json::array();
  for (std::size_t number = 1;; ++number) {
    auto target = target_after(after);
    if (!target) {
      exit_status = usage_error(target.error().message);
      return std::nullopt;
    }
    std::string context = "listing stopped at page " + std::to_string(number);
    if (after) context += " (after " + *after + ")";
    auto fetched = fetch_page(connection, *target, list, context, exit_status);
    if (!fetched) return std::nullopt;
    auto next = next_page_after(fetched->page, after);
    if (!next) {
      exit_status = print_failure({context + ": " + next.error().message, nullptr});
      return std::nullopt;
    }
    for (auto& entry : fetched->page.entries) all.push_back(std::move(entry));
    if (!*next) return all;
    after = std::move(*next);
  }
}

// --- invoke --------------------------------------------------------------------------------------

// The request `capi invoke` sends, before the capability is known: its headers, its body (read
// now from the file or stdin), its method and its path. Errors are usage errors.
core::Result<HttpRequest> invoke_request(const InvokeFlags& flags) {
  HttpRequest request;
  for (const auto& text : flags.headers) {
    auto h = parse_header_flag(text);
    if (!h) return h.error();
    for (const char* reserved :
         {"Authorization", "Host", "Content-Length", "Transfer-Encoding", "Connection",
          core::kCapabilityOperationHeader.data()}) {
      if (core::iequals(h->name, reserved)) {
        return core::Error::invalid("header", "--header " + h->name + ": capi sets this header itself");
      }
    }
    request.headers.push_back(std::move(*h));
  }
  if (flags.data) {
    const std::string& data = *flags.data;
    if (data == "-" || data == "@-") {
      request.body = read_stdin_bytes();
    } else if (!data.empty() && data.front() == '@') {
      auto bytes = read_file_bytes(data.substr(1));
      if (!bytes) return core::Error::invalid("data", "--data: " + bytes.error().message);
      request.body = std::move(*bytes);
    } else {
      request.body = data;
    }
  }
  if (flags.method) {
    if (!core::is_http_token(*flags.method)) {
      return core::Error::invalid("method", "--method must be an HTTP method name");
    }
    request.method = *flags.method;
  } else {
    request.method = flags.data ? "POST" : "GET";
  }
  if (flags.path.empty() || flags.path.front() != '/' ||
      flags.path.find_first_of(" \t\r\n#") != std::string::npos) {
    return core::Error::invalid("path", "--path must start with '/' and hold no blank, '#', CR or LF");
  }
  request.target = flags.path;
  return request;
}

std::string http_version_text(unsigned version) {
  return "HTTP/" + std::to_string(version / 10) + "." + std::to_string(version % 10);
}

// The status line and headers as `-i` writes them.
std::string head_text(const HttpResponseHead& head) {
  std::string text = http_version_text(head.version) + " " + std::to_string(head.status);
  if (!head.reason.empty()) text += " " + head.reason;
  text += "\r\n";
  for (const auto& field : head.headers) text += field.name + ": " + field.value + "\r\n";
  text += "\r\n";
  return text;
}

// --- config import ------------------------------------------------------------------------------

// A profile marked plain HTTP must point at a loopback service: refused now, as every later call
// would refuse it.
core::Status check_plain_import(const TenantCapabilities& tenant) {
  auto uri = core::CapabilityUri::parse(tenant.create);
  auto authority = uri ? capability_authority(*uri, true) : core::Result<Authority>(uri.error());
  if (!authority) return authority.error();
  return check_plain_http_allowed(*authority);
}

}  // namespace

core::Status read_flag_sources(ServiceFlags& service, ExportFlags* export_flags, const InvokeFlags* invoke) {
  FlagSources sources;
  if (invoke && invoke->data && (*invoke->data == "-" || *invoke->data == "@-")) sources.claim_stdin("--data");
  if (auto s = sources.resolve("--capability", service.capability); !s) return s;
  if (!export_flags) return core::ok_status();
  ExportFlags& f = *export_flags;
  for (auto& [flag, value] : {std::pair{"--capability-to-export", &f.capability_to_export},
                              {"--aws4-hmac-sha256-secret-access-key", &f.aws4_secret_access_key},
                              {"--aws4-hmac-sha256-session-token", &f.aws4_session_token},
                              {"--cap1-hmac-sha512-key", &f.cap1_key},
                              {"--tls-ca", &f.tls_ca},
                              {"--tls-cert", &f.tls_cert},
                              {"--tls-key", &f.tls_key}}) {
    if (auto s = sources.resolve(flag, *value); !s) return s;
  }
  return core::ok_status();
}

int usage_error(const std::string& message) {
  std::cerr << "capi: " << redact_tokens(message) << "\nRun with --help for more information.\n";
  return kExitUsage;
}

int run_membrane_create(const ServiceFlags& service, const std::string& id) {
  nlohmann::ordered_json body = {{"id", id}};
  return management_call(service, "create", "create", "POST", "/", body.dump());
}

int run_membrane_query(const ServiceFlags& service, const QueryFlags& query) {
  const std::string page_limit = std::to_string(kListingPageLimit);
  auto target = query_target(query.id, query.last_id, query.all ? std::optional(page_limit) : query.limit);
  if (!target) return usage_error(target.error().message);
  if (!query.all) return management_call(service, "query", "query", "GET", *target, std::nullopt);
  auto connection = prepare(service, "query", "query");
  if (!connection) return kExitUsage;
  int failed_with = kExitRefused;
  auto all = fetch_all(
      *connection, "membranes",
      [&](const std::optional<std::string>& after) { return query_target(std::nullopt, after, page_limit); },
      query.last_id, failed_with);
  if (!all) return failed_with;
  return write_stdout(indented(nlohmann::ordered_json{{"membranes", std::move(*all)}, {"completed", true}}))
             ? 0
             : kExitRefused;
}

int run_membrane_exports(const ServiceFlags& service, const ExportsFlags& flags) {
  // Flag errors first, before anything is read or sent.
  auto target =
      exports_target(flags.id, flags.last_id,
                     flags.all ? std::optional<std::string>(std::to_string(kListingPageLimit)) : flags.limit);
  if (!target) return usage_error(target.error().message);
  auto connection = prepare(service, "query", "query");
  if (!connection) return kExitUsage;
  int failed_with = kExitRefused;
  if (flags.all) {
    auto all = fetch_all(
        *connection, "exports",
        [&](const std::optional<std::string>& after) {
          return exports_target(flags.id, after, std::to_string(kListingPageLimit));
        },
        flags.last_id, failed_with);
    if (!all) return failed_with;
    std::string text =
        flags.table ? format_exports_table(*all, true)
                    : indented(nlohmann::ordered_json{{"completed", true}, {"exports", std::move(*all)}});
    return write_stdout(text) ? 0 : 1;
  }
  auto fetched = fetch_page(*connection, *target, "exports", "", failed_with);
  if (!fetched) return failed_with;
  std::string text =
      flags.table ? format_exports_table(fetched->page.entries, fetched->page.completed) : fetched->printed;
  return write_stdout(text) ? 0 : 1;
}

int run_grant_show(const ServiceFlags& service, const GrantShowFlags& flags) {
  auto target = grant_target(flags.id);
  if (!target) return usage_error(target.error().message);
  auto connection = prepare(service, "query", "query");
  if (!connection) return kExitUsage;
  int failed_with = kExitRefused;
  auto fetched = fetch_page(*connection, *target, "exports", "", failed_with);
  if (!fetched) return failed_with;
  const auto& exports = fetched->page.entries;
  if (exports.empty()) {
    return print_failure(
        {"No grant with id " + nlohmann::ordered_json(flags.id).dump() + " for this tenant", nullptr});
  }
  const auto& entry = exports.front();
  if (exports.size() != 1 || entry.at("id") != flags.id) {
    return print_failure(
        {"the service answered another grant than " + nlohmann::ordered_json(flags.id).dump(), nullptr});
  }
  return write_stdout(flags.table ? format_grant_fields(entry) : indented(entry)) ? 0 : 1;
}

int run_membrane_export(const ServiceFlags& service, const ExportFlags& export_flags) {
  auto body = build_export_body(export_flags);
  if (!body) return usage_error(body.error().message);
  return management_call(service, "export", "export", "POST", "/", body->dump());
}

int run_membrane_revoke(const ServiceFlags& service) {
  return management_call(service, "revoke", "revoke", "GET", "/", std::nullopt);
}

int run_grant_revoke(const ServiceFlags& service) {
  return management_call(service, "revoke", "revokeGrant", "GET", "/", std::nullopt);
}

int run_membrane_delete_self(const ServiceFlags& service) {
  return management_call(service, "deleteSelf", "deleteSelf", "GET", "/", std::nullopt);
}

// Streams the answer's body to stdout (after the head with -i); exit 0 only for a 2xx answer
// written whole. The service's refusal of a capability that does not invoke (409, contract §2)
// is a failure on stderr, with nothing on stdout.
int run_invoke(const ServiceFlags& service, const InvokeFlags& invoke) {
  auto request = invoke_request(invoke);
  if (!request) return usage_error(request.error().message);
  auto connection = prepare(service, "invoke", "invoke");
  if (!connection) return kExitUsage;
  request->headers.insert(request->headers.begin(), {"Authorization", "Bearer " + connection->token.text()});
  request->headers.push_back({std::string(core::kCapabilityOperationHeader), connection->operation});
  bool output_ok = true;
  bool refused = false;
  std::string refusal_body;
  TerminalLineEnd line_end;
  auto head = http_exchange(
      connection->target, *request, connection->options,
      [&](const HttpResponseHead& h) {
        refused = wrong_capability(h.status, h.headers, connection->operation, "").has_value();
        if (invoke.include && !refused) output_ok = line_end.write(head_text(h)) && output_ok;
      },
      [&](std::string_view piece) {
        if (refused) {
          if (refusal_body.size() < kManagementAnswerLimit) refusal_body.append(piece);
          return true;
        }
        output_ok = line_end.write(piece);
        return output_ok;
      });
  if (!head) {
    if (!output_ok) return 1;  // stdout closed: nothing to tell
    line_end.finish();
    return print_failure(request_failure(head.error().message));
  }
  if (refused) return print_failure(*wrong_capability(head->status, head->headers, connection->operation, refusal_body));
  line_end.finish();
  if (head->status < 200 || head->status > 299) {
    // membraned marks the error answers it makes itself; any other is the upstream's, relayed.
    const bool own = core::find_header(head->headers, core::kMembranedErrorHeader) != nullptr;
    std::cerr << (own ? "capi: membraned answered " : "capi: the upstream answered ") << head->status
              << (head->reason.empty() ? "" : " ") << redact_tokens(head->reason)
              << (own ? "" : " (relayed by membraned)") << "\n";
    return kExitRefused;
  }
  return output_ok ? 0 : 1;
}

int run_config_list() {
  auto path = default_credentials_path();
  if (!path) return usage_error(path.error().message);
  auto profiles = list_profiles(*path);
  if (!profiles) return print_failure({profiles.error().message, nullptr, kExitUsage});
  auto listed = nlohmann::ordered_json::array();
  for (const ProfileSummary& p : *profiles) {
    listed.push_back({{"profile", p.profile},
                      {"tenant", p.tenant.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(p.tenant)},
                      {"service", p.authority ? nlohmann::ordered_json(*p.authority) : nlohmann::ordered_json()},
                      {"plainHttp", p.plain_http},
                      {"capabilities", p.capabilities}});
  }
  return write_stdout(indented(nlohmann::ordered_json{{"file", path->string()}, {"profiles", std::move(listed)}}))
             ? 0
             : kExitRefused;
}

int run_config_import(const ImportFlags& import) {
  std::string text;
  if (import.file == "-") {
    text = read_stdin_bytes();
  } else {
    auto bytes = read_file_bytes(import.file);
    if (!bytes) return usage_error(bytes.error().message);
    text = std::move(*bytes);
  }
  auto tenant = parse_tenant_json(text);
  if (!tenant) return usage_error(import.file + ": " + tenant.error().message);
  if (import.plain_http) {
    if (auto s = check_plain_import(*tenant); !s) return usage_error(s.error().message);
  }
  auto path = default_credentials_path();
  if (!path) return usage_error(path.error().message);
  auto written = import_profile(*path, import.profile, *tenant, import.plain_http, import.force);
  if (!written) return print_failure({written.error().message, nullptr, kExitUsage});
  std::cout << "capi: profile \"" << import.profile << "\" written to " << path->string();
  if (!tenant->id.empty()) std::cout << " (tenant " << tenant->id << ")";
  if (import.plain_http) std::cout << ", plain HTTP";
  if (written->replaced_other_tenant) {
    std::cout << "; it replaced the capabilities of "
              << (written->previous_tenant.empty() ? "another tenant" : "tenant " + written->previous_tenant);
  }
  std::cout << "\n";
  return 0;
}

}  // namespace membraned::cli
