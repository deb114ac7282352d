// The config file (TOML): [store], [tokens] and, through apps.h, [[apps]]
// (config_internal, config_file.h).

#include "config/config_file.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>

#include "aicache/log.h"
#include "core/try.h"

namespace aicache::config_internal {
namespace {

namespace fs = std::filesystem;

// What [store] may hold: the TOML key, its environment name, and its type
// (a string unless `integer` or `boolean`).
struct StoreKey {
  std::string_view key;
  std::string_view env_name;
  bool integer;
  std::int64_t min;  // integers only
  std::int64_t max;
  bool boolean = false;
  // An array of strings, joined with ',' as its environment form is.
  bool list = false;
};

constexpr StoreKey kStoreKeys[] = {
    {"url", "REDIS_URL", false, 0, 0},
    {"key_prefix", "AICACHE_KEY_PREFIX", false, 0, 0},
    {"key_version", "AICACHE_KEY_VERSION", true, 0, kInt64Max},
    {"default_timeout", "AICACHE_DEFAULT_TIMEOUT", true, 1, kMaxTimeoutSeconds},
    {"memory_max_bytes", "AICACHE_MEMORY_MAX_BYTES", true, 1, kInt64Max},
    {"memory_max_entries", "AICACHE_MEMORY_MAX_ENTRIES", true, 1, kInt64Max},
    {"near_cache_max_bytes", "AICACHE_NEAR_CACHE_MAX_BYTES", true, 0, kInt64Max},
    {"pool_size", "REDIS_POOL_SIZE", true, 1, kMaxRedisPoolSize},
    {"connect_timeout_ms", "REDIS_CONNECT_TIMEOUT_MS", true, 1, kMaxRedisTimeoutMs},
    {"command_timeout_ms", "REDIS_COMMAND_TIMEOUT_MS", true, 1, kMaxRedisTimeoutMs},
    {"tls_ca_file", "REDIS_TLS_CA_FILE", false, 0, 0},
    {"tls_cert_file", "REDIS_TLS_CERT_FILE", false, 0, 0},
    {"tls_key_file", "REDIS_TLS_KEY_FILE", false, 0, 0},
    {"tls_verify", "REDIS_TLS_VERIFY", false, 0, 0, true},
    // Redis Sentinel
    {"sentinels", "REDIS_SENTINELS", false, 0, 0, false, true},
    {"sentinel_master", "REDIS_SENTINEL_MASTER", false, 0, 0},
    {"sentinel_password", "REDIS_SENTINEL_PASSWORD", false, 0, 0},
    {"sentinel_username", "REDIS_SENTINEL_USERNAME", false, 0, 0},
    {"sentinel_tls", "REDIS_SENTINEL_TLS", false, 0, 0, true},
    // Redis Cluster
    {"cluster_nodes", "REDIS_CLUSTER_NODES", false, 0, 0, false, true},
    {"read_from_replicas", "REDIS_READ_FROM_REPLICAS", false, 0, 0, true},
};

// What [ttl] may hold: seconds for each family's default TTL.
// ([store] default_timeout is the older name of [ttl] default.)
constexpr StoreKey kTtlKeys[] = {
    {"default", "AICACHE_TTL_DEFAULT", true, 1, kMaxTimeoutSeconds},
    {"conversation", "AICACHE_TTL_CONVERSATION", true, 1, kMaxTimeoutSeconds},
    {"ai_config", "AICACHE_TTL_AI_CONFIG", true, 1, kMaxTimeoutSeconds},
};

// An array of strings as one comma-separated text (REDIS_SENTINELS's form).
Result<std::string> joined_strings(const Setting& s, const toml::node& value) {
  const auto* array = value.as_array();
  if (array == nullptr) return std::unexpected(setting_error(s, "must be an array of strings"));
  std::string out;
  for (const toml::node& element : *array) {
    const auto* str = element.as_string();
    if (str == nullptr || str->get().find(',') != std::string::npos) {
      return std::unexpected(setting_error(s, "must be an array of strings without commas"));
    }
    if (!out.empty()) out += ',';
    out += str->get();
  }
  return out;
}

// A table whose keys are settings by environment name ([store], [ttl]).
template <std::size_t N>
Status read_settings(std::string_view file, std::string_view table_name,
                     const toml::table& table, const StoreKey (&keys)[N],
                     std::map<std::string, Setting, std::less<>>& settings) {
  for (auto&& [skey, value] : table) {
    const StoreKey* known = nullptr;
    for (const auto& k : keys) {
      if (k.key == skey.str()) known = &k;
    }
    if (known == nullptr) {
      return make_error(ErrorCode::kConfig,
                        fmt::format("{}: unknown key '{}' in [{}]", position(file, skey.source()),
                                    printable(skey.str(), kShownBytes), table_name));
    }
    Setting s{fmt::format("{}: {}", position(file, value.source()), known->key),
              true,
              std::string(known->env_name),
              {},
              std::nullopt};
    if (known->integer) {
      const auto* n = value.as_integer();
      if (n == nullptr) {
        return std::unexpected(setting_error(
            s, table_name == "ttl" ? "must be an integer (seconds)" : "must be an integer"));
      }
      s.integer = n->get();
      AICACHE_TRY(integer_value(s, known->min, known->max));
    } else if (known->boolean) {
      const auto* b = value.as_boolean();
      if (b == nullptr) return std::unexpected(setting_error(s, "must be true or false"));
      s.text = b->get() ? "true" : "false";
    } else if (known->list) {
      AICACHE_ASSIGN_OR_RETURN(s.text, joined_strings(s, value));
    } else {
      const auto* str = value.as_string();
      if (str == nullptr) return std::unexpected(setting_error(s, "must be a string"));
      s.text = str->get();
    }
    settings.insert_or_assign(std::string(known->env_name), std::move(s));
  }
  return {};
}

// [tokens]: refresh_margin, refresh_lead, min_refresh_interval,
// forced_refreshes_per_day, warmup_timeout.
Status read_tokens(std::string_view file, const toml::table& table, FileContents& out) {
  for (auto&& [key, value] : table) {
    std::optional<std::int64_t>* target = nullptr;
    // Margins: at most an hour, half a token's life; more would refresh
    // continually. The interval: at most a day. Forced refreshes: at most
    // WeChat's own 20 a day; more would only move the refusal upstream.
    std::int64_t max = 3600;
    const char* unit = "(seconds)";
    if (key.str() == "refresh_margin") target = &out.refresh_margin;
    if (key.str() == "refresh_lead") target = &out.refresh_lead;
    if (key.str() == "min_refresh_interval") {
      target = &out.min_refresh_interval;
      max = 86400;
    }
    if (key.str() == "warmup_timeout") {
      target = &out.warmup_timeout;
      max = 3600;
    }
    if (key.str() == "forced_refreshes_per_day") {
      target = &out.forced_refreshes_per_day;
      max = 20;
      unit = "(a count)";
    }
    if (target == nullptr) {
      return make_error(ErrorCode::kConfig,
                        fmt::format("{}: unknown key {} in [tokens]",
                                    position(file, key.source()), shown(key.str())));
    }
    Setting s{fmt::format("{}: {}", position(file, value.source()), key.str()),
              true,
              {},
              {},
              std::nullopt};
    const auto* n = value.as_integer();
    if (n == nullptr) {
      return std::unexpected(setting_error(s, fmt::format("must be an integer {}", unit)));
    }
    s.integer = n->get();
    AICACHE_ASSIGN_OR_RETURN(*target, integer_value(s, 0, max));
  }
  return {};
}

}  // namespace

Result<std::string> read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return make_error(ErrorCode::kConfig,
                      fmt::format("{}: cannot read: {}", path.string(), std::strerror(errno)));
  }
  // Read in blocks: the istreambuf_iterator form trips GCC 12's
  // -Wnull-dereference inside libstdc++.
  std::string text;
  char block[16384];
  while (in.read(block, sizeof block) || in.gcount() > 0) {
    text.append(block, static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) {
    return make_error(ErrorCode::kConfig, fmt::format("{}: cannot read", path.string()));
  }
  return text;
}

