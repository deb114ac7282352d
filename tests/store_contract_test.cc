// The Store contract of include/aicache/store.h, run against every backend.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "aicache/memory_store.h"
#include "store_contract.h"

namespace aicache::testing {

using namespace std::chrono_literals;
using ::testing::Optional;

void StoreContract::SetUp() {
  store_ = GetParam().make(clock_);
  ASSERT_NE(store_, nullptr);
}

void StoreContract::TearDown() {
  if (store_) (void)store_->clear(GetParam().key_prefix);
}

namespace {

std::optional<std::string> Get(Store& store, const std::string& key) {
  auto value = store.get(key);
  EXPECT_TRUE(value) << value.error().to_string();
  return value ? *value : std::nullopt;
}

KeyTtl TtlOf(Store& store, const std::string& key) {
  auto ttl = store.ttl(key);
  EXPECT_TRUE(ttl) << ttl.error().to_string();
  return ttl ? *ttl : KeyTtl{};
}

constexpr int kThreads = 8;

// Runs `body(thread_index)` on kThreads threads released at once.
template <class Body>
void RaceThreads(Body body) {
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      body(t);
    });
  }
  for (auto& thread : threads) thread.join();
}

// --- get / set / remove ---------------------------------------------------------

TEST_P(StoreContract, MissIsAnEmptyValueNotAnError) {
  EXPECT_EQ(Get(*store_, key("absent")), std::nullopt);
}

TEST_P(StoreContract, SetThenGet) {
  ASSERT_TRUE(store_->set(key("k"), "v"));
  EXPECT_THAT(Get(*store_, key("k")), Optional(std::string("v")));
}

TEST_P(StoreContract, SetReplacesValue) {
  ASSERT_TRUE(store_->set(key("k"), "one"));
  ASSERT_TRUE(store_->set(key("k"), "two"));
  EXPECT_THAT(Get(*store_, key("k")), Optional(std::string("two")));
}

TEST_P(StoreContract, ValuesAreBinarySafe) {
  const std::string value("a\0b\xff\n\r", 6);
  ASSERT_TRUE(store_->set(key("bin"), value));
  EXPECT_THAT(Get(*store_, key("bin")), Optional(value));
  ASSERT_TRUE(store_->set(key("empty"), ""));
  EXPECT_THAT(Get(*store_, key("empty")), Optional(std::string()));
}

TEST_P(StoreContract, RemoveReportsWhetherTheKeyExisted) {
  ASSERT_TRUE(store_->set(key("k"), "v"));
  EXPECT_EQ(store_->remove(key("k")), true);
  EXPECT_EQ(store_->remove(key("k")), false);
  EXPECT_EQ(Get(*store_, key("k")), std::nullopt);
}

// --- TTL semantics ---------------------------------------------------------------

TEST_P(StoreContract, DefaultTtlIsTheStoreDefault) {
  ASSERT_TRUE(store_->set(key("k"), "v"));
  auto ttl = TtlOf(*store_, key("k"));
  EXPECT_EQ(ttl.state, KeyTtl::State::kExpiring);
  EXPECT_LE(ttl.remaining, 300s);
  EXPECT_GT(ttl.remaining, 290s);
}

TEST_P(StoreContract, NeverExpiresIsPersistent) {
  ASSERT_TRUE(store_->set(key("k"), "v", Ttl::never()));
  EXPECT_EQ(TtlOf(*store_, key("k")).state, KeyTtl::State::kPersistent);
  if (clock_driven()) {
    advance(24h * 365);
    EXPECT_THAT(Get(*store_, key("k")), Optional(std::string("v")));
  }
}

TEST_P(StoreContract, ZeroTtlRemovesTheEntry) {
  ASSERT_TRUE(store_->set(key("k"), "v"));
  ASSERT_TRUE(store_->set(key("k"), "w", 0s));
  EXPECT_EQ(Get(*store_, key("k")), std::nullopt);
  EXPECT_EQ(TtlOf(*store_, key("k")).state, KeyTtl::State::kMissing);
}

