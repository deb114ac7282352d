// The near cache: its structure alone (a ManualClock, no Redis), then inside
// RedisStore against a real redis-server, with another client writing as
// Django would. Waiting for an invalidation polls a condition with a
// deadline; nothing sleeps for a TTL and nothing asserts speed.
#include "redis/near_cache.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/redis_store.h"
#include "aicache/testing/manual_clock.h"
#include "redis/redis_store_internal.h"
#include "support/redis_server.h"

namespace aicache::testing {
namespace {

using namespace std::chrono_literals;
using redis::NearCache;

// ---------------------------------------------------------------------------
// The structure alone

class NearCacheUnit : public ::testing::Test {
 protected:
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  NearCache near_{1 << 20, clock_};

  bool Put(std::string_view key, std::string_view value,
           std::optional<Clock::TimePoint> deadline = std::nullopt) {
    return near_.insert(key, value, deadline, near_.read_ticket(key));
  }
  std::optional<std::string> Get(std::string_view key) {
    auto hit = near_.lookup(key);
    if (!hit) return std::nullopt;
    return hit->value;
  }
};

TEST_F(NearCacheUnit, NothingIsCachedBeforeTrackingIsLive) {
  EXPECT_FALSE(Put("k", "v"));
  EXPECT_EQ(Get("k"), std::nullopt);
  near_.tracking_up();
  EXPECT_TRUE(Put("k", "v"));
  EXPECT_EQ(Get("k"), "v");
}

TEST_F(NearCacheUnit, DisconnectStrandsEveryEntryEvenAfterRecovery) {
  near_.tracking_up();
  ASSERT_TRUE(Put("k", "v"));
  const NearCache::Ticket before = near_.read_ticket("other");
  near_.tracking_down();
  EXPECT_EQ(Get("k"), std::nullopt);
  near_.tracking_up();
  EXPECT_EQ(Get("k"), std::nullopt);
  // A read that began before the disconnect is not inserted after it.
  EXPECT_FALSE(near_.insert("other", "v", std::nullopt, before));
  EXPECT_EQ(near_.figures().disconnects, 1u);
}

TEST_F(NearCacheUnit, InvalidationDuringTheReadRefusesTheInsert) {
  near_.tracking_up();
  const NearCache::Ticket ticket = near_.read_ticket("k");
  near_.invalidate("k");  // arrives between the GET's reply and the insert
  EXPECT_FALSE(near_.insert("k", "v1", std::nullopt, ticket));
  EXPECT_EQ(Get("k"), std::nullopt);
  EXPECT_EQ(near_.figures().refused_inserts, 1u);
}

TEST_F(NearCacheUnit, AVouchBindsToTheBytesAndEndsWithTheEntry) {
  near_.tracking_up();
  ASSERT_TRUE(Put("k", "v1"));
  EXPECT_FALSE(near_.lookup("k")->vouched);
  near_.vouch("k", "v0");  // checked other bytes than the entry holds
  EXPECT_FALSE(near_.lookup("k")->vouched);
  near_.vouch("k", "v1");
  EXPECT_TRUE(near_.lookup("k")->vouched);
  near_.vouch("absent", "v1");  // nothing to vouch for: no entry appears
  EXPECT_EQ(Get("absent"), std::nullopt);

  near_.invalidate("k");
  ASSERT_TRUE(Put("k", "v1"));  // the same bytes again, but a new entry
  EXPECT_FALSE(near_.lookup("k")->vouched);
  near_.vouch("k", "v1");
  near_.drop("k");
  ASSERT_TRUE(Put("k", "v2"));
  EXPECT_FALSE(near_.lookup("k")->vouched);
}

// Invalidations refuse reads per stripe of keys, not per shard: among ten
// neighbours some fall in another stripe than "a" (64 stripes), and their
// invalidation leaves a read of "a" free to be cached.
TEST(NearCacheStripes, NeighboursInvalidationUsuallyLeavesTheInsertAlone) {
  NearCache near(1 << 20, nullptr, 1);
  near.tracking_up();
  int inserted = 0;
  for (int i = 0; i < 10; ++i) {
    const NearCache::Ticket ticket = near.read_ticket("a");
    near.invalidate(fmt::format("b{}", i));
    if (near.insert("a", "v", std::nullopt, ticket)) ++inserted;
    near.invalidate("a");
  }
  EXPECT_GT(inserted, 0);
}

TEST_F(NearCacheUnit, OwnWriteDuringTheReadRefusesTheInsert) {
  near_.tracking_up();
  const NearCache::Ticket ticket = near_.read_ticket("k");
  near_.drop("k");
  EXPECT_FALSE(near_.insert("k", "old", std::nullopt, ticket));
}

TEST_F(NearCacheUnit, FlushEmptiesAndRefusesReadsInFlight) {
  near_.tracking_up();
  ASSERT_TRUE(Put("a", "1"));
  const NearCache::Ticket ticket = near_.read_ticket("b");
  near_.invalidate_all(true);
  EXPECT_EQ(Get("a"), std::nullopt);
  EXPECT_FALSE(near_.insert("b", "2", std::nullopt, ticket));
  EXPECT_EQ(near_.figures().flushes, 1u);
  EXPECT_EQ(near_.figures().entries, 0u);
}

TEST_F(NearCacheUnit, EntryNeverOutlivesItsDeadline) {
  near_.tracking_up();
  ASSERT_TRUE(Put("k", "v", clock_->now() + 10s));
  auto hit = near_.lookup("k");
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->ttl.state, KeyTtl::State::kExpiring);
  EXPECT_EQ(hit->ttl.remaining, 10s);
  clock_->advance(9999ms);
  ASSERT_TRUE(near_.lookup("k"));
  EXPECT_EQ(near_.lookup("k")->ttl.remaining, 1ms);
  clock_->advance(1ms);
  EXPECT_EQ(Get("k"), std::nullopt);
  EXPECT_EQ(near_.figures().expirations, 1u);
}

TEST_F(NearCacheUnit, PersistentEntryReportsPersistent) {
  near_.tracking_up();
  ASSERT_TRUE(Put("k", "v"));
  EXPECT_EQ(near_.lookup("k")->ttl.state, KeyTtl::State::kPersistent);
}

TEST(NearCacheBound, EvictsLeastRecentlyUsedToStayWithinBytes) {
  // One shard, room for three 100-byte values.
  constexpr std::size_t kEntry = 1 + 100 + NearCache::kEntryOverhead;
  NearCache near(3 * kEntry, nullptr, 1);
  near.tracking_up();
  const std::string v(100, 'x');
  for (std::string k : {"a", "b", "c"}) ASSERT_TRUE(near.insert(k, v, {}, near.read_ticket(k)));
  ASSERT_TRUE(near.lookup("a"));  // a is now the most recently used
  ASSERT_TRUE(near.insert("d", v, {}, near.read_ticket("d")));
  EXPECT_TRUE(near.lookup("a"));
  EXPECT_FALSE(near.lookup("b"));
  EXPECT_TRUE(near.lookup("c"));
  EXPECT_TRUE(near.lookup("d"));
  const redis::NearCacheFigures f = near.figures();
  EXPECT_EQ(f.evictions, 1u);
  EXPECT_EQ(f.entries, 3u);
  EXPECT_LE(f.bytes, 3 * kEntry);
  // A value larger than the whole budget is not cached at all.
  EXPECT_FALSE(near.insert("big", std::string(4 * kEntry, 'y'), {}, near.read_ticket("big")));
  EXPECT_EQ(near.figures().entries, 3u);
}

// ---------------------------------------------------------------------------
// Inside RedisStore, against a real redis-server

// Another client of the same server, as Django (django-redis) is one.
class OtherClient {
 public:
  explicit OtherClient(std::uint16_t port) : c_(redisConnect("127.0.0.1", port)) {
    if (c_ == nullptr || c_->err != 0) ADD_FAILURE() << "cannot connect the other client";
  }
  ~OtherClient() { redisFree(c_); }
  OtherClient(const OtherClient&) = delete;
  OtherClient& operator=(const OtherClient&) = delete;

