// load_config: the layering of the sources. Command-line overrides, the
// environment, .env, the config file (config_file.h) and defaults are merged
// in that order of precedence (see config.h for the contract); then the
// merged settings are checked, the service's settings read, the apps'
// secrets resolved (apps.h) and files holding secrets warned about.
//
// Every value is remembered with where it came from (setting.h), so an error
// names the layer and, for files, the line: "environment REDIS_PORT: ...",
// ".env:4: AICACHE_KEY_VERSION: ...", "aicache.toml:3:15: key_version ...".
// Values of settings that may hold a secret are never quoted in errors.

#include "aicache/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "aicache/keys.h"
#include "aicache/log.h"
#include "aicache/redis_store.h"
#include "config/apps.h"
#include "config/config_file.h"
#include "config/config_internal.h"
#include "config/dotenv_internal.h"
#include "config/setting.h"
#include "core/text.h"
#include "core/try.h"

extern char** environ;  // NOLINT: POSIX, not declared by any C++ header

namespace aicache {
namespace {

namespace fs = std::filesystem;
using config_internal::EnvMap;
using config_internal::FileApp;
using config_internal::FileContents;
using config_internal::integer_value;
using config_internal::kInt64Max;
using config_internal::kMaxTimeoutSeconds;
using config_internal::Setting;
using config_internal::setting_error;
using config_internal::shown;
using config_internal::shown_value;

// The layers, highest precedence first.
class Layers {
 public:
  Layers(const EnvMap& overrides, const EnvMap& environment,
         const config_internal::DotenvEntries& dotenv, std::string dotenv_name,
         std::map<std::string, Setting, std::less<>> file)
      : overrides_(overrides),
        environment_(environment),
        dotenv_(dotenv),
        dotenv_name_(std::move(dotenv_name)),
        file_(std::move(file)) {}

  static constexpr int kCount = 4;

  // The value of `name` in layer `layer` (0 = overrides ... 3 = file).
  std::optional<Setting> in_layer(int layer, std::string_view name) const {
    switch (layer) {
      case 0:
        return from_env_map(overrides_, "override", name);
      case 1:
        return from_env_map(environment_, "environment", name);
      case 2: {
        auto it = dotenv_.find(name);
        if (it == dotenv_.end()) return std::nullopt;
        return Setting{fmt::format("{}:{}: {}", dotenv_name_, it->second.line, name), false,
                       std::string(name), it->second.value, std::nullopt};
      }
      default: {
        auto it = file_.find(name);
        if (it == file_.end()) return std::nullopt;
        return it->second;
      }
    }
  }

  // The value of `name` from the highest layer that has it.
  std::optional<Setting> find(std::string_view name) const {
    for (int layer = 0; layer < kCount; ++layer) {
      if (auto s = in_layer(layer, name)) return s;
    }
    return std::nullopt;
  }

 private:
  static std::optional<Setting> from_env_map(const EnvMap& map, std::string_view what,
                                             std::string_view name) {
    auto it = map.find(name);
    if (it == map.end()) return std::nullopt;
    return Setting{fmt::format("{} {}", what, name), false, std::string(name), it->second,
                   std::nullopt};
  }

