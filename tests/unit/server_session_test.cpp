// The requester's session and the invocation relay, in memory: the session runs over
// beast::test::stream (the test writes the requester's bytes and reads what the session wrote),
// on a real SQLite store, and relays to an upstream on a real loopback socket. These are the
// paths the Python suites reach only with difficulty: 100-continue, 413/431/408, keep-alive
// after a relayed answer, an answer cut after its header, a pooled connection the upstream
// closed while idle; and the attacks of the attack review on HTTP framing.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/_experimental/test/stream.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/export_config.hpp"
#include "server/audit_log.hpp"
#include "server/session.hpp"
#include "storage/open_store.hpp"
#include "tests/support/test_pki.hpp"
#include "tests/support/test_support.hpp"

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using membraned::api::Api;
using membraned::server::HttpSession;
using membraned::server::ServerContext;
using membraned::server::ServerSettings;
using namespace std::chrono_literals;

// A session over beast::test::stream. Its deadlines are a timer that closes the stream, which
// completes the pending read with operation_aborted: that, after the timer fired, is a timeout.
class TestSession : public HttpSession<TestSession>, public std::enable_shared_from_this<TestSession> {
 public:
  TestSession(ServerContext& context, net::io_context& ioc) : HttpSession(context, false), stream_(ioc), deadline_(ioc) {}
  void run() { do_read(); }
  beast::test::stream& stream() { return stream_; }
  void expires_after(std::chrono::steady_clock::duration d) {
    expired_ = false;
    deadline_.expires_after(d);
    deadline_.async_wait([weak = weak_from_this()](beast::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->expired_ = true;
      self->stream_.close();
    });
  }
  bool timed_out(beast::error_code ec) const { return expired_ && ec == net::error::operation_aborted; }
  void cancel() { stream_.close(); }
  void do_close() {
    closed_ = true;
    deadline_.cancel();
    stream_.close();
  }
  bool closed() const { return closed_; }

 private:
  beast::test::stream stream_;
  net::steady_timer deadline_;
  bool expired_ = false;
  bool closed_ = false;
};

// An upstream on a real loopback socket, in a thread of its own: it answers each request it
// reads with the next answer of its script, and closes the connection after an answer marked so.
class FakeUpstream {
 public:
  struct Answer {
    Answer(std::string b, bool close = false, std::string later = {})
        : bytes(std::move(b)), close_after(close), unsolicited(std::move(later)) {}
    std::string bytes;
    bool close_after = false;
    // Written 20 ms after the answer, unasked, while the connection is idle.
    std::string unsolicited;
  };

  explicit FakeUpstream(std::vector<Answer> script) : script_(std::move(script)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener_, 8) != 0 || ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      throw std::runtime_error("the fake upstream cannot listen");
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeUpstream() {
    stop_ = true;
    thread_.join();
    ::close(listener_);
  }

  std::uint16_t port() const { return port_; }
  int connections() const { return connections_; }
  int requests() const { return requests_; }
  int closed() const { return closed_; }  // connections it closed itself

 private:
  // Waits until `fd` is readable, or the fake stops (false).
  bool readable(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }

  void serve() {
    while (readable(listener_)) {
      int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++connections_;
      serve_connection(fd);
      ::close(fd);
    }
  }

  void serve_connection(int fd) {
    std::string pending;
    while (true) {
      auto request = read_request(fd, pending);
      if (!request) return;
      ++requests_;
      const Answer answer = next_ < script_.size() ? script_[next_++] : Answer{"HTTP/1.1 500 Nope\r\nContent-Length: 0\r\n\r\n"};
      (void)::send(fd, answer.bytes.data(), answer.bytes.size(), MSG_NOSIGNAL);
      if (!answer.unsolicited.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        (void)::send(fd, answer.unsolicited.data(), answer.unsolicited.size(), MSG_NOSIGNAL);
      }
      if (answer.close_after) {
        ++closed_;
        return;
      }
    }
  }

  // One whole request (header and Content-Length body), or none when the peer left.
  std::optional<std::string> read_request(int fd, std::string& pending) {
    while (true) {
      auto end = pending.find("\r\n\r\n");
      if (end != std::string::npos) {
        std::size_t length = 0;
        std::string header = pending.substr(0, end);
        for (auto& c : header) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (auto at = header.find("content-length:"); at != std::string::npos) {
          length = std::stoul(header.substr(at + 15));
        }
        if (pending.size() >= end + 4 + length) {
          std::string request = pending.substr(0, end + 4 + length);
          pending.erase(0, end + 4 + length);
          return request;
        }
      }
      if (!readable(fd)) return std::nullopt;
      char buffer[4096];
      ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) return std::nullopt;
      pending.append(buffer, static_cast<std::size_t>(n));
    }
  }

  std::vector<Answer> script_;
  std::size_t next_ = 0;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
  std::atomic<int> closed_{0};
  std::thread thread_;
};

struct ParsedAnswer {
  int status = 0;
  std::string body;
  bool keep_alive = false;
  std::string request_id;  // its X-Request-Id
};

