// capi: the command-line client of the membrane service, flag-compatible with the original
// Capability CLI (`capi membrane create|export|query|revoke|delete-self`), plus `capi invoke` and
// `capi config import`.
//
// Exit status: 0 on success; 1 on any failure (wrong flags, no capability, no answer, an error
// answer). Management answers are printed as JSON indented by 2 on stdout; failures as "FAILED",
// the message and the error JSON on stderr. A capability token is never printed on stderr.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/authority.hpp"
#include "cli/credentials.hpp"
#include "cli/export_flags.hpp"
#include "cli/http_client.hpp"
#include "cli/output.hpp"
#include "core/token.hpp"
#include "core/version.hpp"

namespace {

using namespace membraned;
using namespace membraned::cli;
namespace fs = std::filesystem;

constexpr std::size_t kManagementAnswerLimit = 16 * 1024 * 1024;
constexpr double kDefaultTimeoutSeconds = 30;

// Flags every command that talks to the service takes.
struct Common {
  std::string capability;
  CLI::Option* capability_opt = nullptr;
  std::string profile = "default";
  std::string trusted_ca_path;
  bool plain_http = false;
  double timeout_seconds = kDefaultTimeoutSeconds;
};

void add_common(CLI::App& cmd, Common& c, bool capability_required = false) {
  c.capability_opt = cmd.add_option("--capability", c.capability,
                                    capability_required ? "Capability URI to use"
                                                        : "Capability URI to use (default: from the profile)");
  if (capability_required) c.capability_opt->required();
  cmd.add_option("--profile", c.profile, "Capability profile to use (in ~/.capability/credentials)")
      ->capture_default_str();
  cmd.add_option("--trustedCA-file-path", c.trusted_ca_path,
                 "JSON file {\"AUTHORITY\": \"PEM CA\"}: the CA to trust for that service authority");
  cmd.add_flag("--plain-http", c.plain_http,
               "Plain HTTP instead of HTTPS, to a loopback service only (also CAPI_PLAIN_HTTP=1)");
  cmd.add_option("--timeout", c.timeout_seconds,
                 "Seconds to wait at each step: resolve, connect, TLS handshake, write, each read")
      ->type_name("SECONDS")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 86400.0).description(""));
}

int usage_error(const std::string& message) {
  std::cerr << "capi: " << redact_tokens(message) << "\nRun with --help for more information.\n";
  return 1;
}

