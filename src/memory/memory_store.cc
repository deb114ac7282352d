// MemoryStore: a sharded, bounded, TTL-aware in-process Store.
//
// Layout. Every entry is ONE heap block: an Entry header followed by the key
// bytes and then the value bytes. A shard indexes its entries three ways, all
// intrusive (no per-entry allocation besides the block itself):
//   - a chained hash table (power-of-two bucket array, chains through
//     Entry::next_in_bucket), grown when entries outnumber buckets;
//   - a circular doubly-linked LRU list through Entry::lru_prev/lru_next;
//   - a binary min-heap on Entry::deadline holding only entries that expire
//     (Entry::heap_index is the entry's slot in it, for O(log n) removal).
// The accounted size of an entry is key + value + kEntryOverhead, an estimate
// of the header, the allocator's own header and rounding, a bucket slot and a
// heap slot (memory_overhead in bench/ measures the real figure).
//
// Expiry. An expired entry is never returned: every lookup checks the
// deadline and removes the entry it finds expired (lazy reclaim). Each write
// also pops at most kReclaimPerWrite expired entries off its shard's heap
// (active reclaim), so memory held by entries that are never read again is
// returned without ever scanning the table. Both count as expirations.
//
// Bounds. max_bytes and max_entries are split evenly across shards. A write
// that leaves its shard over budget first drops the shard's expired entries,
// then evicts from the cold end of the LRU list, never the entry just written.
// An entry bigger than a shard's whole byte budget is refused up front.
//
// Locking. Each shard has one lock (ShardMutex: spin briefly, then futex)
// guarding all of its state (table, LRU, heap, charge and counters); the only
// state outside the shards is immutable after construction, plus one relaxed
// atomic counter off the get path. No operation ever holds two shard locks.
// Entry blocks are allocated and filled before the lock is taken (a set that
// keeps the value size rewrites the block in place instead) and blocks that
// were unlinked are freed after it is released (see Graveyard), so critical
// sections do only pointer work and value copies. incr alone may allocate
// under the lock, when the number of digits changes.
#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>  // std::lock_guard
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "aicache/memory_store.h"
#include "core/siphash.h"
#include "memory/memory_store_internal.h"

