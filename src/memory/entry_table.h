// EntryTable: a shard's index from key to entry.
//
// A chained hash table: a power-of-two array of buckets, chains through
// Entry::next_in_bucket. An entry's bucket is its stored 32-bit hash masked
// by the bucket count (the shard was chosen by the other half of the key's
// 64-bit keyed hash, so the two choices are independent). The table doubles
// when entries outnumber buckets, keeping chains about one entry long.
//
// Lookups return a *link*: the bucket head or the next_in_bucket field that
// points at the entry sought (or the null link ending its chain), so that a
// write can find, replace or insert with one walk of the chain. A link is
// valid until the next insert or erase.
//
// Invariants (between calls):
//   - every entry is in exactly one chain, that of bucket
//     hash & (bucket_count() - 1), and no two entries have the same key;
//   - size() is the number of entries, and size() <= bucket_count() unless
//     growing failed for want of memory (then chains just get longer);
//   - bucket_count() is a power of two, at least kInitialBuckets.
// The table does not own its entries (the shard frees them).
//
// Internal to the library and its tests. Not thread-safe (the shard's lock
// guards it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "memory/entry.h"

namespace aicache::memory {

class EntryTable {
 public:
  static constexpr std::size_t kInitialBuckets = 16;

  EntryTable();
  EntryTable(const EntryTable&) = delete;
  EntryTable& operator=(const EntryTable&) = delete;

  std::size_t size() const noexcept { return size_; }
  std::size_t bucket_count() const noexcept { return bucket_count_; }

  // The link that points at `key`'s entry, or the null link ending its
  // chain if the key is absent. `hash` is the key's 32-bit table hash.
  Entry** find_link(std::string_view key, std::uint32_t hash) noexcept {
    Entry** link = &buckets_[hash & (bucket_count_ - 1)];
    while (*link != nullptr && ((*link)->hash != hash || (*link)->key() != key)) {
      link = &(*link)->next_in_bucket;
    }
    return link;
  }

  // The link that points at `e`, which must be in the table.
  Entry** link_of(const Entry* e) noexcept {
    Entry** link = &buckets_[e->hash & (bucket_count_ - 1)];
    while (*link != e) link = &(*link)->next_in_bucket;
    return link;
  }

  // Inserts `e` at `link`, which find_link returned for e's key and which
  // must be null (the key is absent). May grow the table: links taken
  // before are then invalid.
  void insert(Entry** link, Entry* e) noexcept {
    e->next_in_bucket = *link;
    *link = e;
    if (++size_ > bucket_count_) grow();
  }

  // Takes the entry at the non-null `link` out of its chain and returns it.
  Entry* erase(Entry** link) noexcept {
    Entry* e = *link;
    *link = e->next_in_bucket;
    --size_;
    return e;
  }

  // The first entry of bucket `i` (< bucket_count()), for a scan. The table
  // only grows, by doubling, so an entry in bucket j < bucket_count() is,
  // after any growth, in a bucket >= j: a scan that resumes at a bucket
  // index misses nothing that stayed (it may see some entries twice).
  const Entry* bucket(std::size_t i) const noexcept { return buckets_[i]; }

  // Entries in the longest chain: O(buckets + entries), for diagnostics
  // (memory_store_layout), never for a request path.
  std::size_t longest_chain() const noexcept;

 private:
  // Doubles the bucket count and rehashes every chain. If the new array
  // cannot be allocated the table keeps its size: growth is an optimisation,
  // and failing a write for it would be worse.
  void grow() noexcept;

  std::unique_ptr<Entry*[]> buckets_;
  std::size_t bucket_count_ = kInitialBuckets;
  std::size_t size_ = 0;
};

}  // namespace aicache::memory
