// The requester's session and the invocation relay, in memory: the session runs over
// beast::test::stream (the test writes the requester's bytes and reads what the session wrote),
// on a real SQLite store, and relays to an upstream on a real loopback socket. These are the
// paths the Python suites reach only with difficulty: 100-continue, 413/431/408, keep-alive
// after a relayed answer, an answer cut after its header, a pooled connection the upstream
// closed while idle.
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

#include "api/api.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "server/session.hpp"
#include "storage/open_store.hpp"
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
    std::string bytes;
    bool close_after = false;
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
    answers.push_back({static_cast<int>(parser.get().result_int()), parser.get().body(), parser.get().keep_alive()});
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
  std::string export_capability() {
    auto acting = api_->authorize("Bearer " + create_);
    EXPECT_TRUE(acting.ok());
    auto made = api_->handle(*acting, "/", R"({"id":"m"})");
    EXPECT_EQ(made.status, 201) << made.body.dump();
    return token_of(made.body["capabilities"]["export"]);
  }

  // A uri capability reaching the fake upstream.
  std::string invoke_capability(std::uint16_t port) {
    auto acting = api_->authorize("Bearer " + export_capability());
    EXPECT_TRUE(acting.ok());
    auto made = api_->handle(*acting, "/", R"({"uri":"http://127.0.0.1:)" + std::to_string(port) + R"(/fn","method":"POST"})");
    EXPECT_EQ(made.status, 201) << made.body.dump();
    return token_of(made.body["capability"]);
  }

  static std::string invocation(const std::string& token, const std::string& body) {
    return "POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + token +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
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
  ServerSettings settings;
  settings.header_limit = 1024;
  start(settings);
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
  EXPECT_EQ(upstream_errors(context_->metrics.render(), "truncated"), 1);
  EXPECT_EQ(upstream_errors(context_->metrics.render()), 1);
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
  EXPECT_EQ(upstream_errors(context_->metrics.render()), 0);
}

// Found by fuzzing (tests/fuzz/regressions/http_session): a HEAD for an export that sends a POST
// was answered with the upstream's body, which the requester (rightly expecting none) then read as
// the start of the next answer: the upstream's bytes could pose as an answer of the service.
TEST_F(SessionTest, AHeadIsAnsweredWithoutABodyWhateverMethodTheExportSends) {
  FakeUpstream upstream({{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"},
                         {"HTTP/1.1 201 Created\r\nContent-Length: 6\r\n\r\nsecond"}});
  start();
  const std::string token = invoke_capability(upstream.port());  // method POST
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer("HEAD / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + token + "\r\n\r\n" +
                                invocation(token, "{}")));
  run_until([&] { return client.str().find("second") != std::string::npos; });
  const std::string written(client.str());
  const std::size_t header_end = written.find("\r\n\r\n");
  ASSERT_NE(header_end, std::string::npos) << written;
  const std::string head = written.substr(0, header_end + 4);
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << written;
  EXPECT_NE(head.find("Content-Length: 5\r\n"), std::string::npos) << written;  // what a GET would get
  auto rest = parse_answers(written.substr(head.size()));  // no body: the next answer follows at once
  ASSERT_EQ(rest.size(), 1u) << written;
  EXPECT_EQ(rest[0].status, 201);
  EXPECT_EQ(rest[0].body, "second");
  EXPECT_FALSE(session->closed());
  EXPECT_EQ(upstream.connections(), 2);  // the first one's body was never read: not pooled
}

// The other way round: a GET for an export that sends a HEAD gets an empty body, not the
// upstream's Content-Length with nothing behind it (the requester would wait for it).
TEST_F(SessionTest, AGetForAnExportThatSendsAHeadGetsAnEmptyBody) {
  FakeUpstream upstream({{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n"}});
  start();
  auto acting = api_->authorize("Bearer " + export_capability());
  ASSERT_TRUE(acting.ok());
  auto made = api_->handle(*acting, "/",
                           R"({"uri":"http://127.0.0.1:)" + std::to_string(upstream.port()) + R"(/fn","method":"HEAD"})");
  ASSERT_EQ(made.status, 201) << made.body.dump();
  const std::string token = token_of(made.body["capability"]);
  beast::test::stream client(ioc_);
  auto session = connect(client);
  client.write_some(net::buffer("GET / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer " + token +
                                "\r\n\r\nGET /healthz HTTP/1.1\r\nHost: m\r\n\r\n"));
  auto answers = wait_for_answers(client, 2);
  ASSERT_EQ(answers.size(), 2u) << client.str();
  EXPECT_EQ(answers[0].status, 200);
  EXPECT_EQ(answers[0].body, "");
  EXPECT_NE(std::string(client.str()).find("Content-Length: 0\r\n"), std::string::npos) << client.str();
  EXPECT_EQ(answers[1].status, 200);
  EXPECT_NE(answers[1].body.find("\"status\":\"ok\""), std::string::npos) << answers[1].body;
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

}  // namespace
