#include "server/http_server.hpp"

#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <ifaddrs.h>
#include <netinet/in.h>

#include <openssl/x509.h>

#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "core/time.hpp"
#include "server/listener.hpp"
#include "server/server_context.hpp"
#include "server/session.hpp"

namespace membraned::server {

namespace {

// Where the service itself answers: its listening address, or every local address when it
// listens on all of them (so an export cannot make it call itself).
std::vector<core::UpstreamAddressPolicy::Endpoint> own_endpoints(const net::ip::address& listen, std::uint16_t port) {
  std::vector<core::UpstreamAddressPolicy::Endpoint> own{{to_ip_address(listen), port}};
  if (!listen.is_unspecified()) return own;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return own;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    if (i->ifa_addr->sa_family == AF_INET) {
      net::ip::address_v4::bytes_type b;
      std::memcpy(b.data(), &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, b.size());
      own.push_back({to_ip_address(net::ip::address_v4(b)), port});
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      net::ip::address_v6::bytes_type b;
      std::memcpy(b.data(), &reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr, b.size());
      own.push_back({to_ip_address(net::ip::address_v6(b)), port});
    }
  }
  freeifaddrs(list);
  return own;
}

// TLS 1.2 and 1.3 with the operator's certificate chain and key.
core::Status load_server_tls(ssl::context& tls, const std::string& cert_file, const std::string& key_file) {
  tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
  // An encrypted key fails to load instead of OpenSSL asking for a pass phrase on a terminal.
  tls.set_password_callback([](std::size_t, ssl::context::password_purpose) { return std::string(); });
  beast::error_code ec;
  tls.use_certificate_chain_file(cert_file, ec);
  if (ec) return core::Error::invalid("tls-cert", "cannot load --tls-cert " + cert_file + ": " + ec.message());
  tls.use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) return core::Error::invalid("tls-key", "cannot load --tls-key " + key_file + ": " + ec.message());
  if (SSL_CTX_check_private_key(tls.native_handle()) != 1) {
    return core::Error::invalid("tls-key", "--tls-key does not belong to --tls-cert");
  }
  return core::ok_status();
}

// A context with the pair loaded, or why it does not load.
core::Result<std::shared_ptr<ssl::context>> server_tls(const ServerSettings& s) {
  auto tls = std::make_shared<ssl::context>(ssl::context::tls_server);
  if (auto loaded = load_server_tls(*tls, *s.tls_cert_file, *s.tls_key_file); !loaded) return loaded.error();
  return tls;
}

// "valid until Mar  3 10:00:00 2027 GMT", for the line that says which certificate is served.
std::string certificate_expiry(ssl::context& tls) {
  const X509* certificate = SSL_CTX_get0_certificate(tls.native_handle());
  if (certificate == nullptr) return "";
  BIO* out = BIO_new(BIO_s_mem());
  if (out == nullptr) return "";
  std::string text;
  if (ASN1_TIME_print(out, X509_get0_notAfter(certificate)) == 1) {
    char* data = nullptr;
    const long size = BIO_get_mem_data(out, &data);
    if (size > 0) text = "valid until " + std::string(data, static_cast<std::size_t>(size));
  }
  BIO_free(out);
  return text;
}

// What HttpServer::check and start refuse alike: the addresses, the plain-HTTP rule and the
// TLS pair (loaded, then dropped).
core::Status check_settings(const ServerSettings& s) {
  beast::error_code ec;
  auto address = net::ip::make_address(s.listen_host, ec);
  if (ec) return core::Error::invalid("listen", "--listen must be an IP address and port");
  const bool want_tls = s.tls_cert_file.has_value() || s.tls_key_file.has_value();
  if (want_tls && !(s.tls_cert_file && s.tls_key_file)) {
    return core::Error::invalid("tls", "--tls-cert and --tls-key must be given together");
  }
  if (!want_tls && !to_ip_address(address).is_loopback() && !s.allow_plain_http) {
    return core::Error::invalid(
        "listen",
        "plain HTTP is only served on loopback addresses: give --tls-cert and --tls-key, "
        "or --allow-plain-http");
  }
  if (s.metrics_listen_host) {
    net::ip::make_address(*s.metrics_listen_host, ec);
    if (ec) return core::Error::invalid("metrics-listen", "--metrics-listen must be an IP address and port");
  }
  if (want_tls) {
    if (auto tls = server_tls(s); !tls) return tls.error();
  }
  return core::ok_status();
}

// Binds `host`:`port` as the listener would, and lets go at once: a port in use or one the user
// may not bind is found before anything is created. Port 0 always binds.
core::Status check_bindable(const std::string& host, std::uint16_t port, const std::string& description) {
  if (port == 0) return core::ok_status();
  beast::error_code ec;
  const tcp::endpoint endpoint(net::ip::make_address(host, ec), port);
  if (ec) return core::ok_status();  // check_settings says why
  net::io_context ioc;
  tcp::acceptor probe(ioc);
  probe.open(endpoint.protocol(), ec);
  if (!ec) probe.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) probe.bind(endpoint, ec);
  if (ec) return core::Error::unavailable("cannot listen on " + description + ": " + ec.message());
  return core::ok_status();
}

}  // namespace

