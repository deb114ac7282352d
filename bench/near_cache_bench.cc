// The Redis store's near cache (docs/near_cache.md), each figure beside the
// same operation with the near cache off, in one run:
//
//   near_cache_bench --benchmark_filter=Conversation   8.5 KB get: near (ns) vs Redis (us)
//   near_cache_bench --benchmark_filter=Invalidation   another client's SET until the
//                                                      near entry is gone (us)
//   near_cache_bench --benchmark_filter=Mix            /10: 90 % get, 10 % set (also /50,
//                                                      /90 % set), 32 threads, near on vs
//                                                      off (items/s)
//
// Latency benchmarks report p50 / p99 counters; the two steady_clock reads
// around each call are included. The redis-server is started on a free
// loopback port (tests/support/redis_server.cc).
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/redis_store.h"
#include "conversation_fixture.h"
#include "redis/redis_store_internal.h"
#include "latencies.h"
#include "support/redis_server.h"

namespace aicache::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

testing::RedisServer& Server() {
  static testing::RedisServer server;
  return server;
}

std::shared_ptr<Store> MakeStore(std::size_t near_bytes, redis::NearTestHooks hooks = {}) {
  auto endpoint = parse_redis_url(Server().url());
  if (!endpoint) throw std::runtime_error(endpoint.error().to_string());
  RedisStoreOptions options;
  options.endpoint = *endpoint;
  options.near_cache_max_bytes = near_bytes;
  auto s = redis::make_redis_store_with_hooks(options, std::move(hooks));
  if (!s) throw std::runtime_error(s.error().to_string());
  return std::move(*s);
}

Store& NearStore() {
  static const std::shared_ptr<Store> store = MakeStore(std::size_t{64} << 20);
  return *store;
}
Store& PlainStore() {
  static const std::shared_ptr<Store> store = MakeStore(0);
  return *store;
}

const std::string& Conversation() {
  static const std::string text = make_conversation().dump();
  return text;
}

template <class Unit>
void ConversationGet(benchmark::State& state, Store& store, const char* suffix) {
  const std::string key = "bench:near:conversation";
  if (!store.set(key, Conversation(), std::chrono::hours(1))) {
    state.SkipWithError("set failed");
    return;
  }
  Latencies<Unit> lat(state, suffix);
  for (auto _ : state) {
    lat.time([&] {
      auto v = store.get(key);
      if (!v || !*v || (*v)->size() != Conversation().size()) state.SkipWithError("get missed");
      benchmark::DoNotOptimize(v);
    });
  }
  state.counters["bytes"] = static_cast<double>(Conversation().size());
}

void BM_ConversationGetNear(benchmark::State& state) {
  ConversationGet<std::nano>(state, NearStore(), "ns");
}
BENCHMARK(BM_ConversationGetNear);

void BM_ConversationGetRedis(benchmark::State& state) {
  ConversationGet<std::micro>(state, PlainStore(), "us");
}
BENCHMARK(BM_ConversationGetRedis);

// Another client (a raw hiredis connection, as Django's) SETs a key this
// process has read; timed from just before the SET is sent until the
// tracker has dropped the near entry.
void BM_InvalidationLatency(benchmark::State& state) {
  const std::string key = "bench:near:invalidated";
  std::atomic<std::int64_t> applied_at{0};
  auto store = MakeStore(std::size_t{64} << 20,
                         {.before_insert = {},
                          .after_invalidate =
                              [&](std::string_view k) {
                                if (k == key) {
                                  applied_at.store(SteadyClock::now().time_since_epoch().count());
                                  applied_at.notify_one();
                                }
                              },
                          .ping_interval = {}});
  redisContext* other = redisConnect("127.0.0.1", Server().port());
  if (other == nullptr || other->err != 0) {
    state.SkipWithError("raw connect failed");
    return;
  }
  Latencies<std::micro> lat(state, "us");
  std::uint64_t version = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string value = std::to_string(++version);
    // Read twice: the second is served near, so the key is tracked and cached.
    if (!store->get(key) || !store->get(key)) state.SkipWithError("get failed");
    applied_at.store(0);
    state.ResumeTiming();
    const auto start = SteadyClock::now();
    auto* reply = static_cast<redisReply*>(
        redisCommand(other, "SET %b %b", key.data(), key.size(), value.data(), value.size()));
    freeReplyObject(reply);
    // Sleeps (futex) rather than spins: on 2 cores a spinning waiter would
    // take a core from redis-server or the subscriber it waits for.
    applied_at.wait(0);
    lat.add(SteadyClock::duration(applied_at.load()) - start.time_since_epoch());
  }
  redisFree(other);
}
BENCHMARK(BM_InvalidationLatency)->Iterations(20000)->UseRealTime();

// Reads and writes over 100 keys (all present), 32 threads on one store;
// state.range(0) is the percentage of writes (10: the 90/10 mix). Key and
// operation from a per-thread xorshift, independent bits.
void Mix(benchmark::State& state, Store& store) {
  const std::uint64_t write_percent = static_cast<std::uint64_t>(state.range(0));
  const std::string value(150, 'v');
  auto key_of = [](std::uint64_t n) { return fmt::format("bench:near:mix:{}", n); };
  if (state.thread_index() == 0) {
    for (std::uint64_t n = 0; n < 100; ++n) (void)store.set(key_of(n), value);
  }
  std::uint64_t x = 0x9E3779B97F4A7C15ull * (static_cast<std::uint64_t>(state.thread_index()) + 1);
  for (auto _ : state) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const std::string key = key_of(x % 100);
    if ((x >> 32) % 100 < write_percent) {
      if (auto ok = store.set(key, value); !ok) {
        state.SkipWithError(ok.error().to_string().c_str());
        break;
      }
    } else {
      auto v = store.get(key);
      if (!v) {
        state.SkipWithError(v.error().to_string().c_str());
        break;
      }
      benchmark::DoNotOptimize(v);
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    auto stats = store.stats();
    if (stats && stats->details.count("near_hits") != 0) {
      auto figure = [&](const char* name) { return std::stod(stats->details.at(name)); };
      state.counters["near_hits"] = figure("near_hits");
      state.counters["near_misses"] = figure("near_misses");
      state.counters["refused"] = figure("near_refused_inserts");
      state.counters["invalidations"] = figure("near_invalidations");
      state.counters["tracking_errors"] = figure("near_tracking_errors");
      state.counters["live"] = figure("near_tracking_live");
      state.counters["inserts"] = figure("near_inserts");
    }
  }
}

void BM_MixNear(benchmark::State& state) { Mix(state, NearStore()); }
BENCHMARK(BM_MixNear)->Arg(10)->Arg(50)->Arg(90)->Threads(32)->UseRealTime()->MinTime(2.0);

void BM_MixRedis(benchmark::State& state) { Mix(state, PlainStore()); }
BENCHMARK(BM_MixRedis)->Arg(10)->Arg(50)->Arg(90)->Threads(32)->UseRealTime()->MinTime(2.0);

}  // namespace
}  // namespace aicache::bench

int main(int argc, char** argv) {
  // The redis-server dies with the thread that started it (PR_SET_PDEATHSIG):
  // start it, and the stores, on the main thread, not in a benchmark's.
  aicache::bench::NearStore();
  aicache::bench::PlainStore();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
