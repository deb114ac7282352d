// Internal to src/config: the .env parser with line numbers kept, so that
// load_config can name the line of a value it later finds invalid
// (".env:4: AICACHE_KEY_VERSION: ...").
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "aicache/status.h"

namespace aicache::config_internal {

struct DotenvValue {
  std::string value;
  int line = 0;  // 1-based line of the last assignment
};

using DotenvEntries = std::map<std::string, DotenvValue, std::less<>>;

// The parser behind parse_dotenv(); same syntax and errors.
Result<DotenvEntries> parse_dotenv_entries(std::string_view text, std::string_view filename);

}  // namespace aicache::config_internal