struct HttpServer::Impl {
  // The context is made before the io_context (it only keeps a reference to it) and outlives
  // it: sessions still queued when the io_context goes (a grace period that ran out) use it as
  // they are destroyed.
  Impl(ServerSettings settings, api::Api& api, RequestLogger log)
      : context(std::move(settings), api, std::move(log), ioc),
        ioc(static_cast<int>(std::max<std::size_t>(1, context.settings.threads))),
        service(
            ioc, [this](tcp::socket socket) { start_session(std::move(socket)); }, listener_log()),
        signals(ioc, SIGTERM, SIGINT),
        reload_signal(ioc, SIGHUP),   // reloads the TLS pair; never stops the service
        reopen_signal(ioc, SIGUSR1),  // caught even without an audit log: it never kills
        stop_check(ioc) {}

  // What still holds sessions or sockets goes while the io_context is there: pooled upstream
  // connections, and requests that waited for credentials when a grace period ran out.
  ~Impl() {
    context.upstream.stop();
    context.credentials.abandon_waiting();
  }

  ServerContext context;
  net::io_context ioc;
  // The TLS pair new connections get; SIGHUP replaces it. A session holds the one it began with,
  // so a reload never touches a connection already open.
  std::mutex tls_mutex;
  std::shared_ptr<ssl::context> tls;
  Listener service;
  std::optional<Listener> metrics;  // --metrics-listen
  net::signal_set signals;
  net::signal_set reload_signal;  // a renewed certificate
  net::signal_set reopen_signal;  // logrotate moved the audit log away
  net::steady_timer stop_check;
  Clock::time_point stop_deadline;

  bool serves_tls() const { return context.settings.tls_cert_file.has_value(); }

  std::shared_ptr<ssl::context> current_tls() {
    std::lock_guard lock(tls_mutex);
    return tls;
  }

  void start_session(tcp::socket socket) {
    if (context.stopping) return;
    auto slot = admit(socket);
    if (!slot) return;
    if (serves_tls()) {
      auto session =
          std::make_shared<TlsSession>(context, std::move(socket), current_tls(), std::move(*slot));
      context.track(session);
      return session->run();
    }
    auto session = std::make_shared<PlainSession>(context, std::move(socket), false, std::move(*slot));
    context.track(session);
    session->run();
  }

  void start_metrics_session(tcp::socket socket) {
    if (context.stopping) return;
    auto slot = admit(socket);
    if (!slot) return;
    auto session = std::make_shared<PlainSession>(context, std::move(socket), /*metrics_only=*/true, std::move(*slot));
    context.track(session);
    session->run();
  }

  // The connection's slot under the connection limits; without one it is answered 503 (a plain
  // HTTP answer, written without waiting: on a TLS port the client sees the connection close)
  // and closed.
  std::optional<ConnectionGate::Slot> admit(tcp::socket& socket) {
    beast::error_code ec;
    const auto peer = socket.remote_endpoint(ec);
    if (ec) return std::nullopt;
    auto admitted = context.connections.admit(peer.address());
    if (auto* slot = std::get_if<ConnectionGate::Slot>(&admitted)) return std::move(*slot);
    const bool total = std::get<ConnectionGate::Refusal>(admitted) == ConnectionGate::Refusal::total;
    context.metrics.connection_refused(total ? "total" : "address");
    if (!serves_tls()) {
      static const std::string kBody = api::Api::error_response(503, "Please try again soon").body.dump();
      static const std::string kAnswer = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                         "Cache-Control: no-store\r\nX-Membraned-Error: true\r\nConnection: close\r\nContent-Length: " +
                                         std::to_string(kBody.size()) + "\r\n\r\n" + kBody;
      socket.non_blocking(true, ec);
      socket.send(net::buffer(kAnswer), 0, ec);
    }
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
    return std::nullopt;
  }

  // SIGHUP: the certificate and key are read again from their files. A pair that does not load
  // is reported and the one in use stays; without TLS there is nothing to reload.
  void reload_tls_on_signal() {
    reload_signal.async_wait([this](beast::error_code ec, int) {
      if (ec) return;
      reload_tls();
      reload_tls_on_signal();
    });
  }

  void reload_tls() {
    if (!serves_tls()) {
      context.log_event("info", "SIGHUP: nothing to reload (no --tls-cert); the service goes on");
      return;
    }
    auto loaded = server_tls(context.settings);
    if (!loaded) {
      context.log_event("error", "SIGHUP: TLS reload failed, still serving the previous certificate: " +
                                     loaded.error().message);
      return;
    }
    const std::string expiry = certificate_expiry(**loaded);
    {
      std::lock_guard lock(tls_mutex);
      tls = std::move(*loaded);
    }
    context.log_event("info", "SIGHUP: TLS certificate reloaded from " + *context.settings.tls_cert_file +
                                  (expiry.empty() ? "" : " (" + expiry + ")") +
                                  "; new connections use it, open ones keep theirs");
  }

