#include "storage/sqlite/group_commit.hpp"

#include <algorithm>

namespace membraned::storage::sqlite {

core::Status GroupCommit::run(const SessionWork& work) {
  Member me{.work = &work, .result = std::nullopt, .thrown = nullptr, .done = false, .wake = {}};
  std::unique_lock lock(mutex_);
  waiting_.push_back(&me);
  while (!me.done) {
    if (committing_) {
      me.wake.wait(lock);
      continue;
    }
    // No commit under way: this writer leads the next one, for everyone waiting.
    committing_ = true;
    const Batch batch = take_batch();
    lock.unlock();
    try {
      commit_batch_(batch);
    } catch (...) {  // out of memory, say: whoever has no result yet gets the exception
      for (Member* member : batch) {
        if (!member->result && !member->thrown) member->thrown = std::current_exception();
      }
    }
    lock.lock();
    // Under the lock, so that no member has returned (and its Member gone) before it is woken.
    for (Member* member : batch) {
      member->done = true;
      member->wake.notify_one();
    }
    committing_ = false;
    if (!waiting_.empty()) waiting_.front()->wake.notify_one();
  }
  if (me.thrown) std::rethrow_exception(me.thrown);
  return std::move(*me.result);
}

std::size_t GroupCommit::waiting() {
  std::lock_guard lock(mutex_);
  return waiting_.size();
}

GroupCommit::Batch GroupCommit::take_batch() {
  const std::size_t n = std::min(waiting_.size(), max_batch_);
  Batch batch(waiting_.begin(), waiting_.begin() + static_cast<std::ptrdiff_t>(n));
  waiting_.erase(waiting_.begin(), waiting_.begin() + static_cast<std::ptrdiff_t>(n));
  return batch;
}

}  // namespace membraned::storage::sqlite
