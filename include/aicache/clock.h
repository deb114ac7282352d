// Time, injectable.
//
// Everything in aicache that depends on time (TTLs, lease deadlines, refresh
// margins) asks a Clock. Production code uses Clock::real(); tests use a
// ManualClock and advance it, so no test ever sleeps for a TTL.
//
// Thread safety: both implementations are safe to call from many threads.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>

namespace aicache {

class Clock {
 public:
  using Duration = std::chrono::nanoseconds;
  using TimePoint = std::chrono::steady_clock::time_point;
  using WallTimePoint = std::chrono::system_clock::time_point;

  virtual ~Clock() = default;

  // Monotonic time: the only time used for TTLs and deadlines.
  virtual TimePoint now() const noexcept = 0;

  // Calendar time, for humans (last fetch time in statistics).
  virtual WallTimePoint wall_now() const noexcept = 0;

  // The process-wide real clock (std::chrono::steady_clock / system_clock).
  static std::shared_ptr<const Clock> real();
};

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