TEST_P(StoreContract, NegativeTtlRemovesTheEntry) {
  ASSERT_TRUE(store_->set(key("k"), "v"));
  ASSERT_TRUE(store_->set(key("k"), "w", -5s));
  EXPECT_EQ(Get(*store_, key("k")), std::nullopt);
}

TEST_P(StoreContract, ExplicitTtlIsReported) {
  ASSERT_TRUE(store_->set(key("k"), "v", 42s));
  auto ttl = TtlOf(*store_, key("k"));
  EXPECT_EQ(ttl.state, KeyTtl::State::kExpiring);
  EXPECT_LE(ttl.remaining, 42s);
  EXPECT_GT(ttl.remaining, 40s);
}

TEST_P(StoreContract, MissingKeyTtl) {
  EXPECT_EQ(TtlOf(*store_, key("absent")).state, KeyTtl::State::kMissing);
}

TEST_P(StoreContract, GetWithTtlReturnsValueAndRemainingTime) {
  ASSERT_TRUE(store_->set(key("expiring"), "v1", 42s));
  ASSERT_TRUE(store_->set(key("persistent"), "v2", Ttl::never()));

  auto hit = store_->get_with_ttl(key("expiring"));
  ASSERT_TRUE(hit) << hit.error().to_string();
  ASSERT_TRUE(*hit);
  EXPECT_EQ((*hit)->value, "v1");
  EXPECT_EQ((*hit)->ttl.state, KeyTtl::State::kExpiring);
  EXPECT_LE((*hit)->ttl.remaining, 42s);
  EXPECT_GT((*hit)->ttl.remaining, 40s);

  auto persistent = store_->get_with_ttl(key("persistent"));
  ASSERT_TRUE(persistent) << persistent.error().to_string();
  ASSERT_TRUE(*persistent);
  EXPECT_EQ((*persistent)->value, "v2");
  EXPECT_EQ((*persistent)->ttl.state, KeyTtl::State::kPersistent);

  auto miss = store_->get_with_ttl(key("absent"));
  ASSERT_TRUE(miss) << miss.error().to_string();
  EXPECT_FALSE(*miss);

  if (!clock_driven()) return;  // the store keeps its own time
  advance(41999ms);
  auto last = store_->get_with_ttl(key("expiring"));
  ASSERT_TRUE(last);
  ASSERT_TRUE(*last);
  EXPECT_EQ((*last)->ttl, (KeyTtl{KeyTtl::State::kExpiring, 1ms}));
  advance(1ms);
  auto expired = store_->get_with_ttl(key("expiring"));
  ASSERT_TRUE(expired);
  EXPECT_FALSE(*expired);
  auto still = store_->get_with_ttl(key("persistent"));
  ASSERT_TRUE(still);
  ASSERT_TRUE(*still);
  EXPECT_EQ((*still)->value, "v2");
}

TEST_P(StoreContract, GetLatestSeesEveryAcknowledgedWrite) {
  // Read first, so that a store with local copies holds one to skip.
  ASSERT_TRUE(store_->set(key("k"), "v1", 42s));
  ASSERT_TRUE(store_->get(key("k")));
  ASSERT_TRUE(store_->set(key("k"), "v2", 42s));
  auto latest = store_->get_latest(key("k"));
  ASSERT_TRUE(latest) << latest.error().to_string();
  ASSERT_TRUE(*latest);
  EXPECT_EQ((*latest)->value, "v2");
  EXPECT_EQ((*latest)->ttl.state, KeyTtl::State::kExpiring);
  EXPECT_LE((*latest)->ttl.remaining, 42s);
  ASSERT_TRUE(store_->remove(key("k")));
  auto gone = store_->get_latest(key("k"));
  ASSERT_TRUE(gone) << gone.error().to_string();
  EXPECT_FALSE(*gone);
}

