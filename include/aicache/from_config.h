// The objects a Config (config.h) describes: its store, the cache's and the
// token manager's options, and a TokenManager for its apps.
//
//   auto config = aicache::load_config();                  // Result<Config>
//   auto store = aicache::open_store(*config);             // Redis or memory
//   auto cache = aicache::AssistantCache::create(std::move(*store),
//                                                aicache::cache_options(*config));
//
// Part of aicache::config, which links the Redis store and the token
// manager; config.h alone names neither.
#pragma once

#include <memory>

#include "aicache/assistant_cache.h"
#include "aicache/clock.h"
#include "aicache/config.h"
#include "aicache/status.h"
#include "aicache/store.h"
#include "aicache/token_manager.h"

namespace aicache {

// The store the configuration describes: RedisStore when a Redis URL is set,
// else MemoryStore. `clock` is for the memory store's TTLs.
Result<std::shared_ptr<Store>> open_store(const Config& config,
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
Result<std::shared_ptr<TokenManager>> open_token_manager(const Config& config,
                                                         std::shared_ptr<AssistantCache> cache);
Result<std::shared_ptr<TokenManager>> open_token_manager(const Config& config,
                                                         std::shared_ptr<AssistantCache> cache,
                                                         TokenManagerOptions options);

}  // namespace aicache
