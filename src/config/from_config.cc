// The objects a Config describes (from_config.h): open_store, the Store;
// cache_options and token_options, the options; open_token_manager, the
// TokenManager for its apps.

#include "aicache/from_config.h"

#include <fmt/format.h>

#include <memory>
#include <utility>

#include "aicache/clock.h"
#include "aicache/config.h"
#include "aicache/memory_store.h"
#include "aicache/redis_store.h"
#include "aicache/token_manager.h"
#include "core/try.h"

namespace aicache {

Result<std::shared_ptr<Store>> open_store(const Config& config,
                                          std::shared_ptr<const Clock> clock) {
  if (!config.redis_url) {
    MemoryStoreOptions options;
    options.max_bytes = config.memory_max_bytes;
    options.max_entries = config.memory_max_entries;
    options.default_ttl = config.default_timeout;
    options.clock = clock ? std::move(clock) : Clock::real();
    return make_memory_store(std::move(options));
  }
  RedisStoreOptions options;
  AICACHE_ASSIGN_OR_RETURN(options.endpoint, parse_redis_url(*config.redis_url));
  options.default_ttl = config.default_timeout;
  options.near_cache_max_bytes = config.near_cache_max_bytes;
  options.pool_size = config.redis_pool_size;
  options.connect_timeout = config.redis_connect_timeout;
  options.socket_timeout = config.redis_command_timeout;
  options.tls.ca_file = config.redis_tls_ca_file;
  options.tls.cert_file = config.redis_tls_cert_file;
  options.tls.key_file = config.redis_tls_key_file;
  options.tls.verify = config.redis_tls_verify;
  options.cluster_nodes = config.redis_cluster_nodes;
  options.read_from_replicas = config.redis_read_from_replicas;
  options.clock = std::move(clock);
  // Redis Sentinel (load_config checked the addresses and the name).
  for (const std::string& address : config.redis_sentinels) {
    AICACHE_ASSIGN_OR_RETURN(RedisHostPort sentinel,
                             parse_redis_host_port(address, kRedisSentinelPort));
    options.sentinel.sentinels.push_back(std::move(sentinel));
  }
  options.sentinel.master_name = config.redis_sentinel_master;
  options.sentinel.password = config.redis_sentinel_password;
  options.sentinel.username = config.redis_sentinel_username;
  options.sentinel.tls = config.redis_sentinel_tls;
  return make_redis_store(std::move(options));
}

AssistantCacheOptions cache_options(const Config& config) {
  AssistantCacheOptions options;
  options.key_prefix = config.key_prefix;
  options.key_version = config.key_version;
  options.conversation_ttl = config.conversation_ttl;
  options.ai_config_ttl = config.ai_config_ttl;
  // The store's default too (open_store): the same writes, and a kv TTL the
  // cache knows, for its TTL signals.
  options.kv_ttl = config.default_timeout;
  return options;
}

TokenManagerOptions token_options(const Config& config) {
  TokenManagerOptions options;
  options.refresh_margin = config.token_refresh_margin;
  options.refresh_lead = config.token_refresh_lead;
  options.min_refresh_interval = config.token_min_refresh_interval;
  options.forced_refreshes_per_day = config.token_forced_refreshes_per_day;
  return options;
}

Result<std::shared_ptr<TokenManager>> open_token_manager(const Config& config,
                                                         std::shared_ptr<AssistantCache> cache) {
  return open_token_manager(config, std::move(cache), token_options(config));
}

Result<std::shared_ptr<TokenManager>> open_token_manager(const Config& config,
                                                         std::shared_ptr<AssistantCache> cache,
                                                         TokenManagerOptions options) {
  AICACHE_ASSIGN_OR_RETURN(auto manager, TokenManager::create(std::move(cache), std::move(options)));
  for (const AppCredentials& app : config.apps) {
    if (auto added = manager->add_app(app); !added) {
      // The manager's messages name the app, never its secret.
      return make_error(ErrorCode::kConfig,
                        fmt::format("token app {}/{}: {}", to_string(app.channel),
                                    TokenManager::app_key(app), added.error().message));
    }
  }
  return manager;
}

}  // namespace aicache