// The answers complete in `text`, in order; `rest` gets what follows them.
std::vector<ParsedAnswer> parse_answers(std::string_view text, std::string* rest = nullptr) {
  std::vector<ParsedAnswer> answers;
  while (!text.empty()) {
    http::response_parser<http::string_body> parser;
    parser.eager(true);
    beast::error_code ec;
    const std::size_t used = parser.put(net::buffer(text.data(), text.size()), ec);
    if (ec || !parser.is_done()) break;
    answers.push_back({static_cast<int>(parser.get().result_int()), parser.get().body(), parser.get().keep_alive(),
                       std::string(parser.get()["X-Request-Id"])});
    text.remove_prefix(used);
  }
  if (rest != nullptr) *rest = std::string(text);
  return answers;
}

std::string token_of(const std::string& uri) { return uri.substr(uri.find('#') + 1); }

// The sum of membraned_upstream_errors_total over its kinds, or of one kind, from /metrics text.
double upstream_errors(const std::string& metrics, std::string_view kind = "") {
  double sum = 0;
  std::istringstream lines(metrics);
  const std::string family = "membraned_upstream_errors_total{kind=\"";
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(family, 0) != 0) continue;
    if (!kind.empty() && line.compare(family.size(), kind.size() + 1, std::string(kind) + "\"") != 0) continue;
    sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

class SessionTest : public testing::Test {
 protected:
  void TearDown() override {
    // Pooled upstream connections go while the io_context they belong to is still there.
    if (context_) context_->upstream.drop_idle();
  }

  void SetUp() override {
    auto key = membraned::storage::MasterKey::from_base64(membraned::core::base64_encode(*membraned::core::random_bytes(32)));
    ASSERT_TRUE(key.ok());
    auto store = membraned::storage::open_sqlite_store({dir_.path() / "membraned.db"}, std::move(*key));
    ASSERT_TRUE(store.ok()) << store.error().message;
    store_ = std::move(*store);
    api_.emplace(*store_, membraned::api::Settings{"127.0.0.1:8080", 30000});
    auto tenant = api_->create_tenant();
    ASSERT_TRUE(tenant.ok());
    create_ = token_of((*tenant)["capabilities"]["create"]);
  }

  // The shared state of a server with `settings`, upstreams on loopback open to exports.
  static ServerSettings with_header_limit(std::size_t limit) {
    ServerSettings settings;
    settings.header_limit = limit;
    return settings;
  }

  void start(ServerSettings settings = {}) {
    context_.emplace(std::move(settings), *api_, [this](const std::string& line) { log_.push_back(line); }, ioc_);
    ASSERT_TRUE(context_->upstream.load_default_tls().ok());
    auto loopback = membraned::core::Cidr::parse("127.0.0.0/8");
    context_->upstream.set_address_policy(membraned::core::UpstreamAddressPolicy({*loopback}, {}, {}));
  }

  std::shared_ptr<TestSession> connect(beast::test::stream& client) {
    auto session = std::make_shared<TestSession>(*context_, ioc_);
    session->stream().connect(client);
    session->run();
    return session;
  }

