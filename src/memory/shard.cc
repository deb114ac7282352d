#include "memory/shard.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <system_error>

namespace aicache::memory {
namespace {

// Parses a stored counter as Redis's INCRBY does (string2ll): decimal digits
// with an optional leading '-', no spaces, no '+', no leading zeros ("0"
// alone; not "-0"), within int64. Both stores then refuse the same values.
bool parse_counter(std::string_view s, std::int64_t* out) {
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

}  // namespace

Shard::~Shard() {
  // No other thread can hold a reference any more; every entry is in the list.
  for (Entry* e = lru_.oldest(); e != nullptr;) {
    Entry* next = lru_.newer(e);
    Entry::destroy(e);
    e = next;
  }
}

bool Shard::get(std::string_view key, std::uint32_t hash, std::int64_t now, std::string* out,
                bool count_command, KeyTtl* ttl, Graveyard& dead) {
  if (count_command) ++commands_;
  Entry* e = find_live(key, hash, now, dead);
  if (e == nullptr) {
    ++misses_;
    return false;
  }
  ++hits_;
  lru_.move_to_newest(e);
  out->assign(e->value());
  if (ttl != nullptr) *ttl = ttl_of(*e, now);
  return true;
}

bool Shard::put(Entry* fresh, std::int64_t now, PutMode mode, bool count_command, Graveyard& dead) {
  if (count_command) ++commands_;
  Entry** at = table_.find_link(fresh->key(), fresh->hash);
  if (const Entry* old = *at; old != nullptr) {
    if (!old->expired(now)) {
      if (mode == PutMode::kOnlyIfAbsent) {
        dead.bury(fresh);
        return false;
      }
    } else {
      ++expirations_;
    }
    erase(at, dead);  // `at` now links the rest of the chain: fresh goes there
  }
  link(at, fresh, dead);
  finish_write(now, fresh, dead);
  return true;
}

bool Shard::overwrite(std::string_view key, std::uint32_t hash, std::string_view value,
                      std::int64_t deadline, std::int64_t now, bool count_command,
                      Graveyard& dead) {
  Entry* e = find_live(key, hash, now, dead);
  if (e == nullptr || e->value_size != value.size()) return false;
  if (count_command) ++commands_;
  heap_.set_deadline(e, deadline);  // first: the only step that may throw
  e->overwrite_value(value);
  lru_.move_to_newest(e);
  finish_write(now, e, dead);
  return true;
}

bool Shard::remove(std::string_view key, std::uint32_t hash, std::int64_t now,
                   const std::string_view* expected, bool count_command, Graveyard& dead) {
  if (count_command) ++commands_;
  Entry** at = table_.find_link(key, hash);
  const Entry* e = *at;
  if (e == nullptr) return false;
  const bool live = !e->expired(now);
  if (!live) {
    ++expirations_;
  } else if (expected != nullptr && e->value() != *expected) {
    return false;
  }
  erase(at, dead);
  finish_write(now, nullptr, dead);
  return live;
}

bool Shard::touch(std::string_view key, std::uint32_t hash, std::int64_t now, bool remove,
                  std::int64_t deadline, Graveyard& dead) {
  ++commands_;
  Entry* e = find_live(key, hash, now, dead);
  if (e == nullptr) return false;
  if (remove) {
    drop(e, dead);
  } else {
    heap_.set_deadline(e, deadline);
    lru_.move_to_newest(e);
  }
  finish_write(now, nullptr, dead);
  return true;
}

KeyTtl Shard::ttl(std::string_view key, std::uint32_t hash, std::int64_t now, Graveyard& dead) {
  ++commands_;
  const Entry* e = find_live(key, hash, now, dead);
  if (e == nullptr) return {};
  return ttl_of(*e, now);
}

Result<std::int64_t> Shard::incr(std::string_view key, std::uint32_t hash, std::int64_t now,
                                 std::int64_t delta, bool create_removes,
                                 std::int64_t create_deadline, Graveyard& dead) {
  ++commands_;
  Entry* e = find_live(key, hash, now, dead);
  std::int64_t value = delta;
  if (e != nullptr) {
    std::int64_t current = 0;
    if (!parse_counter(e->value(), &current)) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "incr: the stored value is not a 64-bit decimal integer");
    }
    if (__builtin_add_overflow(current, delta, &value)) {
      return make_error(
          ErrorCode::kOutOfRange,
          fmt::format("incr: {} + {} overflows a signed 64-bit integer", current, delta));
    }
  } else if (create_removes) {
    return value;
  }
  char digits[24];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  const std::string_view text(digits, static_cast<std::size_t>(end - digits));
  if (e != nullptr && e->value_size == text.size()) {
    // Same length: rewrite in place, no allocation and no change of charge.
    e->overwrite_value(text);
    lru_.move_to_newest(e);
    finish_write(now, e, dead);
    return value;
  }
  // Allocated under the lock: the digits are known only here. Rare (the
  // count of digits changes once per power of ten).
  Entry* fresh = Entry::create(key, hash, text, e != nullptr ? e->deadline : create_deadline);
  Entry** at = table_.find_link(key, hash);
  if (e != nullptr) erase(at, dead);
  link(at, fresh, dead);
  finish_write(now, fresh, dead);
  return value;
}

