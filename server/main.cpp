// membraned: `serve` runs the service, `tenant create` adds a tenant (also while it runs), `admin`
// holds the operator's tools (server/admin).
#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <vector>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "api/api.hpp"
#include "core/address_policy.hpp"
#include "core/command_line.hpp"
#include "core/time.hpp"
#include "core/token.hpp"
#include "core/version.hpp"
#include "server/admin.hpp"
#include "server/config_file.hpp"
#include "server/http_server.hpp"
#include "storage/master_key.hpp"
#include "storage/open_store.hpp"
#include "storage/process_tuning.hpp"

namespace {

namespace fs = std::filesystem;
using namespace membraned;

struct Options {
  std::string listen = "127.0.0.1:8080";
  std::string authority;
  std::string data_dir = "./var";
  std::string store;
  std::string tls_cert;
  std::string tls_key;
  bool allow_plain_http = false;
  std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
  std::size_t max_invoke_body = 6 * 1024 * 1024;
  std::uint64_t upstream_timeout_ms = 30000;
  std::size_t header_limit = 16 * 1024;
  std::uint64_t idle_timeout_ms = 30000;
  std::uint64_t read_timeout_ms = 30000;
  std::uint64_t shutdown_grace_ms = 30000;
  std::size_t max_connections = 16384;
  std::size_t max_connections_per_address = 1024;
  std::uint64_t max_buffered_bodies = 256 * 1024 * 1024;
  std::uint64_t max_membranes_per_tenant = 100000;
  std::uint64_t max_grants_per_tenant = 10000000;
  std::uint64_t max_stored_bytes_per_tenant = 1024ull * 1024 * 1024;
  std::size_t db_connections = 0;  // 0: threads + 1
  std::size_t write_threads = 32;
  std::size_t resolution_cache_mb = storage::kDefaultResolutionCacheBytes >> 20;
  std::uint64_t db_connect_timeout_ms = 5000;    // PostgreSQL
  std::uint64_t db_statement_timeout_ms = 5000;  // PostgreSQL
  bool metrics = false;
  std::string metrics_listen;
  std::vector<std::string> allow_upstream;
  std::vector<std::string> trusted_proxies;
  std::vector<std::string> deny_upstream;
  std::string aws_config;
  std::string audit_log;
  std::string config;
  std::string log_format = "text";
  bool log_health_checks = false;
  bool init = false;                       // a data directory that does not exist yet is made
  std::set<std::string> from_config_file;  // the settings the --config file gave
};

// Adds an option readable from the command line, MEMBRANED_<NAME> and the config file.
template <typename T>
CLI::Option* flag(CLI::App& app, const std::string& name, T& value, const std::string& help) {
  std::string env = "MEMBRANED_";
  for (char c : name) env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return app.add_option("--" + name, value, help)->envname(env)->capture_default_str();
}

void add_common(CLI::App& app, Options& o) {
  flag(app, "data-dir", o.data_dir,
       "Folder of the SQLite database, master.key and first-tenant.json (must exist unless --init is given)");
  app.add_flag("--init", o.init, "Create the data directory when it does not exist (a new service)")
      ->envname("MEMBRANED_INIT");
  flag(app, "store", o.store,
       "Store URL; default: SQLite in the data directory (sqlite:PATH for another file); "
       "postgresql://USER@HOST:PORT/DB for one PostgreSQL shared by several instances");
  flag(app, "db-connect-timeout-ms", o.db_connect_timeout_ms, "PostgreSQL: time to open a connection (503 beyond it)")
      ->check(CLI::PositiveNumber);
  flag(app, "db-statement-timeout-ms", o.db_statement_timeout_ms,
       "PostgreSQL: statement_timeout of each connection (503 beyond it)")
      ->check(CLI::PositiveNumber);
  flag(app, "authority", o.authority, "HOST[:PORT] written into capability URIs (default: the listen address)");
  flag(app, "max-membranes-per-tenant", o.max_membranes_per_tenant,
       "Membranes one tenant may have made (revoked ones included); a create beyond is 507 (0: no limit)");
  flag(app, "max-grants-per-tenant", o.max_grants_per_tenant,
       "Grants (exports and re-exports) one tenant may have made (revoked ones included); 507 beyond (0: no limit)");
  flag(app, "max-stored-bytes-per-tenant", o.max_stored_bytes_per_tenant,
       "Bytes of sealed configurations and membrane tokens one tenant may store; 507 beyond (0: no limit)");
}

void add_serve(CLI::App& app, Options& o) {
  flag(app, "listen", o.listen,
       "HOST:PORT to listen on: an IP address ([v6]:PORT for IPv6) or a name resolved at start; port 0 picks a "
       "free one");
  flag(app, "tls-cert", o.tls_cert, "PEM certificate chain; with --tls-key the port speaks HTTPS (TLS 1.2+)");
  flag(app, "tls-key", o.tls_key, "PEM private key of --tls-cert");
  app.add_flag("--allow-plain-http", o.allow_plain_http, "Serve plain HTTP on a non-loopback address")
      ->envname("MEMBRANED_ALLOW_PLAIN_HTTP");
  flag(app, "threads", o.threads, "I/O threads (default: the number of cores)")
      ->check(CLI::Range(1, 256))
      ->default_str("");  // not this machine's count shown as if it were fixed
  flag(app, "max-invoke-body", o.max_invoke_body, "Largest invocation body in bytes (413 above)");
  flag(app, "upstream-timeout-ms", o.upstream_timeout_ms, "Service maximum for an export's timeoutMs")
      ->check(CLI::PositiveNumber);
  flag(app, "header-limit", o.header_limit,
       "Largest request header block in bytes (431 above), chunk size line (413) or trailers (431)");
  flag(app, "idle-timeout-ms", o.idle_timeout_ms, "Keep-alive idle time, and time to send a request's headers");
  flag(app, "read-timeout-ms", o.read_timeout_ms, "Time to send a request's body");
  flag(app, "shutdown-grace-ms", o.shutdown_grace_ms, "On SIGTERM, how long in-flight requests may finish");
  flag(app, "max-connections", o.max_connections,
       "Client connections held at once, in all; beyond it a new one is answered 503 and closed (0: no limit)");
  flag(app, "max-connections-per-address", o.max_connections_per_address,
       "Client connections held at once from one address (0: no limit; behind a balancer, raise it or use 0)");
  flag(app, "max-buffered-bodies", o.max_buffered_bodies,
       "Bytes of request bodies held in memory at once, in all; a request that finds no room is answered 503 "
       "before its body is read (0: no limit)");
  flag(app, "db-connections", o.db_connections, "Database connections in the pool (0: threads + 1)");
  flag(app, "write-threads", o.write_threads,
       "SQLite: threads that make the API's writes and wait for their durable commits; writes waiting together "
       "share one commit (0: on the I/O threads, one commit each)")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1024}));
  flag(app, "resolution-cache-mb", o.resolution_cache_mb,
       "Memory for resolved tokens, in MiB: a token seen before costs no database walk while it stays; beyond "
       "it the least recently used go (0: no cache)")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 20));
  app.add_flag("--metrics", o.metrics, "Serve GET /metrics (Prometheus text format) on the service's listener")
      ->envname("MEMBRANED_METRICS");
  flag(app, "metrics-listen", o.metrics_listen,
       "HOST:PORT of a separate plain-HTTP listener for /metrics and /healthz only");
  flag(app, "allow-upstream", o.allow_upstream,
       "CIDR that exports may reach although closed by default (loopback, link-local, ...); repeatable, "
       "comma-separated in the environment. Example: 127.0.0.0/8 for local upstreams")
      ->delimiter(',')
      ->type_name("CIDR")
      ->default_str("");
  flag(app, "aws-config", o.aws_config,
       "AWS shared-config file of the profiles exports may sign with (\"credentials\": PROFILE) and the "
       "tenants granted each (membraned_tenants): keys in the file, credential_source = Environment, "
       "Ec2InstanceMetadata (IMDSv2) or EcsContainer, and role_arn chains through STS AssumeRole. "
       "Endpoints: AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_CONTAINER_CREDENTIALS_FULL_URI / _RELATIVE_URI, "
       "AWS_ENDPOINT_URL_STS (docs/operations.md)");
  flag(app, "deny-upstream", o.deny_upstream, "CIDR that exports may not reach (wins over --allow-upstream); repeatable")
      ->delimiter(',')
      ->type_name("CIDR")
      ->default_str("");
  flag(app, "audit-log", o.audit_log,
       "File the audit log is appended to: one JSON object per management operation and invocation, "
       "refused ones included (contract §12); - for standard output. SIGUSR1 reopens the file (logrotate)");
  flag(app, "log-format", o.log_format,
       "Format of the log on stderr: text (one line per request) or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_flag("--log-health-checks", o.log_health_checks,
               "Log GET /healthz requests too (not logged by default)")
      ->envname("MEMBRANED_LOG_HEALTH_CHECKS");
  flag(app, "trusted-proxies", o.trusted_proxies,
       "CIDR of a load balancer or proxy whose X-Forwarded-For names the requester (grants' allowFrom, "
       "contract §11); from other peers the header is ignored. Repeatable, comma-separated in the environment")
      ->delimiter(',')
      ->type_name("CIDR")
      ->default_str("");
}

