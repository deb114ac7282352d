// MemoryStore: the Store façade over the shards.
//
// The parts, each in its own file:
//   entry.h        one heap block per entry: header, key bytes, value bytes
//   entry_table.h  the chained hash table from key to entry
//   lru_list.h     the entries in order of last use (eviction order)
//   expiry_heap.h  the expiring entries by deadline (active reclaim)
//   shard.h        the three over the same entries, with budgets, eviction,
//                  expiry and counters; no locking
//   shard_mutex.h  a shard's lock
//   this file      the Store contract: sharding, hashing, locking, TTLs to
//                  deadlines, size checks, statistics
//
// Sharding. A key's 64-bit SipHash-1-3 under the store's random key picks its
// shard (high half) and its bucket in that shard (low half). Keys come from
// outside (/v1/kv/{key}, conversation and user ids): with a public hash
// function an attacker can compute, offline, any number of keys that share
// one bucket and one shard, and every lookup then walks that chain under that
// shard's lock. With a secret key collisions cannot be computed offline, and
// no operation returns keys in table order. (Which keys share a shard can be
// probed through per-shard eviction, slowly; that concentrates load on one
// shard at most, never lengthens a chain: buckets use the other half of the
// hash.)
//
// Bounds. max_bytes and max_entries are split evenly across shards; each
// shard keeps within its part (shard.h). An entry bigger than a shard's whole
// byte budget is refused up front.
//
// Locking. Each shard has one lock guarding all of its state; the only state
// outside the shards is immutable after construction, plus one relaxed atomic
// counter off the get path. No operation ever holds two shard locks. The
// clock is read, and entry blocks are allocated and filled, before the lock
// is taken (a set that keeps the value size rewrites the block in place
// instead), and blocks that were unlinked are freed after it is released (see
// Graveyard), so critical sections do only pointer work and value copies.
// incr alone may allocate under the lock, when the number of digits changes.
#include "aicache/memory_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <limits>
#include <mutex>  // std::lock_guard
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/cpus.h"
#include "core/siphash.h"
#include "core/try.h"
#include "memory/entry.h"
#include "memory/memory_store_internal.h"
#include "memory/shard.h"
#include "memory/shard_mutex.h"

