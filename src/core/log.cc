#include "aicache/log.h"

#include <cstdio>
#include <memory>
#include <mutex>

namespace aicache {
namespace {

void write_to_stderr(LogLevel level, std::string_view message) {
  std::fprintf(stderr, "aicache: %.*s: %.*s\n", static_cast<int>(to_string(level).size()),
               to_string(level).data(), static_cast<int>(message.size()), message.data());
}

// The handler is swapped as a whole under a mutex and called through a
// shared_ptr copy, so a handler being replaced is never destroyed mid-call.
std::mutex& handler_mutex() {
  static std::mutex mutex;
  return mutex;
}
std::shared_ptr<const LogHandler>& current_handler() {
  static auto handler = std::make_shared<const LogHandler>(write_to_stderr);
  return handler;
}

}  // namespace

std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "unknown";
}

void set_log_handler(LogHandler handler) {
  auto next = std::make_shared<const LogHandler>(std::move(handler));
  std::lock_guard lock(handler_mutex());
  current_handler() = std::move(next);
}

void log_message(LogLevel level, std::string_view message) {
  std::shared_ptr<const LogHandler> handler;
  {
    std::lock_guard lock(handler_mutex());
    handler = current_handler();
  }
  if (*handler) (*handler)(level, message);
}

}  // namespace aicache
