#include "server/http_server.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <atomic>
#include <ctime>
#include <limits>
#include <list>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <type_traits>
#include <vector>

#include "core/address_policy.hpp"
#include "core/export_config.hpp"
#include "core/sigv4.hpp"
#include "core/upstream_request.hpp"
#include "server/credentials_provider.hpp"
#include "server/metrics.hpp"

namespace membraned::server {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// Initial read buffers, requester and upstream side: a typical request or answer header and a
// small body arrive in one read.
constexpr std::size_t kSessionBufferReserve = 8 * 1024;

std::string utc_now() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  char out[40];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms));
  return out;
}

core::IpAddress to_ip_address(const net::ip::address& address) {
  core::IpAddress ip;
  if (address.is_v4()) {
    auto b = address.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), ip.bytes.begin());
    ip.v4 = true;
  } else {
    auto b = address.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), ip.bytes.begin());
    ip.v4 = false;
  }
  return ip;
}

bool is_loopback(const net::ip::address& address) { return to_ip_address(address).is_loopback(); }

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
      const auto* in = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      net::ip::address_v4::bytes_type b;
      std::memcpy(b.data(), &in->sin_addr, b.size());
      own.push_back({to_ip_address(net::ip::address_v4(b)), port});
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      net::ip::address_v6::bytes_type b;
      std::memcpy(b.data(), &in6->sin6_addr, b.size());
      own.push_back({to_ip_address(net::ip::address_v6(b)), port});
    }
  }
  freeifaddrs(list);
  return own;
}

}  // namespace

// An upstream connection runs on a strand of its own, so that it can serve one invocation after
// another (from any requester's session) through the keep-alive pool; the invocation hops
// between that strand and the requester's for each step.
struct UpstreamConnection {
  explicit UpstreamConnection(net::io_context& ioc) : strand(net::make_strand(ioc)) {}
  net::strand<net::io_context::executor_type> strand;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
};

// Idle keep-alive connections to upstreams, by scheme, host and port; bounded in number and
// age (an upstream may close an idle connection any time: the invocation then retries once on a
// new one).
class UpstreamPool {
 public:
  static constexpr std::size_t kMaxPerUpstream = 64;
  static constexpr std::size_t kMaxTotal = 1024;
  static constexpr std::chrono::seconds kMaxIdle{20};

  std::shared_ptr<UpstreamConnection> take(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto it = idle_.find(key);
    if (it == idle_.end()) return nullptr;
    auto& list = it->second;
    const auto now = Clock::now();
    while (!list.empty()) {
      auto [since, connection] = std::move(list.back());
      list.pop_back();
      --total_;
      if (now - since < kMaxIdle) return connection;
      close(std::move(connection));
    }
    return nullptr;
  }

  void give(const std::string& key, std::shared_ptr<UpstreamConnection> connection) {
    std::lock_guard lock(mutex_);
    auto& list = idle_[key];
    if (list.size() >= kMaxPerUpstream || total_ >= kMaxTotal) return close(std::move(connection));
    list.emplace_back(Clock::now(), std::move(connection));
    ++total_;
  }

 private:
  static void close(std::shared_ptr<UpstreamConnection> connection) {
    net::dispatch(connection->strand, [connection] {
      beast::error_code ignored;
      connection->lowest().socket().close(ignored);
    });
  }
  std::mutex mutex_;
  std::map<std::string, std::vector<std::pair<Clock::time_point, std::shared_ptr<UpstreamConnection>>>> idle_;
  std::size_t total_ = 0;
};

#include "server/credentials_exchange.ipp"