int print_failure(const Failure& f) {
  std::cerr << format_failure(f);
  return 1;
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

core::Result<std::string> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::Error::invalid("file", "cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return core::Error::invalid("file", "cannot read " + path);
  return ss.str();
}

std::string read_stdin_bytes() {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
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

// Where and how to reach the service for one capability.
struct Connection {
  core::Token token;
  HttpTarget target;
  HttpOptions options;
};

// The outcome of preparing a call: a connection, or the exit status after an error was printed.
struct Prepared {
  std::optional<Connection> connection;
  int exit_code = 1;
};

// The capability (from --capability or the profile's membrane.capabilities.NAME), the transport
// (HTTPS unless plain HTTP is asked for and the authority is loopback) and the CA to trust.
Prepared prepare(const Common& c, const std::string& capability_name) {
  Prepared out;
  const bool from_flag = c.capability_opt && c.capability_opt->count() > 0;

  std::optional<ProfileLookup> profile;
  auto path = default_credentials_path();
  if (path) {
    auto looked_up = read_profile(*path, c.profile, capability_name);
    if (looked_up) {
      profile = std::move(*looked_up);
    } else if (!from_flag) {
      out.exit_code = print_failure({looked_up.error().message, nullptr});
      return out;
    }
  } else if (!from_flag) {
    out.exit_code = print_failure({path.error().message, nullptr});
    return out;
  }

  std::string text;
  if (from_flag) {
    text = c.capability;
  } else if (profile && profile->capability) {
    text = *profile->capability;
  } else {
    std::cerr << "FAILED\nNo membrane \"" << capability_name << "\" capability found for profile \"" << c.profile
              << "\"\n(give --capability, or import a tenant with: capi config import --profile " << c.profile
              << " TENANT.json)\n";
    return out;
  }
  auto uri = core::CapabilityUri::parse(text);
  if (!uri) {
    out.exit_code = usage_error(from_flag ? "Failed parsing capability: --capability is not a capability URI"
                                          : "Failed parsing capability: membrane.capabilities." + capability_name +
                                                " of profile \"" + c.profile + "\" is not a capability URI");
    return out;
  }

  std::string env_error;
  const auto env_plain = env_flag("CAPI_PLAIN_HTTP", env_error);
  if (!env_error.empty()) {
    out.exit_code = usage_error(env_error);
    return out;
  }
  bool plain = c.plain_http || env_plain.value_or(false);
  // The profile's plainHttp covers the service its own capabilities point at, nothing else.
  if (!plain && profile && profile->plain_http && profile->authority && !uri->is_custom_form() &&
      core::iequals(*profile->authority, uri->authority())) {
    plain = true;
  }
  auto authority = capability_authority(*uri, plain);
  if (!authority) {
    out.exit_code = usage_error(authority.error().message);
    return out;
  }
  if (plain) {
    if (auto s = check_plain_http_allowed(*authority); !s) {
      out.exit_code = usage_error(s.error().message);
      return out;
    }
  }

  std::optional<std::string> ca;
  if (!c.trusted_ca_path.empty()) {
    auto raw = read_file_bytes(c.trusted_ca_path);
    if (!raw) {
      out.exit_code = usage_error("--trustedCA-file-path: " + raw.error().message);
      return out;
    }
    auto json = nlohmann::json::parse(*raw, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || !json.is_object()) {
      out.exit_code = usage_error("--trustedCA-file-path: " + c.trusted_ca_path +
                                  " is not a JSON object {\"AUTHORITY\": \"PEM\"}");
      return out;
    }
    const nlohmann::json* entry = nullptr;
    if (json.contains(authority->text)) {
      entry = &json[authority->text];
    } else {
      for (const auto& [key, value] : json.items()) {
        if (core::iequals(key, authority->text)) entry = &value;
      }
    }
    if (entry) {
      if (!entry->is_string()) {
        out.exit_code = usage_error("--trustedCA-file-path: the entry for " + authority->text + " is not a PEM string");
        return out;
      }
      ca = entry->get<std::string>();
    }
  }

  HttpTarget target;
  target.host = authority->host;
  target.port = authority->port;
  target.host_header = authority->text;
  target.plain_http = plain;
  target.ip_literal = authority->ip_literal;
  if (!plain) target.ca_pem = std::move(ca);
  HttpOptions options;
  options.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(c.timeout_seconds * 1000.0 + 0.5));
  out.connection = Connection{uri->token(), std::move(target), options};
  out.exit_code = 0;
  return out;
}

// One management call: prints the JSON answer (exit 0) or FAILED (exit 1).
int management_call(const Common& c, const std::string& capability_name, const std::string& method,
                    const std::string& request_target, const std::optional<std::string>& body) {
  auto prepared = prepare(c, capability_name);
  if (!prepared.connection) return prepared.exit_code;
  auto& conn = *prepared.connection;
  HttpRequest request;
  request.method = method;
  request.target = request_target;
  request.headers.push_back({"Authorization", "Bearer " + conn.token.text()});
  request.headers.push_back({"Accept", "application/json"});
  if (body) {
    request.headers.push_back({"Content-Type", "application/json"});
    request.body = *body;
  }
  conn.options.max_body = kManagementAnswerLimit;
  auto response = http_fetch(conn.target, request, conn.options);
  if (!response) return print_failure(request_failure(response.error().message));
  auto outcome = judge_management_answer(response->head.status, response->body);
  if (!outcome.ok) return print_failure(outcome.failure);
  if (!write_stdout(outcome.stdout_text)) return 1;
  return 0;
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

std::string http_version_text(unsigned version) {
  return "HTTP/" + std::to_string(version / 10) + "." + std::to_string(version % 10);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"capi: command-line client of the membrane service (membraned)", "capi"};
  app.set_version_flag("--version", std::string("capi ") + core::kVersion);
  app.require_subcommand(1);

  // --- membrane ---------------------------------------------------------------------------------
  auto* membrane = app.add_subcommand("membrane", "Membrane Service operations");
  membrane->require_subcommand(1);

  Common create_c;
  std::string create_id;
  auto* create = membrane->add_subcommand("create", "Create membrane");
  add_common(*create, create_c);
  create->add_option("--id", create_id, "Membrane id")->required();

  Common query_c;
  std::string query_id, query_last_id, query_limit;
  auto* query = membrane->add_subcommand("query", "Query membranes");
  add_common(*query, query_c);
  auto* query_id_opt = query->add_option("--id", query_id, "Membrane id to query for");
  auto* query_last_opt = query->add_option("--last-id", query_last_id, "Id of the last membrane from previous query");
  auto* query_limit_opt = query->add_option("--limit", query_limit, "Limit number of results");

  Common export_c;
  ExportFlags ef;
  std::string e_uri, e_cap, e_method, e_akid, e_secret, e_region, e_service, e_key, e_key_id, e_timeout, e_ca,
      e_cert, e_tls_key, e_profile;
  bool e_allow_query = false, e_reject = true;
  auto* exp = membrane->add_subcommand("export", "Export capability through membrane");
  add_common(*exp, export_c);
  auto* o_uri = exp->add_option("--uri", e_uri, "Fully qualified URI");
  auto* o_cap = exp->add_option("--capability-to-export", e_cap, "Existing capability to re-export through the membrane");
  auto* o_allow = exp->add_flag("--allow-query", e_allow_query, "Append requester's URI query string to requests");
  exp->add_option("--header", ef.headers, "Header to include in requests (ex: --header \"X-My: Header\"); repeatable")
      ->allow_extra_args(false);
  auto* o_method = exp->add_option("--method", e_method, "HTTP method to use in requests");
  auto* o_akid = exp->add_option("--aws4-hmac-sha256-aws-access-key-id", e_akid, "AWS Access Key Id for AWS4-HMAC-SHA256 signature");
  auto* o_secret = exp->add_option("--aws4-hmac-sha256-secret-access-key", e_secret, "AWS Secret Access Key for AWS4-HMAC-SHA256 signature");
  auto* o_region = exp->add_option("--aws4-hmac-sha256-region", e_region, "AWS region for AWS4-HMAC-SHA256 signature");
  auto* o_service = exp->add_option("--aws4-hmac-sha256-service", e_service, "AWS service for AWS4-HMAC-SHA256 signature");
  auto* o_profile = exp->add_option("--aws4-hmac-sha256-credentials", e_profile,
                                    "Sign with the service's --aws-config profile instead of stored keys (with region and service)");
  auto* o_key = exp->add_option("--cap1-hmac-sha512-key", e_key, "Base64url encoded secret key bytes for CAP1-HMAC-SHA512 signature");
  auto* o_key_id = exp->add_option("--cap1-hmac-sha512-key-id", e_key_id, "Secret key id for CAP1-HMAC-SHA512 signature");
  auto* o_timeout = exp->add_option("--timeout-ms", e_timeout, "Timeout in milliseconds to end idle connections");
  auto* o_ca = exp->add_option("--tls-ca", e_ca, "Override default trusted CA to provided CA (PEM text)");
  auto* o_cert = exp->add_option("--tls-cert", e_cert, "Client-side certificate to use when membrane makes a request (PEM text)");
  auto* o_tls_key = exp->add_option("--tls-key", e_tls_key, "Client-side certificate private key (PEM text)");
  auto* o_reject = exp->add_flag("--tls-reject-unauthorized", e_reject,
                                 "Set to \"false\" if membrane should not verify the upstream's certificate");

  Common revoke_c;
  auto* revoke = membrane->add_subcommand("revoke", "Revoke membrane");
  add_common(*revoke, revoke_c);

  Common delete_c;
  auto* delete_self = membrane->add_subcommand("delete-self", "Delete self (the tenant and all its membranes)");
  add_common(*delete_self, delete_c);

  // --- invoke -------------------------------------------------------------------------------------
  Common invoke_c;
  std::string inv_method, inv_data, inv_path = "/";
  std::vector<std::string> inv_headers;
  bool inv_include = false;
  auto* invoke = app.add_subcommand("invoke", "Send a request with an exported capability; the answer's body goes to stdout");
  add_common(*invoke, invoke_c, /*capability_required=*/true);
  auto* o_inv_method = invoke->add_option("--method,-X", inv_method, "HTTP method (default: POST with --data, else GET)");
  invoke->add_option("--header,-H", inv_headers, "Request header \"Name: value\"; repeatable")->allow_extra_args(false);
  auto* o_inv_data = invoke->add_option("--data,-d", inv_data, "Request body: TEXT, @FILE, or - (stdin); sent byte for byte");
  invoke->add_option("--path", inv_path, "Request path and query (the query reaches the upstream with allowQuery)")
      ->capture_default_str();
  invoke->add_flag("--include,-i", inv_include, "Write the status line and headers before the body");

  // --- config -------------------------------------------------------------------------------------
  auto* config = app.add_subcommand("config", "Capability CLI (capi) configuration");
  config->require_subcommand(1);
  std::string import_profile_name = "default", import_file;
  bool import_plain = false;
  auto* import = config->add_subcommand(
      "import", "Store a tenant's capabilities (the JSON of `membraned tenant create` or first-tenant.json) as a profile");
  import->add_option("--profile", import_profile_name, "Capability profile to write")->capture_default_str();
  import->add_flag("--plain-http", import_plain, "Use plain HTTP for this profile's service (loopback only)");
  import->add_option("file", import_file, "Tenant JSON file (- for stdin)")->required();

  auto args = normalise_boolean_flags(argc, argv);
  std::vector<std::string> reversed(args.rbegin(), args.rend() - 1);  // CLI11 takes them reversed, without argv[0]
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    return usage_error(e.what());
  }

  try {
    if (create->parsed()) {
      nlohmann::ordered_json body = {{"id", create_id}};
      return management_call(create_c, "create", "POST", "/", body.dump());
    }
    if (query->parsed()) {
      auto target = query_target(query_id_opt->count() ? std::optional(query_id) : std::nullopt,
                                 query_last_opt->count() ? std::optional(query_last_id) : std::nullopt,
                                 query_limit_opt->count() ? std::optional(query_limit) : std::nullopt);
      if (!target) return usage_error(target.error().message);
      return management_call(query_c, "query", "GET", *target, std::nullopt);
    }
    if (exp->parsed()) {
      auto set = [](CLI::Option* o, const std::string& v, std::optional<std::string>& into) {
        if (o->count()) into = v;
      };
      set(o_uri, e_uri, ef.uri);
      set(o_cap, e_cap, ef.capability_to_export);
      set(o_method, e_method, ef.method);
      set(o_akid, e_akid, ef.aws4_access_key_id);
      set(o_secret, e_secret, ef.aws4_secret_access_key);
      set(o_region, e_region, ef.aws4_region);
      set(o_service, e_service, ef.aws4_service);
      set(o_profile, e_profile, ef.aws4_credentials);
      set(o_key, e_key, ef.cap1_key);
      set(o_key_id, e_key_id, ef.cap1_key_id);
      set(o_timeout, e_timeout, ef.timeout_ms);
      set(o_ca, e_ca, ef.tls_ca);
      set(o_cert, e_cert, ef.tls_cert);
      set(o_tls_key, e_tls_key, ef.tls_key);
      if (o_allow->count()) ef.allow_query = e_allow_query;
      if (o_reject->count()) ef.tls_reject_unauthorized = e_reject;
      auto body = build_export_body(ef);
      if (!body) return usage_error(body.error().message);
      return management_call(export_c, "export", "POST", "/", body->dump());
    }
    if (revoke->parsed()) return management_call(revoke_c, "revoke", "GET", "/", std::nullopt);
    if (delete_self->parsed()) return management_call(delete_c, "deleteSelf", "GET", "/", std::nullopt);

    if (invoke->parsed()) {
      HttpRequest request;
      for (const auto& text : inv_headers) {
        auto h = parse_header_flag(text);
        if (!h) return usage_error(h.error().message);
        for (const char* reserved : {"Authorization", "Host", "Content-Length", "Transfer-Encoding", "Connection"}) {
          if (core::iequals(h->name, reserved)) {
            return usage_error("--header " + h->name + ": capi sets this header itself");
          }
        }
        request.headers.push_back(std::move(*h));
      }
      if (o_inv_data->count()) {
        if (inv_data == "-" || inv_data == "@-") {
          request.body = read_stdin_bytes();
        } else if (!inv_data.empty() && inv_data.front() == '@') {
          auto bytes = read_file_bytes(inv_data.substr(1));
          if (!bytes) return usage_error("--data: " + bytes.error().message);
          request.body = std::move(*bytes);
        } else {
          request.body = inv_data;
        }
      }
      if (o_inv_method->count()) {
        if (!core::is_http_token(inv_method)) return usage_error("--method must be an HTTP method name");
        request.method = inv_method;
      } else {
        request.method = o_inv_data->count() ? "POST" : "GET";
      }
      if (inv_path.empty() || inv_path.front() != '/' ||
          inv_path.find_first_of(" \t\r\n#") != std::string::npos) {
        return usage_error("--path must start with '/' and hold no blank, '#', CR or LF");
      }
      request.target = inv_path;

      auto prepared = prepare(invoke_c, "invoke");
      if (!prepared.connection) return prepared.exit_code;
      auto& conn = *prepared.connection;
      request.headers.insert(request.headers.begin(), {"Authorization", "Bearer " + conn.token.text()});
      bool output_ok = true;
      auto head = http_exchange(
          conn.target, request, conn.options,
          [&](const HttpResponseHead& h) {
            if (!inv_include) return;
            std::string text = http_version_text(h.version) + " " + std::to_string(h.status);
            if (!h.reason.empty()) text += " " + h.reason;
            text += "\r\n";
            for (const auto& field : h.headers) text += field.name + ": " + field.value + "\r\n";
            text += "\r\n";
            output_ok = write_stdout(text) && output_ok;
          },
          [&](std::string_view piece) {
            output_ok = write_stdout(piece);
            return output_ok;
          });
      if (!head) {
        if (!output_ok) return 1;  // stdout closed: nothing to tell
        return print_failure(request_failure(head.error().message));
      }
      if (head->status < 200 || head->status > 299) {
        std::cerr << "capi: the service answered " << head->status << (head->reason.empty() ? "" : " ")
                  << redact_tokens(head->reason) << "\n";
        return 1;
      }
      return output_ok ? 0 : 1;
    }

    if (import->parsed()) {
      std::string text;
      if (import_file == "-") {
        text = read_stdin_bytes();
      } else {
        auto bytes = read_file_bytes(import_file);
        if (!bytes) return usage_error(bytes.error().message);
        text = std::move(*bytes);
      }
      auto tenant = parse_tenant_json(text);
      if (!tenant) return usage_error(import_file + ": " + tenant.error().message);
      if (import_plain) {
        // Refuse now what every later call would refuse.
        auto uri = core::CapabilityUri::parse(tenant->create);
        auto authority = uri ? capability_authority(*uri, true) : core::Result<Authority>(uri.error());
        if (!authority) return usage_error(authority.error().message);
        if (auto s = check_plain_http_allowed(*authority); !s) return usage_error(s.error().message);
      }
      auto path = default_credentials_path();
      if (!path) return usage_error(path.error().message);
      if (auto s = import_profile(*path, import_profile_name, *tenant, import_plain); !s) {
        return print_failure({s.error().message, nullptr});
      }
      std::cout << "capi: profile \"" << import_profile_name << "\" written to " << path->string();
      if (!tenant->id.empty()) std::cout << " (tenant " << tenant->id << ")";
      if (import_plain) std::cout << ", plain HTTP";
      std::cout << "\n";
      return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "FAILED\n" << redact_tokens(e.what()) << "\n";
    return 1;
  }
  return usage_error("no command given");
}
