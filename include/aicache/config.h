// Configuration: where the store is, the key namespace, the limits.
//
// Sources, highest precedence first:
//   1. overrides (the command line's flags)
//   2. the process environment
//   3. `.env` in the working directory (KEY=VALUE lines, as python-dotenv)
//   4. the config file: --config FILE, else $AICACHE_CONFIG, else
//      ./aicache.toml if it exists
//   5. defaults
// No configuration at all gives the memory store.
//
// Environment names (also valid in .env and as overrides):
//   REDIS_URL                 redis://[user[:password]@]host[:port][/db] or unix:///path?db=N
//   REDIS_HOST, REDIS_PORT (6379), REDIS_PASSWORD, REDIS_DB (0)
//                             used when no REDIS_URL is given at the same or a
//                             higher level, as the Django settings read them
//   AICACHE_KEY_PREFIX        Django KEY_PREFIX ("")
//   AICACHE_KEY_VERSION       Django VERSION (1)
//   AICACHE_DEFAULT_TIMEOUT   seconds for Ttl::use_default() (300)
//   AICACHE_MEMORY_MAX_BYTES  memory store byte budget (268435456)
//   AICACHE_MEMORY_MAX_ENTRIES memory store entry limit (1000000)
//   AICACHE_CONFIG            the config file
// The config file (TOML):
//   [store]
//   url = "redis://127.0.0.1:6379/0"
//   key_prefix = ""        key_version = 1        default_timeout = 300
//   memory_max_bytes = 268435456                  memory_max_entries = 1000000
//
//   [tokens]                      optional: when tokens are refreshed
//   refresh_margin = 300          seconds left at which a request refreshes (0..3600)
//   refresh_lead = 60             how much earlier the background refresher does (0..3600)
//
//   [[apps]]                      one per token app (see Config::apps)
//   channel = "wechat"            wechat | wecom | dingtalk (required)
//   app_id = "wx123"              WeChat appid, WeCom corp id, DingTalk app key (required)
//   agent_id = "1000002"          WeCom only, required there: the application (digits;
//                                 a TOML integer is accepted too)
//   secret_env = "WX123_SECRET"   the environment (or .env) variable holding the secret,
//   # secret = "..."              or the secret itself: exactly one of the two
//   api = "stable"                wechat: stable (default) | plain;
//                                 dingtalk: oauth2 (default) | legacy; wecom: none
//   base_url = "https://proxy"    optional: the platform's API base, for proxies and tests
//
// Errors are kConfig and name the source: "aicache.toml:3:9: ...",
// ".env:4: ...", "environment REDIS_PORT: ...". They never contain a
// password or secret value.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/clock.h"
#include "aicache/status.h"
#include "aicache/store.h"
#include "aicache/token_manager.h"
#include "aicache/token_provider.h"

namespace aicache {

struct Config {
  // A Redis URL when Redis is configured (REDIS_HOST & co. are turned into
  // one, the password percent-encoded); nullopt: the memory store.
  std::optional<std::string> redis_url;

  std::string key_prefix;
  std::int64_t key_version = 1;
  std::chrono::seconds default_timeout{300};

  std::size_t memory_max_bytes = 256u << 20;
  std::size_t memory_max_entries = 1'000'000;

  // The token apps ([[apps]] of the config file), in file order, each checked
  // by validate(AppCredentials), with its secret resolved (a secret_env is
  // looked up in `environment`). No two share a channel and app key
  // (TokenManager::app_key). Never printed: they hold secrets.
  std::vector<AppCredentials> apps;

  // [tokens]: see TokenManagerOptions::refresh_margin and refresh_lead.
  std::chrono::seconds token_refresh_margin{300};
  std::chrono::seconds token_refresh_lead{60};

  // The config file that was read, if any (for messages).
  std::optional<std::filesystem::path> config_file;

  // The merged environment (process environment over .env), for settings that
  // later components look up by name (app secrets). Never printed.
  std::map<std::string, std::string, std::less<>> environment;
};

struct ConfigSources {
  // --config FILE; when empty, $AICACHE_CONFIG, then ./aicache.toml if present.
  std::optional<std::filesystem::path> config_file;
  // The .env file; absent files are fine.
  std::filesystem::path dotenv = ".env";
  // The environment; when nullopt, the process environment is read.
  std::optional<std::map<std::string, std::string, std::less<>>> environment;
  // Command-line overrides, by environment name (e.g. {"REDIS_URL", "..."}).
  std::map<std::string, std::string, std::less<>> overrides;
};

// Reads and merges every source. Errors are kConfig, naming file and line.
Result<Config> load_config(const ConfigSources& sources = {});

// Parses the text of a .env file: KEY=VALUE lines, optional "export ",
// '#' comments, blank lines, single-quoted (literal) or double-quoted (with
// \n \t \" \\ escapes) values. `filename` names the file in errors.
Result<std::map<std::string, std::string, std::less<>>> parse_dotenv(std::string_view text,
                                                                     std::string_view filename);

// The store the configuration describes: RedisStore when a Redis URL is set,
// else MemoryStore. `clock` is for the memory store's TTLs.
Result<std::unique_ptr<Store>> open_store(const Config& config,
                                          std::shared_ptr<const Clock> clock = Clock::real());

// AssistantCacheOptions with the configured key prefix and version.
AssistantCacheOptions cache_options(const Config& config);

// TokenManagerOptions with the configured [tokens] settings; everything else
// has its default.
TokenManagerOptions token_options(const Config& config);

// A TokenManager over `cache` with every configured app added, in file
// order. The first overload uses token_options(config); the second the
// caller's options as they are (tests pass a manual clock; [tokens] is then
// not applied). Errors: those of TokenManager::create and add_app (kConfig
// naming the app, never its secret). The background refresher is not started.
Result<std::unique_ptr<TokenManager>> open_token_manager(const Config& config,
                                                         std::shared_ptr<AssistantCache> cache);
Result<std::unique_ptr<TokenManager>> open_token_manager(const Config& config,
                                                         std::shared_ptr<AssistantCache> cache,
                                                         TokenManagerOptions options);

}  // namespace aicache