// Shared by all sessions: settings, the API, the log, and what a graceful stop needs.
struct ServerState {
  ServerState(ServerSettings s, api::Api& a, RequestLogger l, net::io_context& io)
      : settings(std::move(s)), api(a), log(std::move(l)), ioc(io) {
    if (api.waits_on_network()) {
      const std::size_t n = settings.store_threads != 0 ? settings.store_threads : std::max<std::size_t>(1, settings.threads);
      store_pool = std::make_unique<net::thread_pool>(n);
    }
  }
  ServerSettings settings;
  api::Api& api;
  RequestLogger log;
  net::io_context& ioc;
  UpstreamPool upstream_pool;
  // Runs the store's calls when they may wait on the network (see HttpSession::with_store).
  std::unique_ptr<net::thread_pool> store_pool;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> active_sessions{0};
  // Upstream TLS for exports without their own `tls`: the system trust store, peer verified.
  std::shared_ptr<ssl::context> default_client_tls;
  core::sigv4::SigningKeyCache key_cache;
  Metrics metrics;
  core::UpstreamAddressPolicy upstream_policy;  // SPEC 10; set by start() once the port is bound
  // SPEC 9: the operator's profiles. The environment is read at each use, so rotated
  // credentials are seen; fetched ones are cached per source and refreshed off the I/O path.
  CredentialsProvider credentials{
      settings.aws_config,
      [](std::string_view name) -> std::optional<std::string> {
        const char* value = std::getenv(std::string(name).c_str());
        if (value == nullptr) return std::nullopt;
        return std::string(value);
      },
      [this](core::CredentialsCall call, std::chrono::milliseconds timeout, std::size_t max_body,
             std::function<void(CredentialsHttpResult)> done) {
        std::make_shared<CredentialsExchange>(ioc, default_client_tls, std::move(call), timeout, max_body,
                                              std::move(done))
            ->start();
      },
      [this](const std::string& line) {
        if (log) log(utc_now() + " " + line);
      }};

  struct Stoppable {
    virtual ~Stoppable() = default;
    virtual void on_server_stopping() = 0;
  };
  std::mutex sessions_mutex;
  std::list<std::weak_ptr<Stoppable>> sessions;

  void track(const std::shared_ptr<Stoppable>& session) {
    std::lock_guard lock(sessions_mutex);
    std::erase_if(sessions, [](const auto& w) { return w.expired(); });
    sessions.push_back(session);
  }
  void notify_stopping() {
    std::lock_guard lock(sessions_mutex);
    for (auto& weak : sessions) {
      if (auto s = weak.lock()) s->on_server_stopping();
    }
  }
};

#include "server/invocation.ipp"

// One connection: reads requests one after the other (keep-alive), answers each. CRTP over the
// stream type, as in Beast's advanced_server_flex example: Derived is the plain or TLS session.
template <class Derived>
class HttpSession : public ServerState::Stoppable {
 public:
  // A metrics-only session (the --metrics-listen listener) serves /metrics and /healthz and
  // dispatches no capability.
  HttpSession(ServerState& state, beast::flat_buffer buffer, bool metrics_only = false)
      : state_(state), buffer_(std::move(buffer)), metrics_only_(metrics_only) {
    // Beast reads at most the free capacity (at least 512 bytes): room for a typical request's
    // header and a small body means one read per request instead of several.
    buffer_.reserve(kSessionBufferReserve);
    ++state_.active_sessions;
    state_.metrics.connection_opened();
  }
  ~HttpSession() override {
    state_.metrics.connection_closed();
    --state_.active_sessions;
  }

  // Hooks for the invocation that relays an upstream answer on this connection.
  bool keep_alive_after_invocation() { return parser_->get().keep_alive() && !state_.stopping; }
  void log_invocation(int status) { log_request(status); }
  Clock::time_point request_started() const { return started_; }
  void invocation_failed(api::Response response) { send(std::move(response), keep_alive_after_invocation()); }
  void invocation_done(bool keep_alive) {
    if (!keep_alive) return derived().do_close();
    do_read();
  }

  void on_server_stopping() override {
    // Runs on the session's strand: an idle connection is closed now; a busy one closes after
    // its answer.
    net::post(derived().stream().get_executor(), [self = derived().shared_from_this()] {
      if (self->idle_) beast::get_lowest_layer(self->derived().stream()).cancel();
    });
  }

 protected:
  Derived& derived() { return static_cast<Derived&>(*this); }

