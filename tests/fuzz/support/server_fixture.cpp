#include "tests/fuzz/support/server_fixture.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "storage/open_store.hpp"

namespace membraned::fuzz {

namespace {

[[noreturn]] void fixture_failed(const std::string& what) {
  std::fprintf(stderr, "fuzz fixture: %s\n", what.c_str());
  std::abort();
}

std::string token_of(const nlohmann::json& uri) {
  const std::string text = uri.get<std::string>();
  return text.substr(text.find('#') + 1);
}

// An API call of the fixture's, which must succeed with `status`.
nlohmann::json call(api::Api& api, const std::string& token, const std::string& body, int status) {
  auto acting = api.authorize("Bearer " + token);
  if (!acting) fixture_failed("authorize: " + acting.error().message);
  auto made = api.handle(*acting, "/", body);
  if (made.status != status) fixture_failed("the API answered " + made.body.dump() + " to " + body);
  return made.body;
}

}  // namespace

void show(std::string_view what, std::string_view bytes) {
  static const bool verbose = std::getenv("MEMBRANED_FUZZ_VERBOSE") != nullptr;
  if (!verbose) return;
  std::fprintf(stderr, "--- %.*s (%zu bytes):\n%.*s\n---\n", static_cast<int>(what.size()), what.data(),
               bytes.size(), static_cast<int>(bytes.size()), bytes.data());
}

void MemorySession::expires_after(std::chrono::steady_clock::duration d) {
  expired_ = false;
  deadline_.expires_after(d);
  deadline_.async_wait([weak = weak_from_this()](beast::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    self->expired_ = true;
    self->stream_.close();
  });
}

ServerFixture::TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "membraned-fuzz-XXXXXX").string();
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) fixture_failed(std::string("mkdtemp: ") + std::strerror(errno));
  path = buffer.data();
}

ServerFixture::TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path, ignored);
}

ServerFixture& ServerFixture::get() {
  static ServerFixture fixture;
  return fixture;
}

ServerFixture::ServerFixture() {
  auto key = storage::MasterKey::from_base64(core::base64_encode(*core::random_bytes(32)));
  if (!key) fixture_failed("master key: " + key.error().message);
  // No fsync per commit: the fuzzer makes membranes by the thousand and keeps none.
  auto store = storage::open_sqlite_store({std::filesystem::path(dir_.path) / "membraned.db", 2, 5000, false},
                                          std::move(*key));
  if (!store) fixture_failed("store: " + store.error().message);
  store_ = std::move(*store);
  api_.emplace(*store_, api::Settings{"127.0.0.1:8080", 30000});

  auto tenant = api_->create_tenant();
  if (!tenant) fixture_failed("tenant: " + tenant.error().message);
  tokens_.create = token_of((*tenant)["capabilities"]["create"]);
  tokens_.query = token_of((*tenant)["capabilities"]["query"]);
  tenant_ = (*tenant)["id"].get<std::string>();
  const auto membrane = call(*api_, tokens_.create, R"({"id":"fuzz"})", 201);
  tokens_.export_ = token_of(membrane["capabilities"]["export"]);
  const std::string upstream = "http://" + std::string(kUpstreamHost) + ":" + std::to_string(kUpstreamPort);
  tokens_.sigv4 = token_of(call(
      *api_, tokens_.export_,
      R"({"uri":")" + upstream +
          R"(/fn","allowQuery":true,)"
          R"("headers":{"X-Configured":"yes"},"hmac":{"aws4-hmac-sha256":{"awsAccessKeyId":"AKIDEXAMPLE",)"
          R"("secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY","region":"us-east-1","service":"lambda"}}})",
      201)["capability"]);
  tokens_.cap1 = token_of(call(*api_, tokens_.export_,
                               R"({"uri":")" + upstream +
                                   R"(/cap1?fixed=1","method":"POST",)"
                                   R"("hmac":{"cap1-hmac-sha512":{"key":"c2VjcmV0","keyId":"fuzz-key"}}})",
                               201)["capability"]);
  tokens_.head = token_of(call(*api_, tokens_.export_,
                               R"({"uri":")" + upstream + R"(/head","method":"HEAD"})", 201)["capability"]);

  server::ServerSettings settings;
  // Deadlines short enough that an input which makes the session wait for one fails quickly,
  // long enough that a busy machine never reaches them otherwise.
  settings.idle_timeout = settings.read_timeout = settings.write_timeout = std::chrono::milliseconds(10000);
  settings.upstream_timeout_ms = 10000;
  settings.metrics = true;
  context_.emplace(
      std::move(settings), *api_, [](const std::string&) {}, ioc_);
  // The default address policy: loopback closed, so a pooled connection is the only way through.
}