  // The reply as text (status, string or integer); fails the test on an error.
  std::string command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (r == nullptr) {
      ADD_FAILURE() << "other client: " << c_->errstr;
      return {};
    }
    std::string out = r->type == REDIS_REPLY_INTEGER ? std::to_string(r->integer)
                      : r->str != nullptr            ? std::string(r->str, r->len)
                                                     : std::string();
    EXPECT_NE(r->type, REDIS_REPLY_ERROR) << out;
    freeReplyObject(r);
    return out;
  }

 private:
  redisContext* c_;
};

std::string Key(const std::string& name) { return fmt::format("near:{}:{}", ::getpid(), name); }

// Polls `done` until it holds or `limit` passes; true if it held.
bool Eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return done();
}

std::uint64_t Figure(Store& store, const std::string& name) {
  auto stats = store.stats();
  EXPECT_TRUE(stats) << stats.error().to_string();
  if (!stats) return 0;
  auto it = stats->details.find(name);
  EXPECT_NE(it, stats->details.end()) << name;
  return it == stats->details.end() ? 0 : std::stoull(it->second);
}

class NearCacheRedis : public ::testing::Test {
 protected:
  std::shared_ptr<Store> Make(RedisServer& server, redis::NearTestHooks hooks = {},
                              std::size_t max_bytes = std::size_t{64} << 20,
                              std::shared_ptr<const Clock> clock = nullptr) {
    auto endpoint = parse_redis_url(server.url());
    EXPECT_TRUE(endpoint);
    RedisStoreOptions options;
    options.endpoint = *endpoint;
    options.pool_size = 8;
    options.near_cache_max_bytes = max_bytes;
    options.clock = std::move(clock);
    auto store = redis::make_redis_store_with_hooks(options, std::move(hooks));
    EXPECT_TRUE(store) << store.error().to_string();
    return store ? *store : nullptr;
  }

