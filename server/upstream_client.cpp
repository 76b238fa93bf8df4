#include "server/upstream_client.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/tls_verification.hpp"

namespace membraned::server {

namespace {

Clock::time_point earlier(Clock::time_point a, Clock::time_point b) { return std::min(a, b); }

// An address written as one (in any spelling a resolver takes as one): it needs no lookup.
std::optional<net::ip::address> literal_address(const std::string& host) {
  auto ip = core::IpAddress::parse(host);
  if (!ip) ip = core::IpAddress::parse_numeric_ipv4(host);
  if (!ip) return std::nullopt;
  if (ip->v4) {
    net::ip::address_v4::bytes_type bytes;
    std::copy_n(ip->bytes.begin(), bytes.size(), bytes.begin());
    return net::ip::address(net::ip::address_v4(bytes));
  }
  net::ip::address_v6::bytes_type bytes;
  std::copy_n(ip->bytes.begin(), bytes.size(), bytes.begin());
  return net::ip::address(net::ip::address_v6(bytes));
}

// One connect, on the new connection's strand: the resolution is bounded by a timer of its own
// (the lookup may be queued in the resolver's pool, or stuck in getaddrinfo: the deadline holds
// all the same), every socket step by the stream's own expiry, each within the limits.
class Connector : public std::enable_shared_from_this<Connector> {
 public:
  Connector(UpstreamClient& client, UpstreamEndpoint endpoint, ConnectLimits limits, bool checked, ConnectDone done)
      : client_(client),
        endpoint_(std::move(endpoint)),
        limits_(limits),
        checked_(checked),
        done_(std::move(done)),
        connection_(std::make_shared<UpstreamConnection>(client.io_context())),
        resolve_timer_(connection_->strand) {}

  void start() {
    net::dispatch(connection_->strand, [self = shared_from_this()] {
      // An IP address never waits for the resolver.
      if (auto address = literal_address(self->endpoint_.host)) return self->on_addresses({*address});
      // The timer holds the connector while it waits; the lookup's completion does not.
      self->resolve_timer_.expires_at(self->step_deadline());
      self->resolve_timer_.async_wait([self](beast::error_code ec) {
        if (ec || self->resolved_) return;
        self->resolved_ = true;
        self->lookup_.reset();  // withdrawn: a queued lookup nobody waits for is not made
        self->fail({ConnectStep::resolve, beast::error::timeout, {}});
      });
      std::weak_ptr<Connector> weak = self;
      self->lookup_ = self->client_.resolver().resolve(
          self->endpoint_.host, self->endpoint_.tenant, self->connection_->strand,
          [weak](beast::error_code ec, HostResolver::Addresses addresses) {
            if (auto connector = weak.lock()) connector->on_resolve(ec, std::move(addresses));
          });
    });
  }

 private:
  Clock::time_point step_deadline() const { return earlier(Clock::now() + limits_.step_timeout, limits_.deadline); }

  void on_resolve(beast::error_code ec, HostResolver::Addresses addresses) {
    if (resolved_) return;
    resolved_ = true;
    lookup_.reset();
    resolve_timer_.cancel();
    if (ec) return fail({ConnectStep::resolve, ec, {}});
    on_addresses(addresses);
  }

  void on_addresses(const HostResolver::Addresses& addresses) {
    std::vector<tcp::endpoint> allowed;
    std::optional<core::Error> refusal;
    for (const auto& address : addresses) {
      // On the addresses actually connected to: a name that now resolves to a closed address
      // (DNS rebinding) is not called.
      auto verdict = checked_ ? client_.address_policy().check(to_ip_address(address), endpoint_.port)
                              : core::ok_status();
      if (verdict) {
        allowed.emplace_back(address, endpoint_.port);
      } else if (!refusal) {
        refusal = verdict.error();
      }
    }
    if (allowed.empty()) {
      return fail({ConnectStep::refused, {}, refusal ? refusal->message : "the upstream has no address"});
    }
    if (endpoint_.https) {
      auto& tls = connection_->tls.emplace(connection_->strand, *endpoint_.tls);
      // The one policy capi follows too: SNI for a name, the certificate issued for this host.
      if (!core::verify_peer_name(tls.native_handle(), endpoint_.host)) {
        return fail({ConnectStep::handshake, net::error::invalid_argument, {}});
      }
    } else {
      connection_->plain.emplace(connection_->strand);
    }
    connection_->lowest().expires_at(step_deadline());
    connection_->lowest().async_connect(allowed, beast::bind_front_handler(&Connector::on_connect, shared_from_this()));
  }

