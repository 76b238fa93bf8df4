// Group commit on SQLite: writers that wait together share one transaction and one commit, each
// write's failure undoes that write alone, and every writer sees its own outcome.
#include "storage/sqlite/group_commit.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "storage/sqlite/backend.hpp"
#include "tests/support/test_support.hpp"

namespace membraned::storage::sqlite {
namespace {

using namespace std::chrono_literals;

// Waits (bounded) until `ready` holds; fails the test if it never does.
template <class Ready>
void wait_until(Ready ready) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!ready()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "timed out";
    std::this_thread::sleep_for(1ms);
  }
}

// A first write whose commit stays under way until release(): writes made meanwhile queue behind
// it. `write` runs a work (GroupCommit::run, Backend::write); `then` is the held write's own work.
class HeldCommit {
 public:
  explicit HeldCommit(std::function<core::Status(const SessionWork&)> write,
                      SessionWork then = [](BackendSession&) { return core::ok_status(); })
      : released_(release_.get_future().share()) {
    std::latch running(1);
    outcome_ = std::async(std::launch::async, [this, write = std::move(write), then = std::move(then), &running] {
      return write([&](BackendSession& session) {
        running.count_down();
        released_.wait();
        return then(session);
      });
    });
    running.wait();
  }
  core::Status release() {
    release_.set_value();
    return outcome_.get();
  }

 private:
  std::promise<void> release_;
  std::shared_future<void> released_;
  std::future<core::Status> outcome_;
};

// The coordination alone: a batch runner that records the batches it was given and runs their
// work in a reading session of a database of its own (these works do not use it).
class Recorder {
 public:
  Recorder() {
    auto opened = open_backend({.path = dir_.path() / "store.db", .connections = 1});
    if (!opened) throw std::runtime_error(opened.error().message);
    backend_ = std::move(*opened);
  }

  void commit(const GroupCommit::Batch& batch) {
    {
      std::lock_guard lock(mutex_);
      sizes_.push_back(batch.size());
    }
    (void)backend_->read([&](BackendSession& session) {
      for (GroupCommit::Member* member : batch) {
        try {
          member->result = (*member->work)(session);
        } catch (...) {
          member->thrown = std::current_exception();
          member->result = core::Error::internal("threw");
        }
      }
      return core::ok_status();
    });
  }
  std::vector<std::size_t> sizes() {
    std::lock_guard lock(mutex_);
    return sizes_;
  }

 private:
  test::TempDir dir_;
  std::unique_ptr<Backend> backend_;
  std::mutex mutex_;
  std::vector<std::size_t> sizes_;
};

TEST(GroupCommit, WritersThatArriveDuringACommitShareTheNextOne) {
  Recorder recorder;
  GroupCommit group([&](const GroupCommit::Batch& b) { recorder.commit(b); }, 128);
  HeldCommit first([&](const SessionWork& work) { return group.run(work); });
  constexpr int kFollowers = 20;
  std::vector<std::future<core::Status>> followers;
  for (int i = 0; i < kFollowers; ++i) {
    followers.push_back(std::async(std::launch::async, [&] {
      return group.run([](BackendSession&) { return core::ok_status(); });
    }));
  }
  wait_until([&] { return group.waiting() == kFollowers; });
  EXPECT_TRUE(first.release());
  for (auto& f : followers) EXPECT_TRUE(f.get());
  EXPECT_EQ(recorder.sizes(), (std::vector<std::size_t>{1, kFollowers}));
}

TEST(GroupCommit, ABatchTakesAtMostItsBoundAndTheRestFollow) {
  Recorder recorder;
  GroupCommit group([&](const GroupCommit::Batch& b) { recorder.commit(b); }, 4);
  HeldCommit first([&](const SessionWork& work) { return group.run(work); });
  std::vector<std::future<core::Status>> followers;
  for (int i = 0; i < 10; ++i) {
    followers.push_back(std::async(std::launch::async, [&] {
      return group.run([](BackendSession&) { return core::ok_status(); });
    }));
  }
  wait_until([&] { return group.waiting() == 10; });
  EXPECT_TRUE(first.release());
  for (auto& f : followers) EXPECT_TRUE(f.get());
  EXPECT_EQ(recorder.sizes(), (std::vector<std::size_t>{1, 4, 4, 2}));
}