  // Reads `key` until `expected` comes back (nullopt: a miss).
  static bool EventuallyReads(Store& store, const std::string& key,
                              const std::optional<std::string>& expected) {
    return Eventually([&] {
      auto v = store.get(key);
      return v && *v == expected;
    });
  }

  RedisServer& server_ = shared_redis_server();
};

// The tests that define the near cache's guarantees, in both tracking modes:
// default (REDIRECT from each pooled connection, the product's) and BCAST
// (the subscriber registers this test's key prefix; tests and benchmarks
// only, docs/near_cache.md "REDIRECT or BCAST").
class NearCacheModes : public NearCacheRedis, public ::testing::WithParamInterface<bool> {
 protected:
  std::shared_ptr<Store> Make(RedisServer& server) {
    return NearCacheRedis::Make(server, {.bcast = GetParam(), .bcast_prefix = Key("")});
  }
};

INSTANTIATE_TEST_SUITE_P(Tracking, NearCacheModes, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Bcast" : "Redirect";
                         });

TEST_F(NearCacheRedis, SecondReadIsServedNearAndStatsSayTrackingIsLive) {
  auto store = Make(server_);
  ASSERT_TRUE(store);
  const std::string k = Key("served");
  ASSERT_TRUE(store->set(k, "v1"));
  ASSERT_EQ(*store->get(k), "v1");
  const std::uint64_t hits = Figure(*store, "near_hits");
  ASSERT_EQ(*store->get(k), "v1");
  EXPECT_EQ(Figure(*store, "near_hits"), hits + 1);
  EXPECT_EQ(Figure(*store, "near_tracking_live"), 1u);
  EXPECT_GE(Figure(*store, "near_entries"), 1u);
  auto with_ttl = store->get_with_ttl(k);
  ASSERT_TRUE(with_ttl && *with_ttl);
  EXPECT_EQ((*with_ttl)->ttl.state, KeyTtl::State::kExpiring);
  EXPECT_LE((*with_ttl)->ttl.remaining, 300s);
  ASSERT_TRUE(store->remove(k));
}

