// Operator metrics in the Prometheus text format, kept in a prometheus-cpp registry (Debian's
// prometheus-cpp-dev: its registry and serializer, not its HTTP exposer; the server's own
// listener serves them). Thread-safe: every method may be called from any I/O thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "server/audit_record.hpp"
#include "server/upstream_error.hpp"
#include "storage/store.hpp"

namespace membraned::server {

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // One answered request: `operation` is the capability's (create, query, export, revoke,
  // deleteSelf, invoke) or none/healthz/metrics; `code` the status sent.
  void request(std::string_view operation, int code);
  void invocation_seconds(double seconds);  // from the request read to the end of the relayed answer
  void upstream_seconds(double seconds);    // from the first upstream step to its answer's header
  void upstream_error(UpstreamError kind);
  void revocation(std::string_view kind);   // "membrane", "grant" or "tenant"
  void refusal(Refusal reason);             // a capability refused a request (contract §11)
  void audit_records(std::string_view result, std::uint64_t count);  // "written" or "dropped"
  void connection_opened();
  void connection_closed();
  void connection_refused(std::string_view limit);  // "total" or "address"

  // Text exposition format 0.0.4, with the store's resolution cache as of now.
  std::string render(const storage::ResolutionCacheStats& cache) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace membraned::server