ServerFixture::~ServerFixture() {
  if (context_) reset();
}

std::string ServerFixture::substitute(std::string_view input) const {
  static constexpr std::string_view kPlaceholders[] = {"@CREATE@", "@QUERY@", "@EXPORT@",
                                                       "@INVOKE@", "@CAP1@",  "@HEAD@"};
  const std::string* values[] = {&tokens_.create, &tokens_.query, &tokens_.export_,
                                 &tokens_.sigv4,  &tokens_.cap1,  &tokens_.head};
  std::string out;
  out.reserve(input.size());
  while (!input.empty()) {
    bool replaced = false;
    if (input.front() == '@') {
      for (std::size_t i = 0; i < std::size(kPlaceholders); ++i) {
        if (input.starts_with(kPlaceholders[i])) {
          out += *values[i];
          input.remove_prefix(kPlaceholders[i].size());
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) {
      out += input.front();
      input.remove_prefix(1);
    }
  }
  return out;
}

ServerFixture::Connection ServerFixture::connect() {
  Connection c;
  c.client = std::make_unique<beast::test::stream>(ioc_);
  c.session = std::make_shared<MemorySession>(*context_, ioc_);
  c.session->stream().connect(*c.client);
  return c;
}

// The upstream's end of a pooled connection, on a thread of its own: a pending asynchronous read
// would keep the fixture's run() from ever returning when an input invokes nothing.
struct ServerFixture::UpstreamPeer {
  UpstreamPeer(int peer_fd, std::string answer)
      : fd(peer_fd), thread([this, answer = std::move(answer)] { serve(answer); }) {}
  ~UpstreamPeer() {
    ::shutdown(fd, SHUT_RDWR);  // ends a read still waiting for a request
    thread.join();
    ::close(fd);
  }
  // The first bytes of the request, then the whole answer and the end of the upstream's side.
  void serve(const std::string& answer) const {
    char request[512];
    if (::read(fd, request, sizeof request) <= 0) return;
    std::size_t sent = 0;
    while (sent < answer.size()) {
      const ssize_t n = ::send(fd, answer.data() + sent, answer.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<std::size_t>(n);
    }
    ::shutdown(fd, SHUT_WR);
  }
  int fd;
  std::thread thread;
};

void ServerFixture::pool_upstream(std::string_view answer) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    fixture_failed(std::string("socketpair: ") + std::strerror(errno));
  }
  peers_.push_back(std::make_unique<UpstreamPeer>(fds[0], std::string(answer)));
  auto connection = std::make_shared<server::UpstreamConnection>(ioc_);
  connection->plain.emplace(connection->strand);
  beast::error_code ec;
  connection->plain->socket().assign(server::tcp::v4(), fds[1], ec);
  if (ec) fixture_failed("assign: " + ec.message());
  context_->upstream.keep_idle(
      server::UpstreamClient::pool_key(tenant_, false, kUpstreamHost, kUpstreamPort, ""), std::move(connection));
}

void ServerFixture::reset() {
  context_->upstream.drop_idle();
  peers_.clear();
}

void ServerFixture::run() {
  ioc_.restart();
  ioc_.run();
}

}  // namespace membraned::fuzz