TEST_P(NearCacheModes, AnotherClientsChangesAreSeen) {
  auto store = Make(server_);
  ASSERT_TRUE(store);
  OtherClient other(server_.port());
  const std::string k = Key("other"), renamed = Key("renamed");
  other.command({"SET", k, "v1"});
  ASSERT_EQ(*store->get(k), "v1");
  ASSERT_EQ(*store->get(k), "v1");  // now near

  other.command({"SET", k, "v2"});
  EXPECT_TRUE(EventuallyReads(*store, k, "v2"));
  ASSERT_EQ(*store->get(k), "v2");

  other.command({"DEL", k});
  EXPECT_TRUE(EventuallyReads(*store, k, std::nullopt));

  other.command({"SET", k, "v3"});
  ASSERT_TRUE(EventuallyReads(*store, k, "v3"));
  other.command({"RENAME", k, renamed});
  EXPECT_TRUE(EventuallyReads(*store, k, std::nullopt));

  other.command({"SET", k, "v4"});
  ASSERT_TRUE(EventuallyReads(*store, k, "v4"));
  other.command({"PEXPIRE", k, "20"});  // Redis expires it and says so
  EXPECT_TRUE(EventuallyReads(*store, k, std::nullopt));

  other.command({"SET", k, "5"});
  ASSERT_TRUE(EventuallyReads(*store, k, "5"));
  other.command({"INCR", k});
  EXPECT_TRUE(EventuallyReads(*store, k, "6"));
  EXPECT_GE(Figure(*store, "near_invalidations"), 5u);
  other.command({"DEL", k, renamed});
}

// What peek_local() answers, without its TTL.
std::optional<std::string> PeekedValue(Store& store, const std::string& key) {
  auto peeked = store.peek_local(key);
  if (!peeked) return std::nullopt;
  return peeked->value;
}

TEST_F(NearCacheRedis, PeekLocalAnswersOnlyNearHitsAndNeverAStaleOne) {
  auto store = Make(server_);
  ASSERT_TRUE(store);
  OtherClient other(server_.port());
  const std::string k = Key("peek");
  EXPECT_EQ(PeekedValue(*store, k), std::nullopt);  // never read: cannot tell
  other.command({"SET", k, "v1"});
  EXPECT_EQ(PeekedValue(*store, k), std::nullopt);  // still not read here
  ASSERT_EQ(*store->get(k), "v1");
  EXPECT_EQ(PeekedValue(*store, k), "v1");

  other.command({"SET", k, "v2"});
  // Once the invalidation is in, peek cannot tell; it never answers v1 again
  // after a read saw v2.
  ASSERT_TRUE(EventuallyReads(*store, k, "v2"));
  EXPECT_NE(PeekedValue(*store, k), "v1");
  ASSERT_TRUE(store->remove(k));
  EXPECT_EQ(PeekedValue(*store, k), std::nullopt);  // own delete: dropped at once
}

TEST_F(NearCacheRedis, AssistantCacheGetIfLocalIsTheTypedGetOfANearHit) {
  auto store = Make(server_);
  ASSERT_TRUE(store);
  auto cache = AssistantCache::create(store, {.key_prefix = fmt::format("gil{}", ::getpid())});
  ASSERT_TRUE(cache) << cache.error().to_string();
  auto doc = JsonDocument::parse(R"({"model":"m1"})");
  ASSERT_TRUE(doc);
  ASSERT_TRUE((*cache)->set_ai_config("u1", *doc));

  // Not read yet: the caller must do the blocking read.
  EXPECT_FALSE((*cache)->get_if_local(CacheFamily::kAiConfig, "u1").has_value());
  EXPECT_FALSE((*cache)->get_if_local(CacheFamily::kAiConfig, "nobody").has_value());
  ASSERT_TRUE((*cache)->get_ai_config("u1"));
  const auto hits_before = (*cache)->family_stats()[static_cast<std::size_t>(CacheFamily::kAiConfig)].hits;
  auto local = (*cache)->get_if_local(CacheFamily::kAiConfig, "u1");
  ASSERT_TRUE(local.has_value());
  ASSERT_TRUE(local->hit());
  EXPECT_EQ((*local)->text(), R"({"model":"m1"})");
  EXPECT_EQ((*cache)->family_stats()[static_cast<std::size_t>(CacheFamily::kAiConfig)].hits,
            hits_before + 1);
  EXPECT_FALSE((*cache)->get_if_local(CacheFamily::kToken, "wechat").has_value());

  // Another program wrote something that is not JSON: validated, as get.
  OtherClient other(server_.port());
  const std::string key = (*cache)->keys().make("raw").value();
  other.command({"SET", key, "not json"});
  ASSERT_TRUE((*cache)->get("raw").failed());
  auto raw = (*cache)->get_if_local(CacheFamily::kKv, "raw");
  ASSERT_TRUE(raw.has_value());
  EXPECT_TRUE(raw->failed());
}

