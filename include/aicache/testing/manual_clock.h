// ManualClock: a Clock for tests, which moves only when told to.
//
// A test double, kept out of the production header clock.h (as abseil keeps
// SimulatedClock apart): inject it where a Clock is taken and advance() it,
// so no test sleeps for a TTL or a lease.
//
// Thread safety: safe to read and advance from many threads.
#pragma once

#include <atomic>
#include <chrono>

#include "aicache/clock.h"

namespace aicache {

// A clock that moves only when told to. Starts at an arbitrary fixed point.
class ManualClock final : public Clock {
 public:
  ManualClock() = default;

  TimePoint now() const noexcept override {
    return TimePoint(Duration(ticks_.load(std::memory_order_acquire)));
  }
  WallTimePoint wall_now() const noexcept override {
    return WallTimePoint(std::chrono::duration_cast<WallTimePoint::duration>(
        Duration(kWallEpochOffset + ticks_.load(std::memory_order_acquire))));
  }

  // Moves time forward (a negative duration is ignored: time never goes back).
  void advance(Duration d) noexcept {
    if (d.count() > 0) ticks_.fetch_add(d.count(), std::memory_order_acq_rel);
  }

 private:
  // 2026-01-01T00:00:00Z, so wall times in tests look plausible.
  static constexpr Duration::rep kWallEpochOffset = 1767225600LL * 1'000'000'000LL;
  // Starts away from zero so "time_point{}" never means "now".
  std::atomic<Duration::rep> ticks_{1'000'000'000'000LL};
};

}  // namespace aicache
