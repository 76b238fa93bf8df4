#include "server/server_context.hpp"

#include <chrono>
#include <cstdlib>

#include "core/time.hpp"
#include "server/credentials_exchange.hpp"

namespace membraned::server {

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
      connections(settings.max_connections, settings.max_connections_per_address),
      bodies(settings.max_buffered_bodies),
      credentials(
          settings.aws_config, environment_variable,
          [this](core::CredentialsCall call, std::chrono::milliseconds timeout, std::size_t max_body,
                 std::function<void(CredentialsHttpResult)> done) {
            exchange_credentials_call(upstream, std::move(call), timeout, max_body, std::move(done));
          },
          [this](const std::string& line) { log_event("warning", line); }) {
  if (api.waits_on_network()) {
    const std::size_t n =
        settings.store_threads != 0 ? settings.store_threads : std::max<std::size_t>(1, settings.threads);
    store_pool = std::make_unique<net::thread_pool>(n);
  } else if (settings.write_threads != 0) {
    write_pool = std::make_unique<net::thread_pool>(settings.write_threads);
  }
}

std::variant<ConnectionGate::Slot, ConnectionGate::Refusal> ConnectionGate::admit(const net::ip::address& address) {
  std::lock_guard lock(mutex_);
  if (total_limit_ != 0 && open_ >= total_limit_) return Refusal::total;
  auto& from_address = per_address_[address];
  if (per_address_limit_ != 0 && from_address >= per_address_limit_) {
    if (from_address == 0) per_address_.erase(address);
    return Refusal::address;
  }
  ++from_address;
  ++open_;
  return Slot(this, address);
}

void ConnectionGate::release(const net::ip::address& address) {
  std::lock_guard lock(mutex_);
  --open_;
  auto it = per_address_.find(address);
  if (it != per_address_.end() && --it->second == 0) per_address_.erase(it);
}

void ServerContext::track(const std::shared_ptr<Stoppable>& session) {
  std::lock_guard lock(sessions_mutex_);
  std::erase_if(sessions_, [](const auto& w) { return w.expired(); });
  sessions_.push_back(session);
}

void ServerContext::log_event(std::string_view level, std::string_view message) const {
  if (!log) return;
  log(event_log_line({core::format_log_timestamp(std::chrono::system_clock::now()), level, message},
                     settings.log_format));
}

void ServerContext::notify_stopping() {
  std::lock_guard lock(sessions_mutex_);
  for (auto& weak : sessions_) {
    if (auto s = weak.lock()) s->on_server_stopping();
  }
}

}  // namespace membraned::server
