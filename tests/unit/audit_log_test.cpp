// The audit log (contract §12): a record's line, and the real writer over temporary files and a
// named pipe nobody reads (an output that stalls): a full queue drops and counts instead of
// blocking, a reopen loses nothing, a stalled output does not hold the stop. And request ids.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/request_id.hpp"
#include "server/audit_log.hpp"
#include "server/audit_record.hpp"
#include "tests/support/test_support.hpp"

namespace {

using membraned::server::AuditLog;
using membraned::server::AuditRecord;
using membraned::server::Refusal;
using namespace std::chrono_literals;

// A record and the text its views show (a record only borrows it), numbered by its request id.
struct NumberedRecord {
  explicit NumberedRecord(int n) : id("id-" + std::to_string(n)) {
    record.time = std::chrono::system_clock::now();
    record.request_id = id;
    record.operation = "invoke";
    record.tenant = "8099370dbb6b61b50b67ad6b1fadf82c";
    record.chain = chain;
    record.client = *membraned::core::IpAddress::parse("192.0.2.7");
    record.method = "POST";
    record.status = 200;
  }
  NumberedRecord(const NumberedRecord&) = delete;
  NumberedRecord& operator=(const NumberedRecord&) = delete;

  std::string id;
  std::array<std::string_view, 2> chain{"g_000000000000000000000002", "g_000000000000000000000001"};
  AuditRecord record;
};

std::vector<std::string> lines_of(const std::filesystem::path& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// What the writer counted, as the metrics would.
struct Counts {
  std::atomic<std::uint64_t> written{0};
  std::atomic<std::uint64_t> dropped{0};
  std::mutex mutex;
  std::vector<std::string> reports;

  AuditLog::Counter counter() {
    return [this](AuditLog::Delivery delivery, std::uint64_t n) {
      (delivery == AuditLog::Delivery::written ? written : dropped) += n;
    };
  }
  AuditLog::Report report() {
    return [this](const std::string& line) {
      std::lock_guard lock(mutex);
      reports.push_back(line);
    };
  }
};

std::unique_ptr<AuditLog> open_log(const std::filesystem::path& path, std::size_t capacity_bytes, Counts& counts) {
  auto opened = AuditLog::open(path.string(), capacity_bytes, counts.counter(), counts.report());
  EXPECT_TRUE(opened.ok()) << opened.error().message;
  return opened.ok() ? std::move(*opened) : nullptr;
}

TEST(AuditRecordTest, ALineHasTheFieldsInOrderTheGrantPresentedAndTheChainFromTheRoot) {
  NumberedRecord numbered(1);
  AuditRecord& record = numbered.record;
  record.client_request_id = "trace-1";
  record.membrane = "partners";
  record.token = "980ca434014d";
  record.upstream_status = 502;
  record.upstream_host = "lambda.us-east-1.amazonaws.com";
  record.duration_ms = 1.23456;
  record.bytes_in = 12;
  record.bytes_out = 34;
  const std::string line = membraned::server::audit_line(record);
  ASSERT_EQ(line.back(), '\n');
  ASSERT_EQ(line.find('\n'), line.size() - 1);
  const auto json = nlohmann::ordered_json::parse(line);
  std::vector<std::string> keys;
  for (const auto& item : json.items()) keys.push_back(item.key());
  EXPECT_EQ(keys,
            (std::vector<std::string>{"time", "requestId", "clientRequestId", "operation", "tenant", "membrane",
                                      "grant", "chain", "token", "client", "method", "status", "upstreamStatus",
                                      "upstreamHost", "durationMs", "bytesIn", "bytesOut"}));
  EXPECT_EQ(json["grant"], "g_000000000000000000000002");
  EXPECT_EQ(json["chain"],
            (std::vector<std::string>{"g_000000000000000000000001", "g_000000000000000000000002"}));
  EXPECT_EQ(json["client"], "192.0.2.7");
  EXPECT_EQ(json["durationMs"], 1.235);
  EXPECT_EQ(json["upstreamStatus"], 502);
  EXPECT_EQ(json["time"].get<std::string>().size(), std::string("2026-11-24T23:32:39.627Z").size());
}

// The line is written by hand: text that is not plain ASCII (quotes, backslashes, control
// characters, bytes that are not UTF-8) still makes one valid JSON line.
TEST(AuditRecordTest, TextThatIsNotPlainAsciiStillMakesOneValidLine) {
  NumberedRecord numbered(1);
  AuditRecord& record = numbered.record;
  record.upstream_status = 200;
  record.upstream_host = "a\"b\\c\n\x01d\xc3\xa9\xff";
  const std::string line = membraned::server::audit_line(record);
  ASSERT_EQ(line.find('\n'), line.size() - 1);
  const auto json = nlohmann::json::parse(line);
  EXPECT_EQ(json["upstreamHost"], "a\"b\\c\n\x01d\xc3\xa9\xef\xbf\xbd");
}

TEST(AuditRecordTest, ARefusalWithoutACapabilityHasOnlyWhatIsKnown) {
  AuditRecord record;
  record.request_id = "0123456789abcdef";
  record.status = 431;
  record.client = *membraned::core::IpAddress::parse("::1");
  auto json = nlohmann::json::parse(membraned::server::audit_line(record));
  EXPECT_EQ(json["operation"], "none");
  for (const char* absent : {"tenant", "membrane", "grant", "chain", "token", "method", "reason", "upstreamStatus",
                             "upstreamHost", "clientRequestId", "cut"}) {
    EXPECT_FALSE(json.contains(absent)) << absent;
  }
  record.status = 401;
  record.reason = Refusal::used_up;
  json = nlohmann::json::parse(membraned::server::audit_line(record));
  EXPECT_EQ(json["reason"], "used-up");
  record.status = 202;
  record.reason.reset();
  record.cut = 3;
  json = nlohmann::json::parse(membraned::server::audit_line(record));
  EXPECT_EQ(json["cut"], 3);
}

TEST(AuditLogTest, WritesEachRecordAsOneLineAndCountsThem) {
  membraned::test::TempDir dir;
  const auto path = dir.path() / "audit.log";
  Counts counts;
  auto log = open_log(path, membraned::server::kAuditQueueBytes, counts);
  ASSERT_TRUE(log);
  for (int i = 0; i < 100; ++i) log->record(NumberedRecord(i).record);
  log->stop(10s);
  const auto lines = lines_of(path);
  ASSERT_EQ(lines.size(), 100u);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(nlohmann::json::parse(lines[i])["requestId"], "id-" + std::to_string(i));
  EXPECT_EQ(counts.written, 100u);
  EXPECT_EQ(counts.dropped, 0u);
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::others_all,
            std::filesystem::perms::none);
  // Handed in after the stop: dropped, counted.
  log->record(NumberedRecord(100).record);
  EXPECT_EQ(counts.dropped, 1u);
}

// A named pipe whose reader does not read: the writer's write(2) blocks once the pipe is full,
// and the queue behind it fills up.
class StalledOutput {
 public:
  explicit StalledOutput(const std::filesystem::path& path) : path_(path) {
    if (::mkfifo(path.c_str(), 0600) != 0) throw std::runtime_error("mkfifo");
    reader_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (reader_ < 0) throw std::runtime_error("open fifo");
  }
  ~StalledOutput() { close(); }
  // Reads everything until the writer closes its end: the lines it wrote.
  std::size_t read_to_end() {
    ::fcntl(reader_, F_SETFL, 0);
    std::size_t lines = 0;
    char buffer[65536];
    for (ssize_t n; (n = ::read(reader_, buffer, sizeof buffer)) > 0;) {
      lines += static_cast<std::size_t>(std::count(buffer, buffer + n, '\n'));
    }
    return lines;
  }
  void close() {
    if (reader_ >= 0) ::close(reader_);
    reader_ = -1;
  }