namespace aicache {
namespace {

using memory::Entry;
using memory::kEntryOverhead;
using memory::kNoDeadline;
using memory::PutMode;

// ---------------------------------------------------------------------------
// Time: deadlines are Clock nanoseconds since the clock's epoch.

inline std::int64_t to_nanos(Clock::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// The deadline for a non-removing, non-default TTL set at `now`.
std::int64_t deadline_for(Ttl ttl, std::int64_t now) {
  if (ttl.is_never()) return kNoDeadline;
  const std::int64_t ms = ttl.duration().count();
  constexpr std::int64_t kMax = kNoDeadline - 1;  // saturate below "never"
  if (ms > (kMax - now) / 1'000'000) return kMax;
  return now + ms * 1'000'000;
}

// ---------------------------------------------------------------------------
// Shards.

constexpr std::size_t kMinBytes = 1024;       // max_bytes is clamped up to this
constexpr std::size_t kMinShardBytes = 1024;  // an explicit shard count is lowered to keep this
constexpr std::size_t kMinAutoShardBytes = 64 << 10;  // ...and an automatic one to keep this

// 0 picks 32 shards per hardware thread within [16, 64]: with T threads the
// odds that a call finds its shard locked are about (T - 1) / shards times
// the fraction of time a thread spends inside a lock. The count is rounded
// up to a power of two, then halved while a shard would get no entry or too
// small a byte budget (small stores get few shards and a more exact LRU).
std::size_t shard_count(std::size_t requested, std::size_t max_bytes, std::size_t max_entries) {
  std::size_t n = requested;
  std::size_t min_shard_bytes = kMinShardBytes;
  if (n == 0) {
    n = std::clamp<std::size_t>(internal::usable_cpus() * 32, 16, 64);
    min_shard_bytes = kMinAutoShardBytes;
  }
  n = std::bit_ceil(std::min<std::size_t>(n, 1u << 12));
  while (n > 1 && (max_entries / n == 0 || max_bytes / n < min_shard_bytes)) n /= 2;
  return n;
}

// A shard and its lock, aligned so that no two shards share a cache line.
struct alignas(64) LockedShard {
  memory::ShardMutex mutex;
  memory::Shard shard;  // guarded by mutex
};

// A shard held under its lock for one scope. The entries its calls unlink go
// to dead(), freed when the guard goes out of scope, after the unlock.
class ShardLock {
 public:
  explicit ShardLock(LockedShard& s) : lock_(s.mutex), shard_(s.shard) {}
  ShardLock(const ShardLock&) = delete;
  ShardLock& operator=(const ShardLock&) = delete;

  memory::Shard* operator->() const noexcept { return &shard_; }
  memory::Graveyard& dead() noexcept { return dead_; }

 private:
  memory::Graveyard dead_;  // declared before lock_, so destroyed after the unlock
  std::lock_guard<memory::ShardMutex> lock_;
  memory::Shard& shard_;
};

// ---------------------------------------------------------------------------

class MemoryStore final : public Store {
 public:
  explicit MemoryStore(MemoryStoreOptions options)
      : clock_(options.clock ? std::move(options.clock) : Clock::real()),
        default_ttl_(options.default_ttl.is_default() ? Ttl(std::chrono::seconds(300))
                                                      : options.default_ttl),
        max_bytes_(std::max(options.max_bytes, kMinBytes)),
        max_entries_(std::max<std::size_t>(options.max_entries, 1)),
        shard_count_(shard_count(options.shards, max_bytes_, max_entries_)),
        shards_(std::make_unique<LockedShard[]>(shard_count_)),
        shard_bytes_(max_bytes_ / shard_count_),
        shard_entries_(max_entries_ / shard_count_),
        hash_key_(internal::random_sip_key()) {
    // No other thread can see the store yet: no lock needed.
    for (std::size_t i = 0; i < shard_count_; ++i) {
      shards_[i].shard.set_budget(shard_bytes_, shard_entries_);
    }
  }

  Result<std::optional<std::string>> get(std::string_view key) override {
    const std::uint64_t h = hash(key);
    const std::int64_t t = now();
    std::string value;
    ShardLock shard(shard_for(h));
    if (!shard->get(key, low(h), t, &value, true, nullptr, shard.dead())) return std::nullopt;
    return value;
  }

  Result<std::optional<ValueWithTtl>> get_with_ttl(std::string_view key) override {
    const std::uint64_t h = hash(key);
    const std::int64_t t = now();
    ValueWithTtl found;
    ShardLock shard(shard_for(h));
    if (!shard->get(key, low(h), t, &found.value, true, &found.ttl, shard.dead())) {
      return std::nullopt;
    }
    return found;
  }

  Status set(std::string_view key, std::string_view value, Ttl ttl) override {
    const std::uint64_t h = hash(key);
    const Ttl ttl_or_default = ttl.or_default(default_ttl_);
    if (ttl_or_default.removes()) {
      remove_one(h, key, now(), true);
      return {};
    }
    AICACHE_TRY(check_size(key, value));
    const std::int64_t t = now();
    write_one(h, key, value, deadline_for(ttl_or_default, t), t, true);
    return {};
  }

  Result<bool> add(std::string_view key, std::string_view value, Ttl ttl) override {
    const std::uint64_t h = hash(key);
    const Ttl ttl_or_default = ttl.or_default(default_ttl_);
    if (ttl_or_default.removes()) {
      batch_commands_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    AICACHE_TRY(check_size(key, value));
    const std::int64_t t = now();
    Entry* fresh = Entry::create(key, low(h), value, deadline_for(ttl_or_default, t));
    ShardLock shard(shard_for(h));
    return shard->put(fresh, t, PutMode::kOnlyIfAbsent, true, shard.dead());
  }

  Result<bool> remove(std::string_view key) override {
    return remove_one(hash(key), key, now(), true);
  }

  Result<bool> remove_if_equals(std::string_view key, std::string_view expected) override {
    const std::uint64_t h = hash(key);
    const std::int64_t t = now();
    ShardLock shard(shard_for(h));
    return shard->remove(key, low(h), t, &expected, true, shard.dead());
  }

  Result<bool> touch(std::string_view key, Ttl ttl) override {
    const std::uint64_t h = hash(key);
    const Ttl ttl_or_default = ttl.or_default(default_ttl_);
    const std::int64_t t = now();
    const bool removes = ttl_or_default.removes();
    const std::int64_t deadline = removes ? kNoDeadline : deadline_for(ttl_or_default, t);
    ShardLock shard(shard_for(h));
    return shard->touch(key, low(h), t, removes, deadline, shard.dead());
  }

  Result<KeyTtl> ttl(std::string_view key) override {
    const std::uint64_t h = hash(key);
    const std::int64_t t = now();
    ShardLock shard(shard_for(h));
    return shard->ttl(key, low(h), t, shard.dead());
  }

  Result<std::vector<std::optional<std::string>>> get_many(
      std::span<const std::string> keys) override {
    batch_commands_.fetch_add(1, std::memory_order_relaxed);
    std::vector<std::optional<std::string>> values(keys.size());
    const std::int64_t t = now();
    std::string value;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::uint64_t h = hash(keys[i]);
      bool hit = false;
      {
        ShardLock shard(shard_for(h));
        hit = shard->get(keys[i], low(h), t, &value, false, nullptr, shard.dead());
      }
      if (hit) values[i] = std::move(value);
    }
    return values;
  }

  Status set_many(std::span<const std::pair<std::string, std::string>> entries, Ttl ttl) override {
    batch_commands_.fetch_add(1, std::memory_order_relaxed);
    const Ttl ttl_or_default = ttl.or_default(default_ttl_);
    const bool removes = ttl_or_default.removes();
    // Refuse the whole batch before storing any of it.
    if (!removes) {
      for (const auto& [key, value] : entries) AICACHE_TRY(check_size(key, value));
    }
    const std::int64_t t = now();
    const std::int64_t deadline = removes ? kNoDeadline : deadline_for(ttl_or_default, t);
    for (const auto& [key, value] : entries) {
      const std::uint64_t h = hash(key);
      if (removes) {
        remove_one(h, key, t, false);
      } else {
        write_one(h, key, value, deadline, t, false);
      }
    }
    return {};
  }

  Result<std::uint64_t> remove_many(std::span<const std::string> keys) override {
    batch_commands_.fetch_add(1, std::memory_order_relaxed);
    const std::int64_t t = now();
    std::uint64_t removed = 0;
    for (const std::string& key : keys) removed += remove_one(hash(key), key, t, false) ? 1 : 0;
    return removed;
  }

  Result<std::int64_t> incr(std::string_view key, std::int64_t delta, Ttl ttl_if_created) override {
    const std::uint64_t h = hash(key);
    const Ttl ttl_or_default = ttl_if_created.or_default(default_ttl_);
    // The longest value incr can store must fit, whatever the counter holds.
    AICACHE_TRY(check_size(key, "-9223372036854775808"));
    const std::int64_t t = now();
    const bool removes = ttl_or_default.removes();
    const std::int64_t deadline = removes ? kNoDeadline : deadline_for(ttl_or_default, t);
    ShardLock shard(shard_for(h));
    return shard->incr(key, low(h), t, delta, removes, deadline, shard.dead());
  }

  Result<std::uint64_t> clear(std::string_view prefix) override {
    batch_commands_.fetch_add(1, std::memory_order_relaxed);
    if (prefix.empty()) {
      return make_error(ErrorCode::kInvalidArgument,
                        "clear: an empty prefix would delete every key; name a prefix");
    }
    const std::int64_t t = now();
    std::uint64_t removed = 0;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      ShardLock shard(shards_[i]);
      removed += shard->remove_prefix(prefix, t, shard.dead());
    }
    return removed;
  }

  // The cursor is "SHARD:BUCKET" (see Shard::scan).
  Result<ScanPage> scan(std::string_view prefix, std::string_view cursor,
                        std::size_t count) override {
    batch_commands_.fetch_add(1, std::memory_order_relaxed);
    std::size_t shard_index = 0, bucket = 0;
    if (!cursor.empty()) {
      const auto colon = cursor.find(':');
      const char* end = cursor.data() + cursor.size();
      auto [p1, e1] = std::from_chars(cursor.data(), cursor.data() + std::min(colon, cursor.size()),
                                      shard_index);
      bool ok = colon != std::string_view::npos && e1 == std::errc() &&
                p1 == cursor.data() + colon && shard_index < shard_count_;
      if (ok) {
        auto [p2, e2] = std::from_chars(cursor.data() + colon + 1, end, bucket);
        ok = e2 == std::errc() && p2 == end;
      }
      if (!ok) return make_error(ErrorCode::kInvalidArgument, "scan: not a cursor of this store");
    }
    const std::size_t max = std::max<std::size_t>(count, 1);
    const std::int64_t t = now();
    ScanPage page;
    while (shard_index < shard_count_) {
      {
        ShardLock shard(shards_[shard_index]);
        bucket = shard->scan(prefix, bucket, max - std::min(max, page.keys.size()), t, page.keys);
        if (bucket < shard->bucket_count()) {
          page.cursor = fmt::format("{}:{}", shard_index, bucket);
          return page;
        }
      }
      ++shard_index;
      bucket = 0;
      if (page.keys.size() >= max && shard_index < shard_count_) {
        page.cursor = fmt::format("{}:0", shard_index);
        return page;
      }
    }
    return page;
  }

  Result<StoreStats> stats() override {
    batch_commands_.fetch_add(1, std::memory_order_relaxed);
    memory::ShardStats sum;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      ShardLock shard(shards_[i]);
      shard->add_stats(&sum);
    }
    StoreStats s;
    s.backend = "memory";
    s.used_memory_bytes = sum.used_bytes;
    s.used_memory_human = format_bytes_human(sum.used_bytes);
    s.max_memory_bytes = max_bytes_;
    s.entries = sum.entries;
    s.hits = sum.hits;
    s.misses = sum.misses;
    s.evictions = sum.evictions;
    s.expirations = sum.expirations;
    s.commands_processed = sum.commands + batch_commands_.load(std::memory_order_relaxed);
    s.details["shards"] = std::to_string(shard_count_);
    s.details["max_entries"] = std::to_string(max_entries_);
    s.details["shard_max_bytes"] = std::to_string(shard_bytes_);
    s.details["shard_max_entries"] = std::to_string(shard_entries_);
    s.details["entry_overhead_bytes"] = std::to_string(kEntryOverhead);
    return s;
  }

