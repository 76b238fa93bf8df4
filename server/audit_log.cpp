#include "server/audit_log.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <utility>

namespace membraned::server {

namespace {

constexpr std::string_view kStandardOutput = "-";
// A batch's buffer is kept for the next, up to this size.
constexpr std::size_t kKeptBufferBytes = 1024 * 1024;

int open_output(const std::string& path) {
  if (path == kStandardOutput) return STDOUT_FILENO;
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

// The whole of `text`, through partial writes and interruptions.
bool write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Signals go to the I/O threads (SIGUSR1 and SIGTERM to Asio's signal_set), and a reader that
// went away (standard output into a closed pipe) is an EPIPE here rather than the end of the
// process.
void block_signals_in_this_thread() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGPIPE, SIGUSR1, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, signal);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace

struct AuditLog::Shared {
  Shared(std::string output_path, int output_fd, std::size_t queue_capacity, Counter count,
         Report report_line)
      : path(std::move(output_path)),
        capacity(queue_capacity),
        counter(std::move(count)),
        report(std::move(report_line)),
        fd(output_fd) {}

  const std::string path;
  const std::size_t capacity;

  std::mutex mutex;
  std::condition_variable wake;      // for the writer: records, a reopen, or the stop
  std::condition_variable finished;  // for stop: the writer is done
  std::string queue;                 // lines, whole
  std::size_t queued_records = 0;
  bool reopen_asked = false;
  bool stopping = false;
  bool done = false;

  // After a stop that timed out, the writer may still run while the service goes: it then calls
  // neither callback (they reach the service's metrics and log).
  std::mutex callbacks_mutex;
  bool abandoned = false;

  void count(Delivery delivery, std::uint64_t n) {
    std::lock_guard lock(callbacks_mutex);
    if (!abandoned) counter(delivery, n);
  }
  void say(const std::string& line) {
    std::lock_guard lock(callbacks_mutex);
    if (!abandoned) report(line);
  }
  void abandon() {
    std::lock_guard lock(callbacks_mutex);
    abandoned = true;
  }

  // The writer thread: each turn takes everything queued, reopens the file if asked, then writes
  // what it took in one call. A reopen thus falls between two records, and every record queued
  // after reopen() returned goes to the new file.
  // How long the writer waits for more records once one arrived, and how many it need not wait
  // for. A record reaches the file at most this much later; nothing waits on it.
  static constexpr std::chrono::milliseconds kLinger{20};
  static constexpr std::size_t kBatch = 4096;

  void run() {
    block_signals_in_this_thread();
    std::string batch;
    for (;;) {
      std::size_t records = 0;
      bool reopen_now = false;
      bool stop_now = false;
      {
        std::unique_lock lock(mutex);
        wake.wait(lock, [this] { return !queue.empty() || reopen_asked || stopping; });
        // Let the batch grow a little before taking it: one wake-up and one write for many
        // records instead of a few, which on a busy service is what the audit log costs.
        wake.wait_for(lock, kLinger, [this] { return reopen_asked || stopping || queued_records >= kBatch; });
        batch.swap(queue);
        records = std::exchange(queued_records, 0);
        reopen_now = std::exchange(reopen_asked, false);
        stop_now = stopping;
      }
      if (reopen_now) open_again();
      const bool drained = batch.empty();
      if (!drained) write_batch(batch, records);
      // The two buffers take turns; one that a burst made large is given back.
      batch.clear();
      if (batch.capacity() > kKeptBufferBytes) batch = std::string();
      if (stop_now && drained) break;
    }
    if (path != kStandardOutput) ::close(fd);
    std::lock_guard lock(mutex);
    done = true;
    finished.notify_all();
  }

  void write_batch(std::string_view lines, std::size_t records) {
    if (write_all(fd, lines)) {
      failing = false;
      count(Delivery::written, records);
    } else {
      // Reported once until a write works again, so a full disk does not flood the log.
      if (!failing)
        say("audit log: cannot write to " + path + ": " + std::strerror(errno) + "; records are dropped");
      failing = true;
      count(Delivery::dropped, records);
    }
  }

  void open_again() {
    if (path == kStandardOutput) return;
    const int fresh = open_output(path);
    if (fresh < 0) {
      say("audit log: cannot reopen " + path + ": " + std::strerror(errno) +
          "; still writing to the file open before");
      return;
    }
    ::close(fd);
    fd = fresh;
  }

 private:
  const Counter counter;
  const Report report;
  int fd;                // the writer thread's alone
  bool failing = false;  // the last write failed (the writer thread's alone)
};

core::Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::string& path, std::size_t capacity_bytes,
                                                       Counter counter, Report report) {
  const int fd = open_output(path);
  if (fd < 0)
    return core::Error::invalid("audit-log", "cannot open --audit-log " + path + ": " + std::strerror(errno));
  auto shared = std::make_shared<Shared>(path, fd, capacity_bytes, std::move(counter), std::move(report));
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(shared)));
}

AuditLog::AuditLog(std::shared_ptr<Shared> shared)
    : shared_(std::move(shared)), writer_([shared = shared_] { shared->run(); }) {}

AuditLog::~AuditLog() { stop(kAuditDrainTimeout); }

void AuditLog::record(const AuditRecord& record) {
  // Formatted outside the mutex, into a buffer each thread keeps: the lock covers one copy.
  thread_local std::string line;
  line.clear();
  append_audit_line(line, record);
  bool queued = false;
  bool first = false;
  {
    std::lock_guard lock(shared_->mutex);
    if (!shared_->stopping && shared_->queue.size() + line.size() <= shared_->capacity) {
      first = shared_->queue.empty();
      shared_->queue.append(line);
      ++shared_->queued_records;
      queued = true;
    }
  }
  if (!queued) return shared_->count(Delivery::dropped, 1);
  // The writer takes the whole queue at once: it needs waking only for the first record of a
  // batch, so a busy service does not pay a wake-up per request.
  if (first) shared_->wake.notify_one();
}

void AuditLog::reopen() {
  {
    std::lock_guard lock(shared_->mutex);
    shared_->reopen_asked = true;
  }
  shared_->wake.notify_one();
}

void AuditLog::stop(std::chrono::milliseconds drain) {
  if (!writer_.joinable()) return;
  std::unique_lock lock(shared_->mutex);
  shared_->stopping = true;
  shared_->wake.notify_one();
  const bool done = shared_->finished.wait_for(lock, drain, [this] { return shared_->done; });
  lock.unlock();
  if (done) return writer_.join();
  // A write that does not return (standard output into a pipe nobody reads) must not hold the
  // service's exit: the thread is left to the process's end, its records with it.
  shared_->say("audit log: the output did not take the last records in time; they are lost");
  shared_->abandon();
  writer_.detach();
}

}  // namespace membraned::server