core::Result<std::pair<std::string, std::uint16_t>> split_host_port(const std::string& text,
                                                                    const std::string& option = "listen") {
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return core::Error::invalid(option, "--" + option + " must be HOST:PORT");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) return core::Error::invalid(option, "--" + option + " must be HOST:PORT");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535) {
    return core::Error::invalid(option, "--" + option + " port must be a number from 0 to 65535");
  }
  return std::pair{host, static_cast<std::uint16_t>(std::stoul(port))};
}

// The address to bind for --listen's (or --metrics-listen's) host: an IP address as it is; a name
// (localhost, as nginx and HAProxy accept) resolved once, here at the start, to its first address.
core::Result<std::string> address_of(const std::string& host, const std::string& option) {
  in_addr v4{};
  in6_addr v6{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1 || ::inet_pton(AF_INET6, host.c_str(), &v6) == 1) return host;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0 || found == nullptr) {
    return core::Error::invalid(option, "--" + option + ": cannot resolve " + host + ": " +
                                            (rc != 0 ? ::gai_strerror(rc) : "no address"));
  }
  char text[INET6_ADDRSTRLEN] = {};
  const void* raw = found->ai_family == AF_INET6
                        ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(found->ai_addr)->sin6_addr)
                        : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr);
  const bool printed = ::inet_ntop(found->ai_family, raw, text, sizeof text) != nullptr;
  ::freeaddrinfo(found);
  if (!printed) return core::Error::invalid(option, "--" + option + ": cannot resolve " + host);
  return std::string(text);
}

