#include "server/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <array>

#include "server/process_metrics.hpp"

namespace membraned::server {

std::string_view to_string(UpstreamError kind) {
  switch (kind) {
    case UpstreamError::tls_config: return "tls_config";
    case UpstreamError::dns: return "dns";
    case UpstreamError::connect: return "connect";
    case UpstreamError::tls: return "tls";
    case UpstreamError::send: return "send";
    case UpstreamError::timeout: return "timeout";
    case UpstreamError::reset: return "reset";
    case UpstreamError::malformed: return "malformed";
    case UpstreamError::truncated: return "truncated";
    case UpstreamError::refused: return "refused";
  }
  return "unknown";
}

namespace {

// Seconds, from a loopback hop to the longest upstream timeout the service allows.
prometheus::Histogram::BucketBoundaries latency_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}

}  // namespace

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& requests =
      prometheus::BuildCounter()
          .Name("membraned_requests_total")
          .Help("Requests answered, by operation (the capability's kind) and HTTP status code.")
          .Register(*registry);
  prometheus::Histogram& invocation =
      prometheus::BuildHistogram()
          .Name("membraned_invocation_duration_seconds")
          .Help("Invocations, from the request read in full to the end of the relayed answer (failed ones included).")
          .Register(*registry)
          .Add({}, latency_buckets());
  prometheus::Histogram& upstream =
      prometheus::BuildHistogram()
          .Name("membraned_upstream_duration_seconds")
          .Help("Upstream calls, from resolving or taking a pooled connection to the answer's header.")
          .Register(*registry)
          .Add({}, latency_buckets());
  prometheus::Family<prometheus::Counter>& upstream_errors =
      prometheus::BuildCounter()
          .Name("membraned_upstream_errors_total")
          .Help("Invocations that failed on the upstream side, by kind.")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& revocations =
      prometheus::BuildCounter()
          .Name("membraned_revocations_total")
          .Help("Revocations acknowledged (202): of a membrane, or of a whole tenant (deleteSelf).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& refused =
      prometheus::BuildCounter()
          .Name("membraned_connections_refused_total")
          .Help("Client connections answered 503 and closed at once, by the limit reached (total or per address).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& refusals =
      prometheus::BuildCounter()
          .Name("membraned_refusals_total")
          .Help("Requests a capability refused, by reason: unknown (401 as the token arrived), revoked, "
                "expired, used-up (401 later), rate (429), address (403).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& audit =
      prometheus::BuildCounter()
          .Name("membraned_audit_records_total")
          .Help("Audit log records written, or dropped (the writer's queue was full, or a write failed).")
          .Register(*registry);
  prometheus::Gauge& connections =
      prometheus::BuildGauge()
          .Name("membraned_open_connections")
          .Help("Client connections open now (the service's listener and the metrics listener).")
          .Register(*registry)
          .Add({});
  // Every kind is present from the start (at 0), so a rate() over it never lacks a series.
  std::array<prometheus::Counter*, 10> error_by_kind{};
  std::array<prometheus::Counter*, kRefusals.size()> refusal_by_reason{};
  prometheus::Counter& audit_written = audit.Add({{"result", "written"}});
  prometheus::Counter& audit_dropped = audit.Add({{"result", "dropped"}});

  Impl() {
    for (std::size_t i = 0; i < error_by_kind.size(); ++i) {
      error_by_kind[i] = &upstream_errors.Add({{"kind", std::string(to_string(static_cast<UpstreamError>(i)))}});
    }
    revocations.Add({{"kind", "membrane"}});
    revocations.Add({{"kind", "tenant"}});
    revocations.Add({{"kind", "grant"}});
    for (Refusal reason : kRefusals) {
      refusal_by_reason[static_cast<std::size_t>(reason)] =
          &refusals.Add({{"reason", std::string(to_string(reason))}});
    }
    refused.Add({{"limit", "total"}});
    refused.Add({{"limit", "address"}});
  }
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {}
Metrics::~Metrics() = default;

void Metrics::request(std::string_view operation, int code) {
  impl_->requests.Add({{"operation", std::string(operation)}, {"code", std::to_string(code)}}).Increment();
}

void Metrics::invocation_seconds(double seconds) { impl_->invocation.Observe(seconds); }
void Metrics::upstream_seconds(double seconds) { impl_->upstream.Observe(seconds); }
void Metrics::upstream_error(UpstreamError kind) { impl_->error_by_kind[static_cast<std::size_t>(kind)]->Increment(); }
void Metrics::revocation(std::string_view kind) { impl_->revocations.Add({{"kind", std::string(kind)}}).Increment(); }
void Metrics::refusal(Refusal reason) { impl_->refusal_by_reason[static_cast<std::size_t>(reason)]->Increment(); }
void Metrics::audit_records(std::string_view result, std::uint64_t count) {
  (result == "written" ? impl_->audit_written : impl_->audit_dropped).Increment(static_cast<double>(count));
}
void Metrics::connection_opened() { impl_->connections.Increment(); }
void Metrics::connection_closed() { impl_->connections.Decrement(); }
void Metrics::connection_refused(std::string_view limit) {
  impl_->refused.Add({{"limit", std::string(limit)}}).Increment();
}

namespace {

prometheus::ClientMetric counted(double value, std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.counter.value = value;
  return metric;
}

prometheus::ClientMetric measured(double value) {
  prometheus::ClientMetric metric;
  metric.gauge.value = value;
  return metric;
}

// Read from the store at each scrape (it counts them itself: the storage layer has no registry).
std::vector<prometheus::MetricFamily> resolution_cache_families(const storage::ResolutionCacheStats& cache) {
  using prometheus::MetricType;
  return {
      {"membraned_resolution_cache_lookups_total",
       "Tokens looked up in the resolution cache, by result: hit (served from it), miss (not there), stale (there "
       "but revoked or expired since: resolved again)",
       MetricType::Counter,
       {counted(static_cast<double>(cache.hits), {{"result", "hit"}}),
        counted(static_cast<double>(cache.misses), {{"result", "miss"}}),
        counted(static_cast<double>(cache.stale), {{"result", "stale"}})}},
      {"membraned_resolution_cache_evictions_total",
       "Resolutions dropped from the cache to make room (least recently used first)", MetricType::Counter,
       {counted(static_cast<double>(cache.evictions))}},
      {"membraned_resolution_cache_entries", "Resolutions in the cache", MetricType::Gauge,
       {measured(static_cast<double>(cache.entries))}},
      {"membraned_resolution_cache_bytes", "Estimated memory the cached resolutions take", MetricType::Gauge,
       {measured(static_cast<double>(cache.bytes))}},
      {"membraned_resolution_cache_max_bytes", "The cache's budget (--resolution-cache-mb)", MetricType::Gauge,
       {measured(static_cast<double>(cache.max_bytes))}},
  };
}

}  // namespace

std::string Metrics::render(const storage::ResolutionCacheStats& cache) const {
  auto families = impl_->registry->Collect();
  for (auto& family : process_metric_families()) families.push_back(std::move(family));
  for (auto& family : resolution_cache_families(cache)) families.push_back(std::move(family));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace membraned::server
