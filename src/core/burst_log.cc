#include "core/burst_log.h"

#include <fmt/format.h>

namespace aicache::internal {

void BurstLog::report(const Error& error) {
  const auto now = clock_->now();
  std::uint64_t suppressed;
  {
    std::lock_guard lock(mutex_);
    if (logged_any_ && now - last_logged_ < interval_) {
      ++suppressed_;
      return;
    }
    logged_any_ = true;
    last_logged_ = now;
    suppressed = suppressed_;
    suppressed_ = 0;
  }
  // Logged outside the lock: the handler may be slow.
  if (suppressed == 0) {
    log_message(LogLevel::kWarning, fmt::format("{}: {}", what_, error.to_string()));
  } else {
    log_message(LogLevel::kWarning,
                fmt::format("{}: {} ({} more since the last report)", what_, error.to_string(),
                            suppressed));
  }
}

}  // namespace aicache::internal
