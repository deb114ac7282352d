// MemoryStore: the in-process Store, the zero-configuration default.
//
// Entries live in this process only (lost on exit, not shared with other
// processes: use the Redis store for that). The store is sharded by key hash,
// so threads working on different keys rarely wait for each other.
//
// Bounds: the store never holds more than `max_bytes` of accounted memory nor
// more than `max_entries` entries; beyond either it evicts the least recently
// used entries of the shard that is writing. Expired entries are never
// returned, and their memory is reclaimed incrementally (a bounded amount of
// work on each write, plus on access), never by a full scan per call.
//
// Thread safety: safe to share between threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include "aicache/clock.h"
#include "aicache/store.h"
#include "aicache/ttl.h"

namespace aicache {

struct MemoryStoreOptions {
  // Upper bound on the bytes the store accounts for: keys, values and the
  // per-entry bookkeeping. Default: 256 MiB.
  std::size_t max_bytes = 256u << 20;

  // Upper bound on the number of entries. Default: 1,000,000.
  std::size_t max_entries = 1'000'000;

  // The TTL that Ttl::use_default() stands for. Default: 300 s (Django's).
  Ttl default_ttl = std::chrono::seconds(300);

  // Number of shards, rounded up to a power of two; 0 picks one from the
  // hardware concurrency. More shards: less contention, coarser LRU.
  std::size_t shards = 0;

  // Source of time for TTLs. Default: the real clock.
  std::shared_ptr<const Clock> clock = Clock::real();
};

// A new, empty memory store. Invalid options (a zero bound) are clamped to
// the smallest working value rather than refused.
std::shared_ptr<Store> make_memory_store(MemoryStoreOptions options = {});

}  // namespace aicache
