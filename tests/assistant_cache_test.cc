// AssistantCache on the memory store: the Django system's AIAssistantCache
// test cases first, then what its contract adds.
#include "aicache/assistant_cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "aicache/log.h"
#include "aicache/memory_store.h"
#include "aicache/testing/manual_clock.h"
#include "support/faulty_store.h"
#include "support/log_capture.h"

namespace aicache {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Optional;

class AssistantCacheTest : public ::testing::Test {
 protected:
  void SetUp() override { cache_ = MakeCache({}); }

  std::shared_ptr<AssistantCache> MakeCache(AssistantCacheOptions options) {
    store_ = make_memory_store({.clock = clock_});
    auto cache = AssistantCache::create(store_, std::move(options));
    EXPECT_TRUE(cache) << cache.error().to_string();
    return cache ? std::move(*cache) : nullptr;
  }

  std::optional<std::string> Token(std::string_view channel, std::string_view app) {
    auto token = cache_->get_access_token(channel, app);
    EXPECT_FALSE(token.failed()) << token.error().to_string();
    if (token) return *token;
    return std::nullopt;
  }

  static JsonDocument Doc(const nlohmann::json& value) { return JsonDocument(value); }

  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<Store> store_;
  std::shared_ptr<AssistantCache> cache_;
};

// --- The Django system's twelve cases ----------------------------------------------

TEST_F(AssistantCacheTest, SetAndGetAccessToken) {
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx123", "test_token_123"));
  EXPECT_THAT(Token("wechat", "wx123"), Optional(std::string("test_token_123")));
}

TEST_F(AssistantCacheTest, GetMissingAccessTokenIsAMiss) {
  EXPECT_EQ(Token("wechat", "nonexistent"), std::nullopt);
}

TEST_F(AssistantCacheTest, DeleteAccessToken) {
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx123", "test_token_123"));
  EXPECT_EQ(cache_->remove_access_token("wechat", "wx123"), true);
  EXPECT_EQ(Token("wechat", "wx123"), std::nullopt);
}

TEST_F(AssistantCacheTest, AccessTokenExpires) {
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx123", "short_lived", 1s));
  EXPECT_TRUE(Token("wechat", "wx123"));
  clock_->advance(1s);
  EXPECT_EQ(Token("wechat", "wx123"), std::nullopt);
}

TEST_F(AssistantCacheTest, AccessTokenDefaultsToTwoHours) {
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx123", "tok"));
  clock_->advance(2h - 1s);
  EXPECT_TRUE(Token("wechat", "wx123"));
  clock_->advance(1s);
  EXPECT_EQ(Token("wechat", "wx123"), std::nullopt);
}

TEST_F(AssistantCacheTest, ChannelsAreIsolated) {
  ASSERT_TRUE(cache_->set_access_token("wechat", "app1", "wechat_token"));
  ASSERT_TRUE(cache_->set_access_token("dingtalk", "app1", "dingtalk_token"));
  EXPECT_THAT(Token("wechat", "app1"), Optional(std::string("wechat_token")));
  EXPECT_THAT(Token("dingtalk", "app1"), Optional(std::string("dingtalk_token")));
}

TEST_F(AssistantCacheTest, SetAndGetConversation) {
  const auto conversation = Doc({{"messages", {{{"role", "user"}, {"content", "Hello"}}}}});
  ASSERT_TRUE(cache_->set_conversation("conv_123", conversation));
  auto got = cache_->get_conversation("conv_123");
  ASSERT_TRUE(got);
  ASSERT_TRUE(got.hit());
  EXPECT_EQ(got->value(), conversation.value());
}

TEST_F(AssistantCacheTest, ConversationWithComplexData) {
  const nlohmann::json complex = {
      {"messages",
       {{{"role", "user"}, {"content", "你好，请帮我查询订单"}, {"timestamp", 1700000000}},
        {{"role", "assistant"},
         {"content", "好的 😀 \"quoted\" \\ back\nslash"},
         {"tool_calls", {{{"name", "query_order"}, {"args", {{"order_id", 42}}}}}}}}},
      {"metadata", {{"channel", "wechat"}, {"score", 0.95}, {"tags", {"a", "b"}}, {"x", nullptr}}},
      {"counts", {1, -2, 3.5e10, true, false}}};
  ASSERT_TRUE(cache_->set_conversation("conv_complex", Doc(complex)));
  auto got = cache_->get_conversation("conv_complex");
  ASSERT_TRUE(got.hit());
  EXPECT_EQ(got->value(), complex);
}

TEST_F(AssistantCacheTest, DeleteConversation) {
  ASSERT_TRUE(cache_->set_conversation("conv_123", Doc({{"messages", nlohmann::json::array()}})));
  EXPECT_EQ(cache_->remove_conversation("conv_123"), true);
  EXPECT_EQ(cache_->get_conversation("conv_123"), std::nullopt);
}

TEST_F(AssistantCacheTest, SetAndGetAiConfig) {
  const auto config = Doc({{"model", "gpt-4"}, {"temperature", 0.7}, {"max_tokens", 2000}});
  ASSERT_TRUE(cache_->set_ai_config("1", config));
  auto got = cache_->get_ai_config("1");
  ASSERT_TRUE(got.hit());
  EXPECT_EQ(got->value()["model"], "gpt-4");
}

TEST_F(AssistantCacheTest, AiConfigIsPerUser) {
  ASSERT_TRUE(cache_->set_ai_config("1", Doc({{"model", "gpt-4"}})));
  ASSERT_TRUE(cache_->set_ai_config("2", Doc({{"model", "gpt-3.5"}})));
  EXPECT_EQ((*cache_->get_ai_config("1")).value()["model"], "gpt-4");
  EXPECT_EQ((*cache_->get_ai_config("2")).value()["model"], "gpt-3.5");
}

TEST_F(AssistantCacheTest, GenericOperations) {
  ASSERT_TRUE(cache_->set("test_key", JsonDocument::string("test_value"), 60s));
  EXPECT_EQ((*cache_->get("test_key")).value(), "test_value");
  EXPECT_EQ(cache_->get("missing", JsonDocument::string("default"))->value(), "default");
  EXPECT_EQ(cache_->remove("test_key"), true);
  EXPECT_EQ(cache_->get("test_key"), std::nullopt);
}

// Threat model, finding 1: the generic writers refuse the typed entries'
// keys (a forged token, a frozen lease) for every boundary built on them;
// the generic readers still read them.
TEST_F(AssistantCacheTest, GenericWritesOfReservedKeysAreRefusedReadsAreNot) {
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx1", "REAL"));
  for (const char* key : {"ai_assistant:access_token:wechat:wx1",
                          "ai_assistant:token_lease:wechat:wx1", "ai_assistant:conversation:c1",
                          "ai_assistant:ai_config:u1", "ai_assistant:other"}) {
    SCOPED_TRACE(key);
    auto set = cache_->set(key, JsonDocument::string("evil"), 1h);
    ASSERT_FALSE(set);
    EXPECT_EQ(set.error().code, ErrorCode::kInvalidArgument);
    EXPECT_THAT(set.error().message, HasSubstr("reserved"));
    auto removed = cache_->remove(key);
    ASSERT_FALSE(removed);
    EXPECT_EQ(removed.error().code, ErrorCode::kInvalidArgument);
    auto incremented = cache_->incr(key);
    ASSERT_FALSE(incremented);
    EXPECT_EQ(incremented.error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_THAT(cache_->set("ai_assistant:access_token:wechat:wx1", JsonDocument::string("evil"))
                  .error()
                  .message,
              HasSubstr("set_access_token()"));
  EXPECT_THAT(Token("wechat", "wx1"), Optional(std::string("REAL")));
  EXPECT_EQ((*cache_->get("ai_assistant:access_token:wechat:wx1")).value(), "REAL");
  EXPECT_EQ(cache_->ttl("ai_assistant:access_token:wechat:wx1")->state, KeyTtl::State::kExpiring);
}

TEST_F(AssistantCacheTest, KeyFormat) {
  cache_ = MakeCache({.key_prefix = "blbs_erp"});
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx123", "tok"));
  ASSERT_TRUE(cache_->set_conversation("c1", Doc({{"m", 1}})));
  ASSERT_TRUE(cache_->set_ai_config("7", Doc({{"model", "x"}})));
  EXPECT_THAT(*store_->get("blbs_erp:1:ai_assistant:access_token:wechat:wx123"),
              Optional(std::string("\"tok\"")));
  EXPECT_THAT(*store_->get("blbs_erp:1:ai_assistant:conversation:c1"),
              Optional(std::string(R"({"m":1})")));
  EXPECT_TRUE(*store_->get("blbs_erp:1:ai_assistant:ai_config:7"));
}

// --- Beyond the Django cases ------------------------------------------------------

TEST_F(AssistantCacheTest, TypedDefaultTtls) {
  ASSERT_TRUE(cache_->set_conversation("c", Doc(1)));
  ASSERT_TRUE(cache_->set_ai_config("u", Doc(1)));
  ASSERT_TRUE(cache_->set("g", Doc(1)));
  clock_->advance(300s);
  EXPECT_EQ(cache_->get_ai_config("u"), std::nullopt);
  EXPECT_EQ(cache_->get("g"), std::nullopt);
  EXPECT_TRUE(cache_->get_conversation("c"));
  clock_->advance(3300s);
  EXPECT_EQ(cache_->get_conversation("c"), std::nullopt);
}

TEST_F(AssistantCacheTest, ConfiguredTypedTtls) {
  cache_ = MakeCache({.conversation_ttl = 10s});
  ASSERT_TRUE(cache_->set_conversation("c", Doc(1)));
  clock_->advance(10s);
  EXPECT_EQ(cache_->get_conversation("c"), std::nullopt);
}

TEST_F(AssistantCacheTest, KeyVersionSeparatesEntries) {
  auto v2 = AssistantCache::create(store_, {.key_version = 2});
  ASSERT_TRUE(v2);
  ASSERT_TRUE(cache_->set("k", Doc("v1")));
  EXPECT_EQ((*v2)->get("k"), std::nullopt);
}

TEST_F(AssistantCacheTest, IntegersAreStoredAsDigitsAndIncrement) {
  ASSERT_TRUE(cache_->set("n", JsonDocument::integer(41)));
  EXPECT_THAT(*store_->get(":1:n"), Optional(std::string("41")));
  EXPECT_EQ(cache_->incr("n"), 42);
  EXPECT_EQ((*cache_->get("n")).value(), 42);
}

TEST_F(AssistantCacheTest, InvalidPartsAreRefusedAndNothingIsStored) {
  auto bad = cache_->set_access_token("wechat", "wx:1", "tok");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(bad.error().message, HasSubstr("app id"));
  EXPECT_FALSE(cache_->set_conversation("", Doc(1)));
  EXPECT_FALSE(cache_->set_ai_config("a b", Doc(1)));
  EXPECT_FALSE(cache_->get_access_token("we chat", "x"));
  EXPECT_EQ(store_->stats()->entries, 0u);
}

TEST_F(AssistantCacheTest, InvalidGenericKeysAreRefused) {
  EXPECT_FALSE(cache_->set("", Doc(1)));
  EXPECT_FALSE(cache_->set("with space", Doc(1)));
  EXPECT_FALSE(cache_->set(std::string(300, 'k'), Doc(1)));
  EXPECT_FALSE(cache_->get("ctl\x01"));
  EXPECT_EQ(store_->stats()->entries, 0u);
}

TEST_F(AssistantCacheTest, InvalidTokensAreRefusedWithoutEchoingThem) {
  for (std::string token : {std::string(), std::string("has space"), std::string("nl\n"),
                            std::string(4097, 't'), std::string("caf\xc3\xa9")}) {
    auto r = cache_->set_access_token("wechat", "wx1", token);
    ASSERT_FALSE(r) << token;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    if (token.size() > 3) {
      EXPECT_THAT(r.error().message, ::testing::Not(HasSubstr(token)));
    }
  }
  EXPECT_EQ(Token("wechat", "wx1"), std::nullopt);
}

TEST_F(AssistantCacheTest, TokensWithQuotesRoundTrip) {
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx1", R"(a"b\c)"));
  EXPECT_THAT(Token("wechat", "wx1"), Optional(std::string(R"(a"b\c)")));
}

TEST_F(AssistantCacheTest, ReadsTokensWrittenByPython) {
  // json.dumps("tok/én") with ensure_ascii, as django-redis writes it.
  ASSERT_TRUE(store_->set(":1:ai_assistant:access_token:wechat:wx1", R"("tok\/\u00e9n")"));
  EXPECT_THAT(Token("wechat", "wx1"), Optional(std::string("tok/\xc3\xa9n")));
}

TEST_F(AssistantCacheTest, AValueThatIsNotATokenIsAnErrorNotAToken) {
  ASSERT_TRUE(store_->set(":1:ai_assistant:access_token:wechat:wx1", "{\"a\":1}"));
  auto token = cache_->get_access_token("wechat", "wx1");
  ASSERT_FALSE(token);
  EXPECT_EQ(token.error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(AssistantCacheTest, SetWithZeroTtlRemoves) {
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx1", "tok"));
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx1", "tok2", 0s));
  EXPECT_EQ(Token("wechat", "wx1"), std::nullopt);
}

TEST_F(AssistantCacheTest, TtlReportsRemainingTime) {
  ASSERT_TRUE(cache_->set("k", Doc(1), 90s));
  clock_->advance(30s);
  auto ttl = cache_->ttl("k");
  ASSERT_TRUE(ttl);
  EXPECT_EQ(ttl->state, KeyTtl::State::kExpiring);
  EXPECT_EQ(ttl->remaining, 60s);
}

TEST_F(AssistantCacheTest, ClearRemovesOnlyThisNamespace) {
  auto other = AssistantCache::create(store_, {.key_prefix = "other"});
  ASSERT_TRUE(other);
  ASSERT_TRUE(cache_->set("a", Doc(1)));
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx1", "tok"));
  ASSERT_TRUE((*other)->set("a", Doc(2)));
  EXPECT_EQ(cache_->clear(), 2u);
  EXPECT_EQ(cache_->get("a"), std::nullopt);
  EXPECT_TRUE((*other)->get("a"));
}

TEST_F(AssistantCacheTest, StatsIncludeStoreFigures) {
  ASSERT_TRUE(cache_->set("a", Doc(1)));
  (void)cache_->get("a");
  (void)cache_->get("b");
  auto stats = cache_->stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->store.backend, "memory");
  EXPECT_EQ(stats->store.entries, 1u);
  EXPECT_GE(stats->store.hits, 1u);
  EXPECT_GE(stats->store.misses, 1u);
  EXPECT_EQ(stats->store_errors, 0u);
}

TEST_F(AssistantCacheTest, ReadsAreCountedByFamily) {
  auto family = [&](CacheFamily f) { return cache_->stats()->family(f); };
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx1", "tok"));
  ASSERT_TRUE(cache_->set_conversation("c1", Doc({{"m", 1}})));
  ASSERT_TRUE(cache_->set_ai_config("u1", Doc({{"model", "x"}})));
  ASSERT_TRUE(cache_->set("k", Doc(1)));
  (void)cache_->get_access_token("wechat", "wx1");
  (void)cache_->get_access_token("wechat", "wx2");
  (void)cache_->get_access_token("wechat", "wx2");
  (void)cache_->get_conversation("c1");
  (void)cache_->get_conversation("c1");
  (void)cache_->get_conversation("c2");
  (void)cache_->get_ai_config("u2");
  (void)cache_->get("k");
  (void)cache_->get_text("k");
  (void)cache_->get("nope");
  (void)cache_->get("bad key");  // invalid input: neither
  EXPECT_EQ(family(CacheFamily::kToken).hits, 1u);
  EXPECT_EQ(family(CacheFamily::kToken).misses, 2u);
  EXPECT_EQ(family(CacheFamily::kConversation).hits, 2u);
  EXPECT_EQ(family(CacheFamily::kConversation).misses, 1u);
  EXPECT_EQ(family(CacheFamily::kAiConfig).hits, 0u);
  EXPECT_EQ(family(CacheFamily::kAiConfig).misses, 1u);
  EXPECT_EQ(family(CacheFamily::kKv).hits, 2u);
  EXPECT_EQ(family(CacheFamily::kKv).misses, 1u);
  // family_stats() needs no store.
  EXPECT_EQ(cache_->family_stats()[static_cast<std::size_t>(CacheFamily::kKv)].hits, 2u);
}

// export_page: a family's entries by logical id with their TTLs, a page at
// a time; kv leaves the reserved keys out; tokens are never exported.
TEST_F(AssistantCacheTest, ExportPagesThroughAFamily) {
  for (int i = 0; i < 120; ++i) {
    ASSERT_TRUE(cache_->set_conversation("c" + std::to_string(i), Doc({{"n", i}})));
  }
  ASSERT_TRUE(cache_->set_ai_config("u1", Doc({{"model", "m"}})));
  ASSERT_TRUE(cache_->set("k", Doc(1), Ttl::never()));
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx1", "tok"));
  clock_->advance(std::chrono::seconds(10));

  std::map<std::string, ExportedEntry> seen;
  std::string cursor;
  do {
    auto page = cache_->export_page(CacheFamily::kConversation, cursor, 16);
    ASSERT_TRUE(page) << page.error().to_string();
    for (auto& e : page->entries) seen.emplace(e.id, e);
    cursor = page->cursor;
  } while (!cursor.empty());
  ASSERT_EQ(seen.size(), 120u);
  EXPECT_EQ(seen.at("c7").value.value(), nlohmann::json({{"n", 7}}));
  EXPECT_EQ(seen.at("c7").ttl.state, KeyTtl::State::kExpiring);
  EXPECT_EQ(seen.at("c7").ttl.remaining, std::chrono::seconds(3590));  // 1 h less 10 s

  auto kv = cache_->export_page(CacheFamily::kKv, "", 1000);
  ASSERT_TRUE(kv);
  ASSERT_EQ(kv->entries.size(), 1u) << "the typed entries are not kv";
  EXPECT_EQ(kv->entries[0].id, "k");
  EXPECT_EQ(kv->entries[0].ttl.state, KeyTtl::State::kPersistent);
  EXPECT_EQ(cache_->export_page(CacheFamily::kAiConfig, "", 1000)->entries.at(0).id, "u1");
  EXPECT_EQ(cache_->export_page(CacheFamily::kToken, "", 10).error().code,
            ErrorCode::kInvalidArgument);
}

// Hot keys under a skewed load: the hottest first, by family, over a
// sliding window; counted exactly when every hit is sampled.
TEST_F(AssistantCacheTest, HotKeysUnderASkewedLoad) {
  cache_ = MakeCache({.hot_keys_sample_every = 1, .hot_keys_window = std::chrono::seconds(60),
                      .clock = clock_});
  ASSERT_TRUE(cache_->set("hot", Doc(1)));
  ASSERT_TRUE(cache_->set("warm", Doc(1)));
  ASSERT_TRUE(cache_->set_conversation("c1", Doc(1)));
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx1", "tok"));
  for (int i = 0; i < 500; ++i) ASSERT_TRUE(cache_->set("cold" + std::to_string(i), Doc(1)));
  for (int i = 0; i < 1000; ++i) (void)cache_->get("hot");
  for (int i = 0; i < 400; ++i) (void)cache_->get_access_token("wechat", "wx1");
  for (int i = 0; i < 300; ++i) (void)cache_->get("warm");
  for (int i = 0; i < 200; ++i) (void)cache_->get_conversation("c1");
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 500; ++i) (void)cache_->get("cold" + std::to_string(i));
  }
  (void)cache_->get("absent");  // a miss is not a read of a hot key
  auto top = cache_->hot_keys(4);
  ASSERT_EQ(top.size(), 4u);
  EXPECT_EQ(top[0].id, "hot");
  EXPECT_EQ(top[0].family, CacheFamily::kKv);
  EXPECT_EQ(top[0].reads, 1000u);
  EXPECT_EQ(top[1].id, "wechat:wx1");
  EXPECT_EQ(top[1].family, CacheFamily::kToken);
  EXPECT_EQ(top[2].id, "warm");
  EXPECT_EQ(top[3].id, "c1");
  EXPECT_EQ(top[3].family, CacheFamily::kConversation);
  EXPECT_EQ(cache_->stats()->hot_keys.size(), 20u);

  // The window slides: a minute later the reads still count (previous
  // window), two minutes later they are gone.
  clock_->advance(std::chrono::seconds(61));
  (void)cache_->get("warm");
  EXPECT_EQ(cache_->hot_keys(1).at(0).id, "hot");
  clock_->advance(std::chrono::seconds(60));
  top = cache_->hot_keys(5);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].id, "warm");
  EXPECT_EQ(top[0].reads, 1u);
}

// Hits from many threads are all counted (one mutex per family).
TEST_F(AssistantCacheTest, HotKeysCountHitsFromManyThreads) {
  cache_ = MakeCache({.hot_keys_sample_every = 1, .clock = clock_});
  ASSERT_TRUE(cache_->set("hot", Doc(1)));
  ASSERT_TRUE(cache_->set_conversation("c", Doc(1)));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) {
        (void)cache_->get("hot");
        (void)cache_->get_conversation("c");
        if (i % 1000 == 0) (void)cache_->hot_keys(2);
      }
    });
  }
  for (auto& t : threads) t.join();
  auto top = cache_->hot_keys(2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].reads, 20'000u);
  EXPECT_EQ(top[1].reads, 20'000u);
}