TEST_P(StoreContract, EntryExpiresExactlyAtItsTtl) {
  if (!clock_driven()) GTEST_SKIP() << "the store keeps its own time";
  ASSERT_TRUE(store_->set(key("k"), "v", 10s));
  advance(9999ms);
  EXPECT_THAT(Get(*store_, key("k")), Optional(std::string("v")));
  EXPECT_EQ(TtlOf(*store_, key("k")).remaining, 1ms);
  advance(1ms);
  EXPECT_EQ(Get(*store_, key("k")), std::nullopt);
  EXPECT_EQ(TtlOf(*store_, key("k")).state, KeyTtl::State::kMissing);
  EXPECT_EQ(store_->remove(key("k")), false);
}

TEST_P(StoreContract, DefaultTtlExpires) {
  if (!clock_driven()) GTEST_SKIP() << "the store keeps its own time";
  ASSERT_TRUE(store_->set(key("k"), "v"));
  advance(299s);
  EXPECT_TRUE(Get(*store_, key("k")));
  advance(1s);
  EXPECT_EQ(Get(*store_, key("k")), std::nullopt);
}

TEST_P(StoreContract, SetAfterExpiryStartsFresh) {
  if (!clock_driven()) GTEST_SKIP() << "the store keeps its own time";
  ASSERT_TRUE(store_->set(key("k"), "old", 1s));
  advance(2s);
  ASSERT_TRUE(store_->set(key("k"), "new", Ttl::never()));
  EXPECT_THAT(Get(*store_, key("k")), Optional(std::string("new")));
  EXPECT_EQ(TtlOf(*store_, key("k")).state, KeyTtl::State::kPersistent);
}

TEST_P(StoreContract, TouchChangesTtlOfExistingKeysOnly) {
  ASSERT_TRUE(store_->set(key("k"), "v", 10s));
  EXPECT_EQ(store_->touch(key("k"), 100s), true);
  EXPECT_GT(TtlOf(*store_, key("k")).remaining, 90s);
  EXPECT_EQ(store_->touch(key("k"), Ttl::never()), true);
  EXPECT_EQ(TtlOf(*store_, key("k")).state, KeyTtl::State::kPersistent);
  EXPECT_EQ(store_->touch(key("absent"), 10s), false);
  EXPECT_EQ(TtlOf(*store_, key("absent")).state, KeyTtl::State::kMissing);
}

TEST_P(StoreContract, TouchWithRemovingTtlDeletes) {
  ASSERT_TRUE(store_->set(key("k"), "v"));
  EXPECT_EQ(store_->touch(key("k"), 0s), true);
  EXPECT_EQ(Get(*store_, key("k")), std::nullopt);
}

TEST_P(StoreContract, TouchDefaultUsesStoreDefault) {
  ASSERT_TRUE(store_->set(key("k"), "v", Ttl::never()));
  EXPECT_EQ(store_->touch(key("k"), Ttl::use_default()), true);
  EXPECT_GT(TtlOf(*store_, key("k")).remaining, 290s);
}

// --- add and remove_if_equals ------------------------------------------------------

TEST_P(StoreContract, AddStoresOnlyIfAbsent) {
  EXPECT_EQ(store_->add(key("k"), "first"), true);
  EXPECT_EQ(store_->add(key("k"), "second"), false);
  EXPECT_THAT(Get(*store_, key("k")), Optional(std::string("first")));
}

TEST_P(StoreContract, AddWithRemovingTtlStoresNothing) {
  EXPECT_EQ(store_->add(key("k"), "v", 0s), false);
  EXPECT_EQ(Get(*store_, key("k")), std::nullopt);
}

TEST_P(StoreContract, AddSucceedsAfterExpiry) {
  if (!clock_driven()) GTEST_SKIP() << "the store keeps its own time";
  ASSERT_EQ(store_->add(key("lease"), "owner-1", 5s), true);
  advance(5s);
  EXPECT_EQ(store_->add(key("lease"), "owner-2", 5s), true);
  EXPECT_THAT(Get(*store_, key("lease")), Optional(std::string("owner-2")));
}

