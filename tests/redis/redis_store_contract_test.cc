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

std::shared_ptr<Store> MakeContractRedisStore(std::shared_ptr<const Clock> /*clock*/) {
  auto endpoint = parse_redis_url(shared_redis_server().url());
  if (!endpoint) throw std::runtime_error(endpoint.error().to_string());
  RedisStoreOptions options;
  options.endpoint = *endpoint;
  options.pool_size = 16;
  options.default_ttl = std::chrono::seconds(300);
  auto store = make_redis_store(options);
  if (!store) throw std::runtime_error(store.error().to_string());
  return std::move(*store);
}

StoreUnderTest RedisStoreUnderTest() {
  return {.name = "Redis",
          .make = MakeContractRedisStore,
          .clock_driven = false,
          // Unique per process: several test processes may share a server.
          .key_prefix = fmt::format("contract:{}:", ::getpid())};
}

INSTANTIATE_TEST_SUITE_P(Redis, StoreContract, ::testing::Values(RedisStoreUnderTest()),
                         StoreUnderTestName);

}  // namespace
}  // namespace aicache::testing
