#include "server/process_metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>

#include "core/version.hpp"

namespace membraned::server {

namespace {

prometheus::MetricFamily one_value(const char* name, const char* help, prometheus::MetricType type, double value) {
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  return {name, help, type, {metric}};
}

// /proc/self/stat after the command name (which may hold spaces): field 3 (state) onwards.
std::vector<std::string> stat_fields() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  std::getline(in, line);
  const auto close = line.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string field; rest >> field;) fields.push_back(field);
  return fields;
}

// Seconds since the epoch at which the system booted (/proc/stat btime).
std::optional<double> boot_time() {
  std::ifstream in("/proc/stat");
  for (std::string key; in >> key;) {
    if (key == "btime") {
      double value = 0;
      if (in >> value) return value;
      return std::nullopt;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return std::nullopt;
}

std::size_t open_descriptors() {
  std::error_code ec;
  std::size_t count = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec)) {
    ++count;
  }
  return count > 0 ? count - 1 : 0;  // less the descriptor that reads the folder
}

}  // namespace

std::vector<prometheus::MetricFamily> process_metric_families() {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> families;

  prometheus::ClientMetric build;
  build.label = {{"commit", core::kCommit}, {"version", core::kVersion}};
  build.gauge.value = 1;
  families.push_back({"membraned_build_info", "The running build: its version and git commit (value 1).",
                      MetricType::Gauge, {build}});

  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  // Fields counted from 3 (state): utime 14, stime 15, starttime 22, vsize 23, rss 24.
  const auto fields = stat_fields();
  auto field = [&](std::size_t number) { return std::stod(fields.at(number - 3)); };
  if (fields.size() >= 22 && ticks > 0) {
    families.push_back(one_value("process_cpu_seconds_total", "User and system CPU time spent, in seconds.",
                                 MetricType::Counter, (field(14) + field(15)) / ticks));
    families.push_back(one_value("process_virtual_memory_bytes", "Virtual memory size, in bytes.", MetricType::Gauge,
                                 field(23)));
    families.push_back(one_value("process_resident_memory_bytes", "Resident memory size, in bytes.",
                                 MetricType::Gauge, field(24) * page));
    if (auto booted = boot_time()) {
      families.push_back(one_value("process_start_time_seconds", "Start time of the process since the epoch, in seconds.",
                                   MetricType::Gauge, *booted + field(22) / ticks));
    }
  }
  families.push_back(one_value("process_open_fds", "Open file descriptors.", MetricType::Gauge,
                               static_cast<double>(open_descriptors())));
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    families.push_back(one_value("process_max_fds", "The limit of open file descriptors.", MetricType::Gauge,
                                 static_cast<double>(limit.rlim_cur)));
  }
  return families;
}

}  // namespace membraned::server
