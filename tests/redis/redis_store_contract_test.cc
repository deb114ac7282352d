// The Store contract (store_contract_test.cc) run against RedisStore and a
// real redis-server, started once per test process.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "aicache/redis_store.h"
#include "store_contract.h"
#include "support/redis_server.h"

namespace aicache::testing {
namespace {

std::shared_ptr<Store> MakeContractRedisStore(std::size_t near_cache_max_bytes) {
  auto endpoint = parse_redis_url(shared_redis_server().url());
  if (!endpoint) throw std::runtime_error(endpoint.error().to_string());
  RedisStoreOptions options;
  options.endpoint = *endpoint;
  options.pool_size = 16;
  options.default_ttl = std::chrono::seconds(300);
  options.near_cache_max_bytes = near_cache_max_bytes;
  auto store = make_redis_store(options);
  if (!store) throw std::runtime_error(store.error().to_string());
  return std::move(*store);
}

// The near cache on (the default, 64 MiB) and off: every operation keeps the
// contract either way. Redis keeps its own time, so neither is clock-driven
// (the near cache's deadlines are tested with a ManualClock in
// near_cache_test.cc).
StoreUnderTest RedisStoreUnderTest(bool near_cache) {
  return {.name = near_cache ? "Redis" : "RedisNoNearCache",
          .make = [near_cache](std::shared_ptr<const Clock> /*clock*/) {
            return MakeContractRedisStore(near_cache ? std::size_t{64} << 20 : 0);
          },
          .clock_driven = false,
          // Unique per process: several test processes may share a server.
          .key_prefix = fmt::format("contract:{}:", ::getpid())};
}

INSTANTIATE_TEST_SUITE_P(Redis, StoreContract,
                         ::testing::Values(RedisStoreUnderTest(true), RedisStoreUnderTest(false)),
                         StoreUnderTestName);

}  // namespace
}  // namespace aicache::testing
