// Where aicache's own log lines go.
//
// The library logs rarely: store failures (once per burst, see
// AssistantCacheOptions::error_log_interval), token refresh failures and
// similar events an operator must see. Messages never contain secrets or
// token values.
//
// Thread safety: set_log_handler may be called at any time from any thread;
// the handler itself may be called from many threads at once.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace aicache {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

std::string_view to_string(LogLevel level) noexcept;

using LogHandler = std::function<void(LogLevel level, std::string_view message)>;

// Replaces the process-wide handler. The default writes
// "aicache: warning: <message>" lines to stderr; an empty handler silences
// the library.
void set_log_handler(LogHandler handler);

// Sends one line to the current handler (for aicache's own components).
void log_message(LogLevel level, std::string_view message);

// Text from outside (a config file's bytes, a platform's error message) as a
// log line, an error message or a terminal may show it: one line, no escape
// sequences. Printable ASCII and well-formed UTF-8 are kept; every control
// character (C0 and tab, DEL, C1), line and paragraph separators, bidi
// controls, invisible format characters (zero-width spaces and joiners, the
// byte order mark, soft hyphen) and bytes that are not well-formed UTF-8
// become '?'. At most
// `max_bytes` of the input are shown, never cutting a character in two;
// "..." marks a cut. Pass std::string_view::npos for no bound.
std::string printable(std::string_view text, std::size_t max_bytes);

}  // namespace aicache
