// open_store: the Store a Config describes.

#include <memory>
#include <utility>

#include "aicache/clock.h"
#include "aicache/config.h"
#include "aicache/memory_store.h"
#include "aicache/redis_store.h"

namespace aicache {

Result<std::unique_ptr<Store>> open_store(const Config& config,
                                          std::shared_ptr<const Clock> clock) {
  if (!config.redis_url) {
    MemoryStoreOptions options;
    options.max_bytes = config.memory_max_bytes;
    options.max_entries = config.memory_max_entries;
    options.default_ttl = config.default_timeout;
    options.clock = clock ? std::move(clock) : Clock::real();
    return make_memory_store(std::move(options));
  }
  auto endpoint = parse_redis_url(*config.redis_url);
  if (!endpoint) return std::unexpected(endpoint.error());
  RedisStoreOptions options;
  options.endpoint = std::move(*endpoint);
  options.default_ttl = config.default_timeout;
  return make_redis_store(std::move(options));
}

}  // namespace aicache