  bool process_local() const noexcept override { return true; }

  internal::MemoryStoreLayout layout() {
    internal::MemoryStoreLayout layout;
    layout.shards = shard_count_;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      ShardLock shard(shards_[i]);
      shard->add_layout(&layout);
    }
    return layout;
  }

 private:
  // Both the shard (high 32 bits) and the bucket (low 32 bits) come from this
  // one keyed hash, so an attacker can aim at neither.
  std::uint64_t hash(std::string_view key) const { return internal::siphash13(hash_key_, key); }
  LockedShard& shard_for(std::uint64_t h) { return shards_[(h >> 32) & (shard_count_ - 1)]; }
  static std::uint32_t low(std::uint64_t h) { return static_cast<std::uint32_t>(h); }
  std::int64_t now() const { return to_nanos(clock_->now()); }

  // Stores `value` under `key`: rewrites a live entry of the same size in
  // place, else allocates the new entry outside the lock and links it.
  void write_one(std::uint64_t h, std::string_view key, std::string_view value,
                 std::int64_t deadline, std::int64_t t, bool count_command) {
    {
      ShardLock shard(shard_for(h));
      if (shard->overwrite(key, low(h), value, deadline, t, count_command, shard.dead())) return;
    }
    Entry* fresh = Entry::create(key, low(h), value, deadline);
    ShardLock shard(shard_for(h));
    shard->put(fresh, t, PutMode::kOverwrite, count_command, shard.dead());
  }