  // Runs the I/O until `done` holds (or fails the test after a while).
  void run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "timed out waiting";
        return;
      }
      ioc_.restart();
      ioc_.run_for(5ms);
    }
  }

  void run_for(std::chrono::milliseconds duration) {
    ioc_.restart();
    ioc_.run_for(duration);
  }

  std::vector<ParsedAnswer> wait_for_answers(beast::test::stream& client, std::size_t n) {
    run_until([&] { return parse_answers(client.str()).size() >= n; });
    return parse_answers(client.str());
  }

  // A membrane's export capability, made through the API.
  std::string export_capability(const std::string& create = {}) {
    auto acting = api_->authorize("Bearer " + (create.empty() ? create_ : create));
    EXPECT_TRUE(acting.ok());
    auto made = api_->handle(*acting, "/", R"({"id":"m"})");
    EXPECT_EQ(made.status, 201) << made.body.dump();
    return token_of(made.body["capabilities"]["export"]);
  }

  // A uri capability reaching the fake upstream, with the export's `method` (exported by the first
  // tenant, or by the tenant whose create capability is `create`).
  std::string invoke_capability(std::uint16_t port, const std::string& method = "POST",
                                const std::string& create = {}) {
    auto acting = api_->authorize("Bearer " + export_capability(create));
    EXPECT_TRUE(acting.ok());
    auto made = api_->handle(
        *acting, "/",
        R"({"uri":"http://127.0.0.1:)" + std::to_string(port) + R"(/fn","method":")" + method + R"("})");
    EXPECT_EQ(made.status, 201) << made.body.dump();
    return token_of(made.body["capability"]);
  }

  static std::string invocation(const std::string& token, const std::string& body) {
    return "POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + token +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }

  // Writes `head`, then `filler` again and again, until the session answers or closes, or
  // `most` bytes went: how many bytes of filler went.
  std::size_t stream_until_answered(beast::test::stream& client, TestSession& session,
                                    const std::string& head, const std::string& filler, std::size_t most) {
    client.write_some(net::buffer(head));
    std::size_t sent = 0;
    while (sent < most && client.str().empty() && !session.closed()) {
      beast::error_code ec;
      client.write_some(net::buffer(filler), ec);
      if (ec) break;
      sent += filler.size();
      run_for(1ms);
    }
    run_until([&] { return !client.str().empty() || session.closed(); });
    return sent;
  }

  // The one answer of a connection that must then be closed: a JSON error with `status` and
  // `message`, nothing after it.
  void expect_refused_and_closed(beast::test::stream& client, TestSession& session, int status,
                                 const std::string& message) {
    auto answers = wait_for_answers(client, 1);
    run_until([&] { return session.closed(); });
    ASSERT_EQ(answers.size(), 1u) << client.str();
    EXPECT_EQ(answers[0].status, status) << client.str();
    EXPECT_FALSE(answers[0].keep_alive);
    auto body = nlohmann::json::parse(answers[0].body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << answers[0].body;
    EXPECT_EQ(body["statusCode"], status);
    EXPECT_EQ(body["message"], message);
  }

  // The upstream answers a chunked header, then `endless` and 2 MiB more of the same line.
  void expect_upstream_framing_refused(const std::string& endless) {
    FakeUpstream upstream(std::vector<FakeUpstream::Answer>{
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + endless + std::string(2 * 1024 * 1024, 'a')}});
    start();
    const std::string token = invoke_capability(upstream.port());
    beast::test::stream client(ioc_);
    auto session = connect(client);
    client.write_some(net::buffer(invocation(token, "{}")));
    auto answers = wait_for_answers(client, 1);
    ASSERT_EQ(answers.size(), 1u);
    EXPECT_EQ(answers[0].status, 502);
    EXPECT_NE(answers[0].body.find("the upstream's answer could not be read"), std::string::npos)
        << answers[0].body;
    EXPECT_TRUE(answers[0].keep_alive);
    EXPECT_FALSE(session->closed());
    EXPECT_EQ(upstream_errors(context_->metrics.render({}), "malformed"), 1);
  }

  // A header block alone (the answer to a HEAD): its text, and what came after it in `rest`.
  static std::string header_block(const std::string& text, std::string* rest) {
    const auto end = text.find("\r\n\r\n");
    if (end == std::string::npos) return {};
    *rest = text.substr(end + 4);
    return text.substr(0, end + 4);
  }

  membraned::test::TempDir dir_{"membraned-session-test-"};
  std::unique_ptr<membraned::storage::Store> store_;
  std::optional<Api> api_;
  std::string create_;
  std::vector<std::string> log_;
  std::optional<ServerContext> context_;
  net::io_context ioc_;  // destroyed first: the sessions it still holds use the context as they go
};

TEST_F(SessionTest, ContinueIsSentBeforeTheBodyAndTheAnswerAfterIt) {
  start();
  beast::test::stream client(ioc_);
  auto session = connect(client);
  const std::string body = R"({"id":"m"})";
  client.write_some(net::buffer("POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + create_ +
                                "\r\nExpect: 100-continue\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n"));
  run_until([&] { return !client.str().empty(); });
  run_for(50ms);  // nothing more comes while the body is missing
  EXPECT_EQ(client.str(), "HTTP/1.1 100 Continue\r\n\r\n");

  client.write_some(net::buffer(body));
  auto answers = wait_for_answers(client, 2);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].status, 100);
  EXPECT_EQ(answers[1].status, 201);
  EXPECT_NE(answers[1].body.find(R"("id":"m")"), std::string::npos) << answers[1].body;
  EXPECT_FALSE(session->closed());
}

TEST_F(SessionTest, ABodyAnnouncedOverTheLimitIs413AndItIsNotRead) {
  start();
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer("POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + create_ +
                                "\r\nContent-Length: 70000\r\n\r\n{"));
  auto answers = wait_for_answers(client, 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 413);
  EXPECT_NE(answers[0].body.find("request body is too large"), std::string::npos);
  EXPECT_FALSE(answers[0].keep_alive);
  run_until([&] { return session->closed(); });
}

TEST_F(SessionTest, AHeaderOverTheLimitIs431) {
  start(with_header_limit(1024));
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer("GET / HTTP/1.1\r\nHost: m\r\nX-Pad: " + std::string(2000, 'p') + "\r\n\r\n"));
  auto answers = wait_for_answers(client, 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 431);
  EXPECT_NE(answers[0].body.find("request headers are too large"), std::string::npos);
  run_until([&] { return session->closed(); });
  ASSERT_FALSE(log_.empty());
  EXPECT_NE(log_.back().find(" - 431 "), std::string::npos) << log_.back();
}

// The deadline closes the connection (as a real socket's does), so the 408 reaches the log and
// the metrics only, as docs/operations.md says: the client sees the connection end.
TEST_F(SessionTest, ABodyThatStopsArrivingIsLoggedAs408AndTheConnectionCloses) {
  ServerSettings settings;
  settings.read_timeout = 200ms;
  start(settings);
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer("POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + create_ +
                                "\r\nContent-Length: 10\r\n\r\n{\"i"));
  run_until([&] { return session->closed(); });
  ASSERT_FALSE(log_.empty());
  EXPECT_NE(log_.back().find(" POST 408 "), std::string::npos) << log_.back();
  EXPECT_NE(log_.back().find(" op=create "), std::string::npos) << log_.back();
  EXPECT_EQ(client.str(), "");
}

