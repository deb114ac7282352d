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
//   REDIS_SENTINELS           host:port,host:port,... Redis Sentinel: the master
//                             is found through these (docs/configuration.md);
//                             the URL then gives only its user, password and db
//   REDIS_SENTINEL_MASTER     the master's name at the sentinels (required with
//                             REDIS_SENTINELS)
//   REDIS_SENTINEL_PASSWORD   the sentinels' own password (requirepass, or
//                             REDIS_SENTINEL_USERNAME's)
//   REDIS_SENTINEL_USERNAME   the sentinels' ACL user (default: none, AUTH password)
//   REDIS_SENTINEL_TLS        TLS to the sentinels, with the REDIS_TLS_* files
//                             and checks (default: when the URL is rediss://)
//   REDIS_CLUSTER_NODES       a Redis Cluster's seed nodes: host:port,host:port,...
//                             (user and password from REDIS_URL or REDIS_PASSWORD; db 0)
//   AICACHE_KEY_PREFIX        Django KEY_PREFIX ("")
//   AICACHE_KEY_VERSION       Django VERSION (1)
//   AICACHE_DEFAULT_TIMEOUT   seconds for Ttl::use_default() (300); also
//   AICACHE_TTL_DEFAULT       (which wins within a layer)
//   AICACHE_TTL_CONVERSATION  default TTL of a conversation (3600)
//   AICACHE_TTL_AI_CONFIG     default TTL of a user's AI configuration (300)
//   AICACHE_MEMORY_MAX_BYTES  memory store byte budget (268435456)
//   AICACHE_MEMORY_MAX_ENTRIES memory store entry limit (1000000)
//   AICACHE_NEAR_CACHE_MAX_BYTES the Redis store's near cache byte budget
//                             (67108864; 0: off), docs/near_cache.md
//   REDIS_POOL_SIZE           the Redis store's connections (50; 1..10000)
//   REDIS_CONNECT_TIMEOUT_MS  connect (and TLS handshake) timeout (1000; 1..600000)
//   REDIS_COMMAND_TIMEOUT_MS  each command's read/write timeout (1000; 1..600000)
//   REDIS_TLS_CA_FILE         rediss://: the CAs (PEM) the server's certificate
//                             must chain to (default: the system's)
//   REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE  rediss://: a client certificate
//   REDIS_TLS_VERIFY          rediss://: check the server's certificate and
//                             name (true; false logs a warning at every start)
//   AICACHE_CONFIG            the config file
//   AICACHE_SERVER            the CLI: act through this running service
//   AICACHE_API_TOKEN         the service's bearer token: at least 32 of
//                             [A-Za-z0-9._~+/=-] (`openssl rand -hex 32`)
//   AICACHE_LISTEN, AICACHE_ACCESS_LOG (on/off), AICACHE_MAX_BODY_BYTES
//   (1..1 GiB), AICACHE_MAX_CONNECTIONS (1..100000), AICACHE_REQUEST_TIMEOUT
//   (seconds, 1..3600)        the service's; see Config::api_token and below
// The config file (TOML):
//   [store]
//   url = "redis://127.0.0.1:6379/0"
//   key_prefix = ""        key_version = 1        default_timeout = 300
//   memory_max_bytes = 268435456                  memory_max_entries = 1000000
//   near_cache_max_bytes = 67108864               (Redis only; 0: no near cache)
//   pool_size = 50        connect_timeout_ms = 1000        command_timeout_ms = 1000
//   tls_ca_file = "/etc/redis/ca.crt"             (rediss:// only; as the environment's)
//   tls_cert_file = "..."  tls_key_file = "..."    tls_verify = true
//   sentinels = ["10.0.0.1:26379", "10.0.0.2:26379"]   Redis Sentinel (see above)
//   sentinel_master = "mymaster"  sentinel_password = "..."
//   sentinel_username = "..."     sentinel_tls = true        (default: as url)
//   cluster_nodes = ["10.0.0.1:7000", "10.0.0.2:7000"]   (Redis Cluster seeds)
//   read_from_replicas = false   (Cluster only: reads go to the masters' replicas)
//
//   [ttl]                         optional: default TTLs by family, seconds (1..100 years)
//   default = 300                 generic values (kv); [store] default_timeout is its older name
//   conversation = 3600           conversations
//   ai_config = 300               per-user AI configuration
//                                 (a token's TTL is always the platform's expires_in)
//
//   [tokens]                      optional: when tokens are refreshed
//   refresh_margin = 300          seconds left at which a request refreshes (0..3600)
//   refresh_lead = 60             how much earlier the background refresher does (0..3600)
//   min_refresh_interval = 60     seconds between refreshes asked for from outside (POST
//                                 .../refresh, `aicache token --force-refresh`), per app,
//                                 across processes sharing the store (0..86400; 0: none)
//   forced_refreshes_per_day = 10 of those, how many may be forced (WeChat revokes the
//                                 live token; 20 a day upstream) (0..20)
//   warmup_timeout = 30           `aicache serve`: seconds /readyz waits for every app's
//                                 token at start (0..3600)
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
//
// The objects a Config describes (its store, the cache's options, a
// TokenManager for its apps) are made by the functions of from_config.h.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/api_token.h"  // validate_api_token(), applied to AICACHE_API_TOKEN
#include "aicache/status.h"
#include "aicache/token_provider.h"