// --log-format, once the settings are read: the lines of the start are in it too, so that a
// collector reading JSON gets nothing else.
server::LogFormat stderr_format = server::LogFormat::text;

// A line on stderr: `membraned: MESSAGE`, or the JSON of the log's own lines.
void say(std::string_view level, const std::string& message) {
  if (stderr_format == server::LogFormat::text) {
    std::cerr << "membraned: " << message << "\n";
    return;
  }
  std::cerr << server::event_log_line(
                   {core::format_log_timestamp(std::chrono::system_clock::now()), level, message},
                   stderr_format)
            << "\n";
}

// Client connections are kept below the process's descriptor limit, with room for everything else
// (upstream connections, the store, the log): a connection refused with a 503 costs nothing,
// while accepting at the limit fails for everyone. Says so when it lowers --max-connections.
std::size_t connections_that_fit(std::size_t wanted) {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0 || files.rlim_cur == RLIM_INFINITY) return wanted;
  const auto limit = static_cast<std::size_t>(files.rlim_cur);
  const std::size_t reserve = std::max<std::size_t>(32, limit / 8);
  const std::size_t fit = limit > 2 * reserve ? limit - reserve : limit / 2;
  if (wanted != 0 && wanted <= fit) return wanted;
  say("warning", "--max-connections lowered to " + std::to_string(fit) + ": this process may open " +
                     std::to_string(limit) + " files (ulimit -n), and keeps " + std::to_string(limit - fit) +
                     " of them for upstreams and the store");
  return fit;
}