TEST_P(StoreContract, RemoveIfEqualsDeletesOnlyTheExpectedValue) {
  ASSERT_TRUE(store_->set(key("k"), "mine"));
  EXPECT_EQ(store_->remove_if_equals(key("k"), "theirs"), false);
  EXPECT_THAT(Get(*store_, key("k")), Optional(std::string("mine")));
  EXPECT_EQ(store_->remove_if_equals(key("k"), "mine"), true);
  EXPECT_EQ(Get(*store_, key("k")), std::nullopt);
  EXPECT_EQ(store_->remove_if_equals(key("k"), "mine"), false);
}

TEST_P(StoreContract, ExactlyOneConcurrentAddWins) {
  for (int round = 0; round < 20; ++round) {
    const std::string lease = key("lease" + std::to_string(round));
    std::atomic<int> winners{0};
    std::atomic<int> errors{0};
    RaceThreads([&](int t) {
      auto added = store_->add(lease, "owner-" + std::to_string(t), 30s);
      if (!added) ++errors;
      else if (*added) ++winners;
    });
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(winners.load(), 1) << "round " << round;
  }
}

TEST_P(StoreContract, ExactlyOneConcurrentRemoveIfEqualsWins) {
  for (int round = 0; round < 20; ++round) {
    const std::string lease = key("lease" + std::to_string(round));
    ASSERT_TRUE(store_->set(lease, "owner", 30s));
    std::atomic<int> winners{0};
    RaceThreads([&](int) {
      auto removed = store_->remove_if_equals(lease, "owner");
      if (removed && *removed) ++winners;
    });
    EXPECT_EQ(winners.load(), 1) << "round " << round;
  }
}

TEST_P(StoreContract, LeaseHandOverUnderContention) {
  // Each thread repeatedly takes the lease with add and gives it back with
  // remove_if_equals; no two threads may ever hold it at once.
  std::atomic<int> holders{0};
  std::atomic<int> max_holders{0};
  std::atomic<int> acquisitions{0};
  RaceThreads([&](int t) {
    const std::string me = "owner-" + std::to_string(t);
    for (int i = 0; i < 200; ++i) {
      auto added = store_->add(key("lease"), me, 30s);
      if (!added || !*added) continue;
      const int now = ++holders;
      int seen = max_holders.load();
      while (now > seen && !max_holders.compare_exchange_weak(seen, now)) {
      }
      ++acquisitions;
      --holders;
      ASSERT_EQ(store_->remove_if_equals(key("lease"), me), true);
    }
  });
  EXPECT_EQ(max_holders.load(), 1);
  EXPECT_GT(acquisitions.load(), 0);
}

// --- batches ------------------------------------------------------------------------

TEST_P(StoreContract, GetManyKeepsOrderAndReportsMisses) {
  ASSERT_TRUE(store_->set(key("a"), "1"));
  ASSERT_TRUE(store_->set(key("c"), "3"));
  const std::vector<std::string> keys = {key("a"), key("b"), key("c"), key("a")};
  auto values = store_->get_many(keys);
  ASSERT_TRUE(values);
  ASSERT_EQ(values->size(), 4u);
  EXPECT_THAT((*values)[0], Optional(std::string("1")));
  EXPECT_EQ((*values)[1], std::nullopt);
  EXPECT_THAT((*values)[2], Optional(std::string("3")));
  EXPECT_THAT((*values)[3], Optional(std::string("1")));
  EXPECT_EQ(store_->get_many(std::vector<std::string>{})->size(), 0u);
}

TEST_P(StoreContract, SetManyAppliesOneTtl) {
  const std::vector<std::pair<std::string, std::string>> entries = {{key("x"), "1"},
                                                                    {key("y"), "2"}};
  ASSERT_TRUE(store_->set_many(entries, 60s));
  EXPECT_THAT(Get(*store_, key("x")), Optional(std::string("1")));
  EXPECT_THAT(Get(*store_, key("y")), Optional(std::string("2")));
  EXPECT_LE(TtlOf(*store_, key("y")).remaining, 60s);
  ASSERT_TRUE(store_->set_many(entries, 0s));
  EXPECT_EQ(Get(*store_, key("x")), std::nullopt);
}