TEST(GroupCommit, EachWriterGetsItsOwnOutcomeAndItsOwnException) {
  Recorder recorder;
  GroupCommit group([&](const GroupCommit::Batch& b) { recorder.commit(b); }, 128);
  HeldCommit first([&](const SessionWork& work) { return group.run(work); });
  auto fails = std::async(std::launch::async, [&] {
    return group.run([](BackendSession&) -> core::Status { return core::Error::conflict("mine"); });
  });
  auto throws = std::async(std::launch::async, [&] {
    return group.run([](BackendSession&) -> core::Status { throw std::runtime_error("thrown here"); });
  });
  auto succeeds = std::async(std::launch::async, [&] {
    return group.run([](BackendSession&) { return core::ok_status(); });
  });
  wait_until([&] { return group.waiting() == 3; });
  EXPECT_TRUE(first.release());
  auto failed = fails.get();
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message, "mine");
  EXPECT_THROW(throws.get(), std::runtime_error);
  EXPECT_TRUE(succeeds.get());
  EXPECT_EQ(recorder.sizes(), (std::vector<std::size_t>{1, 3}));
}

// On a real database file: in one batch, a write that fails leaves nothing behind, the others
// are committed and still there when the database is opened again.
TEST(SqliteGroupCommit, AFailedWriteInABatchUndoesItselfAlone) {
  test::TempDir dir;
  const SqliteOptions options{.path = dir.path() / "store.db", .connections = 2};
  constexpr int kWriters = 16;
  {
    auto backend = open_backend(options);
    ASSERT_TRUE(backend) << backend.error().message;
    HeldCommit first([&](const SessionWork& work) { return (*backend)->write(work); },
                     [](BackendSession& session) { return session.insert_meta("first", "1"); });
    // Each writer inserts its own row; the odd ones then fail, one of them by throwing.
    std::atomic<int> entered{0};
    std::vector<std::future<core::Status>> writers;
    for (int i = 0; i < kWriters; ++i) {
      writers.push_back(std::async(std::launch::async, [&, i] {
        ++entered;
        return (*backend)->write([i](BackendSession& session) -> core::Status {
          if (auto s = session.insert_meta("w" + std::to_string(i), "1"); !s) return s;
          if (i == 1) throw std::runtime_error("thrown after the insert");
          if (i % 2 == 1) return core::Error::conflict("failed after the insert");
          return core::ok_status();
        });
      }));
    }
    wait_until([&] { return entered == kWriters; });
    // The followers are now calling write; give them time to queue behind the first commit (if
    // some are late they form a batch of their own, and every assertion below still holds).
    std::this_thread::sleep_for(100ms);
    EXPECT_TRUE(first.release());
    for (int i = 0; i < kWriters; ++i) {
      if (i == 1) {
        EXPECT_THROW(writers[i].get(), std::runtime_error);
      } else if (i % 2 == 1) {
        auto s = writers[i].get();
        ASSERT_FALSE(s);
        EXPECT_EQ(s.error().message, "failed after the insert");
      } else {
        EXPECT_TRUE(writers[i].get()) << i;
      }
    }
  }
  auto reopened = open_backend(options);
  ASSERT_TRUE(reopened);
  auto s = (*reopened)->read([&](BackendSession& session) -> core::Status {
    auto first = session.meta("first");
    EXPECT_TRUE(first && first->has_value());
    for (int i = 0; i < kWriters; ++i) {
      auto row = session.meta("w" + std::to_string(i));
      if (!row) return row.error();
      EXPECT_EQ(row->has_value(), i % 2 == 0) << "w" << i;
    }
    return core::ok_status();
  });
  EXPECT_TRUE(s) << s.error().message;
}

}  // namespace
}  // namespace membraned::storage::sqlite