namespace aicache {
namespace {

// ---------------------------------------------------------------------------
// Hashing: SipHash-1-3 under a 128-bit key drawn from the kernel's CSPRNG when
// the store is made (MemoryStore::Hash). Keys come from outside (/v1/kv/{key},
// conversation and user ids): with a public hash function an attacker can
// compute, offline, any number of keys that share one bucket and one shard,
// and every lookup then walks that chain under that shard's lock. The hash
// used here before was such a function (a fixed seed, and a 16-byte block
// whose second word equals the running state zeroed it). With a secret key
// collisions cannot be computed offline, and no operation returns keys in
// table order. (Which keys share a shard can be probed through per-shard
// eviction, slowly; that concentrates load on one of the shards at most,
// never lengthens a chain: buckets use the other half of the hash.)

// ---------------------------------------------------------------------------
// Time: deadlines are Clock nanoseconds since the clock's epoch.

constexpr std::int64_t kNoDeadline = std::numeric_limits<std::int64_t>::max();

inline std::int64_t ToNanos(Clock::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// The deadline for a non-removing, non-default TTL set at `now`.
std::int64_t DeadlineFor(Ttl ttl, std::int64_t now) {
  if (ttl.is_never()) return kNoDeadline;
  const std::int64_t ms = ttl.duration().count();
  constexpr std::int64_t kMax = kNoDeadline - 1;  // saturate below "never"
  if (ms > (kMax - now) / 1'000'000) return kMax;
  return now + ms * 1'000'000;
}

// ---------------------------------------------------------------------------
// Entry: header + key bytes + value bytes in one block.

struct Entry {
  Entry* next_in_bucket;  // hash chain; once unlinked, the Graveyard list
  Entry* lru_prev;
  Entry* lru_next;
  std::int64_t deadline;     // kNoDeadline: never expires (and not in the heap)
  std::uint32_t hash;        // low 32 bits of the key's hash: bucket index
  std::uint32_t heap_index;  // slot in Shard::expiry_ when deadline != kNoDeadline
  std::uint32_t key_size;
  std::uint32_t value_size;

  char* data() { return reinterpret_cast<char*>(this + 1); }
  const char* data() const { return reinterpret_cast<const char*>(this + 1); }
  std::string_view key() const { return {data(), key_size}; }
  std::string_view value() const { return {data() + key_size, value_size}; }
  bool expired(std::int64_t now) const { return deadline <= now; }

  static Entry* Create(std::string_view key, std::uint32_t hash, std::string_view value,
                       std::int64_t deadline) {
    void* block = ::operator new(sizeof(Entry) + key.size() + value.size());
    auto* e = new (block) Entry{nullptr,
                                nullptr,
                                nullptr,
                                deadline,
                                hash,
                                0,
                                static_cast<std::uint32_t>(key.size()),
                                static_cast<std::uint32_t>(value.size())};
    std::memcpy(e->data(), key.data(), key.size());
    if (!value.empty()) std::memcpy(e->data() + key.size(), value.data(), value.size());
    return e;
  }
  static void Destroy(Entry* e) { ::operator delete(static_cast<void*>(e)); }
};
static_assert(sizeof(Entry) == 48, "keep the header small: it is paid per entry");

// Header, allocator header and 16-byte rounding, one bucket slot (at load
// factor ~1) and one heap slot.
constexpr std::size_t kEntryOverhead = sizeof(Entry) + 16 + 8 + 8;

inline std::size_t ChargeOf(std::size_t key_size, std::size_t value_size) {
  return key_size + value_size + kEntryOverhead;
}
inline std::size_t ChargeOf(const Entry* e) { return ChargeOf(e->key_size, e->value_size); }

// Entries unlinked under a shard lock, freed when this goes out of scope.
// Declare it BEFORE the lock guard so that it is destroyed after the unlock.
class Graveyard {
 public:
  Graveyard() = default;
  Graveyard(const Graveyard&) = delete;
  Graveyard& operator=(const Graveyard&) = delete;
  ~Graveyard() {
    while (head_ != nullptr) {
      Entry* next = head_->next_in_bucket;
      Entry::Destroy(head_);
      head_ = next;
    }
  }
  void Bury(Entry* e) {
    e->next_in_bucket = head_;
    head_ = e;
  }

 private:
  Entry* head_ = nullptr;
};

// Parses a stored counter as Redis's INCRBY does (string2ll): decimal digits
// with an optional leading '-', no spaces, no '+', no leading zeros ("0"
// alone; not "-0"), within int64. Both stores then refuse the same values.
bool ParseCounter(std::string_view s, std::int64_t* out) {
  if (s == "0") {
    *out = 0;
    return true;
  }
  const std::size_t first_digit = s.starts_with('-') ? 1 : 0;
  if (s.size() <= first_digit || s[first_digit] < '1' || s[first_digit] > '9') return false;
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, *out);
  return ec == std::errc() && ptr == end;
}

constexpr int kReclaimPerWrite = 8;  // expired entries popped per write, at most

// The shard lock: spins briefly, then sleeps in the kernel (futex through
// std::atomic::wait). Critical sections are a few hundred nanoseconds at most,
// far shorter than a sleep and wake-up, so a short spin keeps a thread that
// meets a busy shard from paying for a context switch. Meets Lockable.
inline void CpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

class ShardMutex {
 public:
  void lock() noexcept {
    std::uint32_t seen = kUnlocked;
    if (state_.compare_exchange_strong(seen, kLocked, std::memory_order_acquire)) return;
    for (int i = 0; i < kSpins; ++i) {
      CpuRelax();
      seen = state_.load(std::memory_order_relaxed);
      if (seen == kUnlocked &&
          state_.compare_exchange_weak(seen, kLocked, std::memory_order_acquire)) {
        return;
      }
    }
    // Announce a sleeper; whoever unlocks kContended wakes one.
    while (state_.exchange(kContended, std::memory_order_acquire) != kUnlocked) {
      state_.wait(kContended, std::memory_order_relaxed);
    }
  }
  void unlock() noexcept {
    if (state_.exchange(kUnlocked, std::memory_order_release) == kContended) state_.notify_one();
  }

 private:
  static constexpr std::uint32_t kUnlocked = 0;
  static constexpr std::uint32_t kLocked = 1;     // no thread sleeping
  static constexpr std::uint32_t kContended = 2;  // a thread may be sleeping
  static constexpr int kSpins = 64;  // ~1-2 us of pause, then sleep
  std::atomic<std::uint32_t> state_{kUnlocked};
};

// Per-shard figures summed by stats().
struct ShardStats {
  std::uint64_t used_bytes = 0;
  std::uint64_t entries = 0;
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t evictions = 0;
  std::uint64_t expirations = 0;
  std::uint64_t commands = 0;
};

// What a write asks Shard::Put to do when the key is already live.
enum class PutMode { kOverwrite, kOnlyIfAbsent };

// ---------------------------------------------------------------------------

class alignas(64) Shard {
 public:
  Shard() = default;
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;
  ~Shard() {
    // No other thread can hold a reference any more.
    Entry* e = lru_.lru_next;
    while (e != &lru_) {
      Entry* next = e->lru_next;
      Entry::Destroy(e);
      e = next;
    }
  }