  const EnvMap& overrides_;
  const EnvMap& environment_;
  const config_internal::DotenvEntries& dotenv_;
  std::string dotenv_name_;
  std::map<std::string, Setting, std::less<>> file_;
};

EnvMap process_environment() {
  EnvMap env;
  for (char** p = environ; p != nullptr && *p != nullptr; ++p) {
    std::string_view entry(*p);
    const std::size_t eq = entry.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

// The Redis URL from REDIS_HOST and its companions, which are looked up
// through every layer (as Django read them from the merged environment).
Result<std::string> url_from_host(const Setting& host, const Layers& layers) {
  for (char c : host.text) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '/' || c == '@' || c == '?' || c == '#') {
      return std::unexpected(setting_error(host, "is not a valid host name"));
    }
  }
  std::string host_part = host.text;
  // An IPv6 address needs brackets in a URL.
  if (host_part.find(':') != std::string::npos && !host_part.starts_with('[')) {
    host_part = "[" + host_part + "]";
  }

  std::int64_t port = 6379;
  if (auto s = layers.find("REDIS_PORT")) {
    AICACHE_ASSIGN_OR_RETURN(port, integer_value(*s, 1, 65535));
  }
  std::int64_t db = 0;
  if (auto s = layers.find("REDIS_DB")) {
    AICACHE_ASSIGN_OR_RETURN(db, integer_value(*s, 0, kInt64Max));
  }
  std::string userinfo;
  if (auto s = layers.find("REDIS_PASSWORD"); s && !s->text.empty()) {
    userinfo = ":" + internal::percent_encode(s->text) + "@";
  }
  return fmt::format("redis://{}{}:{}/{}", userinfo, host_part, port, db);
}

// The highest layer that mentions REDIS_URL or REDIS_HOST decides; within a
// layer the URL wins. Empty values count as not set.
Result<std::optional<std::string>> redis_target(const Layers& layers) {
  for (int layer = 0; layer < Layers::kCount; ++layer) {
    if (auto url = layers.in_layer(layer, "REDIS_URL"); url && !url->text.empty()) {
      return std::optional<std::string>(url->text);
    }
    if (auto host = layers.in_layer(layer, "REDIS_HOST"); host && !host->text.empty()) {
      AICACHE_ASSIGN_OR_RETURN(std::string url, url_from_host(*host, layers));
      return std::optional<std::string>(std::move(url));
    }
  }
  return std::optional<std::string>();
}

// The items of a comma-separated setting, spaces around each trimmed, empty
// ones left out ("a, b,,c" is a, b, c). The views point into `text`.
std::vector<std::string_view> listed_items(std::string_view text) {
  std::vector<std::string_view> items;
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

constexpr std::size_t kMaxSentinels = 64;
constexpr std::size_t kMaxSentinelNameBytes = 256;

// A master's or ACL user's name: 1 to 256 printable characters, no spaces
// (as sentinel.conf and ACL rules hold them).
Status check_name(const Setting& s) {
  const bool ok = !s.text.empty() && s.text.size() <= kMaxSentinelNameBytes &&
                  std::all_of(s.text.begin(), s.text.end(), [](char c) {
                    const auto u = static_cast<unsigned char>(c);
                    return u > 0x20 && u < 0x7f;
                  });
  if (ok) return {};
  return std::unexpected(
      setting_error(s, fmt::format("must be at most {} printable characters without spaces",
                                   kMaxSentinelNameBytes)));
}

// Redis Sentinel: REDIS_SENTINELS (host:port,...), REDIS_SENTINEL_MASTER,
// REDIS_SENTINEL_PASSWORD, REDIS_SENTINEL_USERNAME and REDIS_SENTINEL_TLS,
// each from the highest layer that has it (the last three only read with
// sentinels, as they mean nothing without). With sentinels and no Redis
// URL, the master's URL is made from REDIS_PASSWORD and REDIS_DB alone (its
// address comes from the sentinels).
Status read_sentinels(const Layers& layers, Config& config) {
  auto find = [&](std::string_view name) -> std::optional<Setting> {
    auto s = layers.find(name);
    if (!s || s->text.empty()) return std::nullopt;
    return s;
  };
  const std::optional<Setting> list = find("REDIS_SENTINELS");
  if (!list) return {};
  for (const std::string_view one : listed_items(list->text)) {
    if (auto parsed = parse_redis_host_port(one, kRedisSentinelPort); !parsed) {
      return std::unexpected(setting_error(*list, parsed.error().message));
    }
    if (config.redis_sentinels.size() == kMaxSentinels) {
      return std::unexpected(
          setting_error(*list, fmt::format("lists more than {} sentinels", kMaxSentinels)));
    }
    config.redis_sentinels.emplace_back(one);
  }
  if (config.redis_sentinels.empty()) {
    return std::unexpected(setting_error(*list, "lists no host:port"));
  }
  const std::optional<Setting> master = find("REDIS_SENTINEL_MASTER");
  if (!master) {
    return std::unexpected(setting_error(
        *list, "needs the master's name too: REDIS_SENTINEL_MASTER ([store] sentinel_master)"));
  }
  AICACHE_TRY(check_name(*master));
  config.redis_sentinel_master = master->text;
  if (auto password = find("REDIS_SENTINEL_PASSWORD")) {
    config.redis_sentinel_password = password->text;
  }
  if (auto user = find("REDIS_SENTINEL_USERNAME")) {
    AICACHE_TRY(check_name(*user));
    config.redis_sentinel_username = user->text;
  }
  if (auto tls = find("REDIS_SENTINEL_TLS")) {
    AICACHE_ASSIGN_OR_RETURN(config.redis_sentinel_tls, config_internal::bool_value(*tls));
  }
  if (!config.redis_url) {
    const Setting placeholder{list->label, list->from_file, list->name, "127.0.0.1", std::nullopt};
    AICACHE_ASSIGN_OR_RETURN(std::string url, url_from_host(placeholder, layers));
    config.redis_url = std::move(url);
  }
  return {};
}

// --- Redis Cluster ---------------------------------------------------------

constexpr std::size_t kMaxClusterNodes = 64;

// REDIS_READ_FROM_REPLICAS ([store] read_from_replicas): a Cluster's reads
// go to replicas. After read_cluster_nodes: refused without a Cluster.
Status read_replica_reads(const Layers& layers, Config& config) {
  const std::optional<Setting> s = layers.find("REDIS_READ_FROM_REPLICAS");
  if (!s) return {};
  AICACHE_ASSIGN_OR_RETURN(config.redis_read_from_replicas, config_internal::bool_value(*s));
  if (config.redis_read_from_replicas && config.redis_cluster_nodes.empty()) {
    return std::unexpected(
        setting_error(*s, "applies to a Redis Cluster only, and REDIS_CLUSTER_NODES is not set"));
  }
  return {};
}

// REDIS_CLUSTER_NODES ([store] cluster_nodes): a Redis Cluster's seed nodes.
// The user and password are REDIS_URL's (or REDIS_HOST's companions'); with
// neither, the URL is made of the first seed and REDIS_PASSWORD. A Cluster
// has only db 0: a URL naming another is refused here.
Status read_cluster_nodes(const Layers& layers, Config& config) {
  const std::optional<Setting> s = layers.find("REDIS_CLUSTER_NODES");
  if (!s || s->text.empty()) return {};
  for (const std::string_view seed : listed_items(s->text)) {
    // The parser the sentinels' addresses go through; a seed's port is
    // required (0 stands for "left out": a Cluster has no default port).
    auto parsed = parse_redis_host_port(seed, 0);
    if (!parsed || parsed->port == 0) {
      const std::string why = parsed ? "no port" : parsed.error().message;
      return std::unexpected(
          setting_error(*s, fmt::format("{} is not a comma-separated list of host:port (e.g. "
                                        "\"10.0.0.1:7000,10.0.0.2:7000\"): {}",
                                        shown(seed), why)));
    }
    if (config.redis_cluster_nodes.size() == kMaxClusterNodes) {
      return std::unexpected(
          setting_error(*s, fmt::format("lists more than {} nodes", kMaxClusterNodes)));
    }
    config.redis_cluster_nodes.emplace_back(seed);
  }
  if (config.redis_cluster_nodes.empty()) return {};
  if (!config.redis_url) {
    std::string userinfo;
    if (auto pw = layers.find("REDIS_PASSWORD"); pw && !pw->text.empty()) {
      userinfo = ":" + internal::percent_encode(pw->text) + "@";
    }
    std::string first = config.redis_cluster_nodes.front();
    const auto colon = first.rfind(':');
    if (first.find(':') < colon && !first.starts_with('[')) {
      first = "[" + first.substr(0, colon) + "]" + first.substr(colon);  // a bare IPv6 address
    }
    config.redis_url = fmt::format("redis://{}{}/0", userinfo, first);
  }
  if (auto endpoint = parse_redis_url(*config.redis_url); endpoint && endpoint->db != 0) {
    return std::unexpected(setting_error(
        *s,
        "needs database 0 (a Redis Cluster has no other), but REDIS_URL or REDIS_DB names "
        "another"));
  }
  return {};
}

// Every name the configuration reads from the overrides, the environment and
// .env; Config::environment keeps these (and the apps' secret_env names) and
// nothing else. A new setting read by name must be added here.
constexpr std::string_view kEnvironmentNames[] = {
    // the store
    "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB", "AICACHE_CONFIG",
    "AICACHE_KEY_PREFIX", "AICACHE_KEY_VERSION", "AICACHE_DEFAULT_TIMEOUT",
    "AICACHE_MEMORY_MAX_BYTES", "AICACHE_MEMORY_MAX_ENTRIES", "AICACHE_NEAR_CACHE_MAX_BYTES",
    "REDIS_POOL_SIZE", "REDIS_CONNECT_TIMEOUT_MS", "REDIS_COMMAND_TIMEOUT_MS", "REDIS_TLS_CA_FILE",
    "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE", "REDIS_TLS_VERIFY",
    // Redis Sentinel
    "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD",
    "REDIS_SENTINEL_USERNAME", "REDIS_SENTINEL_TLS",
    // Redis Cluster
    "REDIS_CLUSTER_NODES",
    // [ttl]
    "AICACHE_TTL_DEFAULT",
    "AICACHE_TTL_CONVERSATION",
    "AICACHE_TTL_AI_CONFIG",
    // the service and the CLI's client of it
    "AICACHE_SERVER",
    "AICACHE_API_TOKEN",
    "AICACHE_LISTEN",
    "AICACHE_ACCESS_LOG",
    "AICACHE_MAX_BODY_BYTES",
    "AICACHE_MAX_CONNECTIONS",
    "AICACHE_REQUEST_TIMEOUT",
    "AICACHE_ALLOWED_HOSTS",
};

// [ttl]: the default TTL of each family. The highest layer that gives the
// default decides, AICACHE_TTL_DEFAULT ([ttl] default) winning over its
// older name AICACHE_DEFAULT_TIMEOUT ([store] default_timeout) within a
// layer; the caller has read the older name already.
Status read_ttls(const Layers& layers, Config& config) {
  for (int layer = 0; layer < Layers::kCount; ++layer) {
    if (auto s = layers.in_layer(layer, "AICACHE_TTL_DEFAULT")) {
      AICACHE_ASSIGN_OR_RETURN(const std::int64_t seconds,
                               integer_value(*s, 1, kMaxTimeoutSeconds));
      config.default_timeout = std::chrono::seconds(seconds);
      break;
    }
    if (layers.in_layer(layer, "AICACHE_DEFAULT_TIMEOUT")) break;
  }
  struct FamilyTtl {
    std::string_view name;
    std::chrono::seconds* target;
  };
  const FamilyTtl families[] = {{"AICACHE_TTL_CONVERSATION", &config.conversation_ttl},
                                {"AICACHE_TTL_AI_CONFIG", &config.ai_config_ttl}};
  for (const FamilyTtl& family : families) {
    if (auto s = layers.find(family.name)) {
      AICACHE_ASSIGN_OR_RETURN(const std::int64_t seconds,
                               integer_value(*s, 1, kMaxTimeoutSeconds));
      *family.target = std::chrono::seconds(seconds);
    }
  }
  return {};
}

// The Redis store's connection settings: the pool, the timeouts, TLS. Empty
// values count as not set, as for the other Redis settings.
Status read_redis_settings(const Layers& layers, Config& config) {
  auto find = [&](std::string_view name) -> std::optional<Setting> {
    auto s = layers.find(name);
    if (!s || s->text.empty()) {
      if (s && s->integer) return s;  // a TOML integer has no text
      return std::nullopt;
    }
    return s;
  };
  using config_internal::kMaxRedisPoolSize;
  using config_internal::kMaxRedisTimeoutMs;
  if (auto s = find("REDIS_POOL_SIZE")) {
    AICACHE_ASSIGN_OR_RETURN(const std::int64_t n, integer_value(*s, 1, kMaxRedisPoolSize));
    config.redis_pool_size = static_cast<std::size_t>(n);
  }
  const std::pair<std::string_view, std::chrono::milliseconds*> timeouts[] = {
      {"REDIS_CONNECT_TIMEOUT_MS", &config.redis_connect_timeout},
      {"REDIS_COMMAND_TIMEOUT_MS", &config.redis_command_timeout}};
  for (const auto& [name, target] : timeouts) {
    if (auto s = find(name)) {
      AICACHE_ASSIGN_OR_RETURN(const std::int64_t ms, integer_value(*s, 1, kMaxRedisTimeoutMs));
      *target = std::chrono::milliseconds(ms);
    }
  }
  const std::pair<std::string_view, std::string*> files[] = {
      {"REDIS_TLS_CA_FILE", &config.redis_tls_ca_file},
      {"REDIS_TLS_CERT_FILE", &config.redis_tls_cert_file},
      {"REDIS_TLS_KEY_FILE", &config.redis_tls_key_file}};
  for (const auto& [name, target] : files) {
    if (auto s = find(name)) *target = s->text;
  }
  if (auto s = find("REDIS_TLS_VERIFY")) {
    AICACHE_ASSIGN_OR_RETURN(config.redis_tls_verify, config_internal::bool_value(*s));
  }
  return {};
}

// AICACHE_ALLOWED_HOSTS: names the service compares every Host header with.
constexpr std::size_t kMaxAllowedHosts = 64;

// The value is never shown; the source is (".env:3: AICACHE_API_TOKEN: ...").
Status check_api_token(const Setting& s) {
  if (auto ok = validate_api_token(s.text); !ok) {
    return std::unexpected(setting_error(s, ok.error().message));
  }
  return {};
}

// The service's settings (see Config::api_token and below), each checked and
// bounded, so no deadline or size arithmetic downstream can overflow.
Status read_service_settings(const Layers& layers, Config& config) {
  // Empty values count as not set, as for the Redis settings.
  auto find = [&](std::string_view name) -> std::optional<Setting> {
    auto s = layers.find(name);
    if (!s || s->text.empty()) return std::nullopt;
    return s;
  };
  if (auto s = find("AICACHE_API_TOKEN")) {
    if (auto ok = check_api_token(*s); !ok) return ok;
    config.api_token = s->text;
  }
  if (auto s = find("AICACHE_SERVER")) config.server = s->text;
  if (auto s = find("AICACHE_LISTEN")) config.listen = s->text;
  if (auto s = find("AICACHE_ACCESS_LOG")) {
    AICACHE_ASSIGN_OR_RETURN(config.access_log, config_internal::bool_value(*s));
  }
  struct Bounded {
    std::string_view name;
    std::int64_t max;
    std::optional<std::int64_t> value;
  };
  Bounded sizes[] = {{"AICACHE_MAX_BODY_BYTES", kMaxBodyBytesLimit, {}},
                     {"AICACHE_MAX_CONNECTIONS", kMaxConnectionsLimit, {}},
                     {"AICACHE_REQUEST_TIMEOUT", kMaxRequestTimeout.count(), {}}};
  for (Bounded& b : sizes) {
    if (auto s = find(b.name)) {
      AICACHE_ASSIGN_OR_RETURN(b.value, integer_value(*s, 1, b.max));
    }
  }
  if (sizes[0].value) config.max_body_bytes = static_cast<std::size_t>(*sizes[0].value);
  if (sizes[1].value) config.max_connections = static_cast<std::size_t>(*sizes[1].value);
  if (sizes[2].value) config.request_timeout = std::chrono::seconds(*sizes[2].value);
  if (auto s = find("AICACHE_ALLOWED_HOSTS")) {
    for (const std::string_view name : listed_items(s->text)) {
      // A host name or address, optionally with a port: nothing a Host
      // header could not hold.
      const bool ok = name.size() <= 255 && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
               c == ':' || c == '[' || c == ']' || c == '_';
      });
      if (!ok) {
        return std::unexpected(setting_error(
            *s, "is not a comma-separated list of host names (letters, digits, '.', '-', "
                "'_', ':', '[', ']')"));
      }
      if (config.allowed_hosts.size() == kMaxAllowedHosts) {
        return std::unexpected(setting_error(
            *s, fmt::format("lists more than {} host names", kMaxAllowedHosts)));
      }
      config.allowed_hosts.emplace_back(name);
    }
  }
  return {};
}

// True when `path` may be read by its group or by others. Unknown (stat
// fails): false, as there is nothing useful to say.
bool readable_by_others(const fs::path& path, fs::perms& perms) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec) return false;
  perms = status.permissions();
  return (perms & (fs::perms::group_read | fs::perms::others_read)) != fs::perms::none;
}