TEST_F(SessionTest, TheConnectionStaysOpenAfterARelayedAnswerAndSoDoesTheUpstreams) {
  FakeUpstream upstream({{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"},
                         {"HTTP/1.1 201 Created\r\nContent-Length: 6\r\n\r\nsecond"}});
  start();
  const std::string token = invoke_capability(upstream.port());
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer(invocation(token, "{}")));
  auto answers = wait_for_answers(client, 1);
  client.write_some(net::buffer(invocation(token, "{}")));
  answers = wait_for_answers(client, 2);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].status, 200);
  EXPECT_EQ(answers[0].body, "first");
  EXPECT_TRUE(answers[0].keep_alive);
  EXPECT_EQ(answers[1].status, 201);
  EXPECT_EQ(answers[1].body, "second");
  EXPECT_FALSE(session->closed());
  EXPECT_EQ(upstream.connections(), 1);  // the second went over the pooled connection
  EXPECT_EQ(upstream.requests(), 2);
}

TEST_F(SessionTest, AnAnswerCutAfterItsHeaderClosesTheRequestersConnection) {
  FakeUpstream upstream({{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", /*close_after=*/true}});
  start();
  const std::string token = invoke_capability(upstream.port());
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer(invocation(token, "{}")));
  run_until([&] { return session->closed(); });
  std::string rest;
  EXPECT_TRUE(parse_answers(client.str(), &rest).empty());  // never complete
  EXPECT_EQ(rest.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << rest;
  EXPECT_NE(rest.find("Content-Length: 100\r\n"), std::string::npos);
  EXPECT_EQ(rest.substr(rest.size() - 10), "0123456789");
  EXPECT_EQ(upstream_errors(context_->metrics.render({}), "truncated"), 1);
  EXPECT_EQ(upstream_errors(context_->metrics.render({})), 1);
}

// An invocation authorised on its header, whose body comes after its membrane was revoked, is
// checked again when it is about to be sent: 401, and nothing reaches the upstream.
TEST_F(SessionTest, AnInvocationRevokedBeforeItIsSentNeverReachesTheUpstream) {
  FakeUpstream upstream({{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}});
  start();
  auto acting = api_->authorize("Bearer " + create_);
  ASSERT_TRUE(acting.ok());
  auto made = api_->handle(*acting, "/", R"({"id":"gate"})");
  ASSERT_EQ(made.status, 201);
  auto exporter = api_->authorize("Bearer " + token_of(made.body["capabilities"]["export"]));
  ASSERT_TRUE(exporter.ok());
  auto exported = api_->handle(
      *exporter, "/", R"({"uri":"http://127.0.0.1:)" + std::to_string(upstream.port()) + R"(/fn","method":"POST"})");
  ASSERT_EQ(exported.status, 201);
  const std::string token = token_of(exported.body["capability"]);

  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer("POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + token +
                                "\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"));
  run_until([&] { return client.str().find("100 Continue") != std::string::npos; });  // authorised
  auto revoker = api_->authorize("Bearer " + token_of(made.body["capabilities"]["revoke"]));
  ASSERT_TRUE(revoker.ok());
  ASSERT_EQ(api_->handle(*revoker, "/", "").status, 202);
  client.write_some(net::buffer(std::string("{}")));
  auto answers = wait_for_answers(client, 2);
  ASSERT_EQ(answers.size(), 2u) << client.str();
  EXPECT_EQ(answers[1].status, 401);
  EXPECT_EQ(answers[1].body, R"({"error":"Unauthorized","message":"Unauthorized","statusCode":401})");
  EXPECT_EQ(upstream.requests(), 0);
  EXPECT_FALSE(session->closed());  // the connection goes on
}

// A revoke's 202 goes out only when the store's settle time has passed since its commit.
TEST_F(SessionTest, ARevokesAnswerWaitsTheSettleTime) {
  start();
  auto acting = api_->authorize("Bearer " + create_);
  ASSERT_TRUE(acting.ok());
  auto made = api_->handle(*acting, "/", R"({"id":"m"})");
  ASSERT_EQ(made.status, 201);
  beast::test::stream client(ioc_);
  auto session = connect(client);
  const auto sent = std::chrono::steady_clock::now();
  client.write_some(net::buffer("GET / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " +
                                token_of(made.body["capabilities"]["revoke"]) + "\r\n\r\n"));
  auto answers = wait_for_answers(client, 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 202);
  EXPECT_GE(std::chrono::steady_clock::now() - sent, store_->revocation_settle());
}

TEST_F(SessionTest, APooledConnectionTheUpstreamClosedWhileIdleIsRetriedOnAFreshOne) {
  // The first answer keeps the connection alive as far as its header says, then the upstream
  // closes it: the pool holds a dead connection when the second invocation takes it.
  FakeUpstream upstream({{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", /*close_after=*/true},
                         {"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"}});
  start();
  const std::string token = invoke_capability(upstream.port());
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer(invocation(token, "{}")));
  wait_for_answers(client, 1);
  run_until([&] { return upstream.closed() == 1; });
  run_for(50ms);  // the close reaches the pooled socket
  client.write_some(net::buffer(invocation(token, "{}")));
  auto answers = wait_for_answers(client, 2);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].body, "first");
  EXPECT_EQ(answers[1].status, 200);
  EXPECT_EQ(answers[1].body, "second");
  EXPECT_EQ(upstream.connections(), 2);
  EXPECT_EQ(upstream.requests(), 2);
  EXPECT_EQ(upstream_errors(context_->metrics.render({})), 0);
}

// An export stored before client keys were limited may hold one the export check now refuses
// (an RSA key over 4096 bits): its invocations are 502, no handshake signs with it.
TEST_F(SessionTest, AStoredClientKeyOverTheLimitIsNotUsed) {
  start();
  const auto pem = membraned::test::make_self_signed_pem_with_key("RSA", "4104");
  nlohmann::json body = {{"uri", "https://127.0.0.1:1/fn"}, {"tls", {{"cert", pem.cert}, {"key", pem.key}}}};
  auto stored = membraned::core::parse_export_config(body.dump(), {.max_timeout_ms = 30000, .check_tls_key = false});
  ASSERT_TRUE(stored.ok());
  auto acting = api_->authorize("Bearer " + export_capability());
  ASSERT_TRUE(acting.ok());
  auto made = api_->export_parsed(*acting, {*stored, {}});
  ASSERT_EQ(made.status, 201) << made.body.dump();
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer(invocation(token_of(made.body["capability"]), "{}")));
  auto answers = wait_for_answers(client, 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 502);
  EXPECT_NE(answers[0].body.find("the upstream's TLS settings could not be loaded"), std::string::npos)
      << answers[0].body;
  EXPECT_EQ(upstream_errors(context_->metrics.render({}), "tls_config"), 1);
}