namespace aicache {

struct Config {
  // A Redis URL when Redis is configured (REDIS_HOST & co. are turned into
  // one, the password percent-encoded); nullopt: the memory store.
  std::optional<std::string> redis_url;

  // Redis Sentinel: the sentinels' addresses as given ("host:port", checked
  // with parse_redis_host_port, port 26379 when left out); empty: none. With
  // sentinels, redis_url is always set and gives the master's user, password
  // and db only: its host and port are asked of the sentinels.
  std::vector<std::string> redis_sentinels;
  std::string redis_sentinel_master;    // required with sentinels
  std::string redis_sentinel_password;  // never printed
  std::string redis_sentinel_username;  // the sentinels' ACL user; empty: none
  // TLS to the sentinels (REDIS_SENTINEL_TLS, [store] sentinel_tls);
  // nullopt: as redis_url (rediss://). RedisSentinelOptions::tls.
  std::optional<bool> redis_sentinel_tls;
  // Redis Cluster: its seed nodes, "host:port" each (REDIS_CLUSTER_NODES,
  // [store] cluster_nodes); empty: no Cluster. When set, redis_url is set
  // too (REDIS_URL's, else the first seed's with REDIS_PASSWORD) for its
  // user and password; its db is 0.
  std::vector<std::string> redis_cluster_nodes;
  // RedisStoreOptions::read_from_replicas (REDIS_READ_FROM_REPLICAS,
  // [store] read_from_replicas); only with redis_cluster_nodes.
  bool redis_read_from_replicas = false;

  std::string key_prefix;
  std::int64_t key_version = 1;
  // [ttl]: the default TTL of each family, for writes that give none.
  // default_timeout: generic values (kv) and anything else the store holds
  // ([ttl] default, AICACHE_TTL_DEFAULT; older names [store] default_timeout,
  // AICACHE_DEFAULT_TIMEOUT). A token's TTL is always the platform's
  // expires_in.
  std::chrono::seconds default_timeout{300};
  std::chrono::seconds conversation_ttl{3600};  // [ttl] conversation
  std::chrono::seconds ai_config_ttl{300};      // [ttl] ai_config