// Exit statuses: 1 a start or command that failed, 2 a command line that cannot be understood
// (the admin commands add theirs, server/admin.hpp).
constexpr int kExitUsage = 2;

int fail(const std::string& message) {
  say("error", message);
  return 1;
}

// Where the store is, its master key and connections, from the flags.
storage::StoreSettings store_settings(const Options& o, std::size_t connections) {
  storage::StoreSettings settings;
  settings.url = o.store;
  settings.data_dir = o.data_dir;
  if (const char* key = std::getenv("MEMBRANED_MASTER_KEY")) settings.master_key = key;
  settings.connections = connections;
  settings.connect_timeout = std::chrono::milliseconds(o.db_connect_timeout_ms);
  settings.statement_timeout = std::chrono::milliseconds(o.db_statement_timeout_ms);
  settings.quotas = {o.max_membranes_per_tenant, o.max_grants_per_tenant, o.max_stored_bytes_per_tenant};
  settings.resolution_cache_bytes = o.resolution_cache_mb << 20;
  return settings;
}

// The data directory (0700), the master key and the store.
core::Result<std::unique_ptr<storage::Store>> open_store(const Options& o, std::size_t connections) {
  return storage::open_store(store_settings(o, connections));
}

// first-tenant.json, mode 0600, written whole or not at all.
core::Status write_private_file(const fs::path& path, const std::string& content) {
  fs::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return core::Error::internal("cannot write " + tmp.string());
  bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return core::Error::internal("cannot write " + path.string());
  return core::ok_status();
}

// The authority is written into every capability URI: it must make URIs that parse.
core::Status check_authority(const std::string& authority) {
  auto token = core::Token::generate();
  if (!token) return core::Error::internal("token generation failed");
  if (!core::CapabilityUri::parse("cpblty://" + authority + "/#" + token->text())) {
    return core::Error::invalid("authority", "--authority must be HOST[:PORT] (got \"" + authority + "\")");
  }
  return core::ok_status();
}

// Clients connect to the authority of a capability URI: 0.0.0.0 or :: (every interface, what the
// authority defaults to when the service listens there) is no address a client can connect to.
void warn_if_unreachable_authority(const std::string& authority) {
  std::string host = authority;
  if (host.starts_with('[')) {
    host = host.substr(1, host.find(']') - 1);
  } else if (auto colon = host.rfind(':'); colon != std::string::npos) {
    host.resize(colon);
  }
  auto address = core::address_without_dns(host);
  if (!address || std::any_of(address->bytes.begin(), address->bytes.end(), [](std::uint8_t b) { return b != 0; })) {
    return;
  }
  std::cerr << "membraned: WARNING: capability URIs will name " << authority
            << ", which no client can connect to: set --authority (MEMBRANED_AUTHORITY) to the HOST[:PORT] "
               "clients use\n";
}

