// The audit log's writer (contract §12): I/O threads hand it records and never wait for it. Each
// record becomes its line at once, appended to a bounded queue of text in front of one thread of
// its own, which writes what is queued with write(2), many lines per call. A full queue drops the
// record and counts it. No Asio.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "core/result.hpp"
#include "server/audit_record.hpp"

namespace membraned::server {

// Lines waiting for the writer at most, in bytes: some 50 000 records of a few hundred bytes,
// seconds of the heaviest load while a disk stalls.
inline constexpr std::size_t kAuditQueueBytes = 16 * 1024 * 1024;
// How long the last records may take to go out when the service stops.
inline constexpr std::chrono::seconds kAuditDrainTimeout{10};

class AuditLog {
 public:
  enum class Delivery { written, dropped };
  // Records that went out or were lost (`count` at a time); called from any thread.
  using Counter = std::function<void(Delivery delivery, std::uint64_t count)>;
  // A line for the service's own log (a failed write or reopen); called from the writer thread.
  using Report = std::function<void(const std::string& line)>;

  // Opens `path` for appending (created 0600 under the service's umask), or standard output for
  // "-", and starts the writer thread.
  static core::Result<std::unique_ptr<AuditLog>> open(const std::string& path, std::size_t capacity_bytes,
                                                      Counter counter, Report report);
  ~AuditLog();  // stop(kAuditDrainTimeout)
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Never blocks on the writer: the record's line is queued, or dropped and counted when it does
  // not fit in `capacity_bytes` beside the lines queued already (or the log has stopped).
  void record(const AuditRecord& record);
  // The file is opened again by its name between two writes (logrotate moved it away): records
  // queued before go to one file or the other, those queued after to the new one; none is lost.
  // Nothing for standard output.
  void reopen();
  // Writes what is queued, waiting at most `drain` for the output to take it, then ends the
  // thread. Records handed in afterwards are dropped.
  void stop(std::chrono::milliseconds drain);

 private:
  struct Shared;
  explicit AuditLog(std::shared_ptr<Shared> shared);
  std::shared_ptr<Shared> shared_;  // also the writer thread's: it may outlive a stop that timed out
  std::thread writer_;
};

}  // namespace membraned::server