std::uint64_t Shard::remove_prefix(std::string_view prefix, std::int64_t now, Graveyard& dead) {
  std::uint64_t removed = 0;
  for (Entry* e = lru_.oldest(); e != nullptr;) {
    Entry* next = lru_.newer(e);
    if (e->key().starts_with(prefix)) {
      if (e->expired(now)) {
        ++expirations_;
      } else {
        ++removed;
      }
      drop(e, dead);
    }
    e = next;
  }
  return removed;
}

std::size_t Shard::scan(std::string_view prefix, std::size_t from, std::size_t max,
                        std::int64_t now, std::vector<std::string>& keys) const {
  const std::size_t start = keys.size();
  std::size_t b = from;
  for (; b < table_.bucket_count() && keys.size() - start < max; ++b) {
    for (const Entry* e = table_.bucket(b); e != nullptr; e = e->next_in_bucket) {
      if (!e->expired(now) && e->key().starts_with(prefix)) keys.emplace_back(e->key());
    }
  }
  return b;
}

void Shard::add_layout(internal::MemoryStoreLayout* layout) const {
  layout->longest_chain = std::max(layout->longest_chain, table_.longest_chain());
  layout->fullest_shard = std::max(layout->fullest_shard, table_.size());
  layout->entries += table_.size();
}

void Shard::add_stats(ShardStats* stats) const {
  stats->used_bytes += charge_;
  stats->entries += table_.size();
  stats->hits += hits_;
  stats->misses += misses_;
  stats->evictions += evictions_;
  stats->expirations += expirations_;
  stats->commands += commands_;
}

Entry* Shard::find_live(std::string_view key, std::uint32_t hash, std::int64_t now,
                        Graveyard& dead) {
  Entry** at = table_.find_link(key, hash);
  Entry* e = *at;
  if (e == nullptr || !e->expired(now)) return e;
  erase(at, dead);
  ++expirations_;
  return nullptr;
}

void Shard::link(Entry** at, Entry* e, Graveyard& dead) {
  // The heap first: it is the one structure that may allocate, and failing
  // here leaves the other two untouched.
  try {
    heap_.link(e);
  } catch (...) {
    dead.bury(e);
    throw;
  }
  table_.insert(at, e);
  lru_.push_newest(e);
  charge_ += charge_of(e);
}

void Shard::erase(Entry** at, Graveyard& dead) noexcept {
  Entry* e = table_.erase(at);
  lru_.unlink(e);
  heap_.unlink(e);
  charge_ -= charge_of(e);
  dead.bury(e);
}

void Shard::finish_write(std::int64_t now, const Entry* keep, Graveyard& dead) noexcept {
  for (int i = 0; i < kReclaimPerWrite; ++i) {
    Entry* e = heap_.earliest();
    if (e == nullptr || !e->expired(now)) break;
    drop(e, dead);
    ++expirations_;
  }
  if (!over_budget()) return;
  // Over budget: expired entries go first, however many there are...
  while (over_budget()) {
    Entry* e = heap_.earliest();
    if (e == nullptr || !e->expired(now)) break;
    drop(e, dead);
    ++expirations_;
  }
  // ...then the least recently used.
  while (over_budget()) {
    Entry* victim = lru_.oldest();
    if (victim == nullptr || victim == keep) break;  // unreachable: `keep` fits alone
    drop(victim, dead);
    ++evictions_;
  }
}

KeyTtl Shard::ttl_of(const Entry& e, std::int64_t now) noexcept {
  if (e.deadline == kNoDeadline) return {KeyTtl::State::kPersistent, {}};
  // Round up so that a live entry never reports 0 ms left.
  const std::int64_t left_ns = e.deadline - now;
  return {KeyTtl::State::kExpiring, std::chrono::milliseconds((left_ns + 999'999) / 1'000'000)};
}

}  // namespace aicache::memory
