#include "storage/use_ledger.hpp"

#include <algorithm>

namespace membraned::storage {

std::optional<bool> UseLedger::take_in_hand(const std::vector<ChainGrant>& chain) {
  std::lock_guard lock(mutex_);
  return take_locked(chain);
}

std::optional<bool> UseLedger::take_locked(const std::vector<ChainGrant>& chain) {
  for (const ChainGrant& grant : chain) {
    if (!grant.max_uses) continue;
    const Account& account = accounts_[grant.row];
    if (account.in_hand > 0) continue;
    if (account.used_up) return false;
    return std::nullopt;
  }
  for (const ChainGrant& grant : chain) {
    if (grant.max_uses) --accounts_[grant.row].in_hand;
  }
  return true;
}

Result<bool> UseLedger::take(const std::vector<ChainGrant>& chain) {
  // Each refill either puts uses in hand or marks the grant used up, so this ends; a concurrent
  // taker may empty a hand again in between, hence the loop.
  for (;;) {
    std::vector<CapabilityRow> empty;
    {
      std::lock_guard lock(mutex_);
      if (auto taken = take_locked(chain)) return *taken;
      for (const ChainGrant& grant : chain) {
        const Account& account = accounts_[grant.row];
        if (grant.max_uses && account.in_hand == 0 && !account.used_up) empty.push_back(grant.row);
      }
    }
    // The database is asked without the lock held: others keep taking what is in hand.
    for (CapabilityRow grant : empty) {
      if (auto s = refill(grant); !s) return s.error();
    }
  }
}

Status UseLedger::refill(CapabilityRow grant) {
  std::shared_ptr<std::mutex> refilling;
  {
    std::lock_guard lock(mutex_);
    refilling = accounts_[grant].refilling;
  }
  std::lock_guard one_at_a_time(*refilling);
  std::int64_t wanted;
  {
    std::lock_guard lock(mutex_);
    Account& account = accounts_[grant];
    if (account.in_hand > 0 || account.used_up) return core::ok_status();  // another taker refilled
    // A grant whose last block lasted under a second gets a larger one.
    const auto now = std::chrono::steady_clock::now();
    if (account.last_reserved && now - *account.last_reserved < std::chrono::seconds(1)) {
      account.next_block = std::min(account.next_block * 2, kLargestBlock);
    }
    account.last_reserved = now;
    wanted = account.next_block;
  }
  auto got = reserve_(grant, wanted);
  if (!got) return got.error();
  std::lock_guard lock(mutex_);
  Account& account = accounts_[grant];
  if (*got == 0) {
    if (account.in_hand == 0) account.used_up = true;
  } else {
    account.in_hand += *got;
  }
  return core::ok_status();
}

}  // namespace membraned::storage
