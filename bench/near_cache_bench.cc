// The Redis store's near cache (docs/near_cache.md), each figure beside the
// same operation with the near cache off, in one run:
//
//   near_cache_bench --benchmark_filter=Conversation   8.5 KB get: near (ns) vs Redis (us)
//   near_cache_bench --benchmark_filter=Invalidation   another client's SET until the
//                                                      near entry is gone (us)
//   near_cache_bench --benchmark_filter=Mix            /10: 90 % get, 10 % set (also /50,
//                                                      /90 % set), 32 threads, near on vs
//                                                      off (items/s)
//   near_cache_bench --benchmark_filter=Tracking       Redis's tracking table: memory
//                                                      per key read (default mode)
//
// The /Redirect and /Bcast variants compare the two client-side caching modes
// (docs/near_cache.md, "REDIRECT or BCAST"); each mode has its own
// redis-server, so Redis's figures (used_memory, tracking_total_keys,
// tracking_total_prefixes) and the subscriber's messages/s are its own.
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

// kOff: no near cache; kRedirect: default mode (the product's); kBcast: the
// subscriber registers kPrefix with BCAST (a test hook).
enum Mode : int { kOff = 0, kRedirect = 1, kBcast = 2 };
constexpr const char* kPrefix = "bench:near:";

// One redis-server per mode.
testing::RedisServer& Server(Mode mode = kRedirect) {
  static testing::RedisServer servers[3];
  return servers[mode];
}

std::shared_ptr<Store> MakeStore(Mode mode, redis::NearTestHooks hooks = {},
                                 std::string bcast_prefix = kPrefix) {
  auto endpoint = parse_redis_url(Server(mode).url());
  if (!endpoint) throw std::runtime_error(endpoint.error().to_string());
  RedisStoreOptions options;
  options.endpoint = *endpoint;
  options.near_cache_max_bytes = mode == kOff ? 0 : std::size_t{64} << 20;
  hooks.bcast = mode == kBcast;
  hooks.bcast_prefix = std::move(bcast_prefix);
  auto s = redis::make_redis_store_with_hooks(options, std::move(hooks));
  if (!s) throw std::runtime_error(s.error().to_string());
  return std::move(*s);
}

// The long-lived store of each mode.
Store& StoreFor(Mode mode) {
  static const std::shared_ptr<Store> stores[3] = {MakeStore(kOff), MakeStore(kRedirect),
                                                   MakeStore(kBcast)};
  return *stores[mode];
}
Store& NearStore() { return StoreFor(kRedirect); }
Store& PlainStore() { return StoreFor(kOff); }

// A raw hiredis connection to `mode`'s server, as another client (Django).
redisContext* Connect(Mode mode) {
  redisContext* c = redisConnect("127.0.0.1", Server(mode).port());
  if (c != nullptr && c->err != 0) {
    redisFree(c);
    return nullptr;
  }
  return c;
}

// A numeric field of `mode`'s server's INFO (-1 if absent).
double InfoField(Mode mode, const std::string& field) {
  redisContext* c = Connect(mode);
  if (c == nullptr) return -1;
  auto* reply = static_cast<redisReply*>(redisCommand(c, "INFO"));
  double out = -1;
  if (reply != nullptr && reply->type == REDIS_REPLY_STRING) {
    const std::string_view text(reply->str, reply->len);
    const std::string needle = "\r\n" + field + ":";
    if (auto at = text.find(needle); at != std::string_view::npos) {
      out = std::stod(std::string(text.substr(at + needle.size(), 20)));
    }
  }
  freeReplyObject(reply);
  redisFree(c);
  return out;
}

