// NearCache: an in-process copy of values read from Redis, kept coherent by
// Redis's client-side caching (CLIENT TRACKING, see tracker.h).
//
// Bounded by bytes, LRU per shard, sharded locks. It never decides on its own
// that a value is fresh; three checks guard every entry:
//
//  * The tracking state. state() is odd while the invalidation connection is
//    known healthy, and changes on every transition (up: +1, down: +1). An
//    entry remembers the state it was read under and is served only while
//    the state is still that one: a disconnect, however brief, strands every
//    entry read before it (and tracking_down() drops them too).
//  * The invalidation sequences. A reader takes read_ticket() BEFORE sending
//    GET and hands it to insert(); every invalidation of a key (from Redis,
//    or this process's own write) bumps the sequence of the key's stripe (one
//    of kStripes per shard, chosen by the key's hash), a flush bumps every
//    shard's own sequence, and insert() refuses a value whose stripe or shard
//    saw one since. That closes the race "GET returns v1, the invalidation
//    for the key arrives, then v1 is inserted". Per stripe, not per key: a
//    neighbour's invalidation costs one refused insert (the next read caches
//    it), never staleness.
//  * The deadline: now + the key's PTTL when it was read (measured from
//    before the GET was sent), so an entry never outlives the key in Redis.
//
// An entry may also carry a reader's vouch (vouch()): "these bytes passed my
// check", so a reader that validates what it reads (AssistantCache: JSON)
// checks a value once per entry, not once per hit. The vouch belongs to the
// entry: an invalidation, a drop or a new insert starts without one.
//
// Thread safety: safe to share between threads. The tracker calls
// invalidate()/invalidate_all()/tracking_up()/tracking_down() from its
// thread; readers and writers from theirs.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "aicache/clock.h"
#include "aicache/store.h"

namespace aicache::redis {

struct NearCacheFigures {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;           // lookups not served (absent, stale, tracking down)
  std::uint64_t inserts = 0;
  std::uint64_t refused_inserts = 0;  // an invalidation or disconnect raced the read
  std::uint64_t invalidations = 0;    // keys invalidated by Redis
  std::uint64_t local_drops = 0;      // keys dropped by this process's own writes
  std::uint64_t flushes = 0;          // null invalidations (FLUSHDB, FLUSHALL)
  std::uint64_t evictions = 0;        // LRU, for the byte bound
  std::uint64_t expirations = 0;      // entries found past their deadline
  std::uint64_t disconnects = 0;      // tracking_down() calls that ended a live state
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;
  std::uint64_t max_bytes = 0;
  bool tracking_live = false;
};

class NearCache {
 public:
  // What a reader needs to insert what it is about to read.
  struct Ticket {
    std::uint64_t state = 0;
    std::uint64_t sequence = 0;  // the shard's (flushes)
    std::uint64_t stripe = 0;    // the key's stripe's (invalidations)
  };
  // A served value with its remaining TTL (kPersistent or kExpiring).
  struct Hit {
    std::string value;
    KeyTtl ttl;
    bool vouched = false;  // see vouch()
  };

  // `max_bytes` > 0, split evenly between `shards` LRU lists. Charges each
  // entry its key, value and kEntryOverhead. A null clock: the real one.
  NearCache(std::size_t max_bytes, std::shared_ptr<const Clock> clock,
            std::size_t shards = kDefaultShards);
  NearCache(const NearCache&) = delete;
  NearCache& operator=(const NearCache&) = delete;
  ~NearCache();

  static constexpr std::size_t kEntryOverhead = 96;
  static constexpr std::size_t kDefaultShards = 16;
  static constexpr std::size_t kStripes = 64;

  static bool live(std::uint64_t state) noexcept { return (state & 1) != 0; }
  std::uint64_t state() const noexcept { return state_.load(std::memory_order_acquire); }
  const Clock& clock() const noexcept { return *clock_; }

  // The value of `key` if it is cached, read under the current (live) state
  // and not past its deadline.
  std::optional<Hit> lookup(std::string_view key);

  // Take before sending the GET of `key`.
  Ticket read_ticket(std::string_view key) const;

  // Caches `value`, read with `ticket`, that Redis said expires at
  // `deadline` (nullopt: persistent). Refused (false) if the state changed
  // or the key's shard saw an invalidation since the ticket, or the entry
  // alone exceeds a shard's budget.
  bool insert(std::string_view key, std::string_view value,
              std::optional<Clock::TimePoint> deadline, const Ticket& ticket);

  // Marks the entry of `key` as vouched for, if it holds exactly `value`
  // (so a vouch never lands on a newer value than the one checked). No-op
  // when the entry is gone, differs or was read under another state.
  void vouch(std::string_view key, std::string_view value);

  // Redis said `key` changed: drop it and refuse in-flight reads of it.
  void invalidate(std::string_view key);
  // This process changed `key` (set, delete, incr...): the same, counted
  // apart. Call after the write's reply (whatever it was) and before the
  // write returns to its caller.
  void drop(std::string_view key);
  // Redis's null invalidation (FLUSHDB/FLUSHALL), or a local clear().
  void invalidate_all(bool from_redis);

  // The invalidation connection is subscribed and its client id known.
  void tracking_up();
  // The invalidation connection is gone: nothing may be served until
  // tracking_up(). Empties the cache.
  void tracking_down();

  NearCacheFigures figures() const;

 private:
  struct Entry {
    std::string key;
    std::string value;
    std::optional<Clock::TimePoint> deadline;
    std::uint64_t state = 0;
    std::size_t charge = 0;
    bool vouched = false;
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  using Lru = std::list<Entry>;  // front: most recently used
  struct Shard {
    mutable std::mutex mu;
    // Guarded by mu:
    Lru lru;
    std::unordered_map<std::string_view, Lru::iterator, Hash, std::equal_to<>> index;
    std::size_t bytes = 0;
    // Flushes (sequence) and invalidations by key hash (stripes) seen, for
    // read_ticket/insert; written under mu, read without it by read_ticket().
    std::atomic<std::uint64_t> sequence{0};
    std::atomic<std::uint64_t> stripes[kStripes] = {};
    // Invalidations of this shard waiting for mu: lookups bypass the shard
    // while any is pending, so readers hammering a hot key cannot hold an
    // invalidation off (std::mutex is not fair) and keep serving the old
    // value.
    std::atomic<std::uint32_t> pending{0};
    std::atomic<std::uint64_t> bypassed{0};  // misses counted without mu
    std::uint64_t hits = 0, misses = 0, inserts = 0, refused = 0;
    std::uint64_t invalidations = 0, local_drops = 0, evictions = 0, expirations = 0;
  };

  Shard& shard_for(std::string_view key) const;
  static std::size_t stripe_of(std::string_view key) noexcept;
  static void erase(Shard& s, Lru::iterator it);
  void invalidate_key(std::string_view key, bool from_redis);
  void clear_all();

  const std::size_t max_bytes_;
  const std::size_t shard_count_;
  const std::size_t shard_budget_;
  const std::shared_ptr<const Clock> clock_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<std::uint64_t> state_{0};  // even: down, odd: live
  std::mutex transition_mu_;             // serializes tracking_up/down
  std::atomic<std::uint64_t> flushes_{0};
  std::atomic<std::uint64_t> disconnects_{0};
};

}  // namespace aicache::redis