  void do_read() {
    if (state_.stopping) return derived().do_close();
    route_ = Route::capability;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(state_.settings.header_limit));
    // The capability, known once the headers are in, decides how large a body may be.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    idle_ = true;
    beast::get_lowest_layer(derived().stream()).expires_after(state_.settings.idle_timeout);
    http::async_read_header(derived().stream(), buffer_, *parser_,
                            beast::bind_front_handler(&HttpSession::on_header, derived().shared_from_this()));
  }

 private:
  void on_header(beast::error_code ec, std::size_t) {
    idle_ = false;
    if (ec == http::error::end_of_stream || ec == net::error::operation_aborted ||
        ec == beast::error::timeout || ec == net::error::eof || ec == net::error::connection_reset) {
      return derived().do_close();
    }
    started_ = Clock::now();
    if (ec == http::error::header_limit) {
      return reply_and_close(api::Api::error_response(431, "request headers are too large"));
    }
    if (ec) return reply_and_close(api::Api::error_response(400, "malformed HTTP request"));

    auto& req = parser_->get();
    authorized_.reset();
    who_error_.reset();
    route_ = route_without_capability(req);
    if (route_ != Route::capability) {
      if (auto length = parser_->content_length(); length && *length > state_.settings.management_body_limit) {
        return reply_and_close(api::Api::error_response(413, "request body is too large"));
      }
      parser_->body_limit(state_.settings.management_body_limit);
      return read_body();
    }
    with_store([this] { return state_.api.authorize(parser_->get()[http::field::authorization]); },
               [this](core::Result<api::Authorized> who) { on_authorized(std::move(who)); });
  }

  // Runs `work` (a call that reaches the store), then `then(result)` on this session's strand.
  // A store that waits on the network (PostgreSQL) is called from the store threads, so no I/O
  // thread ever waits for it; a local one (SQLite: bounded disk work) is called inline. The
  // session keeps itself alive meanwhile; nothing else touches it, so `work` may read the request.
  template <class Work, class Then>
  void with_store(Work work, Then then) {
    if (!state_.store_pool) return then(work());
    net::post(*state_.store_pool, [self = derived().shared_from_this(), exec = derived().stream().get_executor(),
                                   work = std::move(work), then = std::move(then), posted = Clock::now()]() mutable {
      using Result = decltype(work());
      // Queued past the store's own timeouts (the database is down or slow and calls pile up):
      // answer 503 without adding one more call to the backlog.
      const bool stale = Clock::now() - posted > self->state_.settings.store_queue_timeout;
      auto result = [&]() -> Result {
        if (!stale) return work();
        if constexpr (std::is_same_v<Result, api::Response>) {
          return api::Api::error_response(core::Error::unavailable("store call queued too long"));
        } else {
          return core::Error::unavailable("store call queued too long");
        }
      }();
      net::dispatch(exec, [self = std::move(self), result = std::move(result), then = std::move(then)]() mutable {
        then(std::move(result));
      });
    });
  }

  void on_authorized(core::Result<api::Authorized> who) {
    auto& req = parser_->get();
    std::size_t limit = state_.settings.management_body_limit;
    if (who) {
      if (who->is_invocation()) limit = state_.settings.invoke_body_limit;
      authorized_.emplace(std::move(*who));
    } else {
      who_error_ = who.error();
    }
    if (auto length = parser_->content_length(); length && *length > limit) {
      return reply_and_close(too_large());
    }
    parser_->body_limit(limit);
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      // The client waits for this before sending its body (curl does, for bodies over 1 KiB).
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      beast::get_lowest_layer(derived().stream()).expires_after(state_.settings.write_timeout);
      return net::async_write(derived().stream(), net::buffer(kContinue),
                              [self = derived().shared_from_this()](beast::error_code wec, std::size_t) {
                                if (wec) return self->derived().do_close();
                                self->read_body();
                              });
    }
    read_body();
  }

  void read_body() {
    beast::get_lowest_layer(derived().stream()).expires_after(state_.settings.read_timeout);
    http::async_read(derived().stream(), buffer_, *parser_,
                     beast::bind_front_handler(&HttpSession::on_body, derived().shared_from_this()));
  }

  // 413, unless the capability could not be looked up because the store is down: its limit is
  // then unknown, and the client should retry rather than take the size for the reason.
  api::Response too_large() const {
    if (who_error_ && who_error_->kind == core::ErrorKind::unavailable) return api::Api::error_response(*who_error_);
    return api::Api::error_response(413, "request body is too large");
  }

  void on_body(beast::error_code ec, std::size_t) {
    if (ec == http::error::body_limit) return reply_and_close(too_large());
    if (ec == beast::error::timeout) {
      return reply_and_close(api::Api::error_response(408, "the request body did not arrive in time"));
    }
    if (ec) return derived().do_close();
    if (route_ != Route::capability) return answer_without_capability();
    if (authorized_ && authorized_->is_invocation()) return start_invocation();
    if (authorized_ && authorized_->operation() == "export") return check_export_upstream();
    handle_management();
  }

  void handle_management() {
    auto answer = [this](api::Response response) {
      send(std::move(response), parser_->get().keep_alive() && !state_.stopping);
    };
    if (!authorized_) return answer(api::Api::error_response(who_error_ ? *who_error_ : core::Error::unauthorized("")));
    with_store(
        [this] {
          auto& req = parser_->get();
          try {
            return state_.api.handle(*authorized_, req.target(), req.body());
          } catch (const std::exception&) {
            return api::Api::error_response(500, "Internal Server Error");
          }
        },
        answer);
  }

  // SPEC 10 at export: an upstream that is, or resolves to, a closed address is 400. Names are
  // resolved off the I/O threads (Asio's resolver), bounded by the read timeout; a name that
  // does not resolve now is left to the check every invocation makes on the address it connects to.
  void check_export_upstream() {
    auto config = core::parse_export_config(parser_->get().body());
    const auto* uri = config ? std::get_if<core::UriExport>(&*config) : nullptr;
    if (!uri) return handle_management();  // a re-export, or a body the API will refuse
    const std::string host = uri->target.connect_host;
    const std::uint16_t port = uri->target.port;
    if (auto verdict = state_.upstream_policy.check_without_dns(host, port)) {
      if (!*verdict) return refuse_export(verdict->error());
      return handle_management();
    }
    export_resolver_.emplace(derived().stream().get_executor());
    export_timer_.emplace(derived().stream().get_executor());
    export_timer_->expires_after(state_.settings.read_timeout);
    export_timer_->async_wait([self = derived().shared_from_this()](beast::error_code ec) {
      if (!ec && self->export_resolver_) self->export_resolver_->cancel();
    });
    export_resolver_->async_resolve(
        host, std::to_string(port),
        [self = derived().shared_from_this(), port](beast::error_code ec, tcp::resolver::results_type results) {
          self->export_timer_->cancel();
          if (!ec) {
            for (const auto& entry : results) {
              auto verdict = self->state_.upstream_policy.check(to_ip_address(entry.endpoint().address()), port);
              if (!verdict) return self->refuse_export(verdict.error());
            }
          }
          self->handle_management();
        });
  }

  void refuse_export(core::Error error) {
    send(api::Api::error_response(error), parser_->get().keep_alive() && !state_.stopping);
  }

  // Requests that carry no Authorization header may ask for the service's own state; a request
  // with a capability is dispatched by its token whatever its path (SPEC 2), so /healthz and
  // /metrics can never shadow a capability.
  enum class Route { capability, health, metrics, not_found };

  Route route_without_capability(const http::request<http::string_body>& req) const {
    const bool has_authorization = req.find(http::field::authorization) != req.end();
    if (has_authorization && !metrics_only_) return Route::capability;
    std::string_view path = req.target();
    path = path.substr(0, path.find('?'));
    const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
    if (get && path == "/healthz") return Route::health;
    if (get && path == "/metrics" && (metrics_only_ || state_.settings.metrics)) return Route::metrics;
    return metrics_only_ ? Route::not_found : Route::capability;
  }

  void answer_without_capability() {
    const bool keep_alive = parser_->get().keep_alive() && !state_.stopping;
    switch (route_) {
      case Route::health:
        return with_store([this] { return state_.api.health(); },
                          [this, keep_alive](api::Response response) { send(std::move(response), keep_alive); });
      case Route::metrics:
        return send_text(200, "text/plain; version=0.0.4; charset=utf-8", state_.metrics.render(), keep_alive);
      default:
        return send(api::Api::error_response(404, "this listener serves /metrics and /healthz only"), keep_alive);
    }
  }

  // SPEC 5: the upstream request built and signed by core/, then sent and relayed.
  void start_invocation() {
    const core::UriExport& config = *authorized_->resolved.uri;
    // SPEC 9: an export that names a profile signs with the operator's credentials for it,
    // which may first have to be fetched: the session waits (holding itself alive) and goes on
    // on its own strand.
    if (const auto* aws4 = std::get_if<core::Aws4Signing>(&config.signing); aws4 && aws4->credentials_profile) {
      return state_.credentials.get(*aws4->credentials_profile,
                                    [self = derived().shared_from_this()](CredentialsResult credentials) mutable {
                                      auto& stream = self->stream();
                                      net::dispatch(stream.get_executor(), [self = std::move(self),
                                                                            credentials = std::move(credentials)] {
                                        if (!credentials) {
                                          return self->send(api::Api::error_response(502, credentials.error().message),
                                                            self->keep_alive_after_invocation());
                                        }
                                        self->invoke_with(credentials->get());
                                      });
                                    });
    }
    invoke_with(nullptr);
  }

  // `credentials`: a profile's, or null when the export holds its own keys.
  void invoke_with(const core::AwsCredentials* credentials) {
    auto& req = parser_->get();
    core::Headers headers;
    headers.reserve(static_cast<std::size_t>(std::distance(req.begin(), req.end())));
    for (const auto& field : req) headers.push_back({std::string(field.name_string()), std::string(field.value())});
    const core::UriExport& config = *authorized_->resolved.uri;
    core::IncomingRequest incoming{req.method_string(), req.target(), headers, req.body()};
    auto prepared = core::prepare_upstream_request(
        config, incoming, core::SigningContext{std::chrono::system_clock::now(), &state_.key_cache, credentials});
    if (!prepared) return send(api::Api::error_response(prepared.error()), keep_alive_after_invocation());
    auto invocation = std::make_shared<Invocation<Derived>>(derived().shared_from_this(), state_,
                                                           std::move(*prepared), std::move(req.body()), config);
    invocation->start();
  }

  void reply_and_close(api::Response response) {
    if (!parser_->is_header_done()) started_ = Clock::now();
    send(std::move(response), false);
  }

  void send(api::Response response, bool keep_alive) {
    send_text(response.status, "application/json", response.body.dump(), keep_alive);
  }

  void send_text(int status, std::string_view content_type, std::string body, bool keep_alive) {
    const bool head = parser_->is_header_done() && parser_->get().method() == http::verb::head;
    res_.emplace(static_cast<http::status>(status), 11);
    res_->set(http::field::content_type, content_type);
    res_->set(http::field::cache_control, "no-store");
    if (head) {
      res_->content_length(body.size());
    } else {
      res_->body() = std::move(body);
      res_->prepare_payload();
    }
    res_->keep_alive(keep_alive);
    log_request(status);
    beast::get_lowest_layer(derived().stream()).expires_after(state_.settings.write_timeout);
    http::async_write(derived().stream(), *res_,
                      beast::bind_front_handler(&HttpSession::on_write, derived().shared_from_this(), keep_alive));
  }

  void on_write(bool keep_alive, beast::error_code ec, std::size_t) {
    res_.reset();
    if (ec || !keep_alive) return derived().do_close();
    do_read();
  }

  void log_request(int status) {
    count_request(status);
    if (!state_.log) return;
    auto elapsed = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
    std::ostringstream line;
    line << utc_now() << ' ';
    if (parser_->is_header_done()) {
      line << parser_->get().method_string();
    } else {
      line << '-';
    }
    line << ' ' << status << ' ';
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.3fms", elapsed);
    line << ms;
    if (authorized_) {
      line << " op=" << authorized_->operation() << " cap=" << authorized_->token.log_id();
    } else {
      line << " op=-";
    }
    state_.log(line.str());
  }

 protected:
  ServerState& state_;
  beast::flat_buffer buffer_;

 private:
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> res_;
  std::optional<api::Authorized> authorized_;
  std::optional<core::Error> who_error_;
  Clock::time_point started_ = Clock::now();
  bool idle_ = false;
  bool metrics_only_ = false;
  Route route_ = Route::capability;
  std::optional<tcp::resolver> export_resolver_;
  std::optional<net::steady_timer> export_timer_;

  void count_request(int status) {
    std::string_view operation = "none";
    if (route_ == Route::health) {
      operation = "healthz";
    } else if (route_ == Route::metrics) {
      operation = "metrics";
    } else if (authorized_) {
      operation = authorized_->is_invocation() ? std::string_view("invoke") : authorized_->operation();
      if (status == 202 && operation == "revoke") state_.metrics.revocation("membrane");
      if (status == 202 && operation == "deleteSelf") state_.metrics.revocation("tenant");
    }
    state_.metrics.request(operation, status);
  }
};

