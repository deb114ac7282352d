// The TTL signals (FamilyStats: ages at hit, expired-recently misses) on the
// memory store with a ManualClock: assistant_cache.h, src/core/ttl_signals.h.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/memory_store.h"
#include "aicache/testing/manual_clock.h"

namespace aicache {
namespace {

using namespace std::chrono_literals;

// The index of the bucket an age of `seconds` falls in.
constexpr std::size_t kLe5s = 1, kLe15s = 2, kLe120s = 5, kLe300s = 6, kLe3600s = 9;

class TtlSignalsTest : public ::testing::Test {
 protected:
  void SetUp() override { cache_ = MakeCache({}); }

  std::shared_ptr<AssistantCache> MakeCache(AssistantCacheOptions options) {
    store_ = make_memory_store({.clock = clock_});
    options.clock = clock_;
    if (options.kv_ttl.is_default() && set_kv_ttl_) options.kv_ttl = 300s;
    auto cache = AssistantCache::create(store_, std::move(options));
    EXPECT_TRUE(cache) << cache.error().to_string();
    return cache ? std::move(*cache) : nullptr;
  }

  FamilyStats Family(CacheFamily family) const {
    return cache_->family_stats()[static_cast<std::size_t>(family)];
  }

  static JsonDocument Doc(const nlohmann::json& value) { return JsonDocument(value); }