// A near hit skips the JSON check once a read has checked that very copy,
// and never carries a vouch over to bytes another program wrote since.
TEST_F(NearCacheRedis, AssistantCacheChecksEachNearCopyOnce) {
  auto store = Make(server_);
  ASSERT_TRUE(store);
  auto cache = AssistantCache::create(store, {.key_prefix = fmt::format("vouch{}", ::getpid())});
  ASSERT_TRUE(cache) << cache.error().to_string();
  OtherClient other(server_.port());
  const std::string key = (*cache)->keys().make("k").value();

  other.command({"SET", key, R"({"v":1})"});
  ASSERT_TRUE((*cache)->get("k").hit());  // from Redis, checked, cached near
  auto peeked = store->peek_local(key);
  ASSERT_TRUE(peeked);
  EXPECT_TRUE(peeked->vouched);
  auto near_hit = (*cache)->get_if_local(CacheFamily::kKv, "k");
  ASSERT_TRUE(near_hit && near_hit->hit());
  EXPECT_EQ((*near_hit)->text(), R"({"v":1})");

  // Another program replaces it with text that is not JSON: every read of
  // the new copy is checked, and fails, however often it is read.
  other.command({"SET", key, "{not json"});
  ASSERT_TRUE(Eventually([&] { return (*cache)->get("k").failed(); }));
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE((*cache)->get("k").failed());
    auto local = (*cache)->get_if_local(CacheFamily::kKv, "k");
    if (local) {
      EXPECT_TRUE(local->failed());
    }
  }
  auto unvouched = store->peek_local(key);
  if (unvouched) {
    EXPECT_FALSE(unvouched->vouched);
  }
  ASSERT_TRUE(store->remove(key));
}

TEST_P(NearCacheModes, OwnWritesAreSeenAtOnce) {
  auto store = Make(server_);
  ASSERT_TRUE(store);
  const std::string k = Key("own:k");
  auto read_twice = [&]() -> std::optional<std::string> {
    (void)store->get(k);
    return *store->get(k);
  };
  ASSERT_TRUE(store->set(k, "1"));
  ASSERT_EQ(read_twice(), "1");
  ASSERT_TRUE(store->set(k, "2"));
  EXPECT_EQ(*store->get(k), "2");
  ASSERT_EQ(read_twice(), "2");
  EXPECT_EQ(*store->incr(k, 5), 7);
  EXPECT_EQ(*store->get(k), "7");
  ASSERT_EQ(read_twice(), "7");
  EXPECT_TRUE(*store->remove_if_equals(k, "7"));
  EXPECT_EQ(*store->get(k), std::nullopt);
  ASSERT_TRUE(store->set(k, "8"));
  ASSERT_EQ(read_twice(), "8");
  EXPECT_TRUE(*store->touch(k, Ttl(std::chrono::milliseconds(5000))));
  auto t = *store->get_with_ttl(k);
  ASSERT_TRUE(t);
  EXPECT_LE(t->ttl.remaining, 5000ms);
  ASSERT_EQ(read_twice(), "8");
  EXPECT_TRUE(*store->remove(k));
  EXPECT_EQ(*store->get(k), std::nullopt);
  const std::vector<std::pair<std::string, std::string>> entries{{k, "9"}};
  ASSERT_TRUE(store->set_many(entries));
  EXPECT_EQ(*store->get(k), "9");
  ASSERT_EQ(read_twice(), "9");
  const std::vector<std::string> keys{k};
  EXPECT_EQ(*store->remove_many(keys), 1u);
  EXPECT_EQ((*store->get_many(keys))[0], std::nullopt);
  ASSERT_TRUE(store->set(k, "10"));
  ASSERT_EQ(read_twice(), "10");
  EXPECT_EQ(*store->clear(Key("own:")), 1u);
  EXPECT_EQ(*store->get(k), std::nullopt);
}

