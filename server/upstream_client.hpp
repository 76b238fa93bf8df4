// The one HTTP client of the service's outgoing side: connections to upstreams (resolve → address
// check → connect → TLS), the keep-alive pool, and the client TLS contexts. Invocations
// (server/invocation) and credential fetches (server/credentials_exchange) both go through it,
// as Envoy sends its metadata fetches through the cluster manager that carries proxied traffic.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/address_policy.hpp"
#include "core/export_config.hpp"
#include "core/http.hpp"
#include "core/result.hpp"
#include "server/host_resolver.hpp"
#include "server/net.hpp"

namespace membraned::server {

// A request of core's (its headers a core::Headers) as Beast sends it: core/ stays without Beast,
// and this copy is the price, paid once per request.
http::request<http::string_body> make_request(std::string_view method, std::string_view target,
                                              const core::Headers& headers, std::string body);

// One connection to an upstream, on a strand of its own: it can serve one request after another
// (from any requester's session) through the keep-alive pool, so whoever uses it hops onto its
// strand for each step.
struct UpstreamConnection {
  explicit UpstreamConnection(net::io_context& ioc) : strand(net::make_strand(ioc)) {}
  net::strand<net::io_context::executor_type> strand;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;

  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
  bool open() const { return plain.has_value() || tls.has_value(); }
  // Both directions shut and the socket closed, now (call on the strand).
  void close();
  // Whether an idle connection may carry another request: still open, and nothing arrived on it
  // since its last answer (neither bytes, which would be read as the next answer, nor the peer's
  // close), nor is any left in the TLS layer. Call while nobody else uses it (in the pool).
  bool silent_while_idle();
  // `f(stream)` with the plain or the TLS stream.
  template <class F>
  void with_stream(F&& f) {
    if (tls) {
      f(*tls);
    } else {
      f(*plain);
    }
  }
};

struct UpstreamEndpoint {
  std::string host;  // a name or an IP literal, without brackets
  std::uint16_t port = 0;
  bool https = false;
  std::shared_ptr<ssl::context> tls;  // https only
  // Whose lookup a name's is (HostResolver's scope): the tenant whose export it is, or empty for
  // the service's own calls (credential sources).
  std::string tenant{};
};

// Each step (resolve, connect, handshake) has `step_timeout`, and none goes past `deadline`. The
// resolve step's limit holds however long the lookup waits in HostResolver's queue or in
// getaddrinfo.
struct ConnectLimits {
  std::chrono::milliseconds step_timeout{30000};
  Clock::time_point deadline = Clock::time_point::max();
};

enum class ConnectStep { resolve, refused, connect, handshake };

struct ConnectFailure {
  ConnectStep step;
  beast::error_code ec;         // beast::error::timeout when a limit passed
  std::string refusal;          // refused: why every address was closed (contract §10)
};

// On the new connection's strand: the connection, ready for its first request, or why not.
using ConnectDone = std::function<void(std::shared_ptr<UpstreamConnection>, std::optional<ConnectFailure>)>;

class UpstreamClient {
 public:
  static constexpr std::size_t kMaxIdlePerUpstream = 64;
  static constexpr std::size_t kMaxIdle = 1024;
  static constexpr std::chrono::seconds kMaxIdleTime{20};

  // The export-time check waits this long at most for a name (then passes it: every invocation
  // checks again).
  static constexpr std::chrono::seconds kNameCheckTimeout{3};

  explicit UpstreamClient(net::io_context& ioc, HostResolver::Limits resolver_limits = {});

  // The system trust store, peer verified, TLS 1.2 or later.
  core::Status load_default_tls();
  const std::shared_ptr<ssl::context>& default_tls() const { return default_tls_; }
  // The context for an export's `tls` settings: the default one when it has none of its own.
  // Contexts for an export's own material are made once and kept (kMaxTlsContexts, by a digest
  // of the material), not rebuilt for every invocation.
  struct ClientTls {
    // Null when the material cannot be loaded, or holds a client key the export check refuses
    // (core::is_supported_tls_client_key; stored before that rule).
    std::shared_ptr<ssl::context> context;
    // Which material: empty for the default context, else a SHA-256 of the export's `tls`
    // settings. Connections made with it are pooled under it (pool_key).
    std::string identity;
  };
  static constexpr std::size_t kMaxTlsContexts = 256;
  ClientTls tls_for(const std::optional<core::TlsOptions>& options);

  // Contract §10, applied to every address an export's upstream resolves to. Set once, before
  // serving.
  void set_address_policy(core::UpstreamAddressPolicy policy) { policy_ = std::move(policy); }
  const core::UpstreamAddressPolicy& address_policy() const { return policy_; }

  // resolve (an IP address is not: it is used as it is; a name is looked up in the resolver's
  // pool, in the endpoint's tenant's share) → (with `checked`, the address policy on every
  // address) → connect → TLS handshake with the peer's name verified. Operator endpoints
  // (credential sources) are not checked: the policy closes exactly the metadata addresses they
  // live on.
  void connect(UpstreamEndpoint endpoint, ConnectLimits limits, bool checked, ConnectDone done);

  // Export time: every address `host` resolves to now must be open. A name that does not
  // resolve (or not within kNameCheckTimeout; looked up in `tenant`'s share of the resolver)
  // passes: the check each connect makes decides then. `done` runs on `executor`, or at once for
  // an address.
  void check_name(const std::string& host, std::uint16_t port, const std::string& tenant,
                  net::any_io_executor executor, std::function<void(core::Status)> done);

  // The keep-alive pool, keyed by tenant, scheme, host, port and TLS material (pool_key, with
  // ClientTls::identity): one tenant's connection never carries another's request, so no
  // upstream answer can cross between tenants, and a connection made with one export's TLS
  // settings (its client certificate, its trust, its verification) serves only exports with the
  // very same settings. take_idle drops, instead of handing out, a connection that is no longer
  // silent_while_idle. An upstream may still close an idle connection any time: the caller
  // retries once on a new one.
  static std::string pool_key(std::string_view tenant, bool https, std::string_view host, std::uint16_t port,
                              std::string_view tls_identity = {});
  std::shared_ptr<UpstreamConnection> take_idle(const std::string& key);
  void keep_idle(const std::string& key, std::shared_ptr<UpstreamConnection> connection);
  // Closes every pooled connection: before the io_context they belong to goes.
  void drop_idle();
  // drop_idle, and no lookup completes any more (HostResolver::stop): before the io_context goes.
  void stop();

  net::io_context& io_context() { return ioc_; }
  HostResolver& resolver() { return resolver_; }

 private:
  // A client context for an export's own settings; null when they cannot be used.
  std::shared_ptr<ssl::context> make_tls_context(const core::TlsOptions& options) const;

  net::io_context& ioc_;
  HostResolver resolver_;
  std::shared_ptr<ssl::context> default_tls_;
  core::UpstreamAddressPolicy policy_;

  std::mutex tls_mutex_;
  std::map<std::string, std::shared_ptr<ssl::context>> tls_contexts_;  // by ClientTls::identity

  std::mutex idle_mutex_;
  std::map<std::string, std::vector<std::pair<Clock::time_point, std::shared_ptr<UpstreamConnection>>>> idle_;
  std::size_t idle_count_ = 0;
};

}  // namespace membraned::server
