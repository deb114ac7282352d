// Internal to src/config: one setting as found in one source, named by where
// it came from, and the checks and messages every source shares. An error
// names the source and, for files, the line: "environment REDIS_PORT: ...",
// ".env:4: AICACHE_KEY_VERSION: ...", "aicache.toml:3:15: key_version ...".
// Values of settings that may hold a secret are never quoted.
#pragma once

#include <toml++/toml.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "aicache/status.h"

namespace aicache::config_internal {

using EnvMap = std::map<std::string, std::string, std::less<>>;

inline constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
// 100 years. Far beyond any cache's need, and small enough that no store's
// deadline arithmetic (nanoseconds since boot in the memory store) overflows.
inline constexpr std::int64_t kMaxTimeoutSeconds = 100LL * 365 * 24 * 3600;

// How much of an input an error message quotes: enough to recognise it.
inline constexpr std::size_t kShownBytes = 40;

// One value as found in one source.
struct Setting {
  // "environment REDIS_PORT", ".env:4: REDIS_PORT", "aicache.toml:3:15: key_version".
  std::string label;
  bool from_file = false;               // the TOML file: typed values
  std::string name;                     // the environment name
  std::string text;                     // string values
  std::optional<std::int64_t> integer;  // TOML integers
};

// "label: what" for environment-like sources, "label what" for the TOML
// file, whose label ends with the key name: "aicache.toml:3:15: key_version
// must ...".
Error setting_error(const Setting& s, std::string_view what);

// The value for an error message: quoted when harmless (its name holds none
// of PASSWORD, SECRET, TOKEN, URL, CREDENTIAL), else "the value".
std::string shown_value(const Setting& s);

// A string as an error message may show it: quoted, at most kShownBytes,
// control characters replaced. Only for values that cannot be secrets.
std::string shown(std::string_view text);

// The Redis store's limits: pool_size, and the connect and command timeouts
// in milliseconds (10 minutes: beyond it a caller is better off failing).
inline constexpr std::int64_t kMaxRedisPoolSize = 10'000;
inline constexpr std::int64_t kMaxRedisTimeoutMs = 600'000;

// on/off: on, 1, true / off, 0, false (a TOML boolean arrives as true/false).
Result<bool> bool_value(const Setting& s);

// A whole-string decimal integer (or a TOML integer) in [min, max].
Result<std::int64_t> integer_value(const Setting& s, std::int64_t min, std::int64_t max);

// "aicache.toml:3:15": where a value of the config file begins.
std::string position(std::string_view file, const toml::source_region& where);

}  // namespace aicache::config_internal
