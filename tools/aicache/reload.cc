#include "reload.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <utility>

#include "aicache/log.h"
#include "core/try.h"

namespace aicache::cli {

ServerOptions server_options(const Config& config, const Request& request) {
  // Every setting was checked and bounded when the configuration was loaded.
  ServerOptions options;
  if (request.has_listen) {
    options.listen = request.listen;
  } else if (config.listen) {
    options.listen = *config.listen;
  }
  if (config.api_token) options.api_token = *config.api_token;
  if (config.access_log) options.access_log = *config.access_log;
  if (request.no_access_log) options.access_log = false;
  if (config.max_body_bytes) options.max_body_bytes = *config.max_body_bytes;
  if (config.max_connections) options.max_connections = *config.max_connections;
  if (config.request_timeout) options.request_timeout = *config.request_timeout;
  options.allowed_hosts = config.allowed_hosts;
  options.warmup_timeout = config.token_warmup_timeout;
  return options;
}

std::vector<std::string> settings_needing_restart(const Config& running, const Config& next) {
  std::vector<std::string> names;
  auto differs = [&](bool changed, const char* name) {
    if (changed) names.emplace_back(name);
  };
  // The store is opened once, with its connections and near cache; a new
  // one would also start empty (a memory store) or elsewhere (Redis).
  differs(running.redis_url != next.redis_url,
          "the store (REDIS_URL, REDIS_HOST & co., [store] url)");
  differs(running.key_prefix != next.key_prefix, "[store] key_prefix (AICACHE_KEY_PREFIX)");
  differs(running.key_version != next.key_version, "[store] key_version (AICACHE_KEY_VERSION)");
  differs(running.memory_max_bytes != next.memory_max_bytes,
          "[store] memory_max_bytes (AICACHE_MEMORY_MAX_BYTES)");
  differs(running.memory_max_entries != next.memory_max_entries,
          "[store] memory_max_entries (AICACHE_MEMORY_MAX_ENTRIES)");
  differs(running.near_cache_max_bytes != next.near_cache_max_bytes,
          "[store] near_cache_max_bytes (AICACHE_NEAR_CACHE_MAX_BYTES)");
  differs(running.redis_sentinels != next.redis_sentinels ||
              running.redis_sentinel_master != next.redis_sentinel_master ||
              running.redis_sentinel_password != next.redis_sentinel_password ||
              running.redis_sentinel_username != next.redis_sentinel_username ||
              running.redis_sentinel_tls != next.redis_sentinel_tls,
          "the Sentinel settings (REDIS_SENTINELS & co., [store] sentinels & co.)");
  differs(running.redis_cluster_nodes != next.redis_cluster_nodes,
          "[store] cluster_nodes (REDIS_CLUSTER_NODES)");
  differs(running.redis_read_from_replicas != next.redis_read_from_replicas,
          "[store] read_from_replicas (REDIS_READ_FROM_REPLICAS)");
  differs(running.redis_pool_size != next.redis_pool_size, "[store] pool_size (REDIS_POOL_SIZE)");
  differs(running.redis_connect_timeout != next.redis_connect_timeout,
          "[store] connect_timeout_ms (REDIS_CONNECT_TIMEOUT_MS)");
  differs(running.redis_command_timeout != next.redis_command_timeout,
          "[store] command_timeout_ms (REDIS_COMMAND_TIMEOUT_MS)");
  // Certificates are read when a connection is made: a changed file name
  // would apply to some connections and not others.
  differs(running.redis_tls_ca_file != next.redis_tls_ca_file ||
              running.redis_tls_cert_file != next.redis_tls_cert_file ||
              running.redis_tls_key_file != next.redis_tls_key_file ||
              running.redis_tls_verify != next.redis_tls_verify,
          "the TLS settings (REDIS_TLS_*, [store] tls_*)");
  // The token manager's timing is read without a lock on every request.
  differs(running.token_refresh_margin != next.token_refresh_margin, "[tokens] refresh_margin");
  differs(running.token_refresh_lead != next.token_refresh_lead, "[tokens] refresh_lead");
  differs(running.token_min_refresh_interval != next.token_min_refresh_interval,
          "[tokens] min_refresh_interval");
  differs(running.token_forced_refreshes_per_day != next.token_forced_refreshes_per_day,
          "[tokens] forced_refreshes_per_day");
  return names;
}

Reloader::Reloader(Session& session, const Request& request, Config running,
                   std::shared_ptr<AssistantCache> cache, std::shared_ptr<TokenManager> tokens,
                   std::shared_ptr<Server> server)
    : session_(session),
      request_(request),
      started_(std::move(running)),
      server_options_(server_options(started_, request)),
      cache_(std::move(cache)),
      tokens_(std::move(tokens)),
      server_(std::move(server)) {}

void Reloader::reload() {
  log_message(LogLevel::kInfo, "SIGHUP: reloading the configuration");
  auto next = session_.load_again();
  Status applied = next ? apply(*next) : Status(std::unexpected(next.error()));
  if (!applied) {
    // Configuration errors name the file and line, never a secret value
    // (config.h); the server's and the token manager's name the setting.
    const std::string reason = applied.error().message;
    log_message(LogLevel::kError,
                fmt::format("SIGHUP: the configuration was not reloaded, the running one keeps "
                            "serving: {}",
                            reason));
    server_->count_reload(false, reason);
    return;
  }
  server_->count_reload(true);
}

Status Reloader::apply(const Config& next) {
  // The server first: it is the one that may refuse (the API token turned
  // off). If the apps are then refused, the server goes back to what it had,
  // so a failed reload changes nothing.
  const ServerOptions options = server_options(next, request_);
  AICACHE_ASSIGN_OR_RETURN(std::vector<std::string> kept, server_->reconfigure(options));
  auto apps = tokens_->reconfigure(next.apps);
  if (!apps) {
    (void)server_->reconfigure(server_options_);
    return std::unexpected(apps.error());
  }
  server_options_ = options;
  cache_->set_default_ttls({.conversation = next.conversation_ttl,
                            .ai_config = next.ai_config_ttl,
                            .kv = next.default_timeout});

  // The server names its options; say them as the configuration does.
  for (std::string& name : kept) {
    if (name == "listen") name = "AICACHE_LISTEN (serve --listen)";
    if (name == "max_connections") name = "AICACHE_MAX_CONNECTIONS";
    if (name == "warmup_timeout") name = "[tokens] warmup_timeout";
  }
  for (const std::string& name : settings_needing_restart(started_, next)) kept.push_back(name);
  for (const std::string& name : kept) {
    log_message(
        LogLevel::kWarning,
        fmt::format("SIGHUP: {} changed; that needs a restart, the running value is kept", name));
  }
  for (const std::string& warning : next.warnings) {
    log_message(LogLevel::kWarning, warning);
  }
  auto list = [](const std::vector<std::string>& names) {
    return names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", "));
  };
  log_message(LogLevel::kInfo,
              fmt::format("SIGHUP: configuration reloaded: {} token app(s); added: {}; removed: "
                          "{}; credentials changed: {}; TTLs: conversation {} s, ai_config {} s, "
                          "default {} s",
                          next.apps.size(), list(apps->added), list(apps->removed),
                          list(apps->changed), next.conversation_ttl.count(),
                          next.ai_config_ttl.count(), next.default_timeout.count()));
  return {};
}

}  // namespace aicache::cli