std::string host_for_url(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

// The data directory must exist unless --init is given: a mistyped --data-dir, or a command run
// from another folder, would otherwise quietly start an empty service beside the real one.
core::Status check_data_dir(const Options& o) {
  std::error_code ec;
  const fs::path where = fs::absolute(o.data_dir, ec).lexically_normal();
  if (fs::is_directory(o.data_dir, ec)) return core::ok_status();
  if (fs::exists(o.data_dir, ec)) {
    return core::Error::invalid("data-dir", "the data directory " + where.string() + " is not a directory");
  }
  if (o.init) return core::ok_status();
  return core::Error::invalid("data-dir", "the data directory " + where.string() +
                                              " does not exist: give --init to create it for a new service, "
                                              "or the --data-dir of the existing one");
}

// The master key that would be used must be one, without creating master.key: a new store
// gets its key when it is opened.
core::Status check_master_key(const Options& o) {
  std::optional<std::string> given;
  if (const char* key = std::getenv("MEMBRANED_MASTER_KEY"); key != nullptr && *key != '\0') given = key;
  std::error_code ec;
  if (!given && !fs::exists(fs::path(o.data_dir) / "master.key", ec)) return core::ok_status();
  auto key = storage::MasterKey::load(given, o.data_dir);
  if (!key && given)
    return core::Error::invalid("master-key", "MEMBRANED_MASTER_KEY: " + key.error().message);
  if (!key) return key.error();  // it names the file
  return core::ok_status();
}

// The audit log's file is created at start: its folder must be there.
core::Status check_audit_log(const std::string& file) {
  if (file.empty() || file == "-") return core::ok_status();
  const fs::path folder = fs::path(file).parent_path();
  std::error_code ec;
  if (folder.empty() || fs::is_directory(folder, ec)) return core::ok_status();
  return core::Error::invalid(
      "audit-log", "cannot open --audit-log " + file + ": " + folder.string() + " is not a directory");
}

// A setting the --config file gave is named there: the operator edits the file, not a flag.
std::string explained(const core::Error& error, const Options& o) {
  if (!o.from_config_file.contains(error.field)) return error.message;
  return error.message + " (" + error.field + " in " + o.config + ")";
}

// Which data directory and database a command opened, for the line that says so (never the
// --store URL: it may hold a password).
std::string opened_store(const Options& o, bool created) {
  std::error_code ec;
  const std::string folder = fs::canonical(o.data_dir, ec).string();
  std::string store = "SQLite " + (fs::path(folder) / "membraned.db").string();
  if (o.store.rfind("sqlite:", 0) == 0) store = "SQLite " + o.store.substr(7);
  if (o.store.rfind("postgres", 0) == 0) store = "PostgreSQL (--store)";
  return "data directory " + folder + (created ? " (created)" : "") + ", store " + store;
}

// What `serve` runs with, worked out and checked without binding or creating anything.
struct ServePlan {
  server::ServerSettings settings;
  std::optional<core::AwsConfig> aws_config;  // settings.aws_config points here once the plan is in place
  std::string listen_name;                    // --listen's host as given: a name, or the address
  std::string authority;                      // empty: the listen address once bound
};

core::Result<ServePlan> plan_serve(const Options& o) {
  ServePlan plan;
  auto listen = split_host_port(o.listen);
  if (!listen) return listen.error();
  if (!o.authority.empty()) {
    if (auto s = check_authority(o.authority); !s) return s.error();
  }
  plan.authority = o.authority;
  if (!o.aws_config.empty()) {
    std::ifstream in(o.aws_config, std::ios::binary);
    std::stringstream contents;
    contents << in.rdbuf();
    if (!in) return core::Error::invalid("aws-config", "--aws-config: cannot read " + o.aws_config);
    auto loaded = core::AwsConfig::load(contents.str());
    if (!loaded)
      return core::Error::invalid("aws-config",
                                  "--aws-config " + o.aws_config + ": " + loaded.error().message);
    plan.aws_config = std::move(*loaded);
  }
  server::ServerSettings& settings = plan.settings;
  auto listen_address = address_of(listen->first, "listen");
  if (!listen_address) return listen_address.error();
  settings.listen_host = *listen_address;
  plan.listen_name = listen->first;
  settings.listen_port = listen->second;
  if (!o.tls_cert.empty()) settings.tls_cert_file = o.tls_cert;
  if (!o.tls_key.empty()) settings.tls_key_file = o.tls_key;
  settings.allow_plain_http = o.allow_plain_http;
  settings.threads = o.threads;
  settings.header_limit = o.header_limit;
  settings.invoke_body_limit = o.max_invoke_body;
  settings.idle_timeout = std::chrono::milliseconds(o.idle_timeout_ms);
  settings.read_timeout = std::chrono::milliseconds(o.read_timeout_ms);
  settings.shutdown_grace = std::chrono::milliseconds(o.shutdown_grace_ms);
  settings.max_connections = connections_that_fit(o.max_connections);
  settings.max_connections_per_address = o.max_connections_per_address;
  settings.max_buffered_bodies = o.max_buffered_bodies;
  settings.upstream_timeout_ms = o.upstream_timeout_ms;
  settings.metrics = o.metrics;
  settings.store_threads = o.db_connections == 0 ? o.threads + 1 : o.db_connections;
  settings.write_threads = o.write_threads;
  settings.store_queue_timeout = std::chrono::milliseconds(o.db_connect_timeout_ms + o.db_statement_timeout_ms);
  if (!o.audit_log.empty()) settings.audit_log = o.audit_log;
  settings.log_format = server::log_format_named(o.log_format).value_or(server::LogFormat::text);
  settings.log_health_checks = o.log_health_checks;
  for (const auto& [name, texts, into] :
       {std::tuple{"allow-upstream", &o.allow_upstream, &settings.allow_upstream},
        std::tuple{"deny-upstream", &o.deny_upstream, &settings.deny_upstream},
        std::tuple{"trusted-proxies", &o.trusted_proxies, &settings.trusted_proxies}}) {
    for (const std::string& text : *texts) {
      auto range = core::Cidr::parse(text);
      if (!range) return core::Error::invalid(name, "--" + std::string(name) + ": " + range.error().message);
      into->push_back(*range);
    }
  }
  if (!o.metrics_listen.empty()) {
    auto metrics_listen = split_host_port(o.metrics_listen, "metrics-listen");
    if (!metrics_listen) return metrics_listen.error();
    auto metrics_address = address_of(metrics_listen->first, "metrics-listen");
    if (!metrics_address) return metrics_address.error();
    settings.metrics_listen_host = *metrics_address;
    settings.metrics_listen_port = metrics_listen->second;
  }
  for (const core::Status& checked : {server::HttpServer::check(settings), check_audit_log(o.audit_log),
                                      check_data_dir(o), check_master_key(o)}) {
    if (!checked) return checked.error();
  }
  return plan;
}

// `membraned check-config`: what `serve` would refuse, found without starting or creating anything.
int check_config(const Options& o) {
  auto plan = plan_serve(o);
  if (!plan) return fail(explained(plan.error(), o));
  std::error_code ec;
  std::cout << "membraned: the configuration is valid" << (o.config.empty() ? "" : " (" + o.config + ")")
            << ": listen " << o.listen << (o.tls_cert.empty() ? " (plain HTTP)" : " (HTTPS)")
            << ", authority " << (o.authority.empty() ? "the listen address" : o.authority)
            << ", data directory " << fs::absolute(o.data_dir, ec).lexically_normal().string()
            << (fs::exists(o.data_dir, ec) ? "" : " (to be created: --init)") << std::endl;
  return 0;
}

int serve(const Options& o) {
  ::umask(077);  // the database, its WAL and every file written here are the service's alone
  auto plan = plan_serve(o);
  if (!plan) return fail(explained(plan.error(), o));
  server::ServerSettings& settings = plan->settings;
  settings.aws_config = plan->aws_config ? &*plan->aws_config : nullptr;
  // A port in use or not allowed is found before the data directory and the store are made.
  if (auto bindable = server::HttpServer::check_can_listen(settings); !bindable)
    return fail(bindable.error().message);
  std::error_code ec;
  const bool new_data_dir = !fs::exists(o.data_dir, ec);
  auto store = open_store(o, settings.store_threads);
  if (!store) return fail(store.error().message);
  std::cout << "membraned: " << opened_store(o, new_data_dir) << std::endl;
  std::string authority = o.authority.empty() ? o.listen : o.authority;
  api::Api api(**store, {.authority = authority,
                         .max_timeout_ms = o.upstream_timeout_ms,
                         .aws_config = settings.aws_config,
                         .count_cut = !o.audit_log.empty()});
  const auto listen_host = settings.listen_host;

  std::mutex log_mutex;
  server::HttpServer server(settings, api, [&log_mutex](const std::string& line) {
    // One write per line (stderr is unbuffered): lines from several threads never interleave.
    std::string out;
    out.reserve(line.size() + 1);
    out.append(line).push_back('\n');
    std::lock_guard lock(log_mutex);
    std::fwrite(out.data(), 1, out.size(), stderr);
  });
  if (auto s = server.start(); !s) return fail(s.error().message);
  if (o.authority.empty()) {
    authority = host_for_url(plan->listen_name) + ":" + std::to_string(server.port());
    api.set_authority(authority);
  }
  warn_if_unreachable_authority(authority);
  // Only on a store where no tenant was ever made; of several instances starting at once on an
  // empty shared store, exactly one makes it (and writes the file).
  auto first_tenant = api.create_first_tenant();
  if (!first_tenant) return fail(first_tenant.error().message);
  if (*first_tenant) {
    fs::path path = fs::path(o.data_dir) / "first-tenant.json";
    if (auto s = write_private_file(path, (*first_tenant)->dump(2) + "\n"); !s) return fail(s.error().message);
    std::cout << "membraned: created the first tenant; its capabilities are in " << path.string() << "\n";
  }

  std::cout << "membraned " << core::kVersion << " listening on "
            << (settings.tls_cert_file ? "https://" : "http://") << host_for_url(listen_host) << ":"
            << server.port() << " (authority " << authority << ")" << std::endl;
  if (auto port = server.metrics_port()) {
    std::cout << "membraned: metrics on http://" << host_for_url(*settings.metrics_listen_host) << ":" << *port
              << "/metrics" << std::endl;
  }
  if (settings.aws_config) {
    std::string names;
    for (const std::string& name : settings.aws_config->profile_names()) names += (names.empty() ? "" : ", ") + name;
    std::cout << "membraned: AWS profiles from " << o.aws_config << ": " << (names.empty() ? "none" : names)
              << std::endl;
  }
  server.run();
  std::cout << "membraned: stopped" << std::endl;
  return 0;
}

int tenant_create(const Options& o) {
  ::umask(077);
  std::string authority = o.authority.empty() ? o.listen : o.authority;
  if (auto s = check_authority(authority); !s) return fail(explained(s.error(), o));
  warn_if_unreachable_authority(authority);
  if (auto s = check_data_dir(o); !s) return fail(explained(s.error(), o));
  std::error_code ec;
  const bool new_data_dir = !fs::exists(o.data_dir, ec);
  auto store = open_store(o, 1);
  if (!store) return fail(store.error().message);
  api::Api api(**store, {authority, o.upstream_timeout_ms});
  auto tenant = api.create_tenant();
  if (!tenant) return fail(tenant.error().message);
  // On stderr: stdout is the tenant's JSON alone.
  std::cerr << "membraned: tenant " << tenant->value("id", "") << " created in "
            << opened_store(o, new_data_dir) << "\n";
  std::cout << tenant->dump(2) << std::endl;
  return 0;
}

// The flags stay on the top-level command, so that a --config file and the MEMBRANED_* variables
// read the same way whichever subcommand runs (CLI11 reads a config file's top-level keys into
// the top-level command only). Each subcommand's --help lists the ones it takes.
std::function<std::string()> flags_taken(const CLI::App& app, std::vector<std::string> names) {
  return [&app, names = std::move(names)] {
    std::string text = "Flags (each also from the environment variable shown, or as NAME = VALUE in the --config file):\n";
    const CLI::Formatter formatter;
    for (const std::string& name : names) {
      if (const CLI::Option* option = app.get_option_no_throw("--" + name)) text += formatter.make_option(option, false);
    }
    return text;
  };
}

}  // namespace