TEST_P(NearCacheModes, FlushdbEmptiesTheNearCache) {
  auto store = Make(server_);
  ASSERT_TRUE(store);
  OtherClient other(server_.port());
  const std::string k = Key("flush");
  other.command({"SET", k, "v"});
  ASSERT_EQ(*store->get(k), "v");
  const std::uint64_t flushes = Figure(*store, "near_flushes");
  other.command({"FLUSHDB"});
  EXPECT_TRUE(Eventually([&] { return Figure(*store, "near_flushes") > flushes; }));
  EXPECT_EQ(*store->get(k), std::nullopt);
}

// Under BCAST Redis reports changes under the registered prefix only, so a
// key outside it is read from Redis every time, never served near.
TEST_F(NearCacheRedis, BcastNeverCachesAKeyOutsideItsPrefix) {
  auto store = Make(server_, {.bcast = true, .bcast_prefix = Key("in:")});
  ASSERT_TRUE(store);
  OtherClient other(server_.port());
  const std::string in = Key("in:k"), out = Key("out:k");
  const std::uint64_t invalidations = Figure(*store, "near_invalidations");
  other.command({"SET", in, "v"});
  other.command({"SET", out, "v"});
  // Under BCAST the SET of `in` is announced too; until that message is in,
  // it may refuse the insert of the read below (as it must), and the test
  // would count a miss where it expects a hit.
  ASSERT_TRUE(Eventually([&] { return Figure(*store, "near_invalidations") > invalidations; }));
  ASSERT_EQ(*store->get(in), "v");
  ASSERT_EQ(*store->get(out), "v");
  const std::uint64_t hits = Figure(*store, "near_hits");
  ASSERT_EQ(*store->get(in), "v");
  EXPECT_EQ(Figure(*store, "near_hits"), hits + 1);
  ASSERT_EQ(*store->get(out), "v");
  EXPECT_EQ(Figure(*store, "near_hits"), hits + 1);
  other.command({"DEL", in, out});
}

// The race: a read's reply carries v1, the invalidation for the key arrives
// and is applied, and only then is v1 offered to the near cache. It must be
// refused, or v1 would be served until the next change.
TEST_F(NearCacheRedis, InvalidationBetweenReplyAndInsertIsNotLost) {
  OtherClient other(server_.port());
  const std::string k = Key("race");
  std::shared_ptr<Store> store;
  std::atomic<bool> armed{false};
  redis::NearTestHooks hooks;
  hooks.before_insert = [&](std::string_view key) {
    if (key != k || !armed.exchange(false)) return;
    const std::uint64_t seen = Figure(*store, "near_invalidations");
    other.command({"SET", k, "v2"});
    EXPECT_TRUE(Eventually([&] { return Figure(*store, "near_invalidations") > seen; }));
  };
  store = Make(server_, hooks);
  ASSERT_TRUE(store);
  other.command({"SET", k, "v1"});
  armed = true;
  EXPECT_EQ(*store->get(k), "v1");  // what Redis answered when read
  EXPECT_EQ(*store->get(k), "v2");  // not v1 from the near cache
  EXPECT_GE(Figure(*store, "near_refused_inserts"), 1u);
  other.command({"DEL", k});
}

TEST_F(NearCacheRedis, KilledSubscriberMeansBypassThenRecovery) {
  auto store = Make(server_, {.before_insert = {}, .after_invalidate = {}, .ping_interval = 100ms});
  ASSERT_TRUE(store);
  OtherClient other(server_.port());
  const std::string k = Key("kill");
  other.command({"SET", k, "v1"});
  ASSERT_EQ(*store->get(k), "v1");
  ASSERT_EQ(*store->get(k), "v1");
  const std::uint64_t disconnects = Figure(*store, "near_disconnects");

  other.command({"CLIENT", "KILL", "TYPE", "pubsub"});
  other.command({"SET", k, "v2"});  // its invalidation has nowhere to go
  EXPECT_TRUE(EventuallyReads(*store, k, "v2"));
  EXPECT_GT(Figure(*store, "near_disconnects"), disconnects);

  // Back: the pool's connections redirect to the new subscriber, so another
  // client's write is seen again.
  ASSERT_TRUE(Eventually([&] { return Figure(*store, "near_tracking_live") == 1; }));
  ASSERT_EQ(*store->get(k), "v2");
  const std::uint64_t hits = Figure(*store, "near_hits");
  ASSERT_EQ(*store->get(k), "v2");
  EXPECT_GT(Figure(*store, "near_hits"), hits);
  other.command({"SET", k, "v3"});
  EXPECT_TRUE(EventuallyReads(*store, k, "v3"));
  other.command({"DEL", k});
}

