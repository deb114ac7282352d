// What tests reach inside RedisStore: hooks into the near cache's read path.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "aicache/redis_store.h"

namespace aicache::redis {

struct NearTestHooks {
  // Called on the reading thread after Redis answered a read of `key` and
  // before the value is offered to the near cache: a test makes the
  // "invalidation arrives between the reply and the insert" race happen here.
  std::function<void(std::string_view key)> before_insert;
  // Called on the tracker's thread once an invalidation of `key` from Redis
  // has been applied.
  std::function<void(std::string_view key)> after_invalidate;
  // The tracker's PING interval (0: the default).
  std::chrono::milliseconds ping_interval{0};
  // BCAST mode instead of default mode (TrackerOptions::bcast_prefix): only
  // keys under bcast_prefix are cached, and the pool's connections send no
  // CLIENT TRACKING. Kept to tests and benchmarks: default mode is the
  // product's choice (docs/near_cache.md, "REDIRECT or BCAST").
  bool bcast = false;
  std::string bcast_prefix;
};

// make_redis_store() with hooks.
Result<std::shared_ptr<Store>> make_redis_store_with_hooks(RedisStoreOptions options,
                                                           NearTestHooks hooks);

}  // namespace aicache::redis