TEST_P(StoreContract, RemoveManyCountsExistingKeys) {
  ASSERT_TRUE(store_->set(key("a"), "1"));
  ASSERT_TRUE(store_->set(key("b"), "2"));
  const std::vector<std::string> keys = {key("a"), key("b"), key("zzz")};
  EXPECT_EQ(store_->remove_many(keys), 2u);
  EXPECT_EQ(Get(*store_, key("a")), std::nullopt);
}

// --- incr ------------------------------------------------------------------------------

TEST_P(StoreContract, IncrCreatesAddsAndKeepsTtl) {
  EXPECT_EQ(store_->incr(key("n"), 5, 60s), 5);
  EXPECT_EQ(store_->incr(key("n"), -2, 999s), 3);
  EXPECT_THAT(Get(*store_, key("n")), Optional(std::string("3")));
  EXPECT_LE(TtlOf(*store_, key("n")).remaining, 60s);
}

TEST_P(StoreContract, IncrOfNonIntegerFails) {
  ASSERT_TRUE(store_->set(key("s"), "\"text\""));
  auto r = store_->incr(key("s"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(Get(*store_, key("s")), Optional(std::string("\"text\"")));
}

// What Redis's INCRBY calls an integer, every store does: canonical decimal
// only (no leading zeros, no "-0", no '+', no spaces).
TEST_P(StoreContract, IncrAcceptsOnlyCanonicalIntegers) {
  for (std::string_view bad : {"007", "-0", "-01", "+1", " 1", "1 ", "", "1.0", "0x10"}) {
    ASSERT_TRUE(store_->set(key("c"), bad));
    auto r = store_->incr(key("c"));
    ASSERT_FALSE(r) << "\"" << bad << "\"";
    EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition) << "\"" << bad << "\"";
    EXPECT_THAT(Get(*store_, key("c")), Optional(std::string(bad)));
  }
  for (auto [good, next] : {std::pair{"0", 1}, {"-1", 0}, {"10", 11}, {"-10", -9}}) {
    ASSERT_TRUE(store_->set(key("c"), good));
    EXPECT_EQ(store_->incr(key("c")), next) << good;
  }
}

TEST_P(StoreContract, IncrOverflowFailsAndLeavesValue) {
  ASSERT_TRUE(store_->set(key("n"), "9223372036854775807"));
  auto r = store_->incr(key("n"), 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kOutOfRange);
  EXPECT_THAT(Get(*store_, key("n")), Optional(std::string("9223372036854775807")));
}

TEST_P(StoreContract, IncrIsAtomicUnderThreads) {
  constexpr int kPerThread = 500;
  std::atomic<int> errors{0};
  RaceThreads([&](int) {
    for (int i = 0; i < kPerThread; ++i) {
      if (!store_->incr(key("counter"), 1, Ttl::never())) ++errors;
    }
  });
  EXPECT_EQ(errors.load(), 0);
  EXPECT_THAT(Get(*store_, key("counter")), Optional(std::to_string(kThreads * kPerThread)));
}

TEST_P(StoreContract, IncrAfterExpiryStartsFromZero) {
  if (!clock_driven()) GTEST_SKIP() << "the store keeps its own time";
  ASSERT_EQ(store_->incr(key("n"), 7, 1s), 7);
  advance(1s);
  EXPECT_EQ(store_->incr(key("n"), 1, 1s), 1);
}

// --- clear and stats -----------------------------------------------------------------

TEST_P(StoreContract, ClearRemovesOnlyThePrefix) {
  const std::string mine = key("mine:");
  ASSERT_TRUE(store_->set(mine + "a", "1"));
  ASSERT_TRUE(store_->set(mine + "b", "2"));
  ASSERT_TRUE(store_->set(key("other"), "3"));
  EXPECT_EQ(store_->clear(mine), 2u);
  EXPECT_EQ(Get(*store_, mine + "a"), std::nullopt);
  EXPECT_THAT(Get(*store_, key("other")), Optional(std::string("3")));
}

TEST_P(StoreContract, ClearRefusesAnEmptyPrefix) {
  ASSERT_TRUE(store_->set(key("k"), "v"));
  auto r = store_->clear("");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(Get(*store_, key("k")));
}

TEST_P(StoreContract, ClearTreatsGlobCharactersLiterally) {
  ASSERT_TRUE(store_->set(key("a*:1"), "1"));
  ASSERT_TRUE(store_->set(key("ab:1"), "2"));
  EXPECT_EQ(store_->clear(key("a*:")), 1u);
  EXPECT_TRUE(Get(*store_, key("ab:1")));
}

// --- scan -------------------------------------------------------------------------------

TEST_P(StoreContract, ScanReturnsEveryKeyOfThePrefixAndNoOther) {
  const std::string mine = key("scan:");
  std::set<std::string> written;
  std::vector<std::pair<std::string, std::string>> entries;
  for (int i = 0; i < 230; ++i) {
    entries.emplace_back(fmt::format("{}{}", mine, i), "v");
    written.insert(entries.back().first);
  }
  ASSERT_TRUE(store_->set_many(entries, Ttl(std::chrono::seconds(300))));
  ASSERT_TRUE(store_->set(key("scan*"), "not mine"));  // a glob character is literal
  ASSERT_TRUE(store_->set(key("other"), "not mine"));

  std::set<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    auto page = store_->scan(mine, cursor, 17);
    ASSERT_TRUE(page) << page.error().to_string();
    for (const std::string& k : page->keys) {
      EXPECT_TRUE(k.starts_with(mine)) << k;
      seen.insert(k);
    }
    cursor = page->cursor;
    ASSERT_LT(++pages, 10000) << "the scan does not end";
  } while (!cursor.empty());
  EXPECT_EQ(seen, written);
}

