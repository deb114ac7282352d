// Collects what the library logs (aicache/log.h) while alive, then restores
// the default handler.
//
//   LogCapture log;
//   ... code that logs ...
//   EXPECT_THAT(log.all(), HasSubstr("store error"));
//
// Thread safety: lines are added from any thread; lines() and all() may be
// called meanwhile.
#pragma once

#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/log.h"

namespace aicache::testing {

class LogCapture {
 public:
  LogCapture() {
    set_log_handler([this](LogLevel, std::string_view message) {
      std::lock_guard lock(mutex_);
      lines_.emplace_back(message);
    });
  }
  ~LogCapture() { set_log_handler({}); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  // The messages logged so far, in order.
  std::vector<std::string> lines() const {
    std::lock_guard lock(mutex_);
    return lines_;
  }

  // The same, one per line.
  std::string all() const {
    std::string out;
    for (const auto& line : lines()) out += line + "\n";
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

}  // namespace aicache::testing
