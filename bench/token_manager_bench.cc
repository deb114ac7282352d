// The token hit path: TokenManager::get() of a stored, valid token.
//
//   token_manager_bench --benchmark_filter=Memory   on the memory store (ns)
//   token_manager_bench --benchmark_filter=Redis    on the Redis store vs raw
//                                                   hiredis round trips (us), and
//                                                   with its near cache (ns)
//
// Run with --benchmark_repetitions=N --benchmark_report_aggregates_only=true
// and read the medians. The *Latency benchmarks time every call and report
// p50 / p99 counters (p50_ns, p99_ns on the memory store; p50_us, p99_us on
// Redis); on the memory store the two steady_clock reads around each call are
// included (BM_ClockOverhead measures them). The Redis store's hit reads the
// token and its TTL (Store::get_with_ttl); BM_RawGet is one raw GET on one
// hiredis connection, BM_RawGetPttl a pipelined GET + PTTL. The redis-server
// is started on a free loopback port (tests/support/redis_server.cc;
// AICACHE_REDIS_SERVER picks another binary). The token is never fetched: it
// is stored before the loop, and a fetch would fail (the platform URL points
// nowhere) and stop the benchmark with an error.
#include <benchmark/benchmark.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/memory_store.h"
#include "aicache/redis_store.h"
#include "redis_bench_server.h"
#include "aicache/token_manager.h"
#include "latencies.h"
#include "support/redis_server.h"

namespace aicache::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kChannel = "wechat";
constexpr std::string_view kApp = "wx_bench";
// WeChat tokens are about 136 printable characters.
const std::string kToken = std::string(
    "85_bVd3hS2k8QwFzZp1YxL0cJ7uNnTqRm4aEo9iGvKs6Wb-HfUtCyXl5MjDgP2rAe8OzIqNw3Ks7TuVbYcFx"
    "1LmHd9GjR0pQaZeS4iWnBtUoXvCy6Mk2Jf8Dl5Gh3Pr7Ts1Qw0E");

TokenManager& MakeManager(std::shared_ptr<Store> store, std::shared_ptr<TokenManager>& holder) {
  auto cache = AssistantCache::create(std::move(store), {.key_prefix = "bench"});
  if (!cache) throw std::runtime_error(cache.error().to_string());
  std::shared_ptr<AssistantCache> shared = std::move(*cache);
  if (auto ok = shared->set_access_token(kChannel, kApp, kToken, std::chrono::hours(2)); !ok) {
    throw std::runtime_error(ok.error().to_string());
  }
  auto manager = TokenManager::create(shared);
  if (!manager) throw std::runtime_error(manager.error().to_string());
  if (auto ok = (*manager)->add_app(AppCredentials{.channel = Channel::kWeChat,
                                                   .app_id = std::string(kApp),
                                                   .secret = "not-used",
                                                   .api = "plain",
                                                   .base_url = "http://127.0.0.1:9"});
      !ok) {
    throw std::runtime_error(ok.error().to_string());
  }
  holder = std::move(*manager);
  return *holder;
}

void Hit(benchmark::State& state, TokenManager& manager) {
  auto token = manager.get(kChannel, kApp);
  if (!token || token->access_token.size() != kToken.size()) {
    state.SkipWithError(token ? "wrong token" : token.error().to_string().c_str());
  }
  benchmark::DoNotOptimize(token);
}

// --- memory store ----------------------------------------------------------------

TokenManager& MemoryManager() {
  static std::shared_ptr<TokenManager> holder;
  static TokenManager& manager = MakeManager(make_memory_store(), holder);
  return manager;
}

void BM_TokenHitMemory(benchmark::State& state) {
  TokenManager& manager = MemoryManager();
  for (auto _ : state) Hit(state, manager);
}
BENCHMARK(BM_TokenHitMemory);

void BM_TokenHitMemoryLatency(benchmark::State& state) {
  TokenManager& manager = MemoryManager();
  Latencies<std::nano> lat(state, "ns");
  for (auto _ : state) lat.time([&] { Hit(state, manager); });
}
BENCHMARK(BM_TokenHitMemoryLatency);

// What the two clock reads of a *Latency iteration cost by themselves.
void BM_ClockOverhead(benchmark::State& state) {
  Latencies<std::nano> lat(state, "ns");
  for (auto _ : state) lat.time([] {});
}
BENCHMARK(BM_ClockOverhead);

// --- Redis store -----------------------------------------------------------------