class PlainSession : public HttpSession<PlainSession>, public std::enable_shared_from_this<PlainSession> {
 public:
  PlainSession(ServerState& state, tcp::socket&& socket, bool metrics_only = false)
      : HttpSession(state, beast::flat_buffer(), metrics_only), stream_(std::move(socket)) {}
  void run() {
    net::dispatch(stream_.get_executor(), beast::bind_front_handler(&PlainSession::do_read, shared_from_this()));
  }
  beast::tcp_stream& stream() { return stream_; }
  void do_close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

 private:
  friend class HttpSession<PlainSession>;
  beast::tcp_stream stream_;
};

class TlsSession : public HttpSession<TlsSession>, public std::enable_shared_from_this<TlsSession> {
 public:
  TlsSession(ServerState& state, tcp::socket&& socket, ssl::context& ctx)
      : HttpSession(state, beast::flat_buffer()), stream_(std::move(socket), ctx) {}
  void run() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      beast::get_lowest_layer(self->stream_).expires_after(self->state_.settings.idle_timeout);
      self->stream_.async_handshake(ssl::stream_base::server,
                                    beast::bind_front_handler(&TlsSession::on_handshake, self));
    });
  }
  beast::ssl_stream<beast::tcp_stream>& stream() { return stream_; }
  void do_close() {
    if (closing_) return;
    closing_ = true;
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(5));
    stream_.async_shutdown([self = shared_from_this()](beast::error_code) {
      beast::error_code ec;
      beast::get_lowest_layer(self->stream_).socket().close(ec);
    });
  }

 private:
  void on_handshake(beast::error_code ec) {
    if (ec) {
      beast::error_code ignored;
      beast::get_lowest_layer(stream_).socket().close(ignored);
      return;
    }
    do_read();
  }
  beast::ssl_stream<beast::tcp_stream> stream_;
  bool closing_ = false;
};

