#include "local_backend.h"

#include <fmt/format.h>

#include <utility>

#include "aicache/aicache.h"
#include "core/try.h"

namespace aicache::cli {
namespace {

// `result`, its error (if any) with "{context}: " in front of the message.
// (GCC 12's std::expected has no transform_error.)
template <class T>
Result<T> with_context(std::string_view context, Result<T> result) {
  if (!result) return std::unexpected(in_context(context, std::move(result).error()));
  return result;
}

Result<std::shared_ptr<AssistantCache>> open_cache(const Config& config,
                                                   AssistantCacheOptions::StoreErrors store_errors) {
  AICACHE_ASSIGN_OR_RETURN(std::shared_ptr<Store> store,
                           with_context("cannot open the store", open_store(config)));
  auto options = cache_options(config);
  options.store_errors = store_errors;
  return with_context("cannot create the cache", AssistantCache::create(std::move(store), options));
}

Result<std::shared_ptr<TokenManager>> open_tokens_over(const Config& config,
                                                       std::shared_ptr<AssistantCache> cache) {
  return with_context("cannot set up the token apps", open_token_manager(config, std::move(cache)));
}

}  // namespace

Result<std::unique_ptr<LocalBackend>> LocalBackend::create(const Config& config) {
  AICACHE_ASSIGN_OR_RETURN(
      KeyMaker keys,
      with_context("key prefix", KeyMaker::create(config.key_prefix, config.key_version)));
  return std::unique_ptr<LocalBackend>(new LocalBackend(config, std::move(keys)));
}

LocalBackend::LocalBackend(const Config& config, KeyMaker keys)
    : config_(config), keys_(std::move(keys)) {}

Status LocalBackend::check_key(std::string_view key) {
  AICACHE_TRY(keys_.make(key));
  return {};
}

Status LocalBackend::check_token_app(Channel channel, std::string_view app_key) {
  std::string configured;
  for (const AppCredentials& app : config_.apps) {
    const std::string key = TokenManager::app_key(app);
    if (app.channel == channel && key == app_key) return {};
    configured +=
        fmt::format("{}{}/{}", configured.empty() ? "" : ", ", to_string(app.channel), key);
  }
  const auto& file = config_.config_file;
  std::string apps;
  if (!file) {
    apps = "no config file was found; apps are [[apps]] in aicache.toml";
  } else if (configured.empty()) {
    apps = fmt::format("{} has no [[apps]]", file->string());
  } else {
    apps = fmt::format("[[apps]] of {}: {}", file->string(), configured);
  }
  const std::string_view hint =
      channel == Channel::kWeCom && app_key.find('.') == std::string_view::npos
          ? "; a wecom APP_KEY is CORP_ID.AGENT_ID"
          : "";
  return make_error(ErrorCode::kInvalidArgument,
                    fmt::format("no {} app '{}' is configured ({}{})", to_string(channel),
                                aicache::printable(app_key, kShownBytes), apps, hint));
}

Status LocalBackend::open() {
  if (cache_) return {};
  // An operator must see an outage: exit 3, not a miss (exit 1).
  AICACHE_ASSIGN_OR_RETURN(cache_,
                           open_cache(config_, AssistantCacheOptions::StoreErrors::kReturnError));
  return {};
}

Status LocalBackend::open_tokens() {
  AICACHE_TRY(open());
  if (tokens_) return {};
  AICACHE_ASSIGN_OR_RETURN(tokens_, open_tokens_over(config_, cache_));
  return {};
}

Result<std::optional<JsonDocument>> LocalBackend::get(std::string_view key) {
  return cache_->get(key).result();
}

Result<std::optional<std::string>> LocalBackend::get_raw(std::string_view key) {
  return cache_->get_text(key).result();
}

Status LocalBackend::set(std::string_view key, const JsonDocument& value, Ttl ttl) {
  return cache_->set(key, value, ttl);
}

Result<bool> LocalBackend::remove(std::string_view key) { return cache_->remove(key); }

Result<KeyTtl> LocalBackend::ttl(std::string_view key) { return cache_->ttl(key); }

Result<CacheStats> LocalBackend::stats() { return cache_->stats(); }

Result<Token> LocalBackend::token(std::string_view channel, std::string_view app_key,
                                  bool force_refresh) {
  return force_refresh ? tokens_->refresh(channel, app_key, /*platform_force=*/true)
                       : tokens_->get(channel, app_key);
}

Result<bool> LocalBackend::invalidate_token(std::string_view channel, std::string_view app_key,
                                            std::string_view access_token) {
  return tokens_->invalidate(channel, app_key, access_token);
}

Result<LocalService> open_service(const Config& config) {
  AICACHE_ASSIGN_OR_RETURN(std::shared_ptr<AssistantCache> cache,
                           open_cache(config, AssistantCacheOptions::StoreErrors::kTreatAsMiss));
  AICACHE_ASSIGN_OR_RETURN(std::shared_ptr<TokenManager> tokens, open_tokens_over(config, cache));
  return LocalService{std::move(cache), std::move(tokens)};
}

}  // namespace aicache::cli
