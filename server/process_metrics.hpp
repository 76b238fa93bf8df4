// The process metrics Prometheus users expect of an exporter (process_cpu_seconds_total,
// process_resident_memory_bytes, process_open_fds...), read from /proc at each scrape, and
// membraned_build_info. Debian's prometheus-cpp has no process collector of its own.
#pragma once

#include <prometheus/metric_family.h>

#include <vector>

namespace membraned::server {

// The families as of now; a value /proc does not give (another kernel) is left out.
std::vector<prometheus::MetricFamily> process_metric_families();

}  // namespace membraned::server