  void SetBudget(std::size_t bytes, std::size_t entries) {
    std::lock_guard lock(mu_);
    byte_budget_ = bytes;
    entry_budget_ = entries;
  }

  // Copies the value of the live entry `key` into *out, and its TTL into
  // *ttl when asked (Store::get_with_ttl: one lookup). `count_command`: false
  // when the call is one key of a batch counted elsewhere.
  bool Get(std::string_view key, std::uint32_t hash, std::int64_t now, std::string* out,
           bool count_command, KeyTtl* ttl = nullptr) {
    Graveyard dead;
    std::lock_guard lock(mu_);
    if (count_command) ++commands_;
    Entry* e = FindLiveLocked(key, hash, now, dead);
    if (e == nullptr) {
      ++misses_;
      return false;
    }
    ++hits_;
    LruMoveToNewestLocked(e);
    out->assign(e->value());
    if (ttl != nullptr) *ttl = TtlOfLocked(*e, now);
    return true;
  }

  // Links `fresh` (ownership passes to the shard). Returns false, and frees
  // `fresh`, if mode is kOnlyIfAbsent and the key is live.
  bool Put(Entry* fresh, std::int64_t now, PutMode mode, bool count_command) {
    Graveyard dead;
    std::lock_guard lock(mu_);
    if (count_command) ++commands_;
    Entry** slot = FindSlotLocked(fresh->key(), fresh->hash);
    if (Entry* old = *slot; old != nullptr) {
      if (mode == PutMode::kOnlyIfAbsent && !old->expired(now)) {
        dead.Bury(fresh);
        return false;
      }
      if (old->expired(now)) ++expirations_;
      *slot = old->next_in_bucket;
      UnlinkLocked(old);
      dead.Bury(old);
    }
    LinkLocked(fresh, slot);
    FinishWriteLocked(now, fresh, dead);
    return true;
  }

  // set() of a live key whose value keeps its size: the value is rewritten in
  // the existing block, with no allocation. False (nothing done, nothing
  // counted) if the key is not live or the size differs: then Put().
  bool Overwrite(std::string_view key, std::uint32_t hash, std::string_view value,
                 std::int64_t deadline, std::int64_t now, bool count_command) {
    Graveyard dead;
    std::lock_guard lock(mu_);
    Entry* e = FindLiveLocked(key, hash, now, dead);
    if (e == nullptr || e->value_size != value.size()) return false;
    if (count_command) ++commands_;
    if (!value.empty()) std::memcpy(e->data() + e->key_size, value.data(), value.size());
    SetDeadlineLocked(e, deadline);
    LruMoveToNewestLocked(e);
    FinishWriteLocked(now, e, dead);
    return true;
  }

  // Removes the live entry `key`; with `expected`, only if its value equals it.
  bool Remove(std::string_view key, std::uint32_t hash, std::int64_t now,
              const std::string_view* expected, bool count_command) {
    Graveyard dead;
    std::lock_guard lock(mu_);
    if (count_command) ++commands_;
    Entry** slot = FindSlotLocked(key, hash);
    Entry* e = *slot;
    if (e == nullptr) return false;
    if (e->expired(now)) {
      ++expirations_;
    } else if (expected != nullptr && e->value() != *expected) {
      return false;
    }
    const bool removed_live = !e->expired(now);
    *slot = e->next_in_bucket;
    UnlinkLocked(e);
    dead.Bury(e);
    FinishWriteLocked(now, nullptr, dead);
    return removed_live;
  }

  // Gives the live entry `key` the deadline `deadline`, or removes it if
  // `remove`. True if it was live.
  bool Touch(std::string_view key, std::uint32_t hash, std::int64_t now, bool remove,
             std::int64_t deadline) {
    Graveyard dead;
    std::lock_guard lock(mu_);
    ++commands_;
    Entry* e = FindLiveLocked(key, hash, now, dead);
    if (e == nullptr) return false;
    if (remove) {
      Entry** slot = SlotOfLocked(e);
      *slot = e->next_in_bucket;
      UnlinkLocked(e);
      dead.Bury(e);
    } else {
      SetDeadlineLocked(e, deadline);
      LruMoveToNewestLocked(e);
    }
    FinishWriteLocked(now, nullptr, dead);
    return true;
  }

