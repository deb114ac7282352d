// The Store contract (store_contract_test.cc) run against RedisStore on a
// Sentinel-managed master: the store finds the master through three real
// sentinels (started once per test process) and keeps every contract with
// the near cache on and off.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "aicache/redis_store.h"
#include "store_contract.h"
#include "support/redis_sentinel_group.h"

namespace aicache::testing {
namespace {

// No failover here: the master and the sentinels are enough.
RedisSentinelGroup& shared_sentinel_group() {
  static RedisSentinelGroup group(RedisSentinelGroupOptions{.failover_ready = false});
  return group;
}

StoreUnderTest SentinelStoreUnderTest(bool near_cache) {
  return {.name = near_cache ? "Sentinel" : "SentinelNoNearCache",
          .make =
              [near_cache](std::shared_ptr<const Clock> /*clock*/) {
                RedisStoreOptions options;
                options.sentinel = shared_sentinel_group().sentinel_options();
                options.pool_size = 16;
                options.default_ttl = std::chrono::seconds(300);
                options.near_cache_max_bytes = near_cache ? std::size_t{64} << 20 : 0;
                auto store = make_redis_store(options);
                if (!store) throw std::runtime_error(store.error().to_string());
                return std::move(*store);
              },
          .clock_driven = false,
          .key_prefix = fmt::format("contract:{}:", ::getpid())};
}

INSTANTIATE_TEST_SUITE_P(Sentinel, StoreContract,
                         ::testing::Values(SentinelStoreUnderTest(true),
                                           SentinelStoreUnderTest(false)),
                         StoreUnderTestName);

}  // namespace
}  // namespace aicache::testing