TEST_F(NearCacheRedis, RedisRestartedEmptyServesNothingOld) {
  RedisServer server;
  auto store = Make(server, {.before_insert = {}, .after_invalidate = {}, .ping_interval = 100ms});
  ASSERT_TRUE(store);
  const std::string k = Key("restart");
  ASSERT_TRUE(store->set(k, "v1"));
  ASSERT_EQ(*store->get(k), "v1");
  ASSERT_EQ(*store->get(k), "v1");
  server.kill();
  server.restart();
  // The first reads may fail on connections that died with the server.
  EXPECT_TRUE(Eventually([&] {
    auto v = store->get(k);
    return v && !*v;
  }));
  ASSERT_TRUE(Eventually([&] { return Figure(*store, "near_tracking_live") == 1; }));
  ASSERT_TRUE(store->set(k, "v2"));
  ASSERT_EQ(*store->get(k), "v2");
  OtherClient other(server.port());
  other.command({"SET", k, "v3"});
  EXPECT_TRUE(EventuallyReads(*store, k, "v3"));
}

TEST_F(NearCacheRedis, KeyEvictedByMaxmemoryIsSeenGone) {
  RedisServer server({.extra_args = {"--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"}});
  auto store = Make(server);
  ASSERT_TRUE(store);
  OtherClient other(server.port());
  const std::string k = Key("evicted");
  other.command({"SET", k, "v"});
  ASSERT_EQ(*store->get(k), "v");
  ASSERT_EQ(*store->get(k), "v");  // near from now on: Redis sees k go cold
  const std::string filler(10000, 'f');
  for (int i = 0; i < 2000 && other.command({"EXISTS", k}) == "1"; ++i) {
    other.command({"SET", Key(fmt::format("filler{}", i)), filler});
  }
  ASSERT_EQ(other.command({"EXISTS", k}), "0") << "Redis never evicted the key";
  EXPECT_TRUE(EventuallyReads(*store, k, std::nullopt));
}

TEST_F(NearCacheRedis, EntryEndsWithTheKeysTtl) {
  auto clock = std::make_shared<ManualClock>();
  auto store = Make(server_, {}, std::size_t{1} << 20, clock);
  ASSERT_TRUE(store);
  const std::string k = Key("ttl");
  ASSERT_TRUE(store->set(k, "v", Ttl(std::chrono::milliseconds(60000))));
  ASSERT_EQ(*store->get(k), "v");
  const std::uint64_t hits = Figure(*store, "near_hits");
  ASSERT_EQ(*store->get(k), "v");
  ASSERT_EQ(Figure(*store, "near_hits"), hits + 1);
  clock->advance(60001ms);  // Redis's clock has not moved: the key is still there
  ASSERT_EQ(*store->get(k), "v");
  EXPECT_EQ(Figure(*store, "near_hits"), hits + 1);
  EXPECT_EQ(Figure(*store, "near_expirations"), 1u);
  ASSERT_TRUE(*store->remove(k));
}

TEST_F(NearCacheRedis, StaysWithinItsByteBound) {
  constexpr std::size_t kMax = 16 * 1024;
  auto store = Make(server_, {}, kMax);
  ASSERT_TRUE(store);
  std::vector<std::pair<std::string, std::string>> entries;
  for (int i = 0; i < 200; ++i) entries.emplace_back(Key(fmt::format("b{}", i)), std::string(300, 'v'));
  ASSERT_TRUE(store->set_many(entries));
  for (const auto& [k, v] : entries) ASSERT_EQ(*store->get(k), v);
  EXPECT_LE(Figure(*store, "near_bytes"), kMax);
  EXPECT_GT(Figure(*store, "near_evictions"), 0u);
  EXPECT_GT(Figure(*store, "near_entries"), 0u);
  std::vector<std::string> keys;
  for (const auto& e : entries) keys.push_back(e.first);
  ASSERT_TRUE(store->remove_many(keys));
}

