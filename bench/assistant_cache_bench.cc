// AssistantCache on the memory store: the targets, each beside a
// baseline measured in the same run.
//
//   token get hit            target p50 <= 200 ns
//   conversation set + get   target p50 <= 7 us (8.5 KB, given and returned as a document)
//
// Run with repetitions so the median (p50 of the repetitions) is printed:
//   build/bench/assistant_cache_bench --benchmark_repetitions=15
//       --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>

#include "aicache/assistant_cache.h"
#include "aicache/memory_store.h"
#include "conversation_fixture.h"

namespace {

using aicache::AssistantCache;
using aicache::JsonDocument;

std::shared_ptr<AssistantCache> make_cache() {
  auto cache = AssistantCache::create(aicache::make_memory_store(), {.key_prefix = "blbs_erp"});
  if (!cache) std::abort();
  return std::move(*cache);
}

const std::string kToken(138, 'T');  // WeChat tokens are about 138 characters

void BM_TokenGetHit(benchmark::State& state) {
  auto cache = make_cache();
  (void)cache->set_access_token("wechat", "wx0123456789abcdef", kToken);
  for (auto _ : state) {
    auto token = cache->get_access_token("wechat", "wx0123456789abcdef");
    benchmark::DoNotOptimize(token);
  }
}
BENCHMARK(BM_TokenGetHit);

// The same with hot-key counting off: BM_TokenGetHit (one hit in 16
// sampled, the default) must stay within 10 % of it (issue 16).
void BM_TokenGetHitNoHotKeys(benchmark::State& state) {
  auto cache = AssistantCache::create(aicache::make_memory_store(),
                                      {.key_prefix = "blbs_erp", .hot_keys_sample_every = 0});
  if (!cache) std::abort();
  (void)(*cache)->set_access_token("wechat", "wx0123456789abcdef", kToken);
  for (auto _ : state) {
    auto token = (*cache)->get_access_token("wechat", "wx0123456789abcdef");
    benchmark::DoNotOptimize(token);
  }
}
BENCHMARK(BM_TokenGetHitNoHotKeys);

// Baseline: what a hand-written cache would do at the least — one mutex, one
// hash map, the key built per call.
void BM_TokenGetHitBaselineMutexMap(benchmark::State& state) {
  std::mutex mutex;
  std::unordered_map<std::string, std::string> map;
  map["blbs_erp:1:ai_assistant:access_token:wechat:wx0123456789abcdef"] = kToken;
  const std::string channel = "wechat", app = "wx0123456789abcdef";
  for (auto _ : state) {
    std::string key = "blbs_erp:1:ai_assistant:access_token:" + channel + ":" + app;
    std::string token;
    {
      std::lock_guard lock(mutex);
      auto it = map.find(key);
      if (it != map.end()) token = it->second;
    }
    benchmark::DoNotOptimize(token);
  }
}
BENCHMARK(BM_TokenGetHitBaselineMutexMap);

void BM_ConversationSetGet(benchmark::State& state) {
  auto cache = make_cache();
  const JsonDocument conversation(aicache::bench::make_conversation());
  state.counters["bytes"] = static_cast<double>(conversation.text().size());
  for (auto _ : state) {
    (void)cache->set_conversation("conv_20261125_0001", conversation);
    auto got = cache->get_conversation("conv_20261125_0001");
    benchmark::DoNotOptimize(got);
  }
}
BENCHMARK(BM_ConversationSetGet);

// Baseline: a bytes cache that serialises on set and parses on get, as a
// pickle/JSON-serialising cache client does.
void BM_ConversationSetGetBaselineSerialiseParse(benchmark::State& state) {
  std::mutex mutex;
  std::unordered_map<std::string, std::string> map;
  const nlohmann::json conversation = aicache::bench::make_conversation();
  for (auto _ : state) {
    {
      std::string text = conversation.dump();
      std::lock_guard lock(mutex);
      map["conv"] = std::move(text);
    }
    std::string text;
    {
      std::lock_guard lock(mutex);
      text = map["conv"];
    }
    auto parsed = nlohmann::json::parse(text);
    benchmark::DoNotOptimize(parsed);
  }
}
BENCHMARK(BM_ConversationSetGetBaselineSerialiseParse);

// What a caller pays when it then walks the returned conversation: the lazy
// parse happens once per document read.
void BM_ConversationGetAndWalk(benchmark::State& state) {
  auto cache = make_cache();
  (void)cache->set_conversation("c", JsonDocument(aicache::bench::make_conversation()));
  for (auto _ : state) {
    auto got = cache->get_conversation("c");
    benchmark::DoNotOptimize(got->value()["messages"].size());
  }
}
BENCHMARK(BM_ConversationGetAndWalk);

// The document read path alone, hit and miss, on a small value: where the
// per-family TTL signals (age at hit, expired-recently misses) would show.
void BM_AiConfigGetHit(benchmark::State& state) {
  auto cache = make_cache();
  (void)cache->set_ai_config("user_42", JsonDocument(nlohmann::json{{"model", "gpt"}, {"t", 0.2}}));
  for (auto _ : state) {
    auto got = cache->get_ai_config("user_42");
    benchmark::DoNotOptimize(got);
  }
}
BENCHMARK(BM_AiConfigGetHit);

void BM_AiConfigGetMiss(benchmark::State& state) {
  auto cache = make_cache();
  for (auto _ : state) {
    auto got = cache->get_ai_config("user_absent");
    benchmark::DoNotOptimize(got);
  }
}
BENCHMARK(BM_AiConfigGetMiss);

}  // namespace

BENCHMARK_MAIN();