// An upstream that writes while its connection sits in the pool (a late second answer, a
// hostile or buggy server): the connection is dropped when next taken, never reused, so the
// next invocation gets its own answer, not the unsolicited bytes (attack review M5).
TEST_F(SessionTest, APooledConnectionThatReceivedUnsolicitedBytesIsNotReused) {
  FakeUpstream upstream({{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", /*close_after=*/false,
                          "HTTP/1.1 200 OK\r\nX-Injected: yes\r\nContent-Length: 8\r\n\r\nINJECTED"},
                         {"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"}});
  start();
  const std::string token = invoke_capability(upstream.port());
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer(invocation(token, "{}")));
  wait_for_answers(client, 1);
  run_for(100ms);  // the unsolicited answer reaches the pooled socket
  client.write_some(net::buffer(invocation(token, "{}")));
  auto answers = wait_for_answers(client, 2);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].body, "first");
  EXPECT_EQ(answers[1].status, 200);
  EXPECT_EQ(answers[1].body, "second");
  EXPECT_EQ(client.str().find("INJECTED"), std::string::npos);
  EXPECT_EQ(upstream.connections(), 2);
  EXPECT_EQ(upstream.requests(), 2);
}

// Pooled connections are kept per tenant: another tenant's export to the same scheme, host and
// port opens its own connection, so no upstream answer can cross from one tenant to another.
TEST_F(SessionTest, TenantsDoNotShareUpstreamConnections) {
  FakeUpstream upstream({{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"},
                         {"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"},
                         {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthird"}});
  start();
  auto other = api_->create_tenant();
  ASSERT_TRUE(other.ok());
  const std::string mine = invoke_capability(upstream.port());
  const std::string theirs =
      invoke_capability(upstream.port(), "POST", token_of((*other)["capabilities"]["create"]));
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer(invocation(mine, "{}")));
  wait_for_answers(client, 1);
  // The fake serves one connection at a time: the first tenant's must be released (it is, idle in
  // the pool, when the pool is dropped) before the second tenant's new connection is served.
  client.write_some(net::buffer(invocation(theirs, "{}")));
  run_until([&] { return upstream.connections() == 1 && upstream.requests() == 1; });
  run_for(50ms);
  EXPECT_EQ(upstream.requests(), 1) << "the second tenant's request went over the first tenant's connection";
  context_->upstream.drop_idle();
  auto answers = wait_for_answers(client, 2);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[1].body, "second");
  EXPECT_EQ(upstream.connections(), 2);
}

// An export's own TLS settings get their context made once, by a digest of the settings: the
// same settings give the same context and pool identity, any difference another.
TEST_F(SessionTest, ClientTlsContextsAreMadeOncePerMaterial) {
  start();
  const auto pem = membraned::test::make_self_signed_pem();
  const auto ca = membraned::test::make_ca_pem();
  membraned::core::TlsOptions options{ca.cert, pem.cert, pem.key, true};
  auto& client = context_->upstream;
  const auto first = client.tls_for(options);
  ASSERT_NE(first.context, nullptr);
  EXPECT_EQ(first.identity.size(), 64u);
  const auto again = client.tls_for(options);
  EXPECT_EQ(again.context, first.context);
  EXPECT_EQ(again.identity, first.identity);
  options.reject_unauthorized = false;
  const auto unchecked = client.tls_for(options);
  EXPECT_NE(unchecked.context, first.context);
  EXPECT_NE(unchecked.identity, first.identity);
  const auto plain = client.tls_for(std::nullopt);
  EXPECT_EQ(plain.context, client.default_tls());
  EXPECT_TRUE(plain.identity.empty());
  EXPECT_NE(membraned::server::UpstreamClient::pool_key("t", true, "h", 443, first.identity),
            membraned::server::UpstreamClient::pool_key("t", true, "h", 443, unchecked.identity));
}

// --- the attack review (H1, L1, L2, L4, L5) ----------------------------------------------------

// H1: a chunk's size line never ends (an endless extension): refused once it fills the read
// buffer (--header-limit), not held whole.
TEST_F(SessionTest, AChunkExtensionThatNeverEndsIs413BeforeMuchIsRead) {
  start(with_header_limit(1024));
  beast::test::stream client(ioc_);
  auto session = connect(client);
  const std::size_t sent = stream_until_answered(client, *session,
                                                 "POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " +
                                                     create_ + "\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=",
                                                 std::string(4096, 'a'), 4 * 1024 * 1024);
  EXPECT_LT(sent, 64u * 1024);
  expect_refused_and_closed(client, *session, 413, "request chunk header is too large");
}

// H1, unauthenticated, a size line of zeros that never ends: the same.
TEST_F(SessionTest, AChunkSizeThatNeverEndsIs413WithoutACapability) {
  start(with_header_limit(1024));
  beast::test::stream client(ioc_);
  auto session = connect(client);
  const std::size_t sent = stream_until_answered(
      client, *session, "POST / HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n",
      std::string(4096, '0'), 4 * 1024 * 1024);
  EXPECT_LT(sent, 64u * 1024);
  expect_refused_and_closed(client, *session, 413, "request chunk header is too large");
}

// H1: trailers that never end are fields, like a header block too large: 431.
TEST_F(SessionTest, TrailersThatNeverEndAre431BeforeMuchIsRead) {
  start(with_header_limit(1024));
  beast::test::stream client(ioc_);
  auto session = connect(client);
  const std::size_t sent =
      stream_until_answered(client, *session,
                            "POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + create_ +
                                "\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\nX-Trailer: ",
                            std::string(4096, 'a'), 4 * 1024 * 1024);
  EXPECT_LT(sent, 64u * 1024);
  expect_refused_and_closed(client, *session, 431, "request trailers are too large");
}

// Chunk extensions and trailers within the limit are fine.
TEST_F(SessionTest, AChunkedBodyWithShortExtensionsAndTrailersIsServed) {
  start();
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer(
      "POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + create_ +
      "\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\n{\"id\"\r\n5\r\n:\"m\"}\r\n0\r\nX-T: 1\r\n\r\n"));
  auto answers = wait_for_answers(client, 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 201) << answers[0].body;
  EXPECT_FALSE(session->closed());
}

// H1, the upstream's side: an answer whose chunk framing never ends (a size line, or trailers) is
// a JSON 502 once it fills the relay's read buffer, and the requester's connection goes on.
TEST_F(SessionTest, AnUpstreamChunkExtensionThatNeverEndsIs502) { expect_upstream_framing_refused("4;ext="); }

TEST_F(SessionTest, UpstreamTrailersThatNeverEndAre502) {
  expect_upstream_framing_refused("0\r\nX-Trailer: ");
}

// L4: a chunk size that is not a number is a JSON 400, not a silent close.
TEST_F(SessionTest, ABadChunkSizeIs400AndTheConnectionCloses) {
  start();
  for (const std::string size : {"zz", "ffffffffffffffffffff", "-4"}) {
    SCOPED_TRACE(size);
    beast::test::stream client(ioc_);
    auto session = connect(client);
    client.write_some(net::buffer("POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + create_ +
                                  "\r\nTransfer-Encoding: chunked\r\n\r\n" + size + "\r\nabcd\r\n0\r\n\r\n"));
    expect_refused_and_closed(client, *session, 400, "malformed HTTP request");
  }
}

// L1: a Transfer-Encoding other than exactly `chunked` is refused (RFC 9112 §6.1), so a body
// framed by it can never run as a second request; so is one beside Content-Length.
TEST_F(SessionTest, ATransferEncodingOtherThanChunkedIs400AndTheBodyNeverRuns) {
  start();
  const std::string smuggled = "POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + create_ +
                               "\r\nContent-Length: 15\r\n\r\n{\"id\":\"smug\"}\r\n";
  const std::vector<std::string> cases = {
      "Transfer-Encoding: xchunked\r\nContent-Length: 0\r\n",
      "Transfer-Encoding: identity\r\nContent-Length: 0\r\n",
      "Transfer-Encoding: gzip\r\nContent-Length: 0\r\n",
      "Transfer-Encoding: chunked, gzip\r\nContent-Length: 0\r\n",
      "Transfer-Encoding: gzip\r\n",
      "Transfer-Encoding: gzip, chunked\r\n",
      "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
      "Transfer-Encoding: \r\nContent-Length: 0\r\n",
      "Content-Length: 0\r\nTransfer-Encoding: xchunked\r\n",
  };
  for (const auto& fields : cases) {
    SCOPED_TRACE(fields);
    beast::test::stream client(ioc_);
    auto session = connect(client);
    client.write_some(net::buffer("POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + create_ + "\r\n" +
                                  fields + "\r\n" + smuggled));
    auto answers = wait_for_answers(client, 1);
    run_until([&] { return session->closed(); });
    answers = parse_answers(client.str());
    ASSERT_EQ(answers.size(), 1u) << client.str();
    EXPECT_EQ(answers[0].status, 400) << answers[0].body;
    EXPECT_FALSE(answers[0].keep_alive);
  }
  auto acting = api_->authorize("Bearer " + create_);
  ASSERT_TRUE(acting.ok());
  EXPECT_EQ(api_->handle(*acting, "/", R"({"id":"smug"})").status, 201);  // never made by a smuggled request
}

// What Beast refused already stays refused: chunked beside Content-Length (either order), chunked
// twice; and HTTP/1.0 has no chunked coding (RFC 9112 §6.1: its framing is faulty).
TEST_F(SessionTest, ChunkedBesideContentLengthTwiceOrInHttp10Is400) {
  start();
  const std::vector<std::string> cases = {
      "POST / HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: m\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
      "chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.0\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  };
  for (const auto& request : cases) {
    SCOPED_TRACE(request);
    beast::test::stream client(ioc_);
    auto session = connect(client);
    client.write_some(net::buffer(request));
    auto answers = wait_for_answers(client, 1);
    run_until([&] { return session->closed(); });
    ASSERT_EQ(answers.size(), 1u) << client.str();
    EXPECT_EQ(answers[0].status, 400) << answers[0].body;
  }
}

TEST_F(SessionTest, ChunkedInAnyCaseIsServed) {
  start();
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer("POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + create_ +
                                "\r\nTransfer-Encoding: Chunked\r\n\r\na\r\n{\"id\":\"m\"}\r\n0\r\n\r\n"));
  auto answers = wait_for_answers(client, 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 201) << answers[0].body;
  EXPECT_FALSE(session->closed());
}

// L5: RFC 9112 §3.2: an HTTP/1.1 request without Host, or any request with two, is 400.
TEST_F(SessionTest, AnHttp11RequestWithoutOneHostIs400) {
  start();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"GET /healthz HTTP/1.1\r\n\r\n", "Host header is required"},
      {"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "Host header is given more than once"},
      {"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", "Host header is given more than once"},
      {"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", "Host header is given more than once"},
  };
  for (const auto& [request, message] : cases) {
    SCOPED_TRACE(request);
    beast::test::stream client(ioc_);
    auto session = connect(client);
    client.write_some(net::buffer(request));
    expect_refused_and_closed(client, *session, 400, message);
  }
}