  KeyTtl GetTtl(std::string_view key, std::uint32_t hash, std::int64_t now) {
    Graveyard dead;
    std::lock_guard lock(mu_);
    ++commands_;
    const Entry* e = FindLiveLocked(key, hash, now, dead);
    if (e == nullptr) return {};
    return TtlOfLocked(*e, now);
  }

  static KeyTtl TtlOfLocked(const Entry& e, std::int64_t now) {
    if (e.deadline == kNoDeadline) return {KeyTtl::State::kPersistent, {}};
    // Round up so that a live entry never reports 0 ms left.
    const std::int64_t left_ns = e.deadline - now;
    return {KeyTtl::State::kExpiring, std::chrono::milliseconds((left_ns + 999'999) / 1'000'000)};
  }

  // See Store::incr. `create_deadline` applies only to a missing key;
  // `create_removes`: a missing key is not stored (the result is delta).
  Result<std::int64_t> Incr(std::string_view key, std::uint32_t hash, std::int64_t now,
                            std::int64_t delta, bool create_removes,
                            std::int64_t create_deadline) {
    Graveyard dead;
    std::lock_guard lock(mu_);
    ++commands_;
    Entry* e = FindLiveLocked(key, hash, now, dead);
    std::int64_t value = delta;
    if (e != nullptr) {
      std::int64_t current = 0;
      if (!ParseCounter(e->value(), &current)) {
        return make_error(ErrorCode::kFailedPrecondition,
                          "incr: the stored value is not a 64-bit decimal integer");
      }
      if (__builtin_add_overflow(current, delta, &value)) {
        return make_error(ErrorCode::kOutOfRange,
                          fmt::format("incr: {} + {} overflows a signed 64-bit integer",
                                      current, delta));
      }
    } else if (create_removes) {
      return value;
    }
    char digits[24];
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
    const std::string_view text(digits, static_cast<std::size_t>(end - digits));
    if (e != nullptr && e->value_size == text.size()) {
      // Same length: rewrite in place, no allocation and no change of charge.
      std::memcpy(e->data() + e->key_size, text.data(), text.size());
      LruMoveToNewestLocked(e);
      FinishWriteLocked(now, e, dead);
      return value;
    }
    Entry* fresh = Entry::Create(key, hash, text, e != nullptr ? e->deadline : create_deadline);
    Entry** slot = FindSlotLocked(key, hash);
    if (e != nullptr) {
      *slot = e->next_in_bucket;
      UnlinkLocked(e);
      dead.Bury(e);
    }
    LinkLocked(fresh, slot);
    FinishWriteLocked(now, fresh, dead);
    return value;
  }

  // Removes every entry whose key starts with `prefix`; returns how many were
  // live. A full walk of the shard: clear() is rare.
  std::uint64_t RemovePrefix(std::string_view prefix, std::int64_t now) {
    Graveyard dead;
    std::lock_guard lock(mu_);
    std::uint64_t removed = 0;
    for (Entry* e = lru_.lru_next; e != &lru_;) {
      Entry* next = e->lru_next;
      if (e->key().starts_with(prefix)) {
        if (e->expired(now)) {
          ++expirations_;
        } else {
          ++removed;
        }
        Entry** slot = SlotOfLocked(e);
        *slot = e->next_in_bucket;
        UnlinkLocked(e);
        dead.Bury(e);
      }
      e = next;
    }
    return removed;
  }

  // Walks every bucket: O(buckets + entries) under the lock, so never on a
  // request path (see memory_store_internal.h).
  void AddLayout(internal::MemoryStoreLayout* layout) {
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < bucket_count_; ++i) {
      std::size_t chain = 0;
      for (const Entry* e = buckets_[i]; e != nullptr; e = e->next_in_bucket) ++chain;
      layout->longest_chain = std::max(layout->longest_chain, chain);
    }
    layout->fullest_shard = std::max(layout->fullest_shard, count_);
    layout->entries += count_;
  }

  void AddStats(ShardStats* s) {
    std::lock_guard lock(mu_);
    s->used_bytes += charge_;
    s->entries += count_;
    s->hits += hits_;
    s->misses += misses_;
    s->evictions += evictions_;
    s->expirations += expirations_;
    s->commands += commands_;
  }

 private:
  // --- hash table

  // The link that points at `key`'s entry, or the null link ending its chain.
  Entry** FindSlotLocked(std::string_view key, std::uint32_t hash) {
    Entry** slot = &buckets_[hash & (bucket_count_ - 1)];
    while (*slot != nullptr && ((*slot)->hash != hash || (*slot)->key() != key)) {
      slot = &(*slot)->next_in_bucket;
    }
    return slot;
  }

  // The link that points at `e`, which must be in the table.
  Entry** SlotOfLocked(const Entry* e) {
    Entry** slot = &buckets_[e->hash & (bucket_count_ - 1)];
    while (*slot != e) slot = &(*slot)->next_in_bucket;
    return slot;
  }

  // The live entry for `key`; an expired one found on the way is removed.
  Entry* FindLiveLocked(std::string_view key, std::uint32_t hash, std::int64_t now,
                        Graveyard& dead) {
    Entry** slot = FindSlotLocked(key, hash);
    Entry* e = *slot;
    if (e == nullptr || !e->expired(now)) return e;
    *slot = e->next_in_bucket;
    UnlinkLocked(e);
    dead.Bury(e);
    ++expirations_;
    return nullptr;
  }

  void GrowLocked() {
    const std::size_t new_count = bucket_count_ * 2;
    auto fresh = std::make_unique<Entry*[]>(new_count);  // zero-initialised
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

  // --- all three structures

  // Puts `e` at `slot` (a link of its bucket's chain), in the LRU list as
  // newest and in the heap if it expires.
  void LinkLocked(Entry* e, Entry** slot) {
    e->next_in_bucket = *slot;
    *slot = e;
    LruAppendLocked(e);
    if (e->deadline != kNoDeadline) HeapPushLocked(e);
    charge_ += ChargeOf(e);
    ++count_;
    if (count_ > bucket_count_) GrowLocked();
  }

  // Takes `e`, already out of its hash chain, out of the LRU list and heap.
  void UnlinkLocked(Entry* e) {
    e->lru_prev->lru_next = e->lru_next;
    e->lru_next->lru_prev = e->lru_prev;
    if (e->deadline != kNoDeadline) HeapRemoveLocked(e);
    charge_ -= ChargeOf(e);
    --count_;
  }

  void DropLocked(Entry* e, Graveyard& dead) {
    Entry** slot = SlotOfLocked(e);
    *slot = e->next_in_bucket;
    UnlinkLocked(e);
    dead.Bury(e);
  }

  // After any write: bounded active reclaim, then the budgets. `keep` (the
  // entry just written, if any) is never evicted.
  void FinishWriteLocked(std::int64_t now, const Entry* keep, Graveyard& dead) {
    for (int i = 0; i < kReclaimPerWrite && !expiry_.empty() && expiry_[0]->expired(now); ++i) {
      DropLocked(expiry_[0], dead);
      ++expirations_;
    }
    if (charge_ <= byte_budget_ && count_ <= entry_budget_) return;
    // Over budget: expired entries go first, however many there are...
    while ((charge_ > byte_budget_ || count_ > entry_budget_) && !expiry_.empty() &&
           expiry_[0]->expired(now)) {
      DropLocked(expiry_[0], dead);
      ++expirations_;
    }
    // ...then the least recently used.
    while (charge_ > byte_budget_ || count_ > entry_budget_) {
      Entry* victim = lru_.lru_next;
      if (victim == &lru_ || victim == keep) break;  // unreachable: `keep` fits alone
      DropLocked(victim, dead);
      ++evictions_;
    }
  }

  // --- LRU list: lru_.lru_next is the least recently used entry.

  void LruAppendLocked(Entry* e) {
    e->lru_next = &lru_;
    e->lru_prev = lru_.lru_prev;
    e->lru_prev->lru_next = e;
    lru_.lru_prev = e;
  }

  void LruMoveToNewestLocked(Entry* e) {
    if (lru_.lru_prev == e) return;
    e->lru_prev->lru_next = e->lru_next;
    e->lru_next->lru_prev = e->lru_prev;
    LruAppendLocked(e);
  }

  // --- expiry heap: min-heap on deadline; expiry_[i]->heap_index == i.

  void SetDeadlineLocked(Entry* e, std::int64_t deadline) {
    const bool was_in = e->deadline != kNoDeadline;
    const bool will_be_in = deadline != kNoDeadline;
    if (was_in && !will_be_in) {
      HeapRemoveLocked(e);
      e->deadline = deadline;
    } else if (!was_in && will_be_in) {
      e->deadline = deadline;
      HeapPushLocked(e);
    } else if (was_in) {
      e->deadline = deadline;
      HeapFixLocked(e->heap_index);
    }
  }

  void HeapPlaceLocked(std::size_t i, Entry* e) {
    expiry_[i] = e;
    e->heap_index = static_cast<std::uint32_t>(i);
  }

  void HeapPushLocked(Entry* e) {
    expiry_.push_back(e);
    HeapUpLocked(expiry_.size() - 1);
  }

  void HeapRemoveLocked(Entry* e) {
    const std::size_t i = e->heap_index;
    Entry* last = expiry_.back();
    expiry_.pop_back();
    if (last == e) return;
    HeapPlaceLocked(i, last);
    HeapFixLocked(i);
  }

  void HeapFixLocked(std::size_t i) {
    if (i > 0 && expiry_[i]->deadline < expiry_[(i - 1) / 2]->deadline) {
      HeapUpLocked(i);
    } else {
      HeapDownLocked(i);
    }
  }

  void HeapUpLocked(std::size_t i) {
    Entry* e = expiry_[i];
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (expiry_[parent]->deadline <= e->deadline) break;
      HeapPlaceLocked(i, expiry_[parent]);
      i = parent;
    }
    HeapPlaceLocked(i, e);
  }

  void HeapDownLocked(std::size_t i) {
    Entry* e = expiry_[i];
    const std::size_t n = expiry_.size();
    for (;;) {
      std::size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && expiry_[child + 1]->deadline < expiry_[child]->deadline) ++child;
      if (e->deadline <= expiry_[child]->deadline) break;
      HeapPlaceLocked(i, expiry_[child]);
      i = child;
    }
    HeapPlaceLocked(i, e);
  }

  static constexpr std::size_t kInitialBuckets = 16;

  ShardMutex mu_;
  // Everything below is guarded by mu_.
  //
  // Invariants: every entry is in exactly one hash chain (bucket
  // hash & (bucket_count_ - 1)) and in the LRU list; it is in expiry_ iff its
  // deadline != kNoDeadline; count_ entries whose ChargeOf() sum to charge_;
  // count_ <= bucket_count_, a power of two. After every write, charge_ <=
  // byte_budget_ and count_ <= entry_budget_.
  std::unique_ptr<Entry*[]> buckets_ = std::make_unique<Entry*[]>(kInitialBuckets);
  std::size_t bucket_count_ = kInitialBuckets;
  Entry lru_{nullptr, &lru_, &lru_, kNoDeadline, 0, 0, 0, 0};  // dummy head
  std::vector<Entry*> expiry_;
  std::size_t count_ = 0;
  std::size_t charge_ = 0;
  std::size_t byte_budget_ = 0;
  std::size_t entry_budget_ = 0;
  std::uint64_t hits_ = 0;
  std::uint64_t misses_ = 0;
  std::uint64_t evictions_ = 0;
  std::uint64_t expirations_ = 0;
  std::uint64_t commands_ = 0;
};

// ---------------------------------------------------------------------------

constexpr std::size_t kMinBytes = 1024;             // max_bytes is clamped up to this
constexpr std::size_t kMinShardBytes = 1024;        // an explicit shard count is lowered to keep this
constexpr std::size_t kMinAutoShardBytes = 64 << 10;  // ...and an automatic one to keep this

// 0 picks 32 shards per hardware thread within [16, 64]: with T threads the
// odds that a call finds its shard locked are about (T - 1) / shards times
// the fraction of time a thread spends inside a lock. The count is rounded
// up to a power of two, then halved while a shard would get no entry or too
// small a byte budget (small stores get few shards and a more exact LRU).
std::size_t ShardCount(std::size_t requested, std::size_t max_bytes, std::size_t max_entries) {
  std::size_t n = requested;
  std::size_t min_shard_bytes = kMinShardBytes;
  if (n == 0) {
    n = std::clamp<std::size_t>(std::size_t{std::thread::hardware_concurrency()} * 32, 16, 64);
    min_shard_bytes = kMinAutoShardBytes;
  }
  n = std::bit_ceil(std::min<std::size_t>(n, 1u << 12));
  while (n > 1 && (max_entries / n == 0 || max_bytes / n < min_shard_bytes)) n /= 2;
  return n;
}

class MemoryStore final : public Store {
 public:
  explicit MemoryStore(MemoryStoreOptions options)
      : clock_(options.clock ? std::move(options.clock) : Clock::real()),
        default_ttl_(options.default_ttl.is_default() ? Ttl(std::chrono::seconds(300))
                                                      : options.default_ttl),
        max_bytes_(std::max(options.max_bytes, kMinBytes)),
        max_entries_(std::max<std::size_t>(options.max_entries, 1)),
        shard_count_(ShardCount(options.shards, max_bytes_, max_entries_)),
        shards_(std::make_unique<Shard[]>(shard_count_)),
        shard_bytes_(max_bytes_ / shard_count_),
        shard_entries_(max_entries_ / shard_count_),
        hash_key_(internal::random_sip_key()) {
    for (std::size_t i = 0; i < shard_count_; ++i) {
      shards_[i].SetBudget(shard_bytes_, shard_entries_);
    }
  }

