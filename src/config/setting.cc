// The checks and messages every configuration source shares (setting.h).

#include "config/setting.h"

#include <fmt/format.h>

#include <charconv>
#include <string>
#include <string_view>
#include <system_error>

#include "aicache/log.h"

namespace aicache::config_internal {
namespace {

bool may_hold_secret(std::string_view name) {
  for (std::string_view word : {"PASSWORD", "SECRET", "TOKEN", "URL", "CREDENTIAL"}) {
    if (name.find(word) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace

Error setting_error(const Setting& s, std::string_view what) {
  return Error{ErrorCode::kConfig, s.from_file ? fmt::format("{} {}", s.label, what)
                                               : fmt::format("{}: {}", s.label, what)};
}

std::string shown_value(const Setting& s) {
  if (may_hold_secret(s.name)) return "the value";
  return "\"" + printable(s.text, kShownBytes) + "\"";
}

std::string shown(std::string_view text) {
  return shown_value(Setting{{}, false, {}, std::string(text), std::nullopt});
}

Result<bool> bool_value(const Setting& s) {
  if (s.text == "on" || s.text == "1" || s.text == "true") return true;
  if (s.text == "off" || s.text == "0" || s.text == "false") return false;
  return std::unexpected(setting_error(
      s, fmt::format("{} is not on/off (on, off, 1, 0, true, false)", shown_value(s))));
}

Result<std::int64_t> integer_value(const Setting& s, std::int64_t min, std::int64_t max) {
  std::int64_t n = 0;
  if (s.integer) {
    n = *s.integer;
  } else {
    const char* first = s.text.data();
    const char* last = first + s.text.size();
    auto [end, ec] = std::from_chars(first, last, n);
    if (s.text.empty() || end != last || ec == std::errc::invalid_argument) {
      return std::unexpected(setting_error(s, fmt::format("{} is not an integer", shown_value(s))));
    }
    if (ec == std::errc::result_out_of_range) {
      return std::unexpected(setting_error(s, fmt::format("{} is out of range", shown_value(s))));
    }
  }
  if (n < min || n > max) {
    std::string rule;
    if (max <= 65535) {
      rule = fmt::format("between {} and {}", min, max);
    } else if (n > max) {
      rule = fmt::format("at most {}", max);
    } else if (min == 1) {
      rule = "> 0";
    } else {
      rule = fmt::format(">= {}", min);
    }
    return std::unexpected(setting_error(s, fmt::format("must be {} (got {})", rule, n)));
  }
  return n;
}

std::string position(std::string_view file, const toml::source_region& where) {
  return fmt::format("{}:{}:{}", file, where.begin.line, where.begin.column);
}

}  // namespace aicache::config_internal