// A server where CLIENT is unavailable (renamed away, as an ACL might deny
// it): the tracker never goes live, and the store works without caching.
TEST_F(NearCacheRedis, WithoutClientTrackingEveryReadGoesToRedis) {
  RedisServer server({.extra_args = {"--rename-command", "CLIENT", ""}});
  auto store = Make(server);
  ASSERT_TRUE(store);
  OtherClient other(server.port());
  const std::string k = Key("untracked");
  other.command({"SET", k, "v1"});
  EXPECT_EQ(*store->get(k), "v1");
  EXPECT_EQ(*store->get(k), "v1");
  other.command({"SET", k, "v2"});
  EXPECT_EQ(*store->get(k), "v2");  // at once: nothing was cached
  EXPECT_EQ(Figure(*store, "near_hits"), 0u);
  EXPECT_EQ(Figure(*store, "near_tracking_live"), 0u);
}

// An error reply to the read itself (WRONGTYPE) fails that read, and is not
// mistaken for Redis refusing CLIENT TRACKING, which would turn the near
// cache off for good.
TEST_F(NearCacheRedis, WrongTypeReadLeavesTrackingOn) {
  auto store = Make(server_);
  ASSERT_TRUE(store);
  OtherClient other(server_.port());
  const std::string list = Key("list"), k = Key("after-list");
  other.command({"RPUSH", list, "x"});
  auto wrong = store->get(list);  // the connection's first read: tracking goes with it
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(store->set(k, "v"));
  ASSERT_EQ(*store->get(k), "v");
  const std::uint64_t hits = Figure(*store, "near_hits");
  ASSERT_EQ(*store->get(k), "v");
  EXPECT_EQ(Figure(*store, "near_hits"), hits + 1);
  EXPECT_EQ(Figure(*store, "near_tracking_errors"), 0u);
  other.command({"DEL", list, k});
}

TEST_F(NearCacheRedis, OffMeansNoNearFigures) {
  auto store = Make(server_, {}, 0);
  ASSERT_TRUE(store);
  auto stats = store->stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->details.at("near_cache"), "off");
  EXPECT_EQ(stats->details.count("near_hits"), 0u);
}

// 32 readers and a writer on another connection. A reader never sees a
// version older than the newest one acknowledged to the writer more than
// kBound before its read began. kBound is generous (the measured p99 is
// below a millisecond, docs/performance.md): it checks correctness, not speed.
TEST_P(NearCacheModes, ReadersNeverSeeVersionsOlderThanTheBound) {
  constexpr auto kBound = 500ms;
  constexpr int kVersions = 400;
  auto store = Make(server_);
  ASSERT_TRUE(store);
  OtherClient writer(server_.port());
  const std::string k = Key("versions");
  writer.command({"SET", k, "0"});
  // acked[i]: steady-clock nanoseconds when version i was acknowledged.
  std::vector<std::atomic<std::int64_t>> acked(kVersions + 1);
  auto now_ns = [] { return std::chrono::steady_clock::now().time_since_epoch().count(); };
  acked[0] = now_ns();
  std::atomic<int> latest{0};
  std::atomic<bool> done{false};
  std::atomic<int> violations{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 32; ++t) {
    readers.emplace_back([&] {
      while (!done.load()) {
        const std::int64_t began = now_ns();
        const std::int64_t limit = began - std::chrono::nanoseconds(kBound).count();
        int required = 0;
        for (int i = latest.load(); i > 0; --i) {
          if (acked[i].load() <= limit) {
            required = i;
            break;
          }
        }
        auto v = store->get(k);
        if (!v || !*v) continue;
        ++reads;
        if (std::stoi(**v) < required) ++violations;
      }
    });
  }
  for (int i = 1; i <= kVersions; ++i) {
    writer.command({"SET", k, std::to_string(i)});
    acked[i] = now_ns();
    latest = i;
    std::this_thread::sleep_for(1ms);  // paces the writer; not a wait for a result
  }
  EXPECT_TRUE(EventuallyReads(*store, k, std::to_string(kVersions)));
  done = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(violations.load(), 0) << "of " << reads.load() << " reads";
  EXPECT_GT(Figure(*store, "near_hits"), 0u);
  writer.command({"DEL", k});
}

}  // namespace
}  // namespace aicache::testing
