#include "server/server_context.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "server/credentials_exchange.hpp"

namespace membraned::server {

std::string log_timestamp() {
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

namespace {

std::optional<std::string> environment_variable(std::string_view name) {
  const char* value = std::getenv(std::string(name).c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

}  // namespace

ServerContext::ServerContext(ServerSettings s, api::Api& a, RequestLogger l, net::io_context& io)
    : settings(std::move(s)),
      api(a),
      log(std::move(l)),
      ioc(io),
      upstream(io),
      credentials(
          settings.aws_config, environment_variable,
          [this](core::CredentialsCall call, std::chrono::milliseconds timeout, std::size_t max_body,
                 std::function<void(CredentialsHttpResult)> done) {
            exchange_credentials_call(upstream, std::move(call), timeout, max_body, std::move(done));
          },
          [this](const std::string& line) {
            if (log) log(log_timestamp() + " " + line);
          }) {
  if (api.waits_on_network()) {
    const std::size_t n =
        settings.store_threads != 0 ? settings.store_threads : std::max<std::size_t>(1, settings.threads);
    store_pool = std::make_unique<net::thread_pool>(n);
  }
}

void ServerContext::track(const std::shared_ptr<Stoppable>& session) {
  std::lock_guard lock(sessions_mutex_);
  std::erase_if(sessions_, [](const auto& w) { return w.expired(); });
  sessions_.push_back(session);
}

void ServerContext::notify_stopping() {
  std::lock_guard lock(sessions_mutex_);
  for (auto& weak : sessions_) {
    if (auto s = weak.lock()) s->on_server_stopping();
  }
}

}  // namespace membraned::server