  std::size_t memory_max_bytes = 256u << 20;
  std::size_t memory_max_entries = 1'000'000;
  // RedisStoreOptions::near_cache_max_bytes (0: off).
  std::size_t near_cache_max_bytes = std::size_t{64} << 20;
  // RedisStoreOptions::pool_size, connect_timeout and socket_timeout
  // (REDIS_POOL_SIZE, REDIS_CONNECT_TIMEOUT_MS, REDIS_COMMAND_TIMEOUT_MS).
  std::size_t redis_pool_size = 50;
  std::chrono::milliseconds redis_connect_timeout{1000};
  std::chrono::milliseconds redis_command_timeout{1000};
  // RedisStoreOptions::tls (REDIS_TLS_*; [store] tls_*). Empty: not set.
  std::string redis_tls_ca_file;
  std::string redis_tls_cert_file;
  std::string redis_tls_key_file;
  bool redis_tls_verify = true;

  // The token apps ([[apps]] of the config file), in file order, each checked
  // by validate(AppCredentials), with its secret resolved (a secret_env is
  // looked up in `environment`). No two share a channel and app key
  // (TokenManager::app_key). Never printed: they hold secrets.
  std::vector<AppCredentials> apps;

  // [tokens]: see TokenManagerOptions::refresh_margin, refresh_lead,
  // min_refresh_interval and forced_refreshes_per_day.
  std::chrono::seconds token_refresh_margin{300};
  std::chrono::seconds token_refresh_lead{60};
  std::chrono::seconds token_min_refresh_interval{60};
  int token_forced_refreshes_per_day = 10;
  // [tokens] warmup_timeout: how long `aicache serve` answers /readyz 503
  // while it fetches every app's token at start (0..3600 s; 0: no wait).
  std::chrono::seconds token_warmup_timeout{30};

  // The service (`aicache serve`) and the CLI's client of it (--server).
  // nullopt: not set (an empty value counts as not set); the consumer's
  // default applies. Read from the overrides, the environment and .env.
  //
  // AICACHE_API_TOKEN: at least kMinApiTokenBytes characters, all of
  // [A-Za-z0-9._~+/=-]; anything else is refused when loading, whatever the
  // command. Never printed.
  std::optional<std::string> api_token;
  std::optional<std::string> server;                    // AICACHE_SERVER
  std::optional<std::string> listen;                    // AICACHE_LISTEN
  std::optional<bool> access_log;                       // AICACHE_ACCESS_LOG
  std::optional<std::size_t> max_body_bytes;            // 1..kMaxBodyBytesLimit
  std::optional<std::size_t> max_connections;           // 1..kMaxConnectionsLimit
  std::optional<std::chrono::seconds> request_timeout;  // 1 s..kMaxRequestTimeout
  // AICACHE_ALLOWED_HOSTS: comma-separated host names a service without an
  // API token answers to besides loopback ones (ServerOptions::allowed_hosts).
  std::vector<std::string> allowed_hosts;

  // The config file that was read, if any (for messages).
  std::optional<std::filesystem::path> config_file;

  // What loading found risky but not wrong, one sentence each, never holding
  // a secret: a config file with an inline app secret, or a .env holding an
  // app's secret_env variable, AICACHE_API_TOKEN or REDIS_PASSWORD, that its
  // group or others may read (the sentence names the file and `chmod 600`).
  // The CLI logs them as warnings whenever it serves or fetches tokens.
  std::vector<std::string> warnings;

  // The merged environment (process environment over .env), restricted to
  // the names the configuration reads (those listed above) and the
  // secret_env names of `apps`: other variables, secrets of other programs
  // among them, are not copied. Never printed.
  std::map<std::string, std::string, std::less<>> environment;
};

// Limits of the settings above. Durations and sizes are bounded so that no
// deadline (now + timeout) or size arithmetic downstream can overflow.
inline constexpr std::int64_t kMaxBodyBytesLimit = std::int64_t{1} << 30;  // 1 GiB
inline constexpr std::int64_t kMaxConnectionsLimit = 100'000;
inline constexpr std::chrono::seconds kMaxRequestTimeout{3600};

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

}  // namespace aicache