  Result<std::optional<std::string>> get(std::string_view key) override {
    const std::uint64_t h = Hash(key);
    std::string value;
    if (!ShardFor(h).Get(key, Low(h), Now(), &value, true)) return std::nullopt;
    return value;
  }

  Result<std::optional<ValueWithTtl>> get_with_ttl(std::string_view key) override {
    const std::uint64_t h = Hash(key);
    ValueWithTtl found;
    if (!ShardFor(h).Get(key, Low(h), Now(), &found.value, true, &found.ttl)) {
      return std::nullopt;
    }
    return found;
  }

  Status set(std::string_view key, std::string_view value, Ttl ttl) override {
    const std::uint64_t h = Hash(key);
    const Ttl t = ttl.or_default(default_ttl_);
    if (t.removes()) {
      ShardFor(h).Remove(key, Low(h), Now(), nullptr, true);
      return {};
    }
    if (auto fits = CheckSize(key, value); !fits) return fits;
    const std::int64_t now = Now();
    const std::int64_t deadline = DeadlineFor(t, now);
    Shard& shard = ShardFor(h);
    if (!shard.Overwrite(key, Low(h), value, deadline, now, true)) {
      shard.Put(Entry::Create(key, Low(h), value, deadline), now, PutMode::kOverwrite, true);
    }
    return {};
  }

