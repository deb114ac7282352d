// The Django system's three usage examples, on aicache's memory store:
// a token cached and read back, a conversation stored, read and deleted, and
// the statistics printed. Configuration (REDIS_URL, .env, aicache.toml) is
// honoured, so the same program runs against Redis when one is configured.
#include <fmt/format.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "aicache/assistant_cache.h"
#include "aicache/config.h"
#include "aicache/from_config.h"
#include "aicache/json.h"

namespace {

int fail(const aicache::Error& error) {
  fmt::print(stderr, "quickstart: {}\n", error.to_string());
  return EXIT_FAILURE;
}

}  // namespace

int main() {
  auto config = aicache::load_config();
  if (!config) return fail(config.error());
  auto store = aicache::open_store(*config);
  if (!store) return fail(store.error());
  auto cache = aicache::AssistantCache::create(std::move(*store), aicache::cache_options(*config));
  if (!cache) return fail(cache.error());
  aicache::AssistantCache& ai = **cache;

  // 1. An access token, cached for its lifetime and read back.
  if (auto ok = ai.set_access_token("wechat", "wx1234567890", "ACCESS_TOKEN_abc123",
                                    std::chrono::seconds(7200));
      !ok) {
    return fail(ok.error());
  }
  auto token = ai.get_access_token("wechat", "wx1234567890");
  if (token.failed()) return fail(token.error());
  fmt::print("access token: {}\n", token.value_or("(miss)"));

  // 2. A conversation: stored, read, deleted.
  const aicache::JsonDocument conversation(nlohmann::json{
      {"messages",
       {{{"role", "user"}, {"content", "你好，帮我查一下订单"}},
        {{"role", "assistant"}, {"content", "好的，请提供订单号。"}}}}});
  if (auto ok = ai.set_conversation("conv_123", conversation); !ok) return fail(ok.error());
  auto stored = ai.get_conversation("conv_123");
  if (stored.failed()) return fail(stored.error());
  fmt::print("conversation: {} messages, {}\n", stored ? stored->value()["messages"].size() : 0,
             stored ? stored->text() : "(miss)");
  auto removed = ai.remove_conversation("conv_123");
  if (!removed) return fail(removed.error());
  fmt::print("conversation deleted: {}\n", *removed);

  // 3. Statistics.
  auto stats = ai.stats();
  if (!stats) return fail(stats.error());
  fmt::print("stats: backend={} used_memory={} ({} bytes) entries={} hits={} misses={} "
             "commands={}\n",
             stats->store.backend, stats->store.used_memory_human, stats->store.used_memory_bytes,
             stats->store.entries, stats->store.hits, stats->store.misses,
             stats->store.commands_processed);
  return EXIT_SUCCESS;
}
