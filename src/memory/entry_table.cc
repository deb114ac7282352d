#include "memory/entry_table.h"

#include <algorithm>
#include <new>
#include <utility>

namespace aicache::memory {

EntryTable::EntryTable() : buckets_(std::make_unique<Entry*[]>(kInitialBuckets)) {}

void EntryTable::grow() noexcept {
  const std::size_t new_count = bucket_count_ * 2;
  std::unique_ptr<Entry*[]> fresh(new (std::nothrow) Entry*[new_count]());  // all null
  if (fresh == nullptr) return;
  for (std::size_t i = 0; i < bucket_count_; ++i) {
    for (Entry* e = buckets_[i]; e != nullptr;) {
      Entry* next = e->next_in_bucket;
      Entry*& head = fresh[e->hash & (new_count - 1)];
      e->next_in_bucket = head;
      head = e;
      e = next;
    }
  }
  buckets_ = std::move(fresh);
  bucket_count_ = new_count;
}

std::size_t EntryTable::longest_chain() const noexcept {
  std::size_t longest = 0;
  for (std::size_t i = 0; i < bucket_count_; ++i) {
    std::size_t chain = 0;
    for (const Entry* e = buckets_[i]; e != nullptr; e = e->next_in_bucket) ++chain;
    longest = std::max(longest, chain);
  }
  return longest;
}

}  // namespace aicache::memory