// Without the near cache: every hit is a round trip.
std::shared_ptr<Store> SharedRedisStore() {
  static const std::shared_ptr<Store> store = MakeRedisStore(0);
  return store;
}

// With the near cache (the default, 64 MiB).
std::shared_ptr<Store> SharedNearRedisStore() {
  static const std::shared_ptr<Store> store = MakeRedisStore(std::size_t{64} << 20);
  return store;
}

TokenManager& RedisManager() {
  static std::shared_ptr<TokenManager> holder;
  static TokenManager& manager = MakeManager(SharedRedisStore(), holder);
  return manager;
}

// The key the manager reads, in its stored form.
const std::string& TokenKey() {
  static const std::string key = [] {
    auto keys = KeyMaker::create("bench", 1);
    if (!keys) throw std::runtime_error(keys.error().to_string());
    auto k = keys->access_token(kChannel, kApp);
    if (!k) throw std::runtime_error(k.error().to_string());
    return *k;
  }();
  return key;
}

// One raw hiredis connection, as the baseline.
class RawConnection {
 public:
  RawConnection() : c_(redisConnect("127.0.0.1", Server().port())) {
    if (c_ == nullptr || c_->err != 0) throw std::runtime_error("raw connect failed");
  }
  ~RawConnection() { redisFree(c_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  void append(std::string_view command, std::string_view key) {
    const char* argv[] = {command.data(), key.data()};
    const std::size_t lens[] = {command.size(), key.size()};
    if (redisAppendCommandArgv(c_, 2, argv, lens) != REDIS_OK) {
      throw std::runtime_error("raw append failed");
    }
  }
  // The reply's type.
  int reply() {
    void* raw = nullptr;
    if (redisGetReply(c_, &raw) != REDIS_OK || raw == nullptr) {
      throw std::runtime_error("raw reply failed");
    }
    auto* reply = static_cast<redisReply*>(raw);
    const int type = reply->type;
    freeReplyObject(reply);
    return type;
  }

 private:
  redisContext* c_;
};

void BM_RawGet(benchmark::State& state) {
  RedisManager();  // stores the token
  RawConnection raw;
  Latencies<std::micro> lat(state, "us");
  for (auto _ : state) {
    lat.time([&] {
      raw.append("GET", TokenKey());
      if (raw.reply() != REDIS_REPLY_STRING) state.SkipWithError("raw GET missed");
    });
  }
}
BENCHMARK(BM_RawGet);

void BM_RawGetPttl(benchmark::State& state) {
  RedisManager();
  RawConnection raw;
  Latencies<std::micro> lat(state, "us");
  for (auto _ : state) {
    lat.time([&] {
      raw.append("GET", TokenKey());
      raw.append("PTTL", TokenKey());
      if (raw.reply() != REDIS_REPLY_STRING || raw.reply() != REDIS_REPLY_INTEGER) {
        state.SkipWithError("raw GET + PTTL failed");
      }
    });
  }
}
BENCHMARK(BM_RawGetPttl);

void BM_StoreGetWithTtl(benchmark::State& state) {
  RedisManager();
  Store& store = *SharedRedisStore();
  Latencies<std::micro> lat(state, "us");
  for (auto _ : state) {
    lat.time([&] {
      auto v = store.get_with_ttl(TokenKey());
      if (!v || !*v) state.SkipWithError("get_with_ttl missed");
      benchmark::DoNotOptimize(v);
    });
  }
}
BENCHMARK(BM_StoreGetWithTtl);

void BM_TokenHitRedis(benchmark::State& state) {
  TokenManager& manager = RedisManager();
  Latencies<std::micro> lat(state, "us");
  for (auto _ : state) lat.time([&] { Hit(state, manager); });
}
BENCHMARK(BM_TokenHitRedis);

TokenManager& NearRedisManager() {
  static std::shared_ptr<TokenManager> holder;
  static TokenManager& manager = MakeManager(SharedNearRedisStore(), holder);
  return manager;
}

// The same hit with the Redis store's near cache: after the first read, the
// token comes from this process while Redis tracks the key for it.
void BM_TokenHitRedisNear(benchmark::State& state) {
  TokenManager& manager = NearRedisManager();
  Latencies<std::nano> lat(state, "ns");
  for (auto _ : state) lat.time([&] { Hit(state, manager); });
}
BENCHMARK(BM_TokenHitRedisNear);

}  // namespace
}  // namespace aicache::bench

BENCHMARK_MAIN();
