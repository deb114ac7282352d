#include "redis/near_cache.h"

#include <algorithm>
#include <utility>

namespace aicache::redis {
NearCache::NearCache(std::size_t max_bytes, std::shared_ptr<const Clock> clock,
                     std::size_t shards)
    : max_bytes_(max_bytes),
      shard_count_(std::max<std::size_t>(shards, 1)),
      shard_budget_(std::max<std::size_t>(max_bytes / shard_count_, 1)),
      clock_(clock ? std::move(clock) : Clock::real()),
      shards_(std::make_unique<Shard[]>(shard_count_)) {}

NearCache::~NearCache() = default;

NearCache::Shard& NearCache::shard_for(std::string_view key) const {
  // The high bits: the map inside the shard uses the same hash's low bits.
  const std::size_t h = Hash{}(key);
  return shards_[(h >> 40) % shard_count_];
}

std::size_t NearCache::stripe_of(std::string_view key) noexcept {
  // Bits apart from the shard's (>> 40) and the map's (low) ones.
  return (Hash{}(key) >> 20) % kStripes;
}

void NearCache::erase(Shard& s, Lru::iterator it) {
  s.bytes -= it->charge;
  s.index.erase(std::string_view(it->key));
  s.lru.erase(it);
}

void NearCache::vouch(std::string_view key, std::string_view value) {
  const std::uint64_t st = state();
  if (!live(st)) return;
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mu);
  auto found = s.index.find(key);
  if (found == s.index.end()) return;
  Entry& entry = *found->second;
  if (entry.state == st && entry.value == value) entry.vouched = true;
}

std::optional<NearCache::Hit> NearCache::lookup(std::string_view key) {
  const std::uint64_t st = state();
  Shard& s = shard_for(key);
  if (!live(st) || s.pending.load(std::memory_order_acquire) != 0) {
    s.bypassed.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  std::lock_guard lock(s.mu);
  auto found = s.index.find(key);
  if (found == s.index.end()) {
    ++s.misses;
    return std::nullopt;
  }
  Lru::iterator it = found->second;
  if (it->state != st) {
    erase(s, it);
    ++s.misses;
    return std::nullopt;
  }
  Hit hit;
  if (it->deadline) {
    const Clock::TimePoint now = clock_->now();
    if (now >= *it->deadline) {
      erase(s, it);
      ++s.expirations;
      ++s.misses;
      return std::nullopt;
    }
    hit.ttl.state = KeyTtl::State::kExpiring;
    // Rounded up: a key with 0.4 ms left still exists (as PTTL's 0 means).
    hit.ttl.remaining = std::max(
        std::chrono::ceil<std::chrono::milliseconds>(*it->deadline - now),
        std::chrono::milliseconds(1));
  } else {
    hit.ttl.state = KeyTtl::State::kPersistent;
  }
  hit.value = it->value;
  hit.vouched = it->vouched;
  if (it != s.lru.begin()) s.lru.splice(s.lru.begin(), s.lru, it);
  ++s.hits;
  return hit;
}

NearCache::Ticket NearCache::read_ticket(std::string_view key) const {
  Ticket t;
  t.state = state();
  // Without the lock: a value read before an increment only makes insert()
  // refuse, and invalidations bump it under the lock insert() checks under.
  const Shard& s = shard_for(key);
  t.sequence = s.sequence.load(std::memory_order_acquire);
  t.stripe = s.stripes[stripe_of(key)].load(std::memory_order_acquire);
  return t;
}

bool NearCache::insert(std::string_view key, std::string_view value,
                       std::optional<Clock::TimePoint> deadline, const Ticket& ticket) {
  const std::size_t charge = key.size() + value.size() + kEntryOverhead;
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mu);
  // Checked under the shard lock: tracking_down() bumps the state before it
  // empties the shards, invalidations bump the sequence under this lock.
  if (!live(ticket.state) || state() != ticket.state ||
      s.sequence.load(std::memory_order_relaxed) != ticket.sequence ||
      s.stripes[stripe_of(key)].load(std::memory_order_relaxed) != ticket.stripe ||
      charge > shard_budget_) {
    ++s.refused;
    return false;
  }
  if (auto found = s.index.find(key); found != s.index.end()) erase(s, found->second);
  while (s.bytes + charge > shard_budget_ && !s.lru.empty()) {
    erase(s, std::prev(s.lru.end()));
    ++s.evictions;
  }
  s.lru.push_front(Entry{.key = std::string(key),
                         .value = std::string(value),
                         .deadline = deadline,
                         .state = ticket.state,
                         .charge = charge});
  s.index.emplace(std::string_view(s.lru.front().key), s.lru.begin());
  s.bytes += charge;
  ++s.inserts;
  return true;
}

