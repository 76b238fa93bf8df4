// server/host_resolver: the lookups of one tenant never take every resolver thread, a name asked
// twice is looked up once, a caller that stops waiting is never called and its queued lookup never
// made, and nothing is delivered after stop(). The lookup function is a fake that blocks names
// starting with "slow" until the test lets them go.
#include <gtest/gtest.h>

#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/host_resolver.hpp"

namespace {

namespace net = boost::asio;
using membraned::server::HostResolver;
using namespace std::chrono_literals;

// getaddrinfo as the test wants it: "slow..." names block until released, others answer at once.
// Held by the resolver's threads (they may finish a lookup after the test).
class FakeDns : public std::enable_shared_from_this<FakeDns> {
 public:
  HostResolver::LookupFunction function() {
    return [self = shared_from_this()](const std::string& host) { return self->lookup(host); };
  }

  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }

  // How many lookups of `host` were started.
  int started(const std::string& host) {
    std::lock_guard lock(mutex_);
    return started_[host];
  }
  int running() {
    std::lock_guard lock(mutex_);
    return running_;
  }
  bool wait_running(int n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 5s, [&] { return running_ == n; });
  }

 private:
  std::pair<boost::system::error_code, HostResolver::Addresses> lookup(const std::string& host) {
    std::unique_lock lock(mutex_);
    ++started_[host];
    if (host.rfind("slow", 0) == 0) {
      ++running_;
      changed_.notify_all();
      changed_.wait(lock, [&] { return released_; });
      --running_;
      return {net::error::host_not_found_try_again, {}};
    }
    return {{}, {net::ip::make_address("192.0.2.7")}};
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, int> started_;
  int running_ = 0;
  bool released_ = false;
};

struct Outcome {
  bool called = false;
  boost::system::error_code ec;
  HostResolver::Addresses addresses;
};

class HostResolverTest : public testing::Test {
 protected:
  void TearDown() override { dns_->release(); }

  HostResolver::Lookup resolve(HostResolver& resolver, const std::string& host, const std::string& scope,
                               Outcome& out) {
    return resolver.resolve(host, scope, ioc_.get_executor(),
                            [&out](boost::system::error_code ec, HostResolver::Addresses a) {
                              out.called = true;
                              out.ec = ec;
                              out.addresses = std::move(a);
                            });
  }

  void run_until(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      ioc_.restart();
      ioc_.run_for(5ms);
    }
    EXPECT_TRUE(done()) << "timed out waiting";
  }

  void run_for(std::chrono::milliseconds d) {
    ioc_.restart();
    ioc_.run_for(d);
  }

  std::shared_ptr<FakeDns> dns_ = std::make_shared<FakeDns>();
  net::io_context ioc_;
};

TEST_F(HostResolverTest, OneTenantsSlowNamesLeaveThreadsForEveryoneElse) {
  HostResolver resolver({.threads = 4, .per_scope = 2}, dns_->function());
  std::vector<Outcome> slow(4);
  std::vector<HostResolver::Lookup> held;
  for (int i = 0; i < 4; ++i)
    held.push_back(resolve(resolver, "slow" + std::to_string(i) + ".test", "attacker", slow[i]));
  ASSERT_TRUE(dns_->wait_running(2));
  run_for(50ms);
  EXPECT_EQ(dns_->running(), 2) << "one tenant ran more lookups at once than its share";
  EXPECT_EQ(dns_->started("slow2.test") + dns_->started("slow3.test"), 0);

  Outcome victim;
  auto lookup = resolve(resolver, "victim.test", "victim", victim);
  run_until([&] { return victim.called; });
  EXPECT_FALSE(victim.ec);
  ASSERT_EQ(victim.addresses.size(), 1u);
  EXPECT_EQ(victim.addresses[0].to_string(), "192.0.2.7");
  // The service's own calls (credential sources) have their share too.
  Outcome own;
  auto own_lookup = resolve(resolver, "sts.test", "", own);
  run_until([&] { return own.called; });
  EXPECT_FALSE(own.ec);
  for (const auto& o : slow) EXPECT_FALSE(o.called);

  dns_->release();
  run_until([&] { return slow[0].called && slow[1].called && slow[2].called && slow[3].called; });
  EXPECT_EQ(slow[3].ec, net::error::host_not_found_try_again);
}

TEST_F(HostResolverTest, ANameAskedAgainJoinsTheLookupInFlight) {
  HostResolver resolver({.threads = 4, .per_scope = 2}, dns_->function());
  Outcome first, second, other_tenant;
  auto a = resolve(resolver, "slow.test", "t", first);
  ASSERT_TRUE(dns_->wait_running(1));
  auto b = resolve(resolver, "SLOW.test", "t", second);        // names are not case-sensitive
  auto c = resolve(resolver, "slow.test", "u", other_tenant);  // another tenant's share: its own
  ASSERT_TRUE(dns_->wait_running(2));
  run_for(50ms);
  EXPECT_EQ(dns_->started("slow.test"), 2);
  dns_->release();
  run_until([&] { return first.called && second.called && other_tenant.called; });
  EXPECT_EQ(dns_->started("slow.test"), 2);
}

TEST_F(HostResolverTest, ACallerThatStopsWaitingIsNotCalledAndItsQueuedLookupNotMade) {
  HostResolver resolver({.threads = 2, .per_scope = 1}, dns_->function());
  Outcome blocking, withdrawn, running_withdrawn;
  auto a = resolve(resolver, "slow-a.test", "t", blocking);
  ASSERT_TRUE(dns_->wait_running(1));
  auto b = resolve(resolver, "slow-b.test", "t", withdrawn);  // queued: the tenant's share is taken
  b.reset();
  a.reset();  // withdrawn while its lookup runs
  dns_->release();
  run_for(200ms);
  EXPECT_FALSE(blocking.called);
  EXPECT_FALSE(withdrawn.called);
  EXPECT_EQ(dns_->started("slow-b.test"), 0) << "a lookup nobody waited for any more was made";
  Outcome after;
  auto c = resolve(resolver, "fast.test", "t", after);
  run_until([&] { return after.called; });
}

TEST_F(HostResolverTest, NothingIsDeliveredAfterStop) {
  HostResolver resolver({.threads = 2, .per_scope = 2}, dns_->function());
  Outcome out, queued_after;
  auto a = resolve(resolver, "slow.test", "t", out);
  ASSERT_TRUE(dns_->wait_running(1));
  resolver.stop();
  dns_->release();
  auto b = resolve(resolver, "fast.test", "t", queued_after);
  run_for(200ms);
  EXPECT_FALSE(out.called);
  EXPECT_FALSE(queued_after.called);
  EXPECT_EQ(dns_->started("fast.test"), 0);
}

TEST(HostResolverSystem, LooksUpAnAddressWithoutAsking) {
  auto lookup = HostResolver::system_lookup();
  auto [ec, addresses] = lookup("127.0.0.1");
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_EQ(addresses.size(), 1u);
  EXPECT_EQ(addresses[0].to_string(), "127.0.0.1");
}

}  // namespace
