#include "core/ttl_signals.h"

#include <algorithm>
#include <bit>
#include <functional>

namespace aicache::internal {
namespace {

// A slot: the tag in the top 24 bits, the deadline (+1) in the low 40: 2^40
// ms is 34 years, and a longer deadline is kept as the largest.
constexpr int kTagShift = 40;
constexpr std::uint64_t kDeadlineMask = (std::uint64_t{1} << kTagShift) - 1;

std::uint64_t hash_of(std::string_view key) noexcept {
  return static_cast<std::uint64_t>(std::hash<std::string_view>{}(key));
}
std::uint64_t tag_of(std::uint64_t hash) noexcept { return hash >> kTagShift; }

// The family's TTL in milliseconds, or 0 if it is not a duration.
std::int64_t ttl_ms(Ttl ttl) noexcept {
  if (ttl.kind() != Ttl::Kind::kDuration || ttl.removes()) return 0;
  return ttl.duration().count();
}

}  // namespace

TtlSignals::TtlSignals(std::size_t slots, std::shared_ptr<const Clock> clock)
    : clock_(clock ? std::move(clock) : Clock::real()), epoch_(clock_->now()) {
  if (slots == 0) return;
  const std::size_t size = std::bit_ceil(slots);
  mask_ = size - 1;
  slots_.reset(static_cast<std::uint64_t*>(std::calloc(size, sizeof(std::uint64_t))));
  if (!slots_) mask_ = 0;  // no memory for the table: no expired-recently counts
}

std::int64_t TtlSignals::now_ms() const noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_->now() - epoch_).count();
}

std::atomic_ref<std::uint64_t> TtlSignals::slot(std::uint64_t hash) const noexcept {
  return std::atomic_ref<std::uint64_t>(slots_[hash & mask_]);
}

void TtlSignals::hit(CacheFamily family, const KeyTtl& left, Ttl family_ttl) noexcept {
  const std::int64_t ttl = ttl_ms(family_ttl);
  if (ttl == 0 || left.state != KeyTtl::State::kExpiring) return;
  const std::int64_t remaining = left.remaining.count();
  // More left than the family gives: written with a longer explicit TTL, so
  // its age is unknown.
  if (remaining > ttl) return;
  const auto age = static_cast<std::uint64_t>(ttl - remaining);
  std::size_t bucket = 0;
  while (bucket < kHitAgeBoundsSeconds.size() &&
         age > std::uint64_t{kHitAgeBoundsSeconds[bucket]} * 1000) {
    ++bucket;
  }
  Family& f = families_[static_cast<std::size_t>(family)];
  f.buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  f.age_sum_ms.fetch_add(age, std::memory_order_relaxed);
}

void TtlSignals::miss(CacheFamily family, std::string_view stored_key, Ttl family_ttl) noexcept {
  const std::int64_t ttl = ttl_ms(family_ttl);
  if (!slots_ || ttl == 0) return;
  const std::uint64_t hash = hash_of(stored_key);
  const std::uint64_t entry = slot(hash).load(std::memory_order_relaxed);
  if (entry == 0 || entry >> kTagShift != tag_of(hash)) return;
  const auto deadline = static_cast<std::int64_t>(entry & kDeadlineMask) - 1;
  const std::int64_t now = now_ms();
  if (deadline > now || deadline < now - ttl) return;
  families_[static_cast<std::size_t>(family)].expired_recently.fetch_add(
      1, std::memory_order_relaxed);
}

void TtlSignals::written(std::string_view stored_key, Ttl ttl) noexcept {
  if (!slots_) return;
  const std::int64_t ms = ttl_ms(ttl);
  if (ms == 0) {  // never, removed, or a deadline this cache does not know
    removed(stored_key);
    return;
  }
  const std::uint64_t hash = hash_of(stored_key);
  // Checked before adding: a TTL near the largest duration must not overflow.
  const auto now = static_cast<std::uint64_t>(now_ms());
  const auto length = static_cast<std::uint64_t>(ms);
  const std::uint64_t deadline = now >= kDeadlineMask - 1 || length >= kDeadlineMask - 1 - now
                                     ? kDeadlineMask
                                     : now + length + 1;
  slot(hash).store(tag_of(hash) << kTagShift | deadline, std::memory_order_relaxed);
}

void TtlSignals::removed(std::string_view stored_key) noexcept {
  if (!slots_) return;
  const std::uint64_t hash = hash_of(stored_key);
  std::atomic_ref<std::uint64_t> s = slot(hash);
  std::uint64_t entry = s.load(std::memory_order_relaxed);
  // Only this key's record: another key's stays.
  if (entry != 0 && entry >> kTagShift == tag_of(hash)) {
    s.compare_exchange_strong(entry, 0, std::memory_order_relaxed);
  }
}

void TtlSignals::removed_all() noexcept {
  if (!slots_) return;
  // Stores only where something was written: untouched pages stay unmapped.
  for (std::size_t i = 0; i <= mask_; ++i) {
    std::atomic_ref<std::uint64_t> s(slots_[i]);
    if (s.load(std::memory_order_relaxed) != 0) s.store(0, std::memory_order_relaxed);
  }
}

void TtlSignals::add_to(std::array<FamilyStats, kCacheFamilies.size()>& stats) const noexcept {
  for (std::size_t i = 0; i < stats.size(); ++i) {
    const Family& f = families_[i];
    for (std::size_t b = 0; b < f.buckets.size(); ++b) {
      stats[i].hit_age_buckets[b] = f.buckets[b].load(std::memory_order_relaxed);
    }
    stats[i].hit_age_sum_ms = f.age_sum_ms.load(std::memory_order_relaxed);
    stats[i].expired_recently_misses = f.expired_recently.load(std::memory_order_relaxed);
  }
}

}  // namespace aicache::internal