  Result<bool> add(std::string_view key, std::string_view value, Ttl ttl) override {
    const std::uint64_t h = Hash(key);
    const Ttl t = ttl.or_default(default_ttl_);
    if (t.removes()) {
      batch_commands_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (auto fits = CheckSize(key, value); !fits) return std::unexpected(fits.error());
    const std::int64_t now = Now();
    return ShardFor(h).Put(Entry::Create(key, Low(h), value, DeadlineFor(t, now)), now,
                           PutMode::kOnlyIfAbsent, true);
  }

  Result<bool> remove(std::string_view key) override {
    const std::uint64_t h = Hash(key);
    return ShardFor(h).Remove(key, Low(h), Now(), nullptr, true);
  }

  Result<bool> remove_if_equals(std::string_view key, std::string_view expected) override {
    const std::uint64_t h = Hash(key);
    return ShardFor(h).Remove(key, Low(h), Now(), &expected, true);
  }

  Result<bool> touch(std::string_view key, Ttl ttl) override {
    const std::uint64_t h = Hash(key);
    const Ttl t = ttl.or_default(default_ttl_);
    const std::int64_t now = Now();
    return ShardFor(h).Touch(key, Low(h), now, t.removes(),
                             t.removes() ? kNoDeadline : DeadlineFor(t, now));
  }

  Result<KeyTtl> ttl(std::string_view key) override {
    const std::uint64_t h = Hash(key);
    return ShardFor(h).GetTtl(key, Low(h), Now());
  }

  Result<std::vector<std::optional<std::string>>> get_many(
      std::span<const std::string> keys) override {
    batch_commands_.fetch_add(1, std::memory_order_relaxed);
    std::vector<std::optional<std::string>> values(keys.size());
    const std::int64_t now = Now();
    std::string value;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::uint64_t h = Hash(keys[i]);
      if (ShardFor(h).Get(keys[i], Low(h), now, &value, false)) values[i] = std::move(value);
    }
    return values;
  }

