// Hot keys: which entries are read most, per family, over a sliding window
// (AssistantCache::hot_keys, /v1/stats "hot_keys", `aicache hotkeys`).
//
// Sampled: one hit in `sample_every` (a per-thread pseudo-random draw, so a
// periodic access pattern cannot alias) is recorded with that weight, in a
// space-saving top-K (Metwally et al.) of kCapacity counters per family: a
// key read more than 1/kCapacity of the sampled reads is always kept, and
// counts are over-estimates by at most the smallest counter. The window is
// two generations of `window` each: the current one and the one before,
// summed; a generation older than that is dropped.
//
// Thread safety: record() and top() may be called from any thread (one
// mutex per family, taken only on sampled hits).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/clock.h"

namespace aicache::internal {

class HotKeys {
 public:
  static constexpr std::size_t kCapacity = 128;

  HotKeys(std::uint32_t sample_every, std::chrono::milliseconds window,
          std::shared_ptr<const Clock> clock);

  // Cheap when not sampled: a thread-local draw.
  void record(CacheFamily family, std::string_view id) {
    if (sample_every_ == 0 || !sampled()) return;
    record_sampled(family, id);
  }

  // The `n` hottest keys of every family, hottest first (estimated reads).
  std::vector<HotKey> top(std::size_t n) const;

 private:
  struct Sketch {
    std::unordered_map<std::string, std::uint64_t> counts;  // at most kCapacity
    void add(std::string_view id, std::uint64_t weight);
  };
  struct Family {
    mutable std::mutex mutex;
    Sketch current, previous;
    Clock::TimePoint started{};  // of `current`
  };

  bool sampled() const noexcept;
  void record_sampled(CacheFamily family, std::string_view id);
  void rotate(Family& f, Clock::TimePoint now) const;

  const std::uint32_t sample_every_;
  const std::chrono::milliseconds window_;
  const std::shared_ptr<const Clock> clock_;
  mutable std::array<Family, kCacheFamilies.size()> families_;
};

}  // namespace aicache::internal
