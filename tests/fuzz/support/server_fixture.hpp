// The service's HTTP side in memory, for the fuzz targets of the session and the relay: a real
// SQLite store (made once per process, in a temporary directory), the API, the shared server
// state, and requester connections over beast::test::stream, all on one io_context that each
// iteration runs until nothing is left to do. Upstreams are in memory too: a connection over a
// socketpair, put in the keep-alive pool where an invocation takes it, whose other end holds the
// upstream's answer. Nothing reaches the network (see no_dns.cpp).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/_experimental/test/stream.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/api.hpp"
#include "server/server_context.hpp"
#include "server/session.hpp"
#include "storage/store.hpp"

namespace membraned::fuzz {

namespace net = boost::asio;
namespace beast = boost::beast;

// With MEMBRANED_FUZZ_VERBOSE set, prints `what` and `bytes` (for replaying one input by hand).
void show(std::string_view what, std::string_view bytes);

// A requester's connection over beast::test::stream. Its deadlines are a timer that closes the
// stream; expired() tells whether one passed (in a fuzz run, none should: every input ends with
// the requester's end of stream, which must end the connection without waiting).
class MemorySession : public server::HttpSession<MemorySession>,
                      public std::enable_shared_from_this<MemorySession> {
 public:
  MemorySession(server::ServerContext& context, net::io_context& ioc)
      : HttpSession(context, false), stream_(ioc), deadline_(ioc) {}
  void run() { do_read(); }
  beast::test::stream& stream() { return stream_; }
  void expires_after(std::chrono::steady_clock::duration d);
  bool timed_out(beast::error_code ec) const { return expired_ && ec == net::error::operation_aborted; }
  void cancel() { stream_.close(); }
  void do_close() {
    closed_ = true;
    deadline_.cancel();
    stream_.close();
  }
  bool closed() const { return closed_; }
  bool expired() const { return expired_; }

 private:
  beast::test::stream stream_;
  net::steady_timer deadline_;
  bool expired_ = false;
  bool closed_ = false;
};

// The tokens the fixture made, by the placeholder that stands for each in a fuzz input.
struct FixtureTokens {
  std::string create;   // @CREATE@: the tenant's create capability
  std::string query;    // @QUERY@: the tenant's query capability
  std::string export_;  // @EXPORT@: a membrane's export capability
  std::string sigv4;    // @INVOKE@: a uri capability signed with SigV4, any method, queries allowed
  std::string cap1;     // @CAP1@: a uri capability signed with CAP1, sending a POST
  std::string head;     // @HEAD@: a uri capability without signature, sending a HEAD
};

class ServerFixture {
 public:
  // The upstream of the uri capabilities: a loopback address that the (default) address policy
  // closes, so that nothing is ever connected to; only pooled in-memory connections answer.
  static constexpr std::string_view kUpstreamHost = "127.0.0.1";
  static constexpr std::uint16_t kUpstreamPort = 9;

  // The one fixture of this process.
  static ServerFixture& get();

  const FixtureTokens& tokens() const { return tokens_; }
  server::ServerContext& context() { return *context_; }
  net::io_context& ioc() { return ioc_; }

  // Replaces each placeholder (@CREATE@, ...) in `input` by its token.
  std::string substitute(std::string_view input) const;

  // A requester's connection: the session, and the client's end of its stream.
  struct Connection {
    std::unique_ptr<beast::test::stream> client;
    std::shared_ptr<MemorySession> session;
  };
  Connection connect();

  // Puts an upstream connection in the pool where the tenant's invocations take it. Its peer
  // waits for the request's first bytes, answers `answer` and ends its side, as a fast upstream
  // would (bytes waiting before the request would make the pool discard the connection as one
  // that spoke while idle). The peer stays until reset().
  void pool_upstream(std::string_view answer);

  // Runs the I/O until nothing is pending.
  void run();
  // After an iteration: pooled connections and their peers go.
  void reset();

  ~ServerFixture();

 private:
  // A fresh directory for the store, removed with everything in it when the fixture goes.
  struct TempDir {
    TempDir();
    ~TempDir();
    std::string path;
  };

  ServerFixture();
  TempDir dir_;
  std::unique_ptr<storage::Store> store_;
  std::optional<api::Api> api_;
  FixtureTokens tokens_;
  std::string tenant_;  // the fixture's tenant: pooled upstream connections are kept per tenant
  std::optional<server::ServerContext> context_;
  net::io_context ioc_;  // destroyed before the context: what it still holds uses the context as it goes
  // The upstream's ends of the pooled connections.
  struct UpstreamPeer;
  std::vector<std::unique_ptr<UpstreamPeer>> peers_;
};

}  // namespace membraned::fuzz