  Status set_many(std::span<const std::pair<std::string, std::string>> entries,
                  Ttl ttl) override {
    batch_commands_.fetch_add(1, std::memory_order_relaxed);
    const Ttl t = ttl.or_default(default_ttl_);
    // Refuse the whole batch before storing any of it.
    if (!t.removes()) {
      for (const auto& [key, value] : entries) {
        if (auto fits = CheckSize(key, value); !fits) return fits;
      }
    }
    const std::int64_t now = Now();
    const std::int64_t deadline = t.removes() ? kNoDeadline : DeadlineFor(t, now);
    for (const auto& [key, value] : entries) {
      const std::uint64_t h = Hash(key);
      if (t.removes()) {
        ShardFor(h).Remove(key, Low(h), now, nullptr, false);
      } else if (!ShardFor(h).Overwrite(key, Low(h), value, deadline, now, false)) {
        ShardFor(h).Put(Entry::Create(key, Low(h), value, deadline), now, PutMode::kOverwrite,
                        false);
      }
    }
    return {};
  }

  Result<std::uint64_t> remove_many(std::span<const std::string> keys) override {
    batch_commands_.fetch_add(1, std::memory_order_relaxed);
    const std::int64_t now = Now();
    std::uint64_t removed = 0;
    for (const std::string& key : keys) {
      const std::uint64_t h = Hash(key);
      removed += ShardFor(h).Remove(key, Low(h), now, nullptr, false) ? 1 : 0;
    }
    return removed;
  }

