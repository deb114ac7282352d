// MemoryStore against BaselineMap (one mutex, one unordered_map).
//
//   memory_store_bench --benchmark_filter=GetHit      ns per get of a hit
//   memory_store_bench --benchmark_filter=Mixed       90 % get / 10 % set, items/s
//
// Keys look like the library's token keys (~45 bytes), values like a token
// record (150 bytes), 100,000 of them, TTL 300 s on the real clock.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "aicache/memory_store.h"
#include "aicache/store.h"
#include "baseline_map.h"

namespace aicache::bench {
namespace {

constexpr std::size_t kKeys = 100'000;
constexpr std::chrono::milliseconds kTtl = std::chrono::seconds(300);

// Key i, formatted into a per-thread buffer: the harness itself touches no
// memory that could miss the cache, so the figures are the stores' own.
std::string_view Key(std::size_t i) {
  static constexpr std::string_view kPrefix = "blbs_erp:1:ai_assistant:token:wecom:ww";
  thread_local char buffer[64] = {};
  thread_local const bool ready = (kPrefix.copy(buffer, kPrefix.size()), true);
  (void)ready;
  char* digits = buffer + kPrefix.size();
  for (int d = 7; d >= 0; --d) {
    digits[d] = static_cast<char>('0' + i % 10);
    i /= 10;
  }
  return {buffer, kPrefix.size() + 8};
}

const std::string& Value() {
  static const std::string value(150, 'v');
  return value;
}

// The stores are shared by every benchmark thread and filled once.
Store& Memory() {
  static const std::shared_ptr<Store> store = [] {
    auto s = make_memory_store();
    for (std::size_t i = 0; i < kKeys; ++i) (void)s->set(Key(i), Value(), kTtl);
    return s;
  }();
  return *store;
}

BaselineMap& Baseline() {
  static BaselineMap* const map = [] {
    auto* m = new BaselineMap();
    for (std::size_t i = 0; i < kKeys; ++i) m->set(Key(i), Value(), kTtl);
    return m;
  }();
  return *map;
}

// xorshift64*: cheap per-thread key choice.
struct Rng {
  std::uint64_t s;
  std::uint64_t Next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545f4914f6cdd1dull;
  }
};

void BM_MemoryGetHitOneKey(benchmark::State& state) {
  Store& store = Memory();
  const std::string key(Key(12345));
  for (auto _ : state) {
    auto v = store.get(key);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_MemoryGetHitOneKey);

void BM_BaselineGetHitOneKey(benchmark::State& state) {
  BaselineMap& map = Baseline();
  const std::string key(Key(12345));
  for (auto _ : state) {
    auto v = map.get(key);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_BaselineGetHitOneKey);

void BM_MemoryGetHitRandomKeys(benchmark::State& state) {
  Store& store = Memory();
  Rng rng{0x9e3779b97f4a7c15ull};
  for (auto _ : state) {
    auto v = store.get(Key(rng.Next() % kKeys));
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_MemoryGetHitRandomKeys);

void BM_BaselineGetHitRandomKeys(benchmark::State& state) {
  BaselineMap& map = Baseline();
  Rng rng{0x9e3779b97f4a7c15ull};
  for (auto _ : state) {
    auto v = map.get(Key(rng.Next() % kKeys));
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_BaselineGetHitRandomKeys);

// 90 % get / 10 % set over all keys, from every benchmark thread at once.
template <class Op>
void Mixed(benchmark::State& state, Op op) {
  Rng rng{0x9e3779b97f4a7c15ull + static_cast<std::uint64_t>(state.thread_index()) * 7919};
  for (auto _ : state) {
    const std::uint64_t r = rng.Next();
    op(Key(r % kKeys), (r >> 32) % 10 == 0);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_MemoryMixed90Get10Set(benchmark::State& state) {
  Store& store = Memory();
  Mixed(state, [&store](std::string_view key, bool write) {
    if (write) {
      benchmark::DoNotOptimize(store.set(key, Value(), kTtl));
    } else {
      auto v = store.get(key);
      benchmark::DoNotOptimize(v);
    }
  });
}
BENCHMARK(BM_MemoryMixed90Get10Set)->Threads(1)->Threads(2)->UseRealTime();

void BM_BaselineMixed90Get10Set(benchmark::State& state) {
  BaselineMap& map = Baseline();
  Mixed(state, [&map](std::string_view key, bool write) {
    if (write) {
      map.set(key, Value(), kTtl);
    } else {
      auto v = map.get(key);
      benchmark::DoNotOptimize(v);
    }
  });
}
BENCHMARK(BM_BaselineMixed90Get10Set)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace aicache::bench

BENCHMARK_MAIN();