std::string secret_file_warning(const fs::path& path, std::string_view holds) {
  fs::perms perms = fs::perms::none;
  if (!readable_by_others(path, perms)) return {};
  return fmt::format("{} {} and is readable by group or others (mode {:04o}): other users of "
                     "this machine can read it; run: chmod 600 {}",
                     printable(path.string(), 200), holds,
                     static_cast<unsigned>(perms) & 0777u, printable(path.string(), 200));
}

// `given_file`, when set, is the config file's text (the file is then not
// looked for or read).
Result<Config> load(const ConfigSources& sources,
                    const config_internal::ConfigFileText* given_file) {
  const EnvMap environment = sources.environment ? *sources.environment : process_environment();

  // .env: absent is fine; present but unreadable or malformed is not.
  config_internal::DotenvEntries dotenv;
  const std::string dotenv_name = sources.dotenv.string();
  std::error_code ec;
  if (!sources.dotenv.empty() && fs::exists(sources.dotenv, ec)) {
    AICACHE_ASSIGN_OR_RETURN(const std::string text,
                             config_internal::read_text_file(sources.dotenv));
    AICACHE_ASSIGN_OR_RETURN(dotenv, config_internal::parse_dotenv_entries(text, dotenv_name));
  }

  // Which config file: --config, else $AICACHE_CONFIG, else ./aicache.toml.
  std::optional<fs::path> config_file;
  if (given_file != nullptr) {
    config_file = fs::path(given_file->name);
  } else if (sources.config_file && !sources.config_file->empty()) {
    config_file = *sources.config_file;
  } else {
    const Layers env_only(sources.overrides, environment, dotenv, dotenv_name, {});
    if (auto named = env_only.find("AICACHE_CONFIG"); named && !named->text.empty()) {
      config_file = fs::path(named->text);
    } else if (fs::exists("aicache.toml", ec)) {
      config_file = fs::path("aicache.toml");
    }
  }
  FileContents file;
  if (given_file != nullptr) {
    AICACHE_ASSIGN_OR_RETURN(
        file, config_internal::parse_config_file(given_file->text, given_file->name));
  } else if (config_file) {
    if (!fs::exists(*config_file, ec)) {
      return make_error(ErrorCode::kConfig,
                        fmt::format("config file {}: no such file", config_file->string()));
    }
    AICACHE_ASSIGN_OR_RETURN(file, config_internal::read_config_file(*config_file));
  }

  const Layers layers(sources.overrides, environment, dotenv, dotenv_name,
                      std::move(file.settings));
  Config config;
  config.config_file = config_file;

  AICACHE_ASSIGN_OR_RETURN(config.redis_url, redis_target(layers));
  AICACHE_TRY(read_sentinels(layers, config));
  AICACHE_TRY(read_cluster_nodes(layers, config));
  AICACHE_TRY(read_replica_reads(layers, config));

  const std::optional<Setting> prefix_setting = layers.find("AICACHE_KEY_PREFIX");
  if (prefix_setting) config.key_prefix = prefix_setting->text;

  // Integer settings: the winning value is checked, with its origin named.
  struct IntegerSetting {
    std::string_view name;
    std::int64_t min;
    std::int64_t max;
  };
  constexpr IntegerSetting kIntegers[] = {
      {"AICACHE_KEY_VERSION", 0, kInt64Max},
      {"AICACHE_DEFAULT_TIMEOUT", 1, kMaxTimeoutSeconds},
      {"AICACHE_MEMORY_MAX_BYTES", 1, kInt64Max},
      {"AICACHE_MEMORY_MAX_ENTRIES", 1, kInt64Max},
      {"AICACHE_NEAR_CACHE_MAX_BYTES", 0, kInt64Max},
  };
  std::int64_t values[std::size(kIntegers)] = {
      config.key_version, config.default_timeout.count(),
      static_cast<std::int64_t>(config.memory_max_bytes),
      static_cast<std::int64_t>(config.memory_max_entries),
      static_cast<std::int64_t>(config.near_cache_max_bytes)};
  for (std::size_t i = 0; i < std::size(kIntegers); ++i) {
    if (auto s = layers.find(kIntegers[i].name)) {
      AICACHE_ASSIGN_OR_RETURN(values[i], integer_value(*s, kIntegers[i].min, kIntegers[i].max));
    }
  }
  config.key_version = values[0];
  config.default_timeout = std::chrono::seconds(values[1]);
  AICACHE_TRY(read_ttls(layers, config));
  config.memory_max_bytes = static_cast<std::size_t>(values[2]);
  config.memory_max_entries = static_cast<std::size_t>(values[3]);
  config.near_cache_max_bytes = static_cast<std::size_t>(values[4]);

  // The prefix as the cache will take it (KeyMaker's rules), with its origin
  // named: a bad one is refused here, whichever command runs.
  if (prefix_setting) {
    if (auto keys = KeyMaker::create(config.key_prefix, config.key_version); !keys) {
      return std::unexpected(
          setting_error(*prefix_setting, fmt::format("invalid: {}", keys.error().message)));
    }
  }

  AICACHE_TRY(read_redis_settings(layers, config));
  AICACHE_TRY(read_service_settings(layers, config));

  // The merged environment (the process environment over .env), of only the
  // names the configuration refers to: unrelated variables, secrets of other
  // programs among them, have no business in a Config.
  auto keep = [&](std::string_view name) {
    auto it = environment.find(name);
    if (it != environment.end()) {
      config.environment.insert_or_assign(std::string(name), it->second);
      return;
    }
    if (auto entry = dotenv.find(name); entry != dotenv.end()) {
      config.environment.insert_or_assign(std::string(name), entry->second.value);
    }
  };
  for (std::string_view name : kEnvironmentNames) keep(name);
  for (const FileApp& app : file.apps) {
    if (!app.secret_env.empty()) keep(app.secret_env);
  }

  // Files that hold a secret and that other users may read: warned about,
  // not refused (a container may run as a user whose group must read them).
  const bool inline_secret = std::any_of(file.apps.begin(), file.apps.end(),
                                         [](const FileApp& app) { return app.secret_env.empty(); });
  if (inline_secret && given_file == nullptr && config_file) {
    if (auto w = secret_file_warning(*config_file, "holds an app secret"); !w.empty()) {
      config.warnings.push_back(std::move(w));
    }
  }
  auto in_dotenv = [&](std::string_view name) {
    auto it = name.empty() ? dotenv.end() : dotenv.find(name);
    return it != dotenv.end() && !it->second.value.empty();
  };
  const bool dotenv_secret =
      in_dotenv("AICACHE_API_TOKEN") || in_dotenv("REDIS_PASSWORD") ||
      in_dotenv("REDIS_SENTINEL_PASSWORD") ||
      std::any_of(file.apps.begin(), file.apps.end(),
                  [&](const FileApp& app) { return in_dotenv(app.secret_env); });
  if (dotenv_secret) {
    if (auto w = secret_file_warning(sources.dotenv,
                                     "holds a secret (an app's secret_env variable, "
                                     "AICACHE_API_TOKEN, REDIS_PASSWORD or "
                                     "REDIS_SENTINEL_PASSWORD)");
        !w.empty()) {
      config.warnings.push_back(std::move(w));
    }
  }

  // [tokens] and [[apps]], whose secret_env names are looked up in the merged
  // environment.
  if (file.refresh_margin) config.token_refresh_margin = std::chrono::seconds(*file.refresh_margin);
  if (file.refresh_lead) config.token_refresh_lead = std::chrono::seconds(*file.refresh_lead);
  if (file.min_refresh_interval) {
    config.token_min_refresh_interval = std::chrono::seconds(*file.min_refresh_interval);
  }
  if (file.warmup_timeout) config.token_warmup_timeout = std::chrono::seconds(*file.warmup_timeout);
  if (file.forced_refreshes_per_day) {
    config.token_forced_refreshes_per_day = static_cast<int>(*file.forced_refreshes_per_day);
  }
  AICACHE_ASSIGN_OR_RETURN(config.apps,
                           config_internal::resolve_apps(std::move(file.apps), config.environment));
  return config;
}

// No exception crosses the public API (allocation failure, a filesystem
// error thrown by a library).
Result<Config> load_catching(const ConfigSources& sources,
                             const config_internal::ConfigFileText* given_file) {
  try {
    return load(sources, given_file);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kConfig, fmt::format("cannot load configuration: {}", e.what()));
  }
}

}  // namespace

Result<Config> load_config(const ConfigSources& sources) {
  return load_catching(sources, nullptr);
}

namespace config_internal {

Result<Config> load_config_with_text(const ConfigFileText& file, const ConfigSources& sources) {
  return load_catching(sources, &file);
}

}  // namespace config_internal

}  // namespace aicache