// Sampled (the default, one hit in 16), the order of a skewed load holds.
TEST_F(AssistantCacheTest, SampledHotKeysKeepTheOrder) {
  ASSERT_TRUE(cache_->set("hot", Doc(1)));
  ASSERT_TRUE(cache_->set("warm", Doc(1)));
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(cache_->set("cold" + std::to_string(i), Doc(1)));
  for (int i = 0; i < 20'000; ++i) {
    (void)cache_->get("hot");
    if (i % 4 == 0) (void)cache_->get("warm");
    if (i % 10 == 0) (void)cache_->get("cold" + std::to_string(i % 200));
  }
  auto top = cache_->hot_keys(2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].id, "hot");
  EXPECT_EQ(top[1].id, "warm");
  EXPECT_EQ(top[0].reads % 16, 0u);  // each sampled hit stands for 16
  EXPECT_GT(top[0].reads, 15'000u);
  EXPECT_LT(top[0].reads, 25'000u);
}

TEST_F(AssistantCacheTest, FamilyNamesRoundTrip) {
  for (CacheFamily f : kCacheFamilies) EXPECT_EQ(parse_cache_family(to_string(f)), f);
  EXPECT_EQ(to_string(CacheFamily::kAiConfig), "ai_config");
  EXPECT_EQ(parse_cache_family("tokens"), std::nullopt);
}

// --- TokenSlot: the token manager's records of one app ----------------------------

TEST_F(AssistantCacheTest, TokenSlotReadsTheTokenWithItsTtlUnderTheTokenKey) {
  auto slot = cache_->token_slot("wechat", "wx1");
  ASSERT_TRUE(slot) << slot.error().to_string();
  EXPECT_EQ(slot->read(), std::nullopt);
  ASSERT_TRUE(slot->write("TOKEN", Ttl(100s)));
  auto stored = slot->read();
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->token, "TOKEN");
  EXPECT_EQ(stored->ttl.state, KeyTtl::State::kExpiring);
  EXPECT_EQ(stored->ttl.remaining, 100s);
  // The same entry the typed API and a Django app read.
  EXPECT_EQ(cache_->get_access_token("wechat", "wx1"), "TOKEN");
  EXPECT_EQ(store_->get(*cache_->keys().access_token("wechat", "wx1")).value(), "\"TOKEN\"");
  clock_->advance(100s);
  EXPECT_EQ(slot->read(), std::nullopt);
}

