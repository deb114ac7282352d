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
#include "support/tls_certs.h"

namespace aicache::testing {
namespace {

const TestCertificates& shared_certificates() {
  static const TestCertificates certs;
  return certs;
}

// A server on TLS that requires client certificates, shared by the process.
RedisServer& shared_tls_server() {
  static RedisServer server(RedisServerOptions{
      .tls = RedisServerTls{.cert_file = shared_certificates().server().cert,
                            .key_file = shared_certificates().server().key,
                            .ca_file = shared_certificates().ca(),
                            .auth_clients = true}});
  return server;
}

std::shared_ptr<Store> MakeContractRedisStore(std::size_t near_cache_max_bytes, bool tls = false) {
  auto endpoint = parse_redis_url(tls ? shared_tls_server().tls_url() : shared_redis_server().url());
  if (!endpoint) throw std::runtime_error(endpoint.error().to_string());
  RedisStoreOptions options;
  options.endpoint = *endpoint;
  if (tls) {
    options.tls.ca_file = shared_certificates().ca().string();
    options.tls.cert_file = shared_certificates().client().cert.string();
    options.tls.key_file = shared_certificates().client().key.string();
  }
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

// TLS (rediss://, a client certificate, the near cache on): the same
// contract, its invalidations arriving over TLS too.
StoreUnderTest RedisTlsStoreUnderTest() {
  return {.name = "RedisTls",
          .make = [](std::shared_ptr<const Clock> /*clock*/) {
            return MakeContractRedisStore(std::size_t{64} << 20, true);
          },
          .clock_driven = false,
          .key_prefix = fmt::format("contract-tls:{}:", ::getpid())};
}

INSTANTIATE_TEST_SUITE_P(Redis, StoreContract,
                         ::testing::Values(RedisStoreUnderTest(true), RedisStoreUnderTest(false),
                                           RedisTlsStoreUnderTest()),
                         StoreUnderTestName);

}  // namespace
}  // namespace aicache::testing
