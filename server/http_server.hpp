// The HTTP/1.1 front of membraned (Boost.Beast), plain or TLS: starts the listeners, runs the
// I/O threads and stops gracefully. Beast and Asio stay out of this header (they are slow to
// compile); the units behind it are listener, session, request_handler, invocation and
// upstream_client.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/api.hpp"
#include "core/address_policy.hpp"
#include "core/aws_config.hpp"
#include "core/result.hpp"
#include "server/request_dispatch.hpp"

namespace membraned::server {

struct ServerSettings {
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 8080;  // 0: any free port (see HttpServer::port)
  std::optional<std::string> tls_cert_file;
  std::optional<std::string> tls_key_file;
  bool allow_plain_http = false;  // plain HTTP on a non-loopback address
  std::size_t threads = 1;
  std::size_t header_limit = 16 * 1024;
  std::size_t management_body_limit = 64 * 1024;
  std::size_t invoke_body_limit = 6 * 1024 * 1024;
  std::chrono::milliseconds idle_timeout{30000};   // keep-alive idle, and reading a request's headers
  std::chrono::milliseconds read_timeout{30000};   // reading a request's body
  std::chrono::milliseconds write_timeout{30000};  // writing an answer
  std::chrono::milliseconds shutdown_grace{30000}; // in-flight requests get this long on SIGTERM
  std::size_t max_connections = 16384;             // held at once, in all; 0: no limit
  std::size_t max_connections_per_address = 1024;  // held at once from one client address; 0: no limit
  std::uint64_t max_buffered_bodies = 256 * 1024 * 1024;  // request bodies held at once, in bytes; 0: no limit
  std::uint64_t upstream_timeout_ms = 30000;       // the most an export's timeoutMs may be
  bool metrics = false;                            // GET /metrics on the service's own listener
  std::optional<std::string> metrics_listen_host;  // and/or on a listener of its own (plain HTTP)
  std::uint16_t metrics_listen_port = 0;
  std::vector<core::Cidr> allow_upstream;  // contract §10: ranges opened for exports
  std::vector<core::Cidr> deny_upstream;   // and ranges closed (deny wins)
  // contract §11: peers whose X-Forwarded-For names the requester (a load balancer in front).
  std::vector<core::Cidr> trusted_proxies;
  // contract §12: the audit log's file ("-": standard output); none: no audit log.
  std::optional<std::string> audit_log;
  LogFormat log_format = LogFormat::text;       // of the access log and the service's own lines
  bool log_health_checks = false;               // GET /healthz has an access-log line too
  const core::AwsConfig* aws_config = nullptr;  // contract §9 profiles; not owned
  // Threads that run the API's store calls when the store waits on the network (PostgreSQL),
  // so that no I/O thread ever does; 0: as many as --threads. Unused for a local store.
  std::size_t store_threads = 0;
  // Threads that make the API's writes on a local store (SQLite) and wait for its durable
  // commits, so that no I/O thread waits for the disk and concurrent writes can share one commit
  // (storage/sqlite/group_commit.hpp). 0: writes run on the I/O threads. Unused with PostgreSQL,
  // whose store threads make every call.
  std::size_t write_threads = 32;
  // A store call that waited this long for a store thread is not made: 503 at once (the
  // requester has likely given up, and the backlog must not outlive an outage).
  std::chrono::milliseconds store_queue_timeout{10000};
};

// One line per request; never a token or a secret (the capability appears as Token::log_id()).
using RequestLogger = std::function<void(const std::string& line)>;

class HttpServer {
 public:
  HttpServer(ServerSettings settings, api::Api& api, RequestLogger log);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // What start() would refuse about `settings` without binding or creating anything: the
  // addresses, the plain-HTTP rule, the TLS pair (it must load and match).
  static core::Status check(const ServerSettings& settings);
  // Whether the listening addresses can be bound now (a port in use, a port below 1024 for a
  // user without the right): each is bound and let go at once. Port 0 always can.
  static core::Status check_can_listen(const ServerSettings& settings);

  // Loads TLS material, checks the plain-HTTP rule, opens the audit log, binds and listens.
  core::Status start();
  std::uint16_t port() const;  // the bound port
  std::optional<std::uint16_t> metrics_port() const;  // the metrics listener's, if any
  // Serves on `threads` threads until SIGTERM or SIGINT, then stops accepting, lets in-flight
  // requests finish (up to shutdown_grace), writes the audit log's last records and returns.
  // SIGHUP reads the TLS certificate and key again (new connections get the new pair; a pair
  // that does not load is logged and the old one kept); SIGUSR1 reopens the audit log's file.
  // Neither ever stops the service.
  void run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace membraned::server
