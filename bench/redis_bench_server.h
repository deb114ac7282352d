// The redis-server a benchmark binary runs against (started on first use,
// killed when the process exits), and a RedisStore on it.
#pragma once

#include <cstddef>
#include <memory>
#include <stdexcept>

#include "aicache/redis_store.h"
#include "support/redis_server.h"

namespace aicache::bench {

inline testing::RedisServer& Server() {
  static testing::RedisServer server;
  return server;
}

// A RedisStore on Server() with a near cache of that many bytes (0: none).
// Throws: a benchmark has no failure path worth taking.
inline std::shared_ptr<Store> MakeRedisStore(std::size_t near_cache_max_bytes) {
  auto endpoint = parse_redis_url(Server().url());
  if (!endpoint) throw std::runtime_error(endpoint.error().to_string());
  RedisStoreOptions options;
  options.endpoint = *endpoint;
  options.near_cache_max_bytes = near_cache_max_bytes;
  auto s = make_redis_store(options);
  if (!s) throw std::runtime_error(s.error().to_string());
  return std::move(*s);
}

}  // namespace aicache::bench