  void on_connect(beast::error_code ec, const tcp::endpoint&) {
    if (ec) return fail({ConnectStep::connect, ec, {}});
    beast::error_code ignored;
    connection_->lowest().socket().set_option(tcp::no_delay(true), ignored);
    if (!connection_->tls) return succeed();
    connection_->lowest().expires_at(step_deadline());
    connection_->tls->async_handshake(ssl::stream_base::client,
                                      beast::bind_front_handler(&Connector::on_handshake, shared_from_this()));
  }

  void on_handshake(beast::error_code ec) {
    if (ec) return fail({ConnectStep::handshake, ec, {}});
    succeed();
  }

  void succeed() { done_(std::move(connection_), std::nullopt); }

  void fail(ConnectFailure failure) {
    if (connection_->open()) connection_->close();
    done_(nullptr, std::move(failure));
  }

  UpstreamClient& client_;
  UpstreamEndpoint endpoint_;
  ConnectLimits limits_;
  bool checked_;
  ConnectDone done_;
  std::shared_ptr<UpstreamConnection> connection_;
  HostResolver::Lookup lookup_;
  net::steady_timer resolve_timer_;
  bool resolved_ = false;
};

// The export-time check of a name: resolved in the pool, on the requester's executor, bounded by
// a timer (a name that does not resolve in time passes: every invocation checks again).
class NameCheck : public std::enable_shared_from_this<NameCheck> {
 public:
  NameCheck(const core::UpstreamAddressPolicy& policy, std::uint16_t port, net::any_io_executor executor,
            std::function<void(core::Status)> done)
      : policy_(policy), port_(port), executor_(executor), timer_(executor), done_(std::move(done)) {}

  void start(HostResolver& resolver, const std::string& host, const std::string& tenant,
             std::chrono::milliseconds timeout) {
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec) return;
      self->lookup_.reset();
      self->finish(core::ok_status());
    });
    std::weak_ptr<NameCheck> weak = shared_from_this();
    lookup_ = resolver.resolve(host, tenant, executor_, [weak](beast::error_code ec, HostResolver::Addresses addresses) {
      auto self = weak.lock();
      if (!self) return;
      self->lookup_.reset();
      self->timer_.cancel();
      self->on_resolve(ec, addresses);
    });
  }

 private:
  void on_resolve(beast::error_code ec, const HostResolver::Addresses& addresses) {
    if (!ec) {
      for (const auto& address : addresses) {
        auto verdict = policy_.check(to_ip_address(address), port_);
        if (!verdict) return finish(verdict);
      }
    }
    finish(core::ok_status());
  }

  void finish(core::Status verdict) {
    if (!done_) return;
    auto done = std::move(done_);
    done_ = nullptr;
    done(std::move(verdict));
  }

  const core::UpstreamAddressPolicy& policy_;
  std::uint16_t port_;
  net::any_io_executor executor_;
  HostResolver::Lookup lookup_;
  net::steady_timer timer_;
  std::function<void(core::Status)> done_;
};

}  // namespace

http::request<http::string_body> make_request(std::string_view method, std::string_view target,
                                              const core::Headers& headers, std::string body) {
  http::request<http::string_body> request;
  request.version(11);
  request.method_string(method);
  request.target(target);
  for (const core::Header& h : headers) request.insert(h.name, h.value);
  request.body() = std::move(body);
  return request;
}

void UpstreamConnection::close() {
  beast::error_code ignored;
  lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
  lowest().socket().close(ignored);
}

