// BurstLog: logs the first of a burst of similar errors at once, then counts
// the rest and reports the count with the next error after `interval`, so an
// outage produces one line per interval instead of one per call.
//
// Thread safety: safe to share; report() takes a mutex (errors only).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "aicache/clock.h"
#include "aicache/log.h"
#include "aicache/status.h"

namespace aicache::internal {

class BurstLog {
 public:
  BurstLog(std::string what, std::chrono::nanoseconds interval,
           std::shared_ptr<const Clock> clock)
      : what_(std::move(what)), interval_(interval), clock_(std::move(clock)) {}

  void report(const Error& error);

 private:
  const std::string what_;
  const std::chrono::nanoseconds interval_;
  const std::shared_ptr<const Clock> clock_;

  std::mutex mutex_;
  // Guarded by mutex_.
  bool logged_any_ = false;
  Clock::TimePoint last_logged_{};
  std::uint64_t suppressed_ = 0;
};

}  // namespace aicache::internal
