#include "server/host_resolver.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <thread>

namespace membraned::server {

namespace net = boost::asio;

namespace {

boost::system::error_code getaddrinfo_error(int code) {
  switch (code) {
    case EAI_AGAIN: return net::error::host_not_found_try_again;
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
      return net::error::host_not_found;
    case EAI_MEMORY: return net::error::no_memory;
    case EAI_SYSTEM: return {errno, boost::system::system_category()};
    default: return net::error::no_recovery;
  }
}

// getaddrinfo as Asio's resolver calls it for a host and a numeric port: any family, stream
// sockets over TCP, no flags. The port is the caller's business.
std::pair<boost::system::error_code, HostResolver::Addresses> getaddrinfo_lookup(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  addrinfo* list = nullptr;
  if (const int code = ::getaddrinfo(host.c_str(), nullptr, &hints, &list); code != 0) {
    return {getaddrinfo_error(code), {}};
  }
  HostResolver::Addresses addresses;
  for (const addrinfo* entry = list; entry != nullptr; entry = entry->ai_next) {
    net::ip::address address;
    if (entry->ai_family == AF_INET) {
      net::ip::address_v4::bytes_type bytes;
      std::memcpy(bytes.data(), &reinterpret_cast<const sockaddr_in*>(entry->ai_addr)->sin_addr,
                  bytes.size());
      address = net::ip::address_v4(bytes);
    } else if (entry->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(entry->ai_addr);
      net::ip::address_v6::bytes_type bytes;
      std::memcpy(bytes.data(), &in6->sin6_addr, bytes.size());
      address = net::ip::address_v6(bytes, in6->sin6_scope_id);
    } else {
      continue;
    }
    if (std::find(addresses.begin(), addresses.end(), address) == addresses.end()) {
      addresses.push_back(address);
    }
  }
  ::freeaddrinfo(list);
  if (addresses.empty()) return {net::error::host_not_found, {}};
  return {{}, std::move(addresses)};
}

}  // namespace

struct HostResolver::State {
  struct Waiter {
    net::any_io_executor executor;
    Done done;
  };
  struct Job {
    std::string scope;
    std::string host;
    std::vector<std::weak_ptr<Waiter>> waiters;
  };

  std::size_t per_scope = 1;
  LookupFunction lookup;

  std::mutex mutex;
  std::condition_variable wake;
  bool stopped = false;
  std::list<std::shared_ptr<Job>> queue;  // not started, oldest first
  // Queued or running, by scope and host.
  std::map<std::pair<std::string, std::string>, std::shared_ptr<Job>> jobs;
  std::map<std::string, std::size_t> running;  // by scope

  static bool awaited(const Job& job) {
    return std::any_of(job.waiters.begin(), job.waiters.end(), [](const auto& w) { return !w.expired(); });
  }

  // Under the lock: the oldest queued job whose scope has a thread to spare, taken off the
  // queue. Jobs nobody waits for any more are dropped on the way.
  std::shared_ptr<Job> take_next() {
    for (auto it = queue.begin(); it != queue.end();) {
      const auto job = *it;
      if (!awaited(*job)) {
        jobs.erase({job->scope, job->host});
        it = queue.erase(it);
        continue;
      }
      auto busy = running.find(job->scope);
      if (busy == running.end() || busy->second < per_scope) {
        queue.erase(it);
        return job;
      }
      ++it;
    }
    return nullptr;
  }

  void work() {
    std::unique_lock lock(mutex);
    while (true) {
      std::shared_ptr<Job> job;
      wake.wait(lock, [&] { return stopped || (job = take_next()) != nullptr; });
      if (stopped) return;
      ++running[job->scope];
      lock.unlock();
      auto [ec, addresses] = lookup(job->host);
      lock.lock();
      if (--running[job->scope] == 0) running.erase(job->scope);
      jobs.erase({job->scope, job->host});
      // Posted under the lock, so that nothing is posted once stop() returned. The handler holds
      // the waiter weakly: a caller that withdrew before it runs is not called.
      if (!stopped) {
        for (const auto& weak : job->waiters) {
          if (auto waiter = weak.lock()) {
            net::post(waiter->executor, [weak, ec = ec, addresses = addresses] {
              if (auto w = weak.lock()) w->done(ec, addresses);
            });
          }
        }
      }
      // A scope has a thread to spare again: its queued jobs may start.
      wake.notify_all();
    }
  }
};

HostResolver::LookupFunction HostResolver::system_lookup() { return getaddrinfo_lookup; }

HostResolver::HostResolver(Limits limits, LookupFunction lookup) : state_(std::make_shared<State>()) {
  state_->per_scope = std::max<std::size_t>(1, limits.per_scope);
  state_->lookup = std::move(lookup);
  for (std::size_t i = 0; i < std::max<std::size_t>(1, limits.threads); ++i) {
    // The thread keeps the state: it may outlive the resolver, in a lookup nobody waits for.
    std::thread([state = state_] { state->work(); }).detach();
  }
}

HostResolver::~HostResolver() { stop(); }

HostResolver::Lookup HostResolver::resolve(std::string host, std::string scope, net::any_io_executor executor,
                                           Done done) {
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto waiter = std::make_shared<State::Waiter>(State::Waiter{std::move(executor), std::move(done)});
  std::lock_guard lock(state_->mutex);
  if (state_->stopped) return waiter;
  auto& job = state_->jobs[{scope, host}];
  if (!job) {
    job = std::make_shared<State::Job>(State::Job{std::move(scope), std::move(host), {}});
    state_->queue.push_back(job);
  }
  job->waiters.push_back(waiter);
  state_->wake.notify_one();
  return waiter;
}

void HostResolver::stop() {
  std::lock_guard lock(state_->mutex);
  state_->stopped = true;
  state_->queue.clear();
  state_->jobs.clear();
  state_->wake.notify_all();
}

}  // namespace membraned::server
