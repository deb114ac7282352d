// RedisStore against raw hiredis round trips, on a redis-server of its own.
//
//   redis_store_bench --benchmark_filter=Get       GET: raw hiredis vs RedisStore (and GET+PTTL)
//   redis_store_bench --benchmark_filter=Many      get_many(100) vs 100 get()
//   redis_store_bench --benchmark_filter=8_5KB     8.5 KB set+get vs raw SET+GET
//   redis_store_bench --benchmark_filter=Tls       GET over TLS vs plain TCP (near cache
//                                                  off), and a connect: TCP vs TCP+TLS
//
// The TLS pair runs against one redis-server listening on both a plain and a
// TLS port (certificates made by openssl at start, tests/support/tls_certs),
// each reporting `connects`: the connections its pool opened, so the
// handshake is seen to be paid per pooled connection, not per command.
//
// Every benchmark also reports the p50 and p99 latency of one iteration in
// microseconds (counters p50_us, p99_us). The server is started on a free
// loopback port (tests/support/redis_server.cc); AICACHE_REDIS_SERVER picks
// another binary. Figures are loopback round trips: the difference between
// raw and store is the store's overhead (pool, command formatting, the idle check,
// error checks).
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "aicache/redis_store.h"
#include "redis_bench_server.h"
#include "redis/redis_connection.h"
#include "redis/redis_tls.h"
#include "support/redis_server.h"
#include "support/tls_certs.h"

namespace aicache::bench {
namespace {

using Clock = std::chrono::steady_clock;


// The default store: its near cache (64 MiB) answers repeated reads.
Store& Redis() {
  static const std::shared_ptr<Store> store = MakeRedisStore(RedisStoreOptions{}.near_cache_max_bytes);
  return *store;
}

// No near cache: every read is a round trip.
Store& RedisNoNearCache() {
  static const std::shared_ptr<Store> store = MakeRedisStore(0);
  return *store;
}

// Per-iteration latencies, reported as p50/p99 counters.
class Latencies {
 public:
  explicit Latencies(benchmark::State& state) : state_(state) { samples_.reserve(1 << 16); }
  ~Latencies() {
    if (samples_.empty()) return;
    std::sort(samples_.begin(), samples_.end());
    auto at = [&](double q) {
      return samples_[std::min(samples_.size() - 1, static_cast<std::size_t>(q * samples_.size()))];
    };
    state_.counters["p50_us"] = at(0.50);
    state_.counters["p99_us"] = at(0.99);
  }
  Latencies(const Latencies&) = delete;
  Latencies& operator=(const Latencies&) = delete;

  template <class Fn>
  void time(Fn&& fn) {
    const auto start = Clock::now();
    fn();
    samples_.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }

 private:
  benchmark::State& state_;
  std::vector<double> samples_;
};

const std::string kKey = "bench:key";
const std::string kValue(150, 'v');      // a token record
const std::string kBigValue(8704, 'c');  // 8.5 KB, a conversation

void BM_RawGet(benchmark::State& state) {
  RawRedis raw(Server().port());
  raw.command({"SET", kKey, kValue});
  Latencies lat(state);
  for (auto _ : state) lat.time([&] { raw.command({"GET", kKey}); });
}
BENCHMARK(BM_RawGet);

void BM_StoreGet(benchmark::State& state) {
  Store& store = Redis();
  (void)store.set(kKey, kValue);
  Latencies lat(state);
  for (auto _ : state) {
    lat.time([&] {
      auto v = store.get(kKey);
      if (!v || !*v) state.SkipWithError("get failed");
      benchmark::DoNotOptimize(v);
    });
  }
}
BENCHMARK(BM_StoreGet);

// What AssistantCache's document reads do since the TTL signals (age at
// hit): get_with_ttl, GET and PTTL pipelined in one round trip, against
// get's GET, with no near cache (with one, both are answered locally).
void StoreGetNoNearCache(benchmark::State& state, bool with_ttl) {
  Store& store = RedisNoNearCache();
  (void)store.set(kKey, kValue);
  Latencies lat(state);
  for (auto _ : state) {
    lat.time([&] {
      const bool hit = with_ttl ? [&] {
        auto v = store.get_with_ttl(kKey);
        return v && *v;
      }() : [&] {
        auto v = store.get(kKey);
        return v && *v;
      }();
      if (!hit) state.SkipWithError("get failed");
    });
  }
}
void BM_StoreGetNoNearCache(benchmark::State& state) { StoreGetNoNearCache(state, false); }
BENCHMARK(BM_StoreGetNoNearCache);
void BM_StoreGetWithTtlNoNearCache(benchmark::State& state) { StoreGetNoNearCache(state, true); }
BENCHMARK(BM_StoreGetWithTtlNoNearCache);

void BM_RawSet(benchmark::State& state) {
  RawRedis raw(Server().port());
  Latencies lat(state);
  for (auto _ : state) lat.time([&] { raw.command({"SET", kKey, kValue, "PX", "300000"}); });
}
BENCHMARK(BM_RawSet);

void BM_StoreSet(benchmark::State& state) {
  Store& store = Redis();
  Latencies lat(state);
  for (auto _ : state) {
    lat.time([&] {
      if (!store.set(kKey, kValue)) state.SkipWithError("set failed");
    });
  }
}
BENCHMARK(BM_StoreSet);

std::vector<std::string> ManyKeys() {
  std::vector<std::string> keys;
  for (int i = 0; i < 100; ++i) keys.push_back(fmt::format("bench:many:{}", i));
  return keys;
}

void BM_StoreGetMany100(benchmark::State& state) {
  Store& store = Redis();
  const auto keys = ManyKeys();
  for (const auto& k : keys) (void)store.set(k, kValue);
  Latencies lat(state);
  for (auto _ : state) {
    lat.time([&] {
      auto v = store.get_many(keys);
      if (!v || v->size() != keys.size()) state.SkipWithError("get_many failed");
      benchmark::DoNotOptimize(v);
    });
  }
}
BENCHMARK(BM_StoreGetMany100);

void BM_Store100SingleGets(benchmark::State& state) {
  Store& store = Redis();
  const auto keys = ManyKeys();
  for (const auto& k : keys) (void)store.set(k, kValue);
  Latencies lat(state);
  for (auto _ : state) {
    lat.time([&] {
      for (const auto& k : keys) {
        auto v = store.get(k);
        benchmark::DoNotOptimize(v);
      }
    });
  }
}
BENCHMARK(BM_Store100SingleGets);

void BM_Raw8_5KBSetGet(benchmark::State& state) {
  RawRedis raw(Server().port());
  Latencies lat(state);
  for (auto _ : state) {
    lat.time([&] {
      raw.command({"SET", "bench:big", kBigValue, "PX", "300000"});
      raw.command({"GET", "bench:big"});
    });
  }
}
BENCHMARK(BM_Raw8_5KBSetGet);

void BM_Store8_5KBSetGet(benchmark::State& state) {
  Store& store = Redis();
  Latencies lat(state);
  for (auto _ : state) {
    lat.time([&] {
      if (!store.set("bench:big", kBigValue)) state.SkipWithError("set failed");
      auto v = store.get("bench:big");
      if (!v || !*v) state.SkipWithError("get failed");
      benchmark::DoNotOptimize(v);
    });
  }
}
BENCHMARK(BM_Store8_5KBSetGet);

// --- TLS vs plain TCP, one server with both ports, the near cache off.

const testing::TestCertificates& Certs() {
  static const testing::TestCertificates certs;
  return certs;
}

testing::RedisServer& TlsServer() {
  static testing::RedisServer server(testing::RedisServerOptions{
      .tls = testing::RedisServerTls{.cert_file = Certs().server().cert,
                                     .key_file = Certs().server().key,
                                     .ca_file = Certs().ca()}});
  return server;
}

RedisStoreOptions PairOptions(bool tls) {
  auto endpoint = parse_redis_url(tls ? TlsServer().tls_url() : TlsServer().url());
  if (!endpoint) throw std::runtime_error(endpoint.error().to_string());
  RedisStoreOptions options;
  options.endpoint = *endpoint;
  options.near_cache_max_bytes = 0;  // every get a round trip
  if (tls) options.tls.ca_file = Certs().ca().string();
  return options;
}

Store& PairStore(bool tls) {
  static const std::shared_ptr<Store> stores[2] = {
      [] {
        auto s = make_redis_store(PairOptions(false));
        if (!s) throw std::runtime_error(s.error().to_string());
        return std::move(*s);
      }(),
      [] {
        auto s = make_redis_store(PairOptions(true));
        if (!s) throw std::runtime_error(s.error().to_string());
        return std::move(*s);
      }()};
  return *stores[tls ? 1 : 0];
}

void PairGet(benchmark::State& state, bool tls, const std::string& value) {
  Store& store = PairStore(tls);
  const std::string key = fmt::format("bench:pair:{}", value.size());
  if (!store.set(key, value)) state.SkipWithError("set failed");
  {
    Latencies lat(state);
    for (auto _ : state) {
      lat.time([&] {
        auto v = store.get(key);
        if (!v || !*v) state.SkipWithError("get failed");
        benchmark::DoNotOptimize(v);
      });
    }
  }
  auto stats = store.stats();
  if (stats) state.counters["connects"] = std::stod(stats->details.at("connects"));
}

void BM_PlainGet(benchmark::State& state) { PairGet(state, false, kValue); }
void BM_TlsGet(benchmark::State& state) { PairGet(state, true, kValue); }
void BM_PlainGet8_5KB(benchmark::State& state) { PairGet(state, false, kBigValue); }
void BM_TlsGet8_5KB(benchmark::State& state) { PairGet(state, true, kBigValue); }
BENCHMARK(BM_PlainGet);
BENCHMARK(BM_TlsGet);
BENCHMARK(BM_PlainGet8_5KB);
BENCHMARK(BM_TlsGet8_5KB);

// One connection opened (and closed): the TCP connect, plus the TLS
// handshake (TLS 1.3, ECDSA P-256, certificate checked) for rediss://.
void PairConnect(benchmark::State& state, bool tls) {
  const RedisStoreOptions options = PairOptions(tls);
  redis::ConnectionOptions c{.endpoint = options.endpoint};
  if (tls) {
    auto ctx = redis::make_tls_context(options.tls);
    if (!ctx) throw std::runtime_error(ctx.error().to_string());
    c.tls = *ctx;
  }
  Latencies lat(state);
  for (auto _ : state) {
    lat.time([&] {
      auto conn = redis::RedisConnection::open(c);
      if (!conn) state.SkipWithError("connect failed");
      benchmark::DoNotOptimize(conn);
    });
  }
}
void BM_PlainConnect(benchmark::State& state) { PairConnect(state, false); }
void BM_TlsConnect(benchmark::State& state) { PairConnect(state, true); }
BENCHMARK(BM_PlainConnect);
BENCHMARK(BM_TlsConnect);

// Many threads share one store (pool of 50): throughput under contention.
void BM_StoreGetThreads(benchmark::State& state) {
  Store& store = Redis();
  if (state.thread_index() == 0) (void)store.set(kKey, kValue);
  for (auto _ : state) {
    auto v = store.get(kKey);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StoreGetThreads)->Threads(1)->Threads(8)->UseRealTime();

}  // namespace
}  // namespace aicache::bench

BENCHMARK_MAIN();