  bool remove_one(std::uint64_t h, std::string_view key, std::int64_t t, bool count_command) {
    ShardLock shard(shard_for(h));
    return shard->remove(key, low(h), t, nullptr, count_command, shard.dead());
  }

  // An entry must fit in its shard on its own: refusing it beats evicting
  // everything else for it.
  Status check_size(std::string_view key, std::string_view value) const {
    constexpr std::size_t kMaxPart = std::numeric_limits<std::uint32_t>::max();
    const std::size_t charge = memory::charge_of(key.size(), value.size());
    if (key.size() > kMaxPart || value.size() > kMaxPart || charge > shard_bytes_) {
      return make_error(
          ErrorCode::kResourceExhausted,
          fmt::format("memory store: an entry of {} bytes (key {} + value {} + {} overhead) "
                      "exceeds the per-shard budget of {} bytes (max_bytes {} / {} shards)",
                      charge, key.size(), value.size(), kEntryOverhead, shard_bytes_, max_bytes_,
                      shard_count_));
    }
    return {};
  }

  const std::shared_ptr<const Clock> clock_;
  const Ttl default_ttl_;
  const std::size_t max_bytes_;
  const std::size_t max_entries_;
  const std::size_t shard_count_;  // a power of two
  const std::unique_ptr<LockedShard[]> shards_;
  const std::size_t shard_bytes_;
  const std::size_t shard_entries_;
  // The hash key: one per store rather than one per process, drawn when the
  // store is made. It costs a getrandom(2) call per store, no global state or
  // initialisation order, and two stores in one process (or a test's store and
  // the service's) never share a layout that one could probe for the other.
  const internal::SipKey hash_key_;
  // Calls that no single shard counts (batches, stats, clear); off the get path.
  alignas(64) std::atomic<std::uint64_t> batch_commands_{0};
};

}  // namespace

std::shared_ptr<Store> make_memory_store(MemoryStoreOptions options) {
  return std::make_shared<MemoryStore>(std::move(options));
}

namespace internal {

std::optional<MemoryStoreLayout> memory_store_layout(Store& store) {
  auto* memory = dynamic_cast<MemoryStore*>(&store);
  if (memory == nullptr) return std::nullopt;
  return memory->layout();
}

}  // namespace internal

}  // namespace aicache