TEST_F(AssistantCacheTest, TokenSlotRemovesOnlyTheTokenItIsGiven) {
  auto slot = cache_->token_slot("wechat", "wx1");
  ASSERT_TRUE(slot);
  ASSERT_TRUE(slot->write("NEW", Ttl(100s)));
  EXPECT_EQ(slot->remove_if("OLD"), false);
  EXPECT_EQ(slot->read()->token, "NEW");
  EXPECT_EQ(slot->remove_if("NEW"), true);
  EXPECT_EQ(slot->read(), std::nullopt);
  // Not a token: refused, nothing removed or written.
  EXPECT_EQ(slot->remove_if("two words").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(slot->write("", Ttl(1s)).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(AssistantCacheTest, TokenSlotLeaseIsTakenOnceAndReleasedOnlyByItsOwner) {
  auto slot = cache_->token_slot("wechat", "wx1");
  ASSERT_TRUE(slot);
  EXPECT_EQ(slot->try_lease("a", Ttl(30s)), true);
  EXPECT_EQ(slot->try_lease("b", Ttl(30s)), false);
  EXPECT_EQ(slot->lease(), "a");
  EXPECT_EQ(slot->release_lease("b"), false);
  EXPECT_EQ(slot->release_lease("a"), true);
  EXPECT_EQ(slot->lease(), std::nullopt);
  EXPECT_EQ(slot->try_lease("b", Ttl(30s)), true);
  clock_->advance(30s);  // a crashed owner's lease expires
  EXPECT_EQ(slot->try_lease("c", Ttl(30s)), true);
  EXPECT_TRUE(store_->get(*cache_->keys().make("ai_assistant:token_lease:wechat:wx1")).value().has_value());
}

TEST_F(AssistantCacheTest, TokenSlotRefreshLimitsLiveBesideTheToken) {
  auto slot = cache_->token_slot("wechat", "wx1");
  ASSERT_TRUE(slot);
  EXPECT_EQ(slot->try_mark_refreshed("h1", Ttl(60s)), true);
  EXPECT_EQ(slot->try_mark_refreshed("h2", Ttl(60s)), false);
  EXPECT_EQ(slot->refreshed_ttl()->remaining, 60s);
  EXPECT_EQ(slot->unmark_refreshed("h2"), false);
  EXPECT_EQ(slot->unmark_refreshed("h1"), true);
  EXPECT_EQ(slot->refreshed_ttl()->state, KeyTtl::State::kMissing);
  EXPECT_EQ(slot->count_forced(Ttl(3600s)), 1);
  EXPECT_EQ(slot->count_forced(Ttl(3600s)), 2);
  EXPECT_TRUE(store_->get(*cache_->keys().make("ai_assistant:token_forced:wechat:wx1")).value().has_value());
  EXPECT_TRUE(store_->get(*cache_->keys().make("ai_assistant:token_refreshed:wechat:wx1")).value() == std::nullopt);
}

TEST_F(AssistantCacheTest, TokenSlotRefusesKeyPartsThatAreNotIdentifiers) {
  EXPECT_EQ(cache_->token_slot("wechat", "a:b").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(cache_->token_slot("", "wx1").error().code, ErrorCode::kInvalidArgument);
}

// A configuration reload (SIGHUP) changes the default TTLs while the cache
// is in use: later writes take the new ones, stored entries keep theirs.
TEST_F(AssistantCacheTest, DefaultTtlsChangeWhileInUse) {
  cache_ = MakeCache({.conversation_ttl = 100s, .ai_config_ttl = 50s});
  EXPECT_EQ(cache_->default_ttls().conversation, Ttl(100s));
  EXPECT_TRUE(cache_->default_ttls().kv.is_default());
  ASSERT_TRUE(cache_->set_conversation("before", Doc(1)));
  ASSERT_TRUE(cache_->set("kv-before", Doc(1)));

  cache_->set_default_ttls({.conversation = 7200s, .ai_config = 600s, .kv = 30s});
  ASSERT_TRUE(cache_->set_conversation("after", Doc(1)));
  ASSERT_TRUE(cache_->set_ai_config("u1", Doc(1)));
  ASSERT_TRUE(cache_->set("kv-after", Doc(1)));
  ASSERT_TRUE(cache_->incr("counter"));
  ASSERT_TRUE(cache_->set_conversation("explicit", Doc(1), 5s));  // a given TTL wins
  EXPECT_EQ(cache_->conversation_ttl("before")->remaining, 100s);
  EXPECT_EQ(cache_->ttl("kv-before")->remaining, 300s);  // the store's default
  EXPECT_EQ(cache_->conversation_ttl("after")->remaining, 7200s);
  EXPECT_EQ(cache_->ai_config_ttl("u1")->remaining, 600s);
  EXPECT_EQ(cache_->ttl("kv-after")->remaining, 30s);
  EXPECT_EQ(cache_->ttl("counter")->remaining, 30s);
  EXPECT_EQ(cache_->conversation_ttl("explicit")->remaining, 5s);

  cache_->set_default_ttls({.conversation = Ttl::never(), .ai_config = 600s});
  ASSERT_TRUE(cache_->set_conversation("forever", Doc(1)));
  EXPECT_EQ(cache_->conversation_ttl("forever")->state, KeyTtl::State::kPersistent);
  EXPECT_TRUE(cache_->default_ttls().conversation.is_never());
}

TEST_F(AssistantCacheTest, TypedTtlsAndRawTextReachNoOtherFamily) {
  ASSERT_TRUE(cache_->set_conversation("c1", Doc({{"m", 1}}), 100s));
  ASSERT_TRUE(cache_->set_ai_config("u1", Doc({{"model", "x"}}), 50s));
  EXPECT_EQ(cache_->conversation_ttl("c1")->remaining, 100s);
  EXPECT_EQ(cache_->ai_config_ttl("u1")->remaining, 50s);
  EXPECT_EQ(cache_->conversation_ttl("u1")->state, KeyTtl::State::kMissing);
  EXPECT_EQ(cache_->ai_config_ttl("c1")->state, KeyTtl::State::kMissing);
  EXPECT_EQ(cache_->conversation_ttl("bad id").error().code, ErrorCode::kInvalidArgument);
  // get_text: the bytes as stored, JSON or not.
  ASSERT_TRUE(store_->set(*cache_->keys().make("raw"), "not json", Ttl(10s)));
  EXPECT_EQ(cache_->get_text("raw"), "not json");
  EXPECT_EQ(cache_->get_text("absent"), std::nullopt);
  EXPECT_TRUE(cache_->process_local());
}

TEST_F(AssistantCacheTest, RefusesBadPrefixAndNullStore) {
  EXPECT_FALSE(AssistantCache::create(store_, {.key_prefix = "bad prefix"}));
  EXPECT_FALSE(AssistantCache::create(nullptr));
  // Threat model, finding 5: "a" would clear the keys of "a:1".
  auto overlapping = AssistantCache::create(store_, {.key_prefix = "a:1"});
  ASSERT_FALSE(overlapping);
  EXPECT_NE(overlapping.error().message.find("':'"), std::string::npos);
}

}  // namespace
}  // namespace aicache

// --- Store failures ----------------------------------------------------------------

namespace aicache {
namespace {

class AssistantCacheFailureTest : public ::testing::Test {
 protected:
  std::shared_ptr<AssistantCache> MakeCache(AssistantCacheOptions::StoreErrors policy) {
    auto cache = AssistantCache::create(faulty_, {.store_errors = policy});
    EXPECT_TRUE(cache);
    return std::move(*cache);
  }
  std::shared_ptr<testing::FaultyStore> faulty_ =
      std::make_shared<testing::FaultyStore>(make_memory_store());
};

// The token manager must never take an outage for an absent lease: a slot
// passes every store failure on, whatever the read policy, and counts it.
TEST_F(AssistantCacheFailureTest, TokenSlotsReportStoreFailuresEvenWhenReadsAreMisses) {
  auto cache = MakeCache(AssistantCacheOptions::StoreErrors::kTreatAsMiss);
  auto slot = cache->token_slot("wechat", "wx1");
  ASSERT_TRUE(slot);
  faulty_->fail_with(ErrorCode::kUnavailable);
  EXPECT_EQ(slot->read().error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(slot->lease().error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(slot->try_lease("a", Ttl(1s)).error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(cache->get_access_token("wechat", "wx1").miss());  // the typed read: a miss
  faulty_->heal();
  EXPECT_EQ(cache->stats()->store_errors, 4u);
}

TEST_F(AssistantCacheFailureTest, ReadFailuresAreMissesByDefault) {
  auto cache = *AssistantCache::create(faulty_);
  faulty_->fail_with(ErrorCode::kUnavailable);
  EXPECT_EQ(cache->get_access_token("wechat", "wx1"), std::nullopt);
  EXPECT_FALSE(cache->set_access_token("wechat", "wx1", "tok"));
  faulty_->heal();
  EXPECT_EQ(cache->stats()->store_errors, 2u);
  // A failed read answered as a miss counts as one.
  EXPECT_EQ(cache->stats()->family(CacheFamily::kToken).misses, 1u);
}

TEST_F(AssistantCacheFailureTest, ErrorsReachTheCallerWhenAskedFor) {
  auto cache = MakeCache(AssistantCacheOptions::StoreErrors::kReturnError);
  faulty_->fail_with(ErrorCode::kUnavailable);
  auto token = cache->get_access_token("wechat", "wx1");
  ASSERT_FALSE(token);
  EXPECT_EQ(token.error().code, ErrorCode::kUnavailable);
  faulty_->heal();
  EXPECT_EQ(cache->stats()->store_errors, 1u);
}

TEST_F(AssistantCacheFailureTest, TreatAsMissTurnsReadFailuresIntoMissesAndCountsThem) {
  auto cache = MakeCache(AssistantCacheOptions::StoreErrors::kTreatAsMiss);
  faulty_->fail_with(ErrorCode::kTimeout);
  EXPECT_EQ(cache->get_access_token("wechat", "wx1"), std::nullopt);
  EXPECT_EQ(cache->get_conversation("c1"), std::nullopt);
  EXPECT_EQ(cache->get("k"), std::nullopt);
  // Writes still report failure: a lost write must never look like success.
  EXPECT_FALSE(cache->set("k", JsonDocument::integer(1)));
  faulty_->heal();
  EXPECT_EQ(cache->stats()->store_errors, 4u);
}

TEST_F(AssistantCacheFailureTest, InputErrorsAreNeverTurnedIntoMisses) {
  auto cache = MakeCache(AssistantCacheOptions::StoreErrors::kTreatAsMiss);
  auto token = cache->get_access_token("wechat", "bad:id");
  ASSERT_FALSE(token);
  EXPECT_EQ(token.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(AssistantCacheFailureTest, SharedStoreValuesThatAreNotJsonAreReported) {
  auto cache = MakeCache(AssistantCacheOptions::StoreErrors::kReturnError);
  ASSERT_TRUE(faulty_->set(":1:ai_assistant:conversation:c1", "\x80\x04pickle", Ttl::never()));
  auto conversation = cache->get_conversation("c1");
  ASSERT_FALSE(conversation);
  EXPECT_EQ(conversation.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(conversation.error().message, HasSubstr("not JSON"));
}

}  // namespace
}  // namespace aicache

namespace aicache {
namespace {

using testing::LogCapture;

TEST(AssistantCacheLogTest, StoreFailuresAreLoggedOncePerBurst) {
  LogCapture log;
  auto clock = std::make_shared<ManualClock>();
  auto faulty = std::make_shared<testing::FaultyStore>(make_memory_store());
  auto cache = *AssistantCache::create(
      faulty, {.store_errors = AssistantCacheOptions::StoreErrors::kTreatAsMiss,
               .error_log_interval = std::chrono::seconds(10),
               .clock = clock});
  faulty->fail_with(ErrorCode::kUnavailable);
  for (int i = 0; i < 100; ++i) (void)cache->get_access_token("wechat", "wx1");
  ASSERT_EQ(log.lines().size(), 1u);
  EXPECT_THAT(log.lines()[0], HasSubstr("unavailable"));

  clock->advance(std::chrono::seconds(10));
  (void)cache->get_access_token("wechat", "wx1");
  ASSERT_EQ(log.lines().size(), 2u);
  EXPECT_THAT(log.lines()[1], HasSubstr("99 more since the last report"));
  EXPECT_EQ(cache->stats().error().code, ErrorCode::kUnavailable);
  faulty->heal();
  EXPECT_EQ(cache->stats()->store_errors, 102u);
}

TEST(AssistantCacheLogTest, MissesAndInputErrorsAreNotLogged) {
  LogCapture log;
  auto cache = *AssistantCache::create(make_memory_store());
  (void)cache->get("absent");
  (void)cache->get("bad key");
  (void)cache->incr("absent-counter");
  EXPECT_TRUE(log.lines().empty());
}

}  // namespace
}  // namespace aicache