// A near_* figure of the store's stats (0 if absent).
double NearFigure(Store& store, const std::string& name) {
  auto stats = store.stats();
  if (!stats || !stats->details.contains(name)) return 0;
  return std::stod(stats->details.at(name));
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
// state.range(0): the Mode (kRedirect or kBcast). The key is outside
// kPrefix, so under BCAST only this store's subscriber hears of it (as in
// default mode, where only a reader's does), not the long-lived store's too.
void BM_InvalidationLatency(benchmark::State& state) {
  const Mode mode = static_cast<Mode>(state.range(0));
  const std::string key = "bench:inv:invalidated";
  std::atomic<std::int64_t> applied_at{0};
  auto store = MakeStore(mode,
                         {.before_insert = {},
                          .after_invalidate =
                              [&](std::string_view k) {
                                if (k == key) {
                                  applied_at.store(SteadyClock::now().time_since_epoch().count());
                                  applied_at.notify_one();
                                }
                              },
                          .ping_interval = {}},
                         "bench:inv:");
  redisContext* other = Connect(mode);
  if (other == nullptr) {
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
BENCHMARK(BM_InvalidationLatency)
    ->ArgName("mode")
    ->Arg(kRedirect)
    ->Arg(kBcast)
    ->Iterations(20000)
    ->UseRealTime();

// Reads and writes over 100 keys (all present), 32 threads on one store;
// state.range(0) is the percentage of writes (10: the 90/10 mix). Key and
// operation from a per-thread xorshift, independent bits.
// state.range(1): the Mode. Thread 0 also reports the subscriber's messages/s
// and its server's used_memory and tracking table.
void BM_Mix(benchmark::State& state) {
  const std::uint64_t write_percent = static_cast<std::uint64_t>(state.range(0));
  const Mode mode = static_cast<Mode>(state.range(1));
  Store& store = StoreFor(mode);
  double messages_before = 0, invalidations_before = 0;
  SteadyClock::time_point started;
  const std::string value(150, 'v');
  auto key_of = [](std::uint64_t n) { return fmt::format("bench:near:mix:{}", n); };
  if (state.thread_index() == 0) {
    for (std::uint64_t n = 0; n < 100; ++n) (void)store.set(key_of(n), value);
    messages_before = NearFigure(store, "near_messages");
    invalidations_before = NearFigure(store, "near_invalidations");
    started = SteadyClock::now();
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
      const std::chrono::duration<double> took = SteadyClock::now() - started;
      state.counters["messages_per_s"] =
          (figure("near_messages") - messages_before) / took.count();
      state.counters["invalidated_keys_per_s"] =
          (figure("near_invalidations") - invalidations_before) / took.count();
    }
    state.counters["used_memory"] = InfoField(mode, "used_memory");
    state.counters["tracking_keys"] = InfoField(mode, "tracking_total_keys");
    state.counters["tracking_prefixes"] = InfoField(mode, "tracking_total_prefixes");
  }
}
// mode 0: near cache off, 1: default mode (REDIRECT), 2: BCAST.
BENCHMARK(BM_Mix)
    ->ArgNames({"write", "mode"})
    ->ArgsProduct({{10, 50, 90}, {kOff, kRedirect, kBcast}})
    ->Threads(32)
    ->UseRealTime()
    ->MinTime(2.0);

// Redis's side of default mode: 20,000 keys read once each (get_many by
// 500), then its tracking table's size and used_memory before and after
// the reads. Under BCAST the table stays empty (one prefix).
void BM_TrackingTable(benchmark::State& state) {
  const Mode mode = static_cast<Mode>(state.range(0));
  Store& store = StoreFor(mode);
  constexpr int kKeys = 20000, kBatch = 500;
  for (auto _ : state) {
    state.PauseTiming();
    (void)store.clear(fmt::format("{}table:", kPrefix));
    std::vector<std::pair<std::string, std::string>> entries;
    for (int i = 0; i < kKeys; ++i) {
      entries.emplace_back(fmt::format("{}table:{}", kPrefix, i), std::string(150, 'v'));
    }
    for (int i = 0; i < kKeys; i += kBatch) {
      const std::vector<std::pair<std::string, std::string>> batch(entries.begin() + i,
                                                                   entries.begin() + i + kBatch);
      if (!store.set_many(batch)) state.SkipWithError("set_many failed");
    }
    const double keys_before = InfoField(mode, "tracking_total_keys");
    const double memory_before = InfoField(mode, "used_memory");
    state.ResumeTiming();
    for (int i = 0; i < kKeys; i += kBatch) {
      std::vector<std::string> keys;
      for (int j = i; j < i + kBatch; ++j) keys.push_back(entries[j].first);
      if (!store.get_many(keys)) state.SkipWithError("get_many failed");
    }
    state.PauseTiming();
    const double keys_after = InfoField(mode, "tracking_total_keys");
    const double memory_after = InfoField(mode, "used_memory");
    state.counters["tracked_keys_added"] = keys_after - keys_before;
    state.counters["used_memory_added"] = memory_after - memory_before;
    state.counters["tracking_prefixes"] = InfoField(mode, "tracking_total_prefixes");
    state.ResumeTiming();
  }
}
BENCHMARK(BM_TrackingTable)->ArgName("mode")->Arg(kRedirect)->Arg(kBcast)->Iterations(1);

}  // namespace
}  // namespace aicache::bench

int main(int argc, char** argv) {
  // The redis-server dies with the thread that started it (PR_SET_PDEATHSIG):
  // start it, and the stores, on the main thread, not in a benchmark's.
  aicache::bench::StoreFor(aicache::bench::kOff);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