 private:
  std::filesystem::path path_;
  int reader_ = -1;
};

TEST(AuditLogTest, AFullQueueDropsAndCountsInsteadOfBlocking) {
  membraned::test::TempDir dir;
  StalledOutput output(dir.path() / "audit.fifo");
  Counts counts;
  constexpr std::size_t kCapacity = 4096;  // bytes: some 16 records
  constexpr int kRecords = 5000;  // some 1 MB of lines: far more than the pipe and the queue hold
  auto log = open_log(dir.path() / "audit.fifo", kCapacity, counts);
  ASSERT_TRUE(log);
  // Were record() to wait for the writer, this would never end (nothing reads the pipe yet).
  auto pushing = std::async(std::launch::async, [&] {
    for (int i = 0; i < kRecords; ++i) log->record(NumberedRecord(i).record);
  });
  ASSERT_EQ(pushing.wait_for(30s), std::future_status::ready) << "record() blocked on a stalled output";
  EXPECT_GT(counts.dropped, 0u);

  auto reading = std::async(std::launch::async, [&] { return output.read_to_end(); });
  log->stop(10s);
  const std::size_t lines = reading.get();
  EXPECT_EQ(counts.written + counts.dropped, static_cast<std::uint64_t>(kRecords));
  EXPECT_EQ(lines, counts.written);
}

TEST(AuditLogTest, AReopenMovesToANewFileAndLosesNothing) {
  membraned::test::TempDir dir;
  const auto path = dir.path() / "audit.log";
  const auto rotated = dir.path() / "audit.log.1";
  Counts counts;
  auto log = open_log(path, membraned::server::kAuditQueueBytes, counts);
  ASSERT_TRUE(log);
  constexpr int kThreads = 4;
  constexpr int kEach = 2000;
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      for (int i = 0; i < kEach; ++i) log->record(NumberedRecord(t * kEach + i).record);
    });
  }
  go = true;
  std::this_thread::sleep_for(2ms);
  std::filesystem::rename(path, rotated);  // as logrotate does, while records keep coming
  log->reopen();
  for (auto& thread : threads) thread.join();
  constexpr int kAfter = 50;
  for (int i = 0; i < kAfter; ++i) log->record(NumberedRecord(kThreads * kEach + i).record);
  log->stop(10s);

  const auto before = lines_of(rotated);
  const auto after = lines_of(path);
  ASSERT_GE(after.size(), static_cast<std::size_t>(kAfter))
      << "records queued after the reopen go to the new file";
  std::set<std::string> ids;
  for (const auto* lines : {&before, &after}) {
    for (const auto& line : *lines) ids.insert(nlohmann::json::parse(line)["requestId"].get<std::string>());
  }
  EXPECT_EQ(before.size() + after.size(), static_cast<std::size_t>(kThreads * kEach + kAfter));
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kThreads * kEach + kAfter));
  for (int i = 0; i < kAfter; ++i) {
    EXPECT_EQ(nlohmann::json::parse(after[after.size() - kAfter + i])["requestId"],
              "id-" + std::to_string(kThreads * kEach + i));
  }
  EXPECT_EQ(counts.dropped, 0u);
}

