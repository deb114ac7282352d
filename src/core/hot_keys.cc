#include "core/hot_keys.h"

#include <algorithm>
#include <functional>
#include <thread>

namespace aicache::internal {

HotKeys::HotKeys(std::uint32_t sample_every, std::chrono::milliseconds window,
                 std::shared_ptr<const Clock> clock)
    : sample_every_(sample_every),
      window_(window.count() > 0 ? window : std::chrono::milliseconds(60'000)),
      clock_(clock ? std::move(clock) : Clock::real()) {
  const auto now = clock_->now();
  for (Family& f : families_) f.started = now;
}

bool HotKeys::sampled() const noexcept {
  // xorshift32, seeded per thread: no shared state on the hit path.
  thread_local std::uint32_t state = static_cast<std::uint32_t>(
      std::hash<std::thread::id>{}(std::this_thread::get_id()) | 1u);
  state ^= state << 13;
  state ^= state >> 17;
  state ^= state << 5;
  return state % sample_every_ == 0;
}

void HotKeys::Sketch::add(std::string_view id, std::uint64_t weight) {
  if (auto it = counts.find(std::string(id)); it != counts.end()) {
    it->second += weight;
    return;
  }
  if (counts.size() < kCapacity) {
    counts.emplace(std::string(id), weight);
    return;
  }
  // Space-saving: the new key takes the smallest counter's place and count.
  auto smallest = std::min_element(counts.begin(), counts.end(),
                                   [](const auto& a, const auto& b) { return a.second < b.second; });
  const std::uint64_t floor = smallest->second;
  counts.erase(smallest);
  counts.emplace(std::string(id), floor + weight);
}

void HotKeys::rotate(Family& f, Clock::TimePoint now) const {
  if (now - f.started < window_) return;
  if (now - f.started < 2 * window_) {
    f.previous = std::move(f.current);
    f.started += window_;
    if (now - f.started >= window_) f.started = now;  // a clock jump
  } else {
    f.previous = {};
    f.started = now;
  }
  f.current = {};
}

void HotKeys::record_sampled(CacheFamily family, std::string_view id) {
  Family& f = families_[static_cast<std::size_t>(family)];
  const auto now = clock_->now();
  std::lock_guard lock(f.mutex);
  rotate(f, now);
  f.current.add(id, sample_every_);
}

std::vector<HotKey> HotKeys::top(std::size_t n) const {
  std::vector<HotKey> out;
  const auto now = clock_->now();
  for (CacheFamily family : kCacheFamilies) {
    Family& f = families_[static_cast<std::size_t>(family)];
    std::lock_guard lock(f.mutex);
    rotate(f, now);
    std::unordered_map<std::string, std::uint64_t> sum = f.previous.counts;
    for (const auto& [id, count] : f.current.counts) sum[id] += count;
    for (auto& [id, count] : sum) out.push_back(HotKey{family, id, count});
  }
  std::sort(out.begin(), out.end(), [](const HotKey& a, const HotKey& b) {
    return a.reads != b.reads ? a.reads > b.reads : a.id < b.id;
  });
  if (out.size() > n) out.resize(n);
  return out;
}

}  // namespace aicache::internal