  Result<std::int64_t> incr(std::string_view key, std::int64_t delta,
                            Ttl ttl_if_created) override {
    const std::uint64_t h = Hash(key);
    const Ttl t = ttl_if_created.or_default(default_ttl_);
    if (auto fits = CheckSize(key, "-9223372036854775808"); !fits) {
      return std::unexpected(fits.error());
    }
    const std::int64_t now = Now();
    return ShardFor(h).Incr(key, Low(h), now, delta, t.removes(),
                            t.removes() ? kNoDeadline : DeadlineFor(t, now));
  }

  Result<std::uint64_t> clear(std::string_view prefix) override {
    batch_commands_.fetch_add(1, std::memory_order_relaxed);
    if (prefix.empty()) {
      return make_error(ErrorCode::kInvalidArgument,
                        "clear: an empty prefix would delete every key; name a prefix");
    }
    const std::int64_t now = Now();
    std::uint64_t removed = 0;
    for (std::size_t i = 0; i < shard_count_; ++i) removed += shards_[i].RemovePrefix(prefix, now);
    return removed;
  }

  Result<StoreStats> stats() override {
    batch_commands_.fetch_add(1, std::memory_order_relaxed);
    ShardStats sum;
    for (std::size_t i = 0; i < shard_count_; ++i) shards_[i].AddStats(&sum);
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

  internal::MemoryStoreLayout Layout() {
    internal::MemoryStoreLayout layout;
    layout.shards = shard_count_;
    for (std::size_t i = 0; i < shard_count_; ++i) shards_[i].AddLayout(&layout);
    return layout;
  }

 private:
  // Both the shard (high 32 bits) and the bucket (low 32 bits) come from this
  // one keyed hash, so an attacker can aim at neither.
  std::uint64_t Hash(std::string_view key) const { return internal::siphash13(hash_key_, key); }
  Shard& ShardFor(std::uint64_t h) { return shards_[(h >> 32) & (shard_count_ - 1)]; }
  static std::uint32_t Low(std::uint64_t h) { return static_cast<std::uint32_t>(h); }
  std::int64_t Now() const { return ToNanos(clock_->now()); }

  // An entry must fit in its shard on its own: refusing it beats evicting
  // everything else for it.
  Status CheckSize(std::string_view key, std::string_view value) const {
    constexpr std::size_t kMaxPart = std::numeric_limits<std::uint32_t>::max();
    if (key.size() > kMaxPart || value.size() > kMaxPart ||
        ChargeOf(key.size(), value.size()) > shard_bytes_) {
      return make_error(
          ErrorCode::kResourceExhausted,
          fmt::format("memory store: an entry of {} bytes (key {} + value {} + {} overhead) "
                      "exceeds the per-shard budget of {} bytes (max_bytes {} / {} shards)",
                      ChargeOf(key.size(), value.size()), key.size(), value.size(),
                      kEntryOverhead, shard_bytes_, max_bytes_, shard_count_));
    }
    return {};
  }

  const std::shared_ptr<const Clock> clock_;
  const Ttl default_ttl_;
  const std::size_t max_bytes_;
  const std::size_t max_entries_;
  const std::size_t shard_count_;  // a power of two
  const std::unique_ptr<Shard[]> shards_;
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
  return memory->Layout();
}

}  // namespace internal

}  // namespace aicache