TEST(AuditLogTest, AnOutputThatNeverTakesTheRecordsDoesNotHoldTheStop) {
  membraned::test::TempDir dir;
  StalledOutput output(dir.path() / "audit.fifo");
  Counts counts;
  auto log = open_log(dir.path() / "audit.fifo", membraned::server::kAuditQueueBytes, counts);
  ASSERT_TRUE(log);
  for (int i = 0; i < 3000; ++i) log->record(NumberedRecord(i).record);
  const auto started = std::chrono::steady_clock::now();
  log->stop(200ms);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  {
    std::lock_guard lock(counts.mutex);
    ASSERT_EQ(counts.reports.size(), 1u);
    EXPECT_NE(counts.reports.front().find("did not take the last records"), std::string::npos);
  }
  output.close();  // the writer's blocked write now fails (EPIPE, not a signal) and its thread ends
}

TEST(AuditLogTest, AFileThatCannotBeOpenedIsAnErrorNamingTheFlag) {
  Counts counts;
  auto opened = AuditLog::open("/nonexistent-dir/audit.log", 16, counts.counter(), counts.report());
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.error().message.find("--audit-log /nonexistent-dir/audit.log"), std::string::npos);
}

TEST(AuditRequestIdTest, SixteenHexDigitsNeverRepeatedAcrossThreads) {
  std::mutex mutex;
  std::set<std::string> seen;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::vector<std::string> ids;
      for (int i = 0; i < 10000; ++i) ids.emplace_back(membraned::core::RequestId::next().text());
      std::lock_guard lock(mutex);
      seen.insert(ids.begin(), ids.end());
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(seen.size(), 40000u);
  for (const auto& id : seen) {
    ASSERT_EQ(id.size(), 16u);
    ASSERT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
  }
}

TEST(AuditRequestIdTest, ARequestersOwnIdIsRecordedOnlyWhenShortPlainAndNoToken) {
  using membraned::core::is_recordable_client_request_id;
  EXPECT_TRUE(is_recordable_client_request_id("4bf92f35-77b3-4da6-a3ce-929d0e0e4736"));
  EXPECT_TRUE(is_recordable_client_request_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(is_recordable_client_request_id("Root=1-5759e988-bd862e3fe1be46a994272793"));
  EXPECT_FALSE(is_recordable_client_request_id(""));
  EXPECT_FALSE(is_recordable_client_request_id(std::string(65, 'a')));
  EXPECT_FALSE(is_recordable_client_request_id("two words"));
  EXPECT_FALSE(is_recordable_client_request_id("a\"b"));
  EXPECT_FALSE(is_recordable_client_request_id("caf\xc3\xa9"));
  EXPECT_FALSE(is_recordable_client_request_id("CPBLTY1-abcdefghijklmnop"));
}

}  // namespace
