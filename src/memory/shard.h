// Shard: one independent part of the memory store: an EntryTable, an LruList
// and an ExpiryHeap over the same entries, a byte and an entry budget, and
// the shard's counters. The store spreads keys over shards by hash and gives
// each its own lock (memory_store.cc); a shard knows nothing of the others,
// of locking or of the Store interface.
//
// Invariants (between calls):
//   - an entry is in the table iff it is in the LRU list iff it is linked to
//     the heap (where it takes a slot iff it expires);
//   - charge_ is the sum of charge_of() over the entries, and after every
//     write charge_ <= byte budget and entries <= entry budget. (The store
//     refuses an entry that does not fit a shard's byte budget on its own,
//     so eviction can always make room without evicting the entry written.)
//
// Expiry. An expired entry is never returned: every lookup checks the
// deadline and removes an expired entry it meets (lazy reclaim). Each write
// also pops at most kReclaimPerWrite expired entries off the heap (active
// reclaim), so memory held by entries that are never read again is returned
// without ever scanning the table. Both count as expirations.
//
// Bounds. A write that leaves the shard over budget first drops its expired
// entries, then evicts from the cold end of the LRU list, never the entry
// just written.
//
// Memory. The shard owns its entries: an entry passed to put() becomes the
// shard's, and the shard frees what is left when it is destroyed. Entries
// that a call unlinks are handed to the caller's Graveyard rather than freed,
// so that the caller can free them after releasing the lock. Only incr
// makes an entry (when the number of digits changes); otherwise a call does
// pointer work and value copies, and allocates only when the heap's array or
// the table's buckets grow (amortised; a failed growth of the table is
// ignored, one of the heap throws std::bad_alloc with nothing changed).
//
// Internal to the library and its tests. Not thread-safe: the caller holds
// the shard's lock across every call, with the Graveyard declared before the
// lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/status.h"
#include "aicache/store.h"
#include "memory/entry.h"
#include "memory/entry_table.h"
#include "memory/expiry_heap.h"
#include "memory/lru_list.h"
#include "memory/memory_store_internal.h"

namespace aicache::memory {

// A shard's figures, summed over shards by MemoryStore::stats().
struct ShardStats {
  std::uint64_t used_bytes = 0;
  std::uint64_t entries = 0;
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t evictions = 0;
  std::uint64_t expirations = 0;
  std::uint64_t commands = 0;
};

// What put() does when the key is already live.
enum class PutMode { kOverwrite, kOnlyIfAbsent };

class Shard {
 public:
  // Expired entries popped off the heap per write, at most: bounds the work a
  // write does for others, while reclaiming faster than entries can expire
  // in steady state unless most writes carry short TTLs.
  static constexpr int kReclaimPerWrite = 8;

  Shard() = default;
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;
  ~Shard();

  void set_budget(std::size_t bytes, std::size_t entries) noexcept {
    byte_budget_ = bytes;
    entry_budget_ = entries;
  }

  // In every call: `hash` is the key's 32-bit table hash, `now` the time in
  // Clock nanoseconds, `dead` receives the entries the call unlinks, and
  // `count_command` is false when the call is one key of a batch that the
  // store counts once.

  // Copies the value of the live entry `key` into *out, and its TTL into
  // *ttl when asked (Store::get_with_ttl: one lookup), and makes it the most
  // recently used. False on a miss.
  bool get(std::string_view key, std::uint32_t hash, std::int64_t now, std::string* out,
           bool count_command, KeyTtl* ttl, Graveyard& dead);

  // Links `fresh`, made with Entry::create, replacing any entry with its key.
  // The shard takes ownership either way: with kOnlyIfAbsent and the key
  // live, `fresh` goes to `dead` and the result is false.
  bool put(Entry* fresh, std::int64_t now, PutMode mode, bool count_command, Graveyard& dead);

