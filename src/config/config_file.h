// Internal to src/config: the config file (TOML). [store] and [ttl] become settings
// by environment name, which take their place below .env in load_config's
// layering; [tokens] and [[apps]] (apps.h) are read here too. Unknown keys
// and wrong types are errors: a typo must not silently fall back to a
// default.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/status.h"
#include "config/apps.h"
#include "config/setting.h"

namespace aicache::config_internal {

// What the config file holds.
struct FileContents {
  std::map<std::string, Setting, std::less<>> settings;  // [store], [ttl], by environment name
  std::vector<FileApp> apps;
  std::optional<std::int64_t> refresh_margin;  // [tokens]
  std::optional<std::int64_t> refresh_lead;
  std::optional<std::int64_t> min_refresh_interval;
  std::optional<std::int64_t> forced_refreshes_per_day;
  std::optional<std::int64_t> warmup_timeout;
};

// The config file's text; `name` names it in errors.
Result<FileContents> parse_config_file(std::string_view text, const std::string& name);

// The file at `path`, read and parsed.
Result<FileContents> read_config_file(const std::filesystem::path& path);

// A whole file (the config file, .env); kConfig naming it when it cannot be
// read.
Result<std::string> read_text_file(const std::filesystem::path& path);

}  // namespace aicache::config_internal
