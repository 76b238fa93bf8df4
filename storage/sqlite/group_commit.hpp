// Group commit: writers that arrive while a durable commit is under way share the next one.
//
// With synchronous=FULL every COMMIT waits for the disk (fsync), so one writer at a time is
// bounded by the disk's flush rate, whatever the CPU. Here the first writer to find no commit
// under way leads: it takes every write waiting (at most `max_batch`), runs them in one
// transaction, each under a savepoint of its own, and commits once. A write that fails is
// rolled back to its savepoint alone; the others go on. Every writer returns only after the
// commit that holds its changes reached the disk, so a 201 or a 202 is still durable before it
// is sent. Later writes see the earlier ones of their batch, as they would have in sequence.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "storage/backend.hpp"

namespace membraned::storage::sqlite {

class GroupCommit {
 public:
  // One writer's work, and what became of it.
  struct Member {
    const SessionWork* work;
    std::optional<core::Status> result;
    std::exception_ptr thrown;  // rethrown on the writer's own thread
    bool done = false;
    // Woken alone: when its commit is done, or when it is first in line to lead the next one.
    std::condition_variable wake;
  };
  using Batch = std::vector<Member*>;
  // Runs `batch` in one transaction and sets each member's result (see SqliteBackend).
  using CommitBatch = std::function<void(const Batch& batch)>;

  GroupCommit(CommitBatch commit_batch, std::size_t max_batch)
      : commit_batch_(std::move(commit_batch)), max_batch_(max_batch == 0 ? 1 : max_batch) {}

  // Runs `work` in the next commit and returns once that commit is done.
  core::Status run(const SessionWork& work);
  // Writers waiting for a commit (not the one under way).
  std::size_t waiting();

 private:
  Batch take_batch();  // under mutex_

  CommitBatch commit_batch_;
  std::size_t max_batch_;
  std::mutex mutex_;
  std::deque<Member*> waiting_;
  bool committing_ = false;
};

}  // namespace membraned::storage::sqlite
