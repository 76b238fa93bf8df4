// Name resolution for the outgoing side (invocations, the export-time check, credential fetches),
// on a small pool of threads of its own. getaddrinfo blocks and cannot be cancelled: a name whose
// servers never answer holds a thread for the resolver's whole timeout (5 s x attempts with
// glibc's defaults). Asio's async_resolve runs every lookup of the process on one such thread, so
// one slow name made every later lookup wait behind it. Here:
//
// - lookups run on `threads` threads, each one getaddrinfo at a time;
// - one scope (a tenant; the service's own calls are the scope "") runs at most `per_scope` of them
//   at once; its further lookups wait in the queue without holding a thread, so a flood of slow
//   names from one tenant cannot take every thread;
// - a name asked again in the same scope while its lookup is queued or running joins that lookup;
// - a caller that stops waiting (its deadline, see UpstreamClient) drops its Lookup; a queued
//   lookup nobody waits for any more is never run.
//
// The caller bounds its wait with a timer of its own: a lookup that is queued, or stuck in
// getaddrinfo, never delays its caller past that deadline.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace membraned::server {

struct HostResolverLimits {
  std::size_t threads = 8;    // lookups running at once, in all
  std::size_t per_scope = 2;  // lookups one scope (a tenant) runs at once
};

class HostResolver {
 public:
  using Addresses = std::vector<boost::asio::ip::address>;
  using Done = std::function<void(boost::system::error_code, Addresses)>;
  // One blocking lookup: the addresses a name has, or why not. The system's is getaddrinfo.
  using LookupFunction =
      std::function<std::pair<boost::system::error_code, Addresses>(const std::string& host)>;

  using Limits = HostResolverLimits;

  static LookupFunction system_lookup();

  explicit HostResolver(Limits limits = {}, LookupFunction lookup = system_lookup());
  // stop(); threads still in a lookup finish it on their own (they are not waited for: a lookup
  // can take the resolver's whole timeout), and then deliver nothing.
  ~HostResolver();
  HostResolver(const HostResolver&) = delete;
  HostResolver& operator=(const HostResolver&) = delete;

  // While the caller holds the returned Lookup, `done` runs once, posted to `executor`, with the
  // addresses of `host` (a name; case does not matter) or the lookup's error. Dropping the Lookup
  // withdraws the call: `done` does not run, and a lookup left without callers is not started.
  using Lookup = std::shared_ptr<void>;
  [[nodiscard]] Lookup resolve(std::string host, std::string scope, boost::asio::any_io_executor executor,
                               Done done);

  // No `done` runs after this returns, and no lookup starts: before the io_context the executors
  // belong to goes. Idempotent.
  void stop();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace membraned::server