  bool set_kv_ttl_ = true;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<Store> store_;
  std::shared_ptr<AssistantCache> cache_;
};

TEST_F(TtlSignalsTest, AgesAtHitLandInTheirBuckets) {
  ASSERT_TRUE(cache_->set_conversation("c", Doc({{"m", 1}})));  // 1 h
  clock_->advance(3s);
  ASSERT_TRUE(cache_->get_conversation("c"));  // 3 s old
  clock_->advance(97s);
  ASSERT_TRUE(cache_->get_conversation("c"));  // 100 s
  clock_->advance(2900s);
  ASSERT_TRUE(cache_->get_conversation("c"));  // 3000 s
  // A write starts the age again.
  ASSERT_TRUE(cache_->set_conversation("c", Doc({{"m", 2}})));
  clock_->advance(4s);
  ASSERT_TRUE(cache_->get_conversation("c"));  // 4 s

  const FamilyStats conversation = Family(CacheFamily::kConversation);
  EXPECT_EQ(conversation.hit_age_count(), 4u);
  EXPECT_EQ(conversation.hit_age_buckets[kLe5s], 2u);
  EXPECT_EQ(conversation.hit_age_buckets[kLe120s], 1u);
  EXPECT_EQ(conversation.hit_age_buckets[kLe3600s], 1u);
  EXPECT_EQ(conversation.hit_age_sum_ms, 3'000u + 100'000u + 3'000'000u + 4'000u);

  ASSERT_TRUE(cache_->set_ai_config("u", Doc({{"model", "x"}})));  // 5 min
  clock_->advance(240s);
  ASSERT_TRUE(cache_->get_ai_config("u"));
  EXPECT_EQ(Family(CacheFamily::kAiConfig).hit_age_buckets[kLe300s], 1u);

  ASSERT_TRUE(cache_->set("k", Doc(1)));  // kv_ttl, 300 s
  clock_->advance(10s);
  ASSERT_TRUE(cache_->get("k"));
  ASSERT_TRUE(cache_->get_text("k"));
  EXPECT_EQ(Family(CacheFamily::kKv).hit_age_buckets[kLe15s], 2u);

  // Each family counts its own hits only; tokens none (their TTL is the
  // platform's).
  EXPECT_EQ(Family(CacheFamily::kAiConfig).hit_age_count(), 1u);
  EXPECT_EQ(Family(CacheFamily::kKv).hit_age_count(), 2u);
  ASSERT_TRUE(cache_->set_access_token("wechat", "wx1", "tok"));
  clock_->advance(1s);
  ASSERT_TRUE(cache_->get_access_token("wechat", "wx1"));
  EXPECT_EQ(Family(CacheFamily::kToken).hits, 1u);
  EXPECT_EQ(Family(CacheFamily::kToken).hit_age_count(), 0u);
}

TEST_F(TtlSignalsTest, EntriesWithAnotherTtlDoNotCorruptTheAges) {
  // Longer than the family's: more left than the family TTL, so the age is
  // unknown and not counted.
  ASSERT_TRUE(cache_->set_conversation("long", Doc(1), 10h));
  // Never expires: no age either.
  ASSERT_TRUE(cache_->set_conversation("never", Doc(1), Ttl::never()));
  clock_->advance(5s);
  ASSERT_TRUE(cache_->get_conversation("long"));
  ASSERT_TRUE(cache_->get_conversation("never"));
  FamilyStats conversation = Family(CacheFamily::kConversation);
  EXPECT_EQ(conversation.hits, 2u);
  EXPECT_EQ(conversation.hit_age_count(), 0u);
  EXPECT_EQ(conversation.hit_age_sum_ms, 0u);

  // Shorter than the family's: counted, older than it is (the documented
  // limit), but never beyond the family TTL.
  ASSERT_TRUE(cache_->set_conversation("short", Doc(1), 60s));
  clock_->advance(30s);
  ASSERT_TRUE(cache_->get_conversation("short"));
  conversation = Family(CacheFamily::kConversation);
  EXPECT_EQ(conversation.hit_age_count(), 1u);
  EXPECT_EQ(conversation.hit_age_sum_ms, 3'600'000u - 30'000u);
  EXPECT_EQ(conversation.hit_age_buckets.back(), 0u);
}

TEST_F(TtlSignalsTest, KvWithoutAKnownTtlHasNoSignals) {
  set_kv_ttl_ = false;
  cache_ = MakeCache({});
  ASSERT_TRUE(cache_->set("k", Doc(1)));  // the store's default, unknown here
  clock_->advance(10s);
  ASSERT_TRUE(cache_->get("k"));
  clock_->advance(300s);
  EXPECT_EQ(cache_->get("k"), std::nullopt);
  const FamilyStats kv = Family(CacheFamily::kKv);
  EXPECT_EQ(kv.hits, 1u);
  EXPECT_EQ(kv.misses, 1u);
  EXPECT_EQ(kv.hit_age_count(), 0u);
  EXPECT_EQ(kv.expired_recently_misses, 0u);
}

TEST_F(TtlSignalsTest, MissesOfKeysThatExpiredWithinTheTtlAreCounted) {
  cache_ = MakeCache({.conversation_ttl = 60s});
  auto expired_recently = [&] {
    return Family(CacheFamily::kConversation).expired_recently_misses;
  };
  ASSERT_TRUE(cache_->set_conversation("recent", Doc(1)));
  ASSERT_TRUE(cache_->set_conversation("long_ago", Doc(1)));
  ASSERT_TRUE(cache_->set_conversation("removed", Doc(1)));
  ASSERT_TRUE(cache_->remove_conversation("removed"));
  // Deleted behind this cache's back before its deadline (another process,
  // an eviction): not an expiry.
  ASSERT_TRUE(cache_->set_conversation("deleted", Doc(1)));
  ASSERT_TRUE(store_->remove(*cache_->keys().conversation("deleted")));
  EXPECT_EQ(cache_->get_conversation("deleted"), std::nullopt);
  EXPECT_EQ(cache_->get_conversation("never_written"), std::nullopt);
  EXPECT_EQ(expired_recently(), 0u);

  clock_->advance(61s);  // "recent" and "long_ago" expired 1 s ago
  EXPECT_EQ(cache_->get_conversation("recent"), std::nullopt);
  EXPECT_EQ(expired_recently(), 1u);
  EXPECT_EQ(cache_->get_conversation("removed"), std::nullopt);
  EXPECT_EQ(cache_->get_conversation("never_written"), std::nullopt);
  EXPECT_EQ(expired_recently(), 1u);

  clock_->advance(60s);  // "long_ago" expired 61 s ago: more than the TTL
  EXPECT_EQ(cache_->get_conversation("long_ago"), std::nullopt);
  EXPECT_EQ(expired_recently(), 1u);
  EXPECT_EQ(Family(CacheFamily::kConversation).misses, 6u);

  // An explicit TTL: its own deadline, within the family's window.
  ASSERT_TRUE(cache_->set_conversation("explicit", Doc(1), 10s));
  clock_->advance(11s);
  EXPECT_EQ(cache_->get_conversation("explicit"), std::nullopt);
  EXPECT_EQ(expired_recently(), 2u);

  // Other families count their own.
  ASSERT_TRUE(cache_->set_ai_config("u", Doc(1)));  // 5 min
  ASSERT_TRUE(cache_->set("k", Doc(1)));            // 300 s
  clock_->advance(301s);
  EXPECT_EQ(cache_->get_ai_config("u"), std::nullopt);
  EXPECT_EQ(cache_->get("k"), std::nullopt);
  EXPECT_EQ(Family(CacheFamily::kAiConfig).expired_recently_misses, 1u);
  EXPECT_EQ(Family(CacheFamily::kKv).expired_recently_misses, 1u);
  EXPECT_EQ(expired_recently(), 2u);
}

// A TTL beyond the table's 34-year deadlines is kept as the largest: its
// entry's loss is never an expiry.
TEST_F(TtlSignalsTest, ACenturyLongTtlIsNoExpiry) {
  ASSERT_TRUE(cache_->set_conversation("century", Doc(1), std::chrono::hours(24 * 365 * 100)));
  ASSERT_TRUE(cache_->set_conversation("huge", Doc(1),
                                       std::chrono::milliseconds(std::int64_t{1} << 62)));
  clock_->advance(1h);
  ASSERT_TRUE(store_->remove(*cache_->keys().conversation("century")));
  ASSERT_TRUE(store_->remove(*cache_->keys().conversation("huge")));
  EXPECT_EQ(cache_->get_conversation("century"), std::nullopt);
  EXPECT_EQ(cache_->get_conversation("huge"), std::nullopt);
  EXPECT_EQ(Family(CacheFamily::kConversation).expired_recently_misses, 0u);
}

TEST_F(TtlSignalsTest, ClearForgetsTheWrittenKeys) {
  ASSERT_TRUE(cache_->set_conversation("c", Doc(1), 10s));
  ASSERT_TRUE(cache_->clear());
  clock_->advance(11s);
  EXPECT_EQ(cache_->get_conversation("c"), std::nullopt);
  EXPECT_EQ(Family(CacheFamily::kConversation).expired_recently_misses, 0u);
}

TEST_F(TtlSignalsTest, TheTableOfWrittenKeysIsBounded) {
  // One slot: the second write overwrites the first key's record, so its
  // expiry goes unseen (a lower bound, never a false count).
  cache_ = MakeCache({.conversation_ttl = 60s, .written_keys_slots = 1});
  ASSERT_TRUE(cache_->set_conversation("first", Doc(1)));
  ASSERT_TRUE(cache_->set_conversation("second", Doc(1)));
  clock_->advance(61s);
  EXPECT_EQ(cache_->get_conversation("first"), std::nullopt);
  EXPECT_EQ(cache_->get_conversation("second"), std::nullopt);
  EXPECT_EQ(Family(CacheFamily::kConversation).expired_recently_misses, 1u);

  // None: off.
  cache_ = MakeCache({.conversation_ttl = 60s, .written_keys_slots = 0});
  ASSERT_TRUE(cache_->set_conversation("c", Doc(1)));
  clock_->advance(61s);
  EXPECT_EQ(cache_->get_conversation("c"), std::nullopt);
  EXPECT_EQ(Family(CacheFamily::kConversation).expired_recently_misses, 0u);
}

// Hits, misses and writes from many threads: every one counted (and clean
// under TSan).
TEST_F(TtlSignalsTest, CountsFromManyThreads) {
  cache_ = MakeCache({.conversation_ttl = 60s});
  constexpr int kThreads = 4, kKeys = 200;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(cache_->set_conversation("old" + std::to_string(i), Doc(i)));
  }
  clock_->advance(61s);
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(cache_->set_conversation("new" + std::to_string(i), Doc(i)));
  }
  clock_->advance(2s);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kKeys; ++i) {
        (void)cache_->get_conversation("old" + std::to_string(i));
        (void)cache_->get_conversation("new" + std::to_string(i));
        (void)cache_->set_conversation("other" + std::to_string(i), Doc(i));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const FamilyStats conversation = Family(CacheFamily::kConversation);
  EXPECT_EQ(conversation.hit_age_buckets[kLe5s], std::uint64_t{kThreads} * kKeys);
  EXPECT_EQ(conversation.hit_age_sum_ms, std::uint64_t{kThreads} * kKeys * 2'000);
  // 64 Ki slots for 600 keys: a collision would lose a count, never add one.
  EXPECT_LE(conversation.expired_recently_misses, std::uint64_t{kThreads} * kKeys);
  EXPECT_GE(conversation.expired_recently_misses, std::uint64_t{kThreads} * (kKeys - 10));
}

}  // namespace
}  // namespace aicache
