#include "aicache/log.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <mutex>

#include "core/utf8.h"

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

// What a terminal or a log reader may take for something else than text: a
// line break, an escape sequence (C1 controls such as U+009B act as CSI in
// some terminals), reordering that hides what follows (bidi controls), or
// a character that shows nothing at all (zero-width and other invisible
// format characters, the byte order mark), which can make two different
// names look alike.
bool is_unsafe(char32_t c) {
  return c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0xAD || c == 0x061C || c == 0x180E ||
         (c >= 0x200B && c <= 0x200F) || (c >= 0x2028 && c <= 0x202E) ||
         (c >= 0x2060 && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB);
}

}  // namespace

std::string printable(std::string_view text, std::size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes) + 3);
  std::size_t i = 0;
  while (i < text.size()) {
    char32_t c = 0;
    const std::size_t length = internal::decode_utf8(text, i, c);
    const std::size_t taken = length == 0 ? 1 : length;
    if (i + taken > max_bytes) break;
    if (length == 0 || is_unsafe(c)) {
      out += '?';
    } else {
      out.append(text.substr(i, length));
    }
    i += taken;
  }
  if (i < text.size()) out += "...";
  return out;
}

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