// As nginx's keep-alive close handler does: a non-blocking peek at the socket. Bytes mean an
// upstream that spoke unasked (they would be taken for the next request's answer); zero means it
// closed its side. For TLS, records already taken from the socket count too.
bool UpstreamConnection::silent_while_idle() {
  if (!open() || !lowest().socket().is_open()) return false;
  char byte = 0;
  const ssize_t got = ::recv(lowest().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (got >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return false;
  if (tls) {
    SSL* ssl = tls->native_handle();
    if (SSL_has_pending(ssl) == 1 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0) return false;
  }
  return true;
}

UpstreamClient::UpstreamClient(net::io_context& ioc, HostResolver::Limits resolver_limits)
    : ioc_(ioc), resolver_(resolver_limits) {}

core::Status UpstreamClient::load_default_tls() {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
  if (auto configured = core::configure_tls_client(context->native_handle()); !configured) return configured;
  beast::error_code ec;
  context->set_default_verify_paths(ec);
  default_tls_ = std::move(context);
  return core::ok_status();
}

UpstreamClient::ClientTls UpstreamClient::tls_for(const std::optional<core::TlsOptions>& options) {
  const bool custom = options && (!options->ca.empty() || !options->cert.empty() || !options->reject_unauthorized);
  if (!custom) return {default_tls_, {}};
  // Each field with its length before it, so that no two settings give the same text.
  core::Sha256Hasher hasher;
  for (const std::string* field : {&options->ca, &options->cert, &options->key}) {
    hasher.update(std::to_string(field->size()) + ":");
    hasher.update(*field);
  }
  hasher.update(options->reject_unauthorized ? "verify" : "no-verify");
  ClientTls tls{nullptr, core::hex_encode(core::digest_view(hasher.finish()))};
  {
    std::lock_guard lock(tls_mutex_);
    if (auto it = tls_contexts_.find(tls.identity); it != tls_contexts_.end()) {
      tls.context = it->second;
      return tls;
    }
  }
  // Made outside the lock (a CA bundle takes a while to load); two invocations racing make two,
  // and the first kept wins.
  auto context = make_tls_context(*options);
  if (!context) return tls;
  std::lock_guard lock(tls_mutex_);
  if (tls_contexts_.size() >= kMaxTlsContexts) tls_contexts_.erase(tls_contexts_.begin());
  tls.context = tls_contexts_.emplace(tls.identity, std::move(context)).first->second;
  return tls;
}

std::shared_ptr<ssl::context> UpstreamClient::make_tls_context(const core::TlsOptions& options) const {
  // A key the export check would refuse now (stored under earlier rules) is not used: each
  // handshake would sign with it on an I/O thread.
  if (!options.cert.empty() && !core::is_supported_tls_client_key(options.key)) return nullptr;
  auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
  if (!core::configure_tls_client(context->native_handle())) return nullptr;
  beast::error_code ec;
  if (!options.ca.empty()) {
    context->add_certificate_authority(net::buffer(options.ca), ec);  // replaces the default store
  } else {
    context->set_default_verify_paths(ec);
  }
  if (!ec && !options.cert.empty()) {
    context->use_certificate_chain(net::buffer(options.cert), ec);
    if (!ec) context->use_private_key(net::buffer(options.key), ssl::context::pem, ec);
  }
  if (ec) return nullptr;
  if (!options.reject_unauthorized) context->set_verify_mode(ssl::verify_none);
  return context;
}

void UpstreamClient::connect(UpstreamEndpoint endpoint, ConnectLimits limits, bool checked, ConnectDone done) {
  std::make_shared<Connector>(*this, std::move(endpoint), limits, checked, std::move(done))->start();
}

void UpstreamClient::check_name(const std::string& host, std::uint16_t port, const std::string& tenant,
                                net::any_io_executor executor, std::function<void(core::Status)> done) {
  if (auto verdict = policy_.check_without_dns(host, port)) return done(*verdict);
  std::make_shared<NameCheck>(policy_, port, executor, std::move(done))->start(resolver_, host, tenant, kNameCheckTimeout);
}

void UpstreamClient::stop() {
  resolver_.stop();
  drop_idle();
}

std::string UpstreamClient::pool_key(std::string_view tenant, bool https, std::string_view host,
                                     std::uint16_t port, std::string_view tls_identity) {
  // Neither a tenant id, nor a URI's host, nor a hex digest holds a space.
  return std::string(tenant) + " " + (https ? "https://" : "http://") + std::string(host) + ":" +
         std::to_string(port) + " " + std::string(tls_identity);
}

std::shared_ptr<UpstreamConnection> UpstreamClient::take_idle(const std::string& key) {
  std::lock_guard lock(idle_mutex_);
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  const auto now = Clock::now();
  while (!list.empty()) {
    auto [since, connection] = std::move(list.back());
    list.pop_back();
    --idle_count_;
    if (now - since < kMaxIdleTime && connection->silent_while_idle()) return connection;
    net::dispatch(connection->strand, [idle = connection] { idle->close(); });
  }
  return nullptr;
}

void UpstreamClient::keep_idle(const std::string& key, std::shared_ptr<UpstreamConnection> connection) {
  std::lock_guard lock(idle_mutex_);
  auto& list = idle_[key];
  if (list.size() >= kMaxIdlePerUpstream || idle_count_ >= kMaxIdle) {
    net::dispatch(connection->strand, [connection] { connection->close(); });
    return;
  }
  list.emplace_back(Clock::now(), std::move(connection));
  ++idle_count_;
}

void UpstreamClient::drop_idle() {
  decltype(idle_) dropped;
  {
    std::lock_guard lock(idle_mutex_);
    dropped.swap(idle_);
    idle_count_ = 0;
  }
}

}  // namespace membraned::server