  void reopen_audit_log_on_signal() {
    reopen_signal.async_wait([this](beast::error_code ec, int) {
      if (ec) return;
      if (context.audit) context.audit->reopen();
      reopen_audit_log_on_signal();
    });
  }

  core::Status open_audit_log() {
    if (!context.settings.audit_log) return core::ok_status();
    auto opened = AuditLog::open(
        *context.settings.audit_log, kAuditQueueBytes,
        [this](AuditLog::Delivery delivery, std::uint64_t count) {
          context.metrics.audit_records(delivery == AuditLog::Delivery::written ? "written" : "dropped", count);
        },
        listener_log());
    if (!opened) return opened.error();
    context.audit = std::move(*opened);
    return core::ok_status();
  }

  Listener::Log listener_log() {
    return [this](const std::string& line) { context.log_event("error", line); };
  }

  void begin_stop() {
    if (context.stopping.exchange(true)) return;
    service.close();
    if (metrics) metrics->close();
    context.notify_stopping();
    stop_deadline = Clock::now() + context.settings.shutdown_grace;
    wait_for_sessions();
  }

  void wait_for_sessions() {
    if (context.active_sessions == 0 || Clock::now() >= stop_deadline) {
      ioc.stop();
      return;
    }
    stop_check.expires_after(std::chrono::milliseconds(20));
    stop_check.async_wait([this](beast::error_code) { wait_for_sessions(); });
  }
};

HttpServer::HttpServer(ServerSettings settings, api::Api& api, RequestLogger log)
    : impl_(std::make_unique<Impl>(std::move(settings), api, std::move(log))) {}

HttpServer::~HttpServer() = default;

core::Status HttpServer::check(const ServerSettings& settings) { return check_settings(settings); }

core::Status HttpServer::check_can_listen(const ServerSettings& s) {
  if (auto bindable =
          check_bindable(s.listen_host, s.listen_port, s.listen_host + ":" + std::to_string(s.listen_port));
      !bindable) {
    return bindable;
  }
  if (!s.metrics_listen_host) return core::ok_status();
  return check_bindable(
      *s.metrics_listen_host, s.metrics_listen_port,
      *s.metrics_listen_host + ":" + std::to_string(s.metrics_listen_port) + " for metrics");
}

core::Status HttpServer::start() {
  auto& s = impl_->context.settings;
  if (auto checked = check_settings(s); !checked) return checked;
  beast::error_code ec;
  const auto address = net::ip::make_address(s.listen_host, ec);
  if (s.tls_cert_file) {
    auto loaded = server_tls(s);
    if (!loaded) return loaded.error();
    impl_->tls = std::move(*loaded);
  }
  if (auto loaded = impl_->context.upstream.load_default_tls(); !loaded) return loaded;
  if (auto opened = impl_->open_audit_log(); !opened) return opened;
  const std::string where = s.listen_host + ":" + std::to_string(s.listen_port);
  if (auto listening = impl_->service.listen(tcp::endpoint(address, s.listen_port), where); !listening) {
    return listening;
  }
  impl_->context.upstream.set_address_policy(
      core::UpstreamAddressPolicy(s.allow_upstream, s.deny_upstream, own_endpoints(address, port())));
  if (s.metrics_listen_host) {
    auto metrics_address = net::ip::make_address(*s.metrics_listen_host, ec);
    if (ec) return core::Error::invalid("metrics-listen", "--metrics-listen must be an IP address and port");
    auto& metrics = impl_->metrics.emplace(
        impl_->ioc, [this](tcp::socket socket) { impl_->start_metrics_session(std::move(socket)); },
        impl_->listener_log());
    const std::string metrics_where = *s.metrics_listen_host + ":" + std::to_string(s.metrics_listen_port) + " for metrics";
    if (auto listening = metrics.listen(tcp::endpoint(metrics_address, s.metrics_listen_port), metrics_where);
        !listening) {
      return listening;
    }
  }
  return core::ok_status();
}

std::optional<std::uint16_t> HttpServer::metrics_port() const {
  if (!impl_->metrics) return std::nullopt;
  return impl_->metrics->port();
}

std::uint16_t HttpServer::port() const { return impl_->service.port(); }

void HttpServer::run() {
  impl_->signals.async_wait([this](beast::error_code ec, int) {
    if (!ec) impl_->begin_stop();
  });
  impl_->reload_tls_on_signal();
  impl_->reopen_audit_log_on_signal();
  impl_->service.accept();
  if (impl_->metrics) impl_->metrics->accept();
  std::vector<std::thread> threads;
  const std::size_t n = std::max<std::size_t>(1, impl_->context.settings.threads);
  for (std::size_t i = 1; i < n; ++i) threads.emplace_back([this] { impl_->ioc.run(); });
  impl_->ioc.run();
  for (auto& t : threads) t.join();
  if (impl_->context.store_pool) impl_->context.store_pool->join();
  if (impl_->context.write_pool) impl_->context.write_pool->join();
  // The I/O threads are done, so every record made is queued: the writer gets a bounded time to
  // write them.
  if (impl_->context.audit) impl_->context.audit->stop(kAuditDrainTimeout);
}

}  // namespace membraned::server
