// The TTL signals of AssistantCache (FamilyStats: hit_age_buckets,
// expired_recently_misses; docs/operations.md, "Tuning TTLs").
//
// Ages at hit: per family, a fixed histogram of relaxed atomic counters; the
// age is the family TTL minus the TTL the store reports left, so it needs no
// record of the write and holds for entries any process wrote.
//
// Expired-recently misses: a table of the keys this cache wrote, one 64-bit
// atomic per slot, indexed by the stored key's hash: a 24-bit tag (more bits
// of the hash) and the expiry deadline, in milliseconds since the table was
// made, plus one (0: empty). A write overwrites whatever the slot held, so a
// busy cache forgets keys (the count is a lower bound), and a tag collision
// (1 in 2^24 of the forgotten keys) may count a miss it should not. On a
// miss, a slot that names the key with a deadline in [now - family TTL, now]
// counts one.
//
// The table is calloc'ed: the kernel hands out zero pages on first touch, so
// a cache that writes little (a CLI call, a small Python worker) does not pay
// for the whole table in resident memory.
//
// Thread safety: every call may come from any thread; nothing locks.
#pragma once

#include <array>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "aicache/assistant_cache.h"
#include "aicache/clock.h"
#include "aicache/store.h"
#include "aicache/ttl.h"

namespace aicache::internal {

class TtlSignals {
 public:
  // `slots` rounded up to a power of two; 0: no table (no expired-recently
  // counts).
  TtlSignals(std::size_t slots, std::shared_ptr<const Clock> clock);

  // A hit of `family` whose entry has `left` to live; `family_ttl` is the TTL
  // the family writes with. Counts nothing unless both are durations and
  // `left` is not longer than `family_ttl`.
  void hit(CacheFamily family, const KeyTtl& left, Ttl family_ttl) noexcept;
  // A miss of `stored_key`: counted as expired recently if the table says so.
  void miss(CacheFamily family, std::string_view stored_key, Ttl family_ttl) noexcept;
  // `stored_key` was written with `ttl` (a duration, never, or a removing
  // one; kDefault, a TTL this cache does not know, forgets the key).
  void written(std::string_view stored_key, Ttl ttl) noexcept;
  // `stored_key` was removed: a later miss is not an expiry.
  void removed(std::string_view stored_key) noexcept;
  // Every key was removed (AssistantCache::clear).
  void removed_all() noexcept;

  // Writes its counters into `stats` (hits and misses left as they are).
  void add_to(std::array<FamilyStats, kCacheFamilies.size()>& stats) const noexcept;

 private:
  struct Family {
    std::array<std::atomic<std::uint64_t>, kHitAgeBoundsSeconds.size() + 1> buckets{};
    std::atomic<std::uint64_t> age_sum_ms{0};
    std::atomic<std::uint64_t> expired_recently{0};
  };

  std::int64_t now_ms() const noexcept;
  std::atomic_ref<std::uint64_t> slot(std::uint64_t hash) const noexcept;
  struct Free {
    void operator()(std::uint64_t* p) const noexcept { std::free(p); }
  };

  std::shared_ptr<const Clock> clock_;
  Clock::TimePoint epoch_;
  std::size_t mask_ = 0;
  std::unique_ptr<std::uint64_t[], Free> slots_;  // accessed through atomic_ref only
  std::array<Family, kCacheFamilies.size()> families_;
};

}  // namespace aicache::internal