TEST_F(SessionTest, AnHttp10RequestWithoutHostIsServed) {
  start();
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer("GET /healthz HTTP/1.0\r\n\r\n"));
  auto answers = wait_for_answers(client, 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 200) << answers[0].body;
}

// L2 (also found by fuzzing: tests/fuzz/regressions/http_session): a requester's HEAD gets the upstream's status and headers and never its body, even when
// the export sends POST (the upstream then writes one). The upstream connection, its body
// unread, is not reused: the next invocation gets its own answer, not that body.
TEST_F(SessionTest, AHeadRequesterGetsNoBodyWhateverTheUpstreamSends) {
  const std::string injected =
      "HTTP/1.1 200 OK\r\nSet-Cookie: session=attacker\r\nContent-Length: 8\r\n\r\nINJECTED";
  FakeUpstream upstream({{"HTTP/1.1 200 OK\r\nX-Up: 1\r\nContent-Length: " + std::to_string(injected.size()) +
                          "\r\n\r\n" + injected},
                         {"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ngenuine"}});
  start();
  const std::string token = invoke_capability(upstream.port(), "POST");
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer("HEAD / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + token + "\r\n\r\n"));
  run_until([&] { return client.str().find("\r\n\r\n") != std::string::npos; });
  run_for(50ms);  // nothing else comes
  client.write_some(net::buffer(invocation(token, "{}")));
  run_until([&] { return client.str().find("genuine") != std::string::npos || session->closed(); }, 2000ms);
  std::string rest;
  const std::string head = header_block(client.str(), &rest);
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("X-Up: 1\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Length: " + std::to_string(injected.size()) + "\r\n"), std::string::npos)
      << head;
  auto answers = parse_answers(rest);
  ASSERT_EQ(answers.size(), 1u) << rest;
  EXPECT_EQ(answers[0].body, "genuine");
  EXPECT_EQ(client.str().find("INJECTED"), std::string::npos);
  EXPECT_FALSE(session->closed());
  EXPECT_EQ(upstream.requests(), 2);
  EXPECT_EQ(upstream.connections(), 2);
}