Result<FileContents> parse_config_file(std::string_view text, const std::string& name) {
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    // toml++ quotes the offending characters as they are.
    return make_error(ErrorCode::kConfig,
                      fmt::format("{}: {}", position(name, e.source()),
                                  printable(e.description(), std::string_view::npos)));
  }

  FileContents contents;
  auto& settings = contents.settings;
  for (auto&& [key, node] : root) {
    if (key.str() == "store") {
      const toml::table* store = node.as_table();
      if (store == nullptr) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: store must be a table", position(name, node.source())));
      }
      AICACHE_TRY(read_settings(name, "store", *store, kStoreKeys, settings));
    } else if (key.str() == "ttl") {
      const toml::table* ttl = node.as_table();
      if (ttl == nullptr) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: ttl must be a table", position(name, node.source())));
      }
      AICACHE_TRY(read_settings(name, "ttl", *ttl, kTtlKeys, settings));
    } else if (key.str() == "server") {
      // Read by a later component; only its shape is checked here.
      if (!node.is_table()) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: server must be a table", position(name, node.source())));
      }
    } else if (key.str() == "apps") {
      if (!node.is_array_of_tables()) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: apps must be an array of tables ([[apps]])",
                                      position(name, node.source())));
      }
      AICACHE_ASSIGN_OR_RETURN(contents.apps, read_apps(name, *node.as_array()));
    } else if (key.str() == "tokens") {
      const toml::table* tokens = node.as_table();
      if (tokens == nullptr) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: tokens must be a table", position(name, node.source())));
      }
      AICACHE_TRY(read_tokens(name, *tokens, contents));
    } else {
      return make_error(
          ErrorCode::kConfig,
          node.is_table()
              ? fmt::format("{}: unknown table [{}]", position(name, key.source()),
                            printable(key.str(), kShownBytes))
              : fmt::format("{}: unknown key '{}'", position(name, key.source()),
                            printable(key.str(), kShownBytes)));
    }
  }
  return contents;
}

Result<FileContents> read_config_file(const fs::path& path) {
  AICACHE_ASSIGN_OR_RETURN(const std::string text, read_text_file(path));
  return parse_config_file(text, path.string());
}

}  // namespace aicache::config_internal
