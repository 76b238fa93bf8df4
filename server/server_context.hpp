// What every connection of one server shares: the settings, the API, the log, the audit log, the
// upstream client, the thread pool for store calls that wait on the network, the metrics, the
// credentials provider, and what a graceful stop needs. Owned by HttpServer; sessions hold a reference.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <cstdint>
#include <optional>
#include <list>
#include <map>
#include <utility>
#include <variant>
#include <memory>
#include <mutex>
#include <string>

#include "api/api.hpp"
#include "core/sigv4.hpp"
#include "server/audit_log.hpp"
#include "server/credentials_provider.hpp"
#include "server/http_server.hpp"
#include "server/metrics.hpp"
#include "server/net.hpp"
#include "server/upstream_client.hpp"

namespace membraned::server {

// The connections the service holds at once, in all (--max-connections) and from one client
// address (--max-connections-per-address); 0 is no limit. Each connection holds a Slot for its
// life; a connection refused one is answered 503 and closed at once.
class ConnectionGate {
 public:
  ConnectionGate(std::size_t total, std::size_t per_address) : total_limit_(total), per_address_limit_(per_address) {}

  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)), address_(other.address_) {}
    Slot& operator=(Slot&&) = delete;
    Slot(const Slot&) = delete;
    ~Slot() {
      if (gate_ != nullptr) gate_->release(address_);
    }
    // The connection's peer (unspecified for a connection that went through no gate).
    const net::ip::address& address() const { return address_; }

   private:
    friend class ConnectionGate;
    Slot(ConnectionGate* gate, const net::ip::address& address) : gate_(gate), address_(address) {}
    ConnectionGate* gate_ = nullptr;
    net::ip::address address_;
  };

  enum class Refusal { total, address };
  // A slot for a connection from `address`, or which limit refused it.
  std::variant<Slot, Refusal> admit(const net::ip::address& address);

 private:
  void release(const net::ip::address& address);

  const std::size_t total_limit_;
  const std::size_t per_address_limit_;
  std::mutex mutex_;
  std::size_t open_ = 0;
  std::map<net::ip::address, std::size_t> per_address_;
};

// The request bodies the service holds in memory at once, in all (--max-buffered-bodies): a
// request reserves the bytes it may send before its body is read, and gives them back when its
// answer is done. A request that finds no room is answered 503 without reading its body.
class BodyBudget {
 public:
  explicit BodyBudget(std::uint64_t limit) : limit_(limit) {}

  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept : budget_(std::exchange(other.budget_, nullptr)), bytes_(other.bytes_) {}
    Lease& operator=(Lease&& other) noexcept {
      if (this != &other) {
        give_back();
        budget_ = std::exchange(other.budget_, nullptr);
        bytes_ = other.bytes_;
      }
      return *this;
    }
    ~Lease() { give_back(); }

   private:
    friend class BodyBudget;
    Lease(BodyBudget* budget, std::uint64_t bytes) : budget_(budget), bytes_(bytes) {}
    void give_back() {
      if (budget_ != nullptr) budget_->used_ -= bytes_;
      budget_ = nullptr;
    }
    BodyBudget* budget_ = nullptr;
    std::uint64_t bytes_ = 0;
  };

  // Room for `bytes` more, or none. 0: no limit.
  std::optional<Lease> reserve(std::uint64_t bytes) {
    if (limit_ == 0) return Lease();
    std::uint64_t used = used_.load();
    do {
      if (used + bytes > limit_) return std::nullopt;
    } while (!used_.compare_exchange_weak(used, used + bytes));
    return Lease(this, bytes);
  }
  std::uint64_t used() const { return used_.load(); }

 private:
  const std::uint64_t limit_;
  std::atomic<std::uint64_t> used_{0};
};

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
  // Runs the API's writes on a local store (ServerSettings::write_threads); none with PostgreSQL.
  std::unique_ptr<net::thread_pool> write_pool;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> active_sessions{0};
  core::sigv4::SigningKeyCache key_cache;
  Metrics metrics;
  // contract §12, when --audit-log is given (HttpServer::start opens it). After the log and the
  // metrics, which its writer reports to: it stops before they go.
  std::unique_ptr<AuditLog> audit;
  ConnectionGate connections;
  BodyBudget bodies;
  // Contract §9: the operator's profiles. The environment is read at each use, so rotated
  // credentials are seen; fetched ones are cached per source and refreshed off the I/O path.
  CredentialsProvider credentials;

  void track(const std::shared_ptr<Stoppable>& session);
  void notify_stopping();
  // A line of the service's own (not a request's) in the log, in its format: `level` is info,
  // warning or error.
  void log_event(std::string_view level, std::string_view message) const;

 private:
  std::mutex sessions_mutex_;
  std::list<std::weak_ptr<Stoppable>> sessions_;
};

}  // namespace membraned::server