void NearCache::invalidate_key(std::string_view key, bool from_redis) {
  Shard& s = shard_for(key);
  s.pending.fetch_add(1, std::memory_order_acq_rel);
  std::lock_guard lock(s.mu);
  s.stripes[stripe_of(key)].fetch_add(1, std::memory_order_acq_rel);
  s.pending.fetch_sub(1, std::memory_order_acq_rel);
  if (from_redis) {
    ++s.invalidations;
  } else {
    ++s.local_drops;
  }
  if (auto found = s.index.find(key); found != s.index.end()) erase(s, found->second);
}

void NearCache::invalidate(std::string_view key) { invalidate_key(key, true); }
void NearCache::drop(std::string_view key) { invalidate_key(key, false); }

void NearCache::clear_all() {
  for (std::size_t i = 0; i < shard_count_; ++i) {
    Shard& s = shards_[i];
    Lru dropped;
    s.pending.fetch_add(1, std::memory_order_acq_rel);
    {
      std::lock_guard lock(s.mu);
      s.sequence.fetch_add(1, std::memory_order_acq_rel);
      s.pending.fetch_sub(1, std::memory_order_acq_rel);
      s.index.clear();
      dropped.swap(s.lru);
      s.bytes = 0;
    }
    // `dropped` frees its values here, outside the lock.
  }
}

void NearCache::invalidate_all(bool from_redis) {
  if (from_redis) flushes_.fetch_add(1, std::memory_order_relaxed);
  clear_all();
}

void NearCache::tracking_up() {
  std::lock_guard lock(transition_mu_);
  const std::uint64_t st = state_.load(std::memory_order_relaxed);
  if (live(st)) return;
  // Anything cached under an earlier live state is already stranded (its
  // state differs), and tracking_down() emptied the cache.
  state_.store(st + 1, std::memory_order_release);
}

void NearCache::tracking_down() {
  {
    std::lock_guard lock(transition_mu_);
    const std::uint64_t st = state_.load(std::memory_order_relaxed);
    if (live(st)) {
      state_.store(st + 1, std::memory_order_release);
      disconnects_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  clear_all();
}

NearCacheFigures NearCache::figures() const {
  NearCacheFigures f;
  for (std::size_t i = 0; i < shard_count_; ++i) {
    const Shard& s = shards_[i];
    std::lock_guard lock(s.mu);
    f.hits += s.hits;
    f.misses += s.misses + s.bypassed.load(std::memory_order_relaxed);
    f.inserts += s.inserts;
    f.refused_inserts += s.refused;
    f.invalidations += s.invalidations;
    f.local_drops += s.local_drops;
    f.evictions += s.evictions;
    f.expirations += s.expirations;
    f.entries += s.lru.size();
    f.bytes += s.bytes;
  }
  f.flushes = flushes_.load(std::memory_order_relaxed);
  f.disconnects = disconnects_.load(std::memory_order_relaxed);
  f.max_bytes = max_bytes_;
  f.tracking_live = live(state());
  return f;
}

}  // namespace aicache::redis