// L2: an export fixed to HEAD answers a requester's GET with the upstream's headers and an
// empty body that says so (Content-Length: 0), not a length it never sends.
TEST_F(SessionTest, AGetRequesterOfAHeadExportGetsAnEmptyBodyThatSaysSo) {
  FakeUpstream upstream({{"HTTP/1.1 200 OK\r\nX-Up: 1\r\nContent-Length: 50\r\n\r\n"}});
  start();
  const std::string token = invoke_capability(upstream.port(), "HEAD");
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer("GET / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + token +
                                "\r\n\r\nGET /healthz HTTP/1.1\r\nHost: m\r\n\r\n"));
  auto answers = wait_for_answers(client, 2);
  ASSERT_EQ(answers.size(), 2u) << client.str();
  EXPECT_EQ(answers[0].status, 200);
  EXPECT_EQ(answers[0].body, "");
  EXPECT_NE(client.str().find("X-Up: 1\r\nContent-Length: 0\r\n"), std::string::npos) << client.str();
  EXPECT_EQ(answers[1].status, 200);
  EXPECT_NE(answers[1].body.find("\"status\":\"ok\""), std::string::npos) << answers[1].body;
  EXPECT_FALSE(session->closed());
}

// L6: the create body refuses a key given twice, like the export body (contract §3).
TEST_F(SessionTest, ACreateBodyWithAKeyGivenTwiceIs400AndCreatesNothing) {
  start();
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer(invocation(create_, R"({"id":"dup-a","id":"dup-b"})")));
  auto answers = wait_for_answers(client, 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 400) << answers[0].body;
  EXPECT_NE(answers[0].body.find("id is given twice"), std::string::npos) << answers[0].body;
  EXPECT_FALSE(session->closed());
  auto acting = api_->authorize("Bearer " + create_);
  ASSERT_TRUE(acting.ok());
  EXPECT_EQ(api_->handle(*acting, "/", R"({"id":"dup-b"})").status, 201);  // the id is still free
}