struct HttpServer::Impl {
  Impl(ServerSettings settings, api::Api& api, RequestLogger log)
      : ioc(static_cast<int>(std::max<std::size_t>(1, settings.threads))),
        state(std::move(settings), api, std::move(log), ioc),
        acceptor(net::make_strand(ioc)),
        signals(ioc, SIGTERM, SIGINT, SIGHUP),  // a hang-up drains too, rather than killing
        stop_check(ioc) {}

  net::io_context ioc;
  ServerState state;
  std::optional<ssl::context> tls;
  tcp::acceptor acceptor;
  std::optional<tcp::acceptor> metrics_acceptor;  // --metrics-listen
  net::signal_set signals;
  net::steady_timer stop_check;
  Clock::time_point stop_deadline;

  void do_accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
        return do_accept();  // e.g. too many open files: keep serving the others
      }
      if (state.stopping) return;
      // Answers are small and written whole: without TCP_NODELAY, Nagle's algorithm and the
      // peer's delayed ACK add ~40 ms after a TLS 1.3 handshake's session tickets.
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (tls) {
        auto session = std::make_shared<TlsSession>(state, std::move(socket), *tls);
        state.track(session);
        session->run();
      } else {
        auto session = std::make_shared<PlainSession>(state, std::move(socket));
        state.track(session);
        session->run();
      }
      do_accept();
    });
  }

  void do_accept_metrics() {
    metrics_acceptor->async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == net::error::operation_aborted || !metrics_acceptor->is_open()) return;
        return do_accept_metrics();
      }
      if (state.stopping) return;
      auto session = std::make_shared<PlainSession>(state, std::move(socket), /*metrics_only=*/true);
      state.track(session);
      session->run();
      do_accept_metrics();
    });
  }

  void begin_stop() {
    if (state.stopping.exchange(true)) return;
    net::post(acceptor.get_executor(), [this] {
      beast::error_code ec;
      acceptor.close(ec);
    });
    if (metrics_acceptor) {
      net::post(metrics_acceptor->get_executor(), [this] {
        beast::error_code ec;
        metrics_acceptor->close(ec);
      });
    }
    state.notify_stopping();
    stop_deadline = Clock::now() + state.settings.shutdown_grace;
    wait_for_sessions();
  }

  void wait_for_sessions() {
    if (state.active_sessions == 0 || Clock::now() >= stop_deadline) {
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

core::Status HttpServer::start() {
  auto& s = impl_->state.settings;
  beast::error_code ec;
  auto address = net::ip::make_address(s.listen_host, ec);
  if (ec) return core::Error::invalid("listen", "--listen must be an IP address and port");
  const bool want_tls = s.tls_cert_file.has_value() || s.tls_key_file.has_value();
  if (want_tls && !(s.tls_cert_file && s.tls_key_file)) {
    return core::Error::invalid("tls", "--tls-cert and --tls-key must be given together");
  }
  if (!want_tls && !is_loopback(address) && !s.allow_plain_http) {
    return core::Error::invalid(
        "listen", "plain HTTP is only served on loopback addresses: give --tls-cert and --tls-key, "
                  "or --allow-plain-http");
  }
  if (want_tls) {
    impl_->tls.emplace(ssl::context::tls_server);
    auto& ctx = *impl_->tls;
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                    ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    // An encrypted key fails to load instead of OpenSSL asking for a pass phrase on a terminal.
    ctx.set_password_callback([](std::size_t, ssl::context::password_purpose) { return std::string(); });
    ctx.use_certificate_chain_file(*s.tls_cert_file, ec);
    if (ec) return core::Error::invalid("tls-cert", "cannot load --tls-cert " + *s.tls_cert_file + ": " + ec.message());
    ctx.use_private_key_file(*s.tls_key_file, ssl::context::pem, ec);
    if (ec) return core::Error::invalid("tls-key", "cannot load --tls-key " + *s.tls_key_file + ": " + ec.message());
    if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
      return core::Error::invalid("tls-key", "--tls-key does not belong to --tls-cert");
    }
  }
  {
    auto client = std::make_shared<ssl::context>(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(client->native_handle(), TLS1_2_VERSION);
    client->set_default_verify_paths(ec);
    client->set_verify_mode(ssl::verify_peer);
    impl_->state.default_client_tls = std::move(client);
  }
  tcp::endpoint endpoint(address, s.listen_port);
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return core::Error::unavailable("cannot listen on " + s.listen_host + ":" + std::to_string(s.listen_port) +
                                    ": " + ec.message());
  }
  impl_->state.upstream_policy =
      core::UpstreamAddressPolicy(s.allow_upstream, s.deny_upstream, own_endpoints(address, port()));
  if (s.metrics_listen_host) {
    auto metrics_address = net::ip::make_address(*s.metrics_listen_host, ec);
    if (ec) return core::Error::invalid("metrics-listen", "--metrics-listen must be an IP address and port");
    tcp::endpoint metrics_endpoint(metrics_address, s.metrics_listen_port);
    auto& m = impl_->metrics_acceptor.emplace(net::make_strand(impl_->ioc));
    m.open(metrics_endpoint.protocol(), ec);
    if (!ec) m.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) m.bind(metrics_endpoint, ec);
    if (!ec) m.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return core::Error::unavailable("cannot listen on " + *s.metrics_listen_host + ":" +
                                      std::to_string(s.metrics_listen_port) + " for metrics: " + ec.message());
    }
  }
  return core::ok_status();
}

std::optional<std::uint16_t> HttpServer::metrics_port() const {
  if (!impl_->metrics_acceptor) return std::nullopt;
  beast::error_code ec;
  return impl_->metrics_acceptor->local_endpoint(ec).port();
}

std::uint16_t HttpServer::port() const {
  beast::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

void HttpServer::run() {
  impl_->signals.async_wait([this](beast::error_code ec, int) {
    if (!ec) impl_->begin_stop();
  });
  impl_->do_accept();
  if (impl_->metrics_acceptor) impl_->do_accept_metrics();
  std::vector<std::thread> threads;
  const std::size_t n = std::max<std::size_t>(1, impl_->state.settings.threads);
  for (std::size_t i = 1; i < n; ++i) threads.emplace_back([this] { impl_->ioc.run(); });
  impl_->ioc.run();
  for (auto& t : threads) t.join();
  if (impl_->state.store_pool) impl_->state.store_pool->join();
}

}  // namespace membraned::server
