// What every connection of one server shares: the settings, the API, the log, the upstream
// client, the thread pool for store calls that wait on the network, the metrics, the credentials
// provider, and what a graceful stop needs. Owned by HttpServer; sessions hold a reference.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <string>

#include "api/api.hpp"
#include "core/sigv4.hpp"
#include "server/credentials_provider.hpp"
#include "server/http_server.hpp"
#include "server/metrics.hpp"
#include "server/net.hpp"
#include "server/upstream_client.hpp"

namespace membraned::server {

// A connection that wants to hear about a graceful stop (it closes when idle).
class Stoppable {
 public:
  virtual ~Stoppable() = default;
  virtual void on_server_stopping() = 0;
};

struct ServerContext {
  // Keeps a reference to `ioc` and uses it only later: the io_context may be constructed after
  // this (HttpServer makes it so, for the order of destruction).
  ServerContext(ServerSettings settings, api::Api& api, RequestLogger log, net::io_context& ioc);

  ServerSettings settings;
  api::Api& api;
  RequestLogger log;
  net::io_context& ioc;
  UpstreamClient upstream;
  // Runs the store's calls when they may wait on the network (see RequestHandler::off_io_thread).
  std::unique_ptr<net::thread_pool> store_pool;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> active_sessions{0};
  core::sigv4::SigningKeyCache key_cache;
  Metrics metrics;
  // Contract §9: the operator's profiles. The environment is read at each use, so rotated
  // credentials are seen; fetched ones are cached per source and refreshed off the I/O path.
  CredentialsProvider credentials;

  void track(const std::shared_ptr<Stoppable>& session);
  void notify_stopping();

 private:
  std::mutex sessions_mutex_;
  std::list<std::weak_ptr<Stoppable>> sessions_;
};

}  // namespace membraned::server
