#include "server/upstream_client.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <algorithm>

#include "core/tls_verification.hpp"

namespace membraned::server {

namespace {

Clock::time_point earlier(Clock::time_point a, Clock::time_point b) { return std::min(a, b); }

// One connect, on the new connection's strand: the resolution is bounded by a timer, every
// socket step by the stream's own expiry, each within the limits.
class Connector : public std::enable_shared_from_this<Connector> {
 public:
  Connector(UpstreamClient& client, UpstreamEndpoint endpoint, ConnectLimits limits, bool checked, ConnectDone done)
      : client_(client),
        endpoint_(std::move(endpoint)),
        limits_(limits),
        checked_(checked),
        done_(std::move(done)),
        connection_(std::make_shared<UpstreamConnection>(client.io_context())),
        resolver_(connection_->strand),
        resolve_timer_(connection_->strand) {}

  void start() {
    net::dispatch(connection_->strand, [self = shared_from_this()] {
      self->resolve_timer_.expires_at(self->step_deadline());
      self->resolve_timer_.async_wait([self](beast::error_code ec) {
        if (ec || self->resolved_) return;
        self->resolve_timed_out_ = true;
        self->resolver_.cancel();
      });
      self->resolver_.async_resolve(self->endpoint_.host, std::to_string(self->endpoint_.port),
                                    beast::bind_front_handler(&Connector::on_resolve, self));
    });
  }

 private:
  Clock::time_point step_deadline() const { return earlier(Clock::now() + limits_.step_timeout, limits_.deadline); }

  void on_resolve(beast::error_code ec, tcp::resolver::results_type results) {
    resolved_ = true;
    resolve_timer_.cancel();
    if (resolve_timed_out_) return fail({ConnectStep::resolve, beast::error::timeout, {}});
    if (ec) return fail({ConnectStep::resolve, ec, {}});
    std::vector<tcp::endpoint> allowed;
    std::optional<core::Error> refusal;
    for (const auto& entry : results) {
      // On the addresses actually connected to: a name that now resolves to a closed address
      // (DNS rebinding) is not called.
      auto verdict = checked_ ? client_.address_policy().check(to_ip_address(entry.endpoint().address()), endpoint_.port)
                              : core::ok_status();
      if (verdict) {
        allowed.push_back(entry.endpoint());
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
  tcp::resolver resolver_;
  net::steady_timer resolve_timer_;
  bool resolved_ = false;
  bool resolve_timed_out_ = false;
};

// The export-time check of a name: resolved on the requester's executor, bounded by a timer.
class NameCheck : public std::enable_shared_from_this<NameCheck> {
 public:
  NameCheck(const core::UpstreamAddressPolicy& policy, std::uint16_t port, net::any_io_executor executor,
            std::function<void(core::Status)> done)
      : policy_(policy), port_(port), resolver_(executor), timer_(executor), done_(std::move(done)) {}

  void start(const std::string& host, std::chrono::milliseconds timeout) {
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->resolver_.cancel();
    });
    resolver_.async_resolve(host, std::to_string(port_),
                            [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type results) {
                              self->timer_.cancel();
                              self->on_resolve(ec, results);
                            });
  }

 private:
  void on_resolve(beast::error_code ec, const tcp::resolver::results_type& results) {
    if (!ec) {
      for (const auto& entry : results) {
        auto verdict = policy_.check(to_ip_address(entry.endpoint().address()), port_);
        if (!verdict) return done_(verdict);
      }
    }
    done_(core::ok_status());
  }

  const core::UpstreamAddressPolicy& policy_;
  std::uint16_t port_;
  tcp::resolver resolver_;
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

UpstreamClient::UpstreamClient(net::io_context& ioc) : ioc_(ioc) {}

core::Status UpstreamClient::load_default_tls() {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
  if (auto configured = core::configure_tls_client(context->native_handle()); !configured) return configured;
  beast::error_code ec;
  context->set_default_verify_paths(ec);
  default_tls_ = std::move(context);
  return core::ok_status();
}

std::shared_ptr<ssl::context> UpstreamClient::tls_for(const std::optional<core::TlsOptions>& options) const {
  const bool custom = options && (!options->ca.empty() || !options->cert.empty() || !options->reject_unauthorized);
  if (!custom) return default_tls_;
  auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
  if (!core::configure_tls_client(context->native_handle())) return nullptr;
  beast::error_code ec;
  if (!options->ca.empty()) {
    context->add_certificate_authority(net::buffer(options->ca), ec);  // replaces the default store
  } else {
    context->set_default_verify_paths(ec);
  }
  if (!ec && !options->cert.empty()) {
    context->use_certificate_chain(net::buffer(options->cert), ec);
    if (!ec) context->use_private_key(net::buffer(options->key), ssl::context::pem, ec);
  }
  if (ec) return nullptr;
  if (!options->reject_unauthorized) context->set_verify_mode(ssl::verify_none);
  return context;
}

void UpstreamClient::connect(UpstreamEndpoint endpoint, ConnectLimits limits, bool checked, ConnectDone done) {
  std::make_shared<Connector>(*this, std::move(endpoint), limits, checked, std::move(done))->start();
}

void UpstreamClient::check_name(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout,
                                net::any_io_executor executor, std::function<void(core::Status)> done) {
  if (auto verdict = policy_.check_without_dns(host, port)) return done(*verdict);
  std::make_shared<NameCheck>(policy_, port, std::move(executor), std::move(done))->start(host, timeout);
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
    if (now - since < kMaxIdleTime) return connection;
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