// Found by fuzzing (tests/fuzz/regressions/http_session): a query parameter whose name is not
// UTF-8 made the error answer's JSON throw, and the uncaught exception ended the process.
TEST_F(SessionTest, AQueryParameterThatIsNotUtf8IsA400AndTheConnectionGoesOn) {
  start();
  auto tenant = api_->create_tenant();
  ASSERT_TRUE(tenant.ok());
  const std::string query = token_of((*tenant)["capabilities"]["query"]);
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer("GET /?%FF=%zz HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + query +
                                "\r\n\r\nGET /?limit=1 HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + query + "\r\n\r\n"));
  auto answers = wait_for_answers(client, 2);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].status, 400);
  EXPECT_NE(answers[0].body.find("is not valid percent-encoding"), std::string::npos) << answers[0].body;
  EXPECT_EQ(answers[1].status, 200);
  EXPECT_FALSE(session->closed());
}

TEST(JsonAnswer, BytesThatAreNotUtf8BecomeReplacementCharacters) {
  const auto answer = membraned::server::json_answer(Api::error_response(400, "bad \xff\xfe name"));
  EXPECT_EQ(answer.status, 400);
  EXPECT_NE(answer.body.find("bad \xEF\xBF\xBD\xEF\xBF\xBD name"), std::string::npos) << answer.body;
}

// contract §12: every answer names its request, a relayed one too (ours replaces the upstream's
// id), and the audit log gets one record per request, with the body bytes that went out, even
// for an answer cut after its header.
TEST_F(SessionTest, EveryAnswerCarriesItsRequestIdAndGetsOneAuditRecord) {
  FakeUpstream upstream({{"HTTP/1.1 200 OK\r\nX-Request-Id: upstream-id\r\nContent-Length: 5\r\n\r\nfirst"},
                         {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", /*close_after=*/true}});
  start();
  membraned::test::TempDir dir;
  const auto audit_path = dir.path() / "audit.log";
  auto audit = membraned::server::AuditLog::open(
      audit_path.string(), membraned::server::kAuditQueueBytes, [](membraned::server::AuditLog::Delivery, std::uint64_t) {},
      [](const std::string&) {});
  ASSERT_TRUE(audit.ok());
  context_->audit = std::move(*audit);
  const std::string token = invoke_capability(upstream.port());
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer(std::string("POST / HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n")));  // no token
  auto answers = wait_for_answers(client, 1);
  client.write_some(net::buffer(invocation(token, "{\"a\":1}")));
  answers = wait_for_answers(client, 2);
  client.write_some(net::buffer(invocation(token, "{}")));
  run_until([&] { return session->closed(); });
  std::string cut;
  answers = parse_answers(client.str(), &cut);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].status, 401);
  EXPECT_EQ(answers[1].body, "first");
  const auto id_at = cut.find("X-Request-Id: ");
  ASSERT_NE(id_at, std::string::npos) << cut;
  const std::vector<std::string> ids = {answers[0].request_id, answers[1].request_id, cut.substr(id_at + 14, 16)};
  for (const auto& id : ids) EXPECT_EQ(id.size(), 16u) << id;
  EXPECT_EQ(client.str().find("upstream-id"), std::string::npos);

  context_->audit->stop(5s);
  std::vector<nlohmann::json> records;
  std::istringstream lines(membraned::test::read_file(audit_path));
  for (std::string line; std::getline(lines, line);) records.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(records.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(records[i]["requestId"], ids[i]) << i;
  EXPECT_EQ(records[0]["operation"], "none");
  EXPECT_EQ(records[0]["reason"], "unknown");
  EXPECT_EQ(records[1]["operation"], "invoke");
  EXPECT_EQ(records[1]["upstreamStatus"], 200);
  EXPECT_EQ(records[1]["upstreamHost"], "127.0.0.1");
  EXPECT_EQ(records[1]["bytesIn"], 7);
  EXPECT_EQ(records[1]["bytesOut"], 5);
  EXPECT_EQ(records[2]["upstreamStatus"], 200);
  EXPECT_EQ(records[2]["bytesOut"], 10) << "the answer broke after 10 of its 100 bytes";
}

}  // namespace