TEST_P(StoreContract, ScanRefusesACursorItDidNotMake) {
  for (const char* bad : {"garbage", "0", ":", "1:", ":1", "0:-1", "0:1x", "99999999:0",
                          "18446744073709551616:0"}) {
    auto page = store_->scan(key(""), bad, 10);
    ASSERT_FALSE(page) << bad;
    EXPECT_EQ(page.error().code, ErrorCode::kInvalidArgument) << bad;
  }
}

TEST_P(StoreContract, StatsCountHitsAndMisses) {
  auto before = store_->stats();
  ASSERT_TRUE(before) << before.error().to_string();
  ASSERT_TRUE(store_->set(key("k"), "v"));
  (void)store_->get(key("k"));
  (void)store_->get(key("absent"));
  auto after = store_->stats();
  ASSERT_TRUE(after);
  EXPECT_FALSE(after->backend.empty());
  EXPECT_GE(after->hits, before->hits + 1);
  EXPECT_GE(after->misses, before->misses + 1);
  EXPECT_GE(after->entries, 1u);
  EXPECT_GT(after->used_memory_bytes, 0u);
  EXPECT_FALSE(after->used_memory_human.empty());
  EXPECT_GT(after->commands_processed, before->commands_processed);
}

TEST_P(StoreContract, ManyThreadsReadTheirOwnWrites) {
  std::atomic<int> wrong{0};
  RaceThreads([&](int t) {
    for (int i = 0; i < 300; ++i) {
      const std::string k = key("t" + std::to_string(t) + ":" + std::to_string(i % 17));
      const std::string v = std::to_string(i);
      if (!store_->set(k, v, 60s)) ++wrong;
      auto got = store_->get(k);
      if (!got || *got != v) ++wrong;
    }
  });
  EXPECT_EQ(wrong.load(), 0);
}

// --- the memory store joins here; the Redis store in redis/ -------------------------

StoreUnderTest MemoryStoreUnderTest() {
  return {.name = "Memory",
          .make =
              [](std::shared_ptr<const Clock> clock) {
                return make_memory_store({.default_ttl = std::chrono::seconds(300),
                                          .clock = std::move(clock)});
              },
          .clock_driven = true,
          .key_prefix = "contract:"};
}

INSTANTIATE_TEST_SUITE_P(Memory, StoreContract, ::testing::Values(MemoryStoreUnderTest()),
                         StoreUnderTestName);

}  // namespace
}  // namespace aicache::testing