int main(int argc, char** argv) {
  membraned::storage::keep_freed_memory_for_reuse();
  CLI::App app{"membraned: a capability membrane service that signs and proxies requests to AWS", "membraned"};
  app.set_version_flag("--version", std::string("membraned ") + membraned::core::kVersion + " (commit " +
                                        membraned::core::kCommit + ")");
  Options o;
  // Read after the command line and the environment (server/config_file.hpp), which win over it.
  app.add_option("--config", o.config,
                 "TOML file (INI if its name ends in .ini) whose top-level keys are the long flag names; the "
                 "command line, then the environment, win over it")
      ->envname("MEMBRANED_CONFIG")
      ->type_name("FILE");
  app.require_subcommand(1);
  app.fallthrough();
  add_common(app, o);
  add_serve(app, o);
  auto* serve_cmd = app.add_subcommand("serve", "Run the service");
  auto* check_cmd = app.add_subcommand(
      "check-config",
      "Check the flags, environment and --config file as serve would, without starting or creating "
      "anything; exit 0 when serve would start, 1 with the reason otherwise");
  auto* tenant_cmd = app.add_subcommand("tenant", "Manage tenants");
  auto* tenant_create_cmd = tenant_cmd->add_subcommand("create", "Create a tenant and print its capabilities as JSON");
  tenant_cmd->require_subcommand(1);
  const std::vector<std::string> common = {"config",
                                           "data-dir",
                                           "init",
                                           "store",
                                           "db-connect-timeout-ms",
                                           "db-statement-timeout-ms",
                                           "authority",
                                           "max-membranes-per-tenant",
                                           "max-grants-per-tenant",
                                           "max-stored-bytes-per-tenant"};
  std::vector<std::string> serve_flags = common;
  for (const CLI::Option* option : app.get_options()) {
    const std::string name = option->get_single_name();
    if (std::find(serve_flags.begin(), serve_flags.end(), name) == serve_flags.end() && name != "help" &&
        name != "version") {
      serve_flags.push_back(name);
    }
  }
  serve_cmd->footer(flags_taken(app, serve_flags));
  check_cmd->footer(flags_taken(app, serve_flags));
  std::vector<std::string> tenant_flags = common;
  tenant_flags.push_back("listen");  // the authority when --authority is not given
  tenant_create_cmd->footer(flags_taken(app, tenant_flags));
  server::AdminCommand admin(app, [&o] { return store_settings(o, 2); }, [&o] { return o.audit_log; });
  admin.command()->footer(flags_taken(app, {"config", "data-dir", "store", "db-connect-timeout-ms",
                                            "db-statement-timeout-ms"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // Usage errors exit 2, as most Unix tools do, not with CLI11's own codes (103-110).
    std::cerr << "membraned: " << membraned::core::explain_parse_error(app, e, {argv + 1, argv + argc})
              << "\nRun with --help for more information.\n";
    return kExitUsage;
  }
  try {
    if (!o.config.empty()) {
      auto applied = membraned::server::apply_config_file(app, o.config);
      if (!applied) return fail(applied.error().message);
      o.from_config_file = std::move(*applied);
    }
    stderr_format =
        membraned::server::log_format_named(o.log_format).value_or(membraned::server::LogFormat::text);
    if (check_cmd->parsed()) return check_config(o);
    if (serve_cmd->parsed()) return serve(o);
    if (tenant_create_cmd->parsed()) return tenant_create(o);
    if (admin.parsed()) return admin.run();
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return 1;
}
