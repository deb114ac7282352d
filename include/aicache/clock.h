// Time, injectable.
//
// Everything in aicache that depends on time (TTLs, lease deadlines, refresh
// margins) asks a Clock. Production code uses Clock::real(); tests use a
// ManualClock (aicache/testing/manual_clock.h) and advance it, so no test
// ever sleeps for a TTL.
//
// Thread safety: every Clock is safe to call from many threads.
#pragma once

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

}  // namespace aicache