  // set() of a live key whose value keeps its size: the value is rewritten in
  // the existing block, with no allocation. False (nothing done, nothing
  // counted) if the key is not live or the size differs: then put().
  bool overwrite(std::string_view key, std::uint32_t hash, std::string_view value,
                 std::int64_t deadline, std::int64_t now, bool count_command, Graveyard& dead);

  // Removes the live entry `key`; with `expected`, only if its value equals
  // it. True if a live entry was removed.
  bool remove(std::string_view key, std::uint32_t hash, std::int64_t now,
              const std::string_view* expected, bool count_command, Graveyard& dead);

  // Gives the live entry `key` the deadline `deadline` (and makes it the
  // most recently used), or removes it if `remove`. True if it was live.
  bool touch(std::string_view key, std::uint32_t hash, std::int64_t now, bool remove,
             std::int64_t deadline, Graveyard& dead);

  // The TTL of `key` (kMissing if it is not live).
  KeyTtl ttl(std::string_view key, std::uint32_t hash, std::int64_t now, Graveyard& dead);

  // See Store::incr. `create_deadline` applies only to a missing key;
  // `create_removes`: a missing key is not stored (the result is delta).
  Result<std::int64_t> incr(std::string_view key, std::uint32_t hash, std::int64_t now,
                            std::int64_t delta, bool create_removes, std::int64_t create_deadline,
                            Graveyard& dead);

  // Removes every entry whose key starts with `prefix`; returns how many were
  // live. A full walk of the shard: clear() is rare.
  std::uint64_t remove_prefix(std::string_view prefix, std::int64_t now, Graveyard& dead);

  // Appends the live keys starting with `prefix` from bucket `from` on,
  // until at least `max` were appended or the table ends; returns the bucket
  // to resume at (bucket_count: this shard is done). See EntryTable::bucket.
  std::size_t scan(std::string_view prefix, std::size_t from, std::size_t max, std::int64_t now,
                   std::vector<std::string>& keys) const;
  std::size_t bucket_count() const noexcept { return table_.bucket_count(); }

  // Adds this shard to `layout`. O(buckets + entries): never on a request
  // path (see memory_store_internal.h).
  void add_layout(internal::MemoryStoreLayout* layout) const;

  // Adds this shard's figures to *stats. O(1).
  void add_stats(ShardStats* stats) const;

 private:
  friend class ShardTestPeer;  // tests/memory/shard_test.cc checks the invariants above

  // The live entry for `key`; an expired one found on the way is removed.
  Entry* find_live(std::string_view key, std::uint32_t hash, std::int64_t now, Graveyard& dead);

  // Links `e` into all three structures: in the table at `at` (find_link's
  // answer for its key, the key absent), in the LRU list as the newest, in
  // the heap if it expires; and charges it. On std::bad_alloc `e` goes to
  // `dead`, linked nowhere.
  void link(Entry** at, Entry* e, Graveyard& dead);
  // Unlinks the entry at the table link `at` from all three structures,
  // releases its charge and hands it to `dead`.
  void erase(Entry** at, Graveyard& dead) noexcept;
  // erase() of an entry known by address.
  void drop(Entry* e, Graveyard& dead) noexcept { erase(table_.link_of(e), dead); }

  // After any write: bounded active reclaim, then the budgets. `keep` (the
  // entry just written, if any) is never evicted.
  void finish_write(std::int64_t now, const Entry* keep, Graveyard& dead) noexcept;

  bool over_budget() const noexcept {
    return charge_ > byte_budget_ || table_.size() > entry_budget_;
  }

  static KeyTtl ttl_of(const Entry& e, std::int64_t now) noexcept;

  EntryTable table_;
  LruList lru_;
  ExpiryHeap heap_;
  std::size_t charge_ = 0;
  std::size_t byte_budget_ = 0;
  std::size_t entry_budget_ = 0;
  std::uint64_t hits_ = 0;
  std::uint64_t misses_ = 0;
  std::uint64_t evictions_ = 0;
  std::uint64_t expirations_ = 0;
  std::uint64_t commands_ = 0;
};

}  // namespace aicache::memory
