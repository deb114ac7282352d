// The baseline the memory store is measured against: one std::mutex around
// one std::unordered_map, with the same TTL check on get (read the injected
// clock, drop the entry if its deadline has passed). No bounds, no LRU, no
// sharding: the simplest correct thread-safe TTL map. It gets heterogeneous
// lookup too, so that get(string_view) allocates only the returned value,
// like the memory store.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "aicache/clock.h"

namespace aicache::bench {

class BaselineMap {
 public:
  explicit BaselineMap(std::shared_ptr<const Clock> clock = Clock::real())
      : clock_(std::move(clock)) {}

  std::optional<std::string> get(std::string_view key) {
    const Clock::TimePoint now = clock_->now();
    std::lock_guard lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    if (it->second.expires <= now) {
      map_.erase(it);
      return std::nullopt;
    }
    return it->second.value;
  }

  void set(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) {
    const Clock::TimePoint expires = clock_->now() + ttl;
    std::lock_guard lock(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) {
      it->second.value.assign(value);
      it->second.expires = expires;
    } else {
      map_.emplace(std::string(key), Entry{std::string(value), expires});
    }
  }

  std::size_t size() {
    std::lock_guard lock(mu_);
    return map_.size();
  }

 private:
  struct Entry {
    std::string value;
    Clock::TimePoint expires;
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };

  const std::shared_ptr<const Clock> clock_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> map_;  // guarded by mu_
};

}  // namespace aicache::bench
