// Behaviour specific to the memory store: bounds, eviction order, reclaim of
// expired entries, counters, sharding, concurrency. The generic Store
// contract (TTL edge cases, add/remove_if_equals races, incr...) is in
// store_contract_test.cc.
#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "aicache/clock.h"
#include "aicache/keys.h"
#include "aicache/memory_store.h"
#include "aicache/store.h"
#include "aicache/testing/manual_clock.h"
#include "memory/memory_store_internal.h"

namespace aicache {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class MemoryStoreTest : public ::testing::Test {
 protected:
  // A store on the manual clock; one shard unless told otherwise, so that
  // budgets and LRU order are exact.
  void Open(std::size_t max_bytes, std::size_t max_entries, std::size_t shards = 1) {
    MemoryStoreOptions o;
    o.max_bytes = max_bytes;
    o.max_entries = max_entries;
    o.shards = shards;
    o.clock = clock_;
    store_ = make_memory_store(o);
  }

  void Set(const std::string& key, const std::string& value, Ttl ttl = Ttl::never()) {
    ASSERT_TRUE(store_->set(key, value, ttl).has_value()) << key;
  }
  // The value, or "<miss>".
  std::string Get(const std::string& key) {
    auto r = store_->get(key);
    EXPECT_TRUE(r.has_value());
    return r.has_value() && r->has_value() ? **r : "<miss>";
  }
  StoreStats Stats() { return store_->stats().value(); }
  // Accounted bytes of one entry (the store reports its overhead estimate).
  static std::size_t Charge(std::size_t key_size, std::size_t value_size) {
    static const std::size_t overhead =
        std::stoul(make_memory_store()->stats().value().details.at("entry_overhead_bytes"));
    return key_size + value_size + overhead;
  }

  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<Store> store_;
};

// --- scan (aicache export) -------------------------------------------------------------

// Every key of the prefix that stays live for the whole scan comes back, even
// while writes between pages grow the tables; other prefixes and expired
// keys never do.
TEST_F(MemoryStoreTest, ScanFindsEveryKeyOfItsPrefixWhileTablesGrow) {
  // One shard of 500 entries (512 buckets): the writes below double it early
  // in the scan.
  Open(std::size_t{1} << 30, 1'000'000, /*shards=*/1);
  std::set<std::string> expected;
  for (int i = 0; i < 300; ++i) {
    Set("p:" + std::to_string(i), "v");
    expected.insert("p:" + std::to_string(i));
    if (i < 199) Set("q:" + std::to_string(i), "v");
  }
  Set("p:short-lived", "v", Ttl(seconds(1)));
  clock_->advance(seconds(1));
  std::set<std::string> seen;
  std::string cursor;
  int pages = 0, added = 0;
  do {
    auto page = store_->scan("p:", cursor, 7);
    ASSERT_TRUE(page) << page.error().to_string();
    EXPECT_LE(page->keys.size(), 7u + 64u);  // a page stops at the bucket after `count`
    for (const auto& key : page->keys) {
      EXPECT_TRUE(key.starts_with("p:")) << key;
      seen.insert(key);
    }
    cursor = page->cursor;
    // Writes between pages: the tables double on the way. (Fewer than a page:
    // a scan that writes faster than it reads never ends.)
    for (int i = 0; i < 5; ++i) Set("p:new" + std::to_string(added++), "v");
    ++pages;
  } while (!cursor.empty());
  EXPECT_GT(pages, 10);
  EXPECT_EQ(Stats().evictions, 0u);
  for (const auto& key : expected) EXPECT_TRUE(seen.contains(key)) << key;
  EXPECT_FALSE(seen.contains("p:short-lived"));

  EXPECT_EQ(store_->scan("p:", "9:0", 10).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_->scan("p:", "nonsense", 10).error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(store_->scan("nothing:", "", 10)->keys.empty());
}

TEST_F(MemoryStoreTest, ProcessLocalAndBackendName) {
  Open(1 << 20, 1000);
  EXPECT_TRUE(store_->process_local());
  StoreStats s = Stats();
  EXPECT_EQ("memory", s.backend);
  EXPECT_EQ(std::uint64_t{1} << 20, s.max_memory_bytes);
  EXPECT_EQ("0B", s.used_memory_human);
}

TEST_F(MemoryStoreTest, UsedMemoryCountsKeysValuesAndOverhead) {
  Open(1 << 20, 1000);
  Set("key", std::string(100, 'v'));
  EXPECT_EQ(Charge(3, 100), Stats().used_memory_bytes);
  Set("key", std::string(10, 'v'));  // replacing releases the old charge
  EXPECT_EQ(Charge(3, 10), Stats().used_memory_bytes);
  ASSERT_TRUE(store_->remove("key").value());
  EXPECT_EQ(0u, Stats().used_memory_bytes);
  EXPECT_EQ(0u, Stats().entries);
}

TEST_F(MemoryStoreTest, EvictionPolicyIsLeastRecentlyUsed) {
  const std::string value(100, 'v');
  Open(10 * Charge(2, value.size()), 1000);
  for (int i = 0; i < 10; ++i) Set("k" + std::to_string(i), value);
  EXPECT_EQ(10u, Stats().entries);
  EXPECT_EQ(value, Get("k0"));  // k0 becomes the most recently used

  Set("kA", value);
  EXPECT_EQ(value, Get("k0"));
  EXPECT_EQ("<miss>", Get("k1"));  // the least recently used went
  EXPECT_EQ(value, Get("k2"));
  EXPECT_EQ(value, Get("kA"));
  StoreStats s = Stats();
  EXPECT_EQ(10u, s.entries);
  EXPECT_EQ(1u, s.evictions);
  EXPECT_LE(s.used_memory_bytes, s.max_memory_bytes);
}

TEST_F(MemoryStoreTest, LargeValueEvictsSeveralEntries) {
  const std::size_t small = Charge(2, 100);
  Open(10 * small, 1000);
  for (int i = 0; i < 10; ++i) Set("k" + std::to_string(i), std::string(100, 'v'));
  Set("kB", std::string(3 * small - Charge(2, 0), 'v'));  // the size of three small ones
  EXPECT_EQ(3u, Stats().evictions);
  EXPECT_EQ("<miss>", Get("k2"));
  EXPECT_EQ(std::string(100, 'v'), Get("k3"));
}

TEST_F(MemoryStoreTest, EntryLimit) {
  Open(1 << 20, 3);
  Set("a", "1");
  Set("b", "2");
  Set("c", "3");
  Set("d", "4");
  EXPECT_EQ(3u, Stats().entries);
  EXPECT_EQ(1u, Stats().evictions);
  EXPECT_EQ("<miss>", Get("a"));
  EXPECT_EQ("4", Get("d"));
}

TEST_F(MemoryStoreTest, OversizeValueRefused) {
  Open(4096, 1000);
  Set("key", "small");
  Set("other", "kept");
  const std::string huge(5000, 'x');

  auto r = store_->set("key", huge);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(ErrorCode::kResourceExhausted, r.error().code);
  EXPECT_NE(std::string::npos, r.error().message.find("per-shard budget")) << r.error().message;
  auto added = store_->add("new", huge);
  ASSERT_FALSE(added.has_value());
  EXPECT_EQ(ErrorCode::kResourceExhausted, added.error().code);

  // Nothing stored, nothing evicted.
  EXPECT_EQ("small", Get("key"));
  EXPECT_EQ("kept", Get("other"));
  EXPECT_EQ("<miss>", Get("new"));
  EXPECT_EQ(0u, Stats().evictions);
}

TEST_F(MemoryStoreTest, OversizeEntryInBatchStoresNothing) {
  Open(4096, 1000);
  const std::vector<std::pair<std::string, std::string>> batch = {
      {"a", "1"}, {"b", std::string(5000, 'x')}, {"c", "3"}};
  auto r = store_->set_many(batch);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(ErrorCode::kResourceExhausted, r.error().code);
  EXPECT_EQ(0u, Stats().entries);
}

TEST_F(MemoryStoreTest, ExpiredEntriesReclaimedByUnrelatedWrites) {
  Open(1 << 20, 10000);
  for (int i = 0; i < 100; ++i) Set("short" + std::to_string(i), "v", seconds(1));
  Set("long", "v", seconds(60));
  EXPECT_EQ(101u, Stats().entries);

  clock_->advance(seconds(2));
  // Writes to other keys only; the expired keys are never read.
  for (int i = 0; i < 100; ++i) Set("other" + std::to_string(i), "v");

  StoreStats s = Stats();
  EXPECT_EQ(101u, s.entries);  // 100 "other" + "long"
  EXPECT_EQ(100u, s.expirations);
  EXPECT_EQ(0u, s.evictions);
  EXPECT_EQ(Charge(4, 1) + 10 * Charge(6, 1) + 90 * Charge(7, 1), s.used_memory_bytes);
  EXPECT_EQ("v", Get("long"));
}

TEST_F(MemoryStoreTest, ReclaimPerWriteIsBounded) {
  Open(1 << 20, 10000);
  for (int i = 0; i < 100; ++i) Set("short" + std::to_string(i), "v", seconds(1));
  clock_->advance(seconds(2));
  Set("other", "v");
  StoreStats s = Stats();
  EXPECT_GT(s.expirations, 0u);
  EXPECT_LT(s.expirations, 100u);  // a little work per write, not a sweep
}

TEST_F(MemoryStoreTest, ExpiredEntriesGoBeforeLiveOnesWhenFull) {
  Open(1 << 20, 4);
  Set("old1", "v");
  Set("old2", "v");
  Set("brief", "v", seconds(1));
  Set("old3", "v");
  clock_->advance(seconds(2));
  Set("new", "v");  // over the limit: the expired entry is dropped, no eviction
  StoreStats s = Stats();
  EXPECT_EQ(4u, s.entries);
  EXPECT_EQ(1u, s.expirations);
  EXPECT_EQ(0u, s.evictions);
  EXPECT_EQ("v", Get("old1"));
}

TEST_F(MemoryStoreTest, ReadingExpiredEntryReclaimsIt) {
  Open(1 << 20, 100);
  Set("key", "v", milliseconds(10));
  clock_->advance(milliseconds(10));
  EXPECT_EQ("<miss>", Get("key"));
  StoreStats s = Stats();
  EXPECT_EQ(0u, s.entries);
  EXPECT_EQ(0u, s.used_memory_bytes);
  EXPECT_EQ(1u, s.expirations);
}

TEST_F(MemoryStoreTest, TouchMovesEntryInExpiryOrder) {
  Open(1 << 20, 100);
  Set("a", "v", seconds(1));
  Set("b", "v", seconds(2));
  ASSERT_TRUE(store_->touch("a", seconds(10)).value());
  ASSERT_TRUE(store_->touch("b", Ttl::never()).value());
  clock_->advance(seconds(5));
  Set("other", "v");
  EXPECT_EQ(0u, Stats().expirations);
  clock_->advance(seconds(5));
  Set("other", "w");
  EXPECT_EQ(1u, Stats().expirations);
  EXPECT_EQ("v", Get("b"));
}

TEST_F(MemoryStoreTest, SameSizeSetReplacesValueAndTtl) {
  Open(1 << 20, 100);
  Set("a", "old", seconds(10));
  Set("b", "bbb", seconds(5));
  Set("c", "ccc", seconds(1));
  const std::uint64_t used = Stats().used_memory_bytes;
  Set("a", "new", seconds(1));  // earlier deadline
  Set("c", "CCC", Ttl::never());
  EXPECT_EQ(used, Stats().used_memory_bytes);
  clock_->advance(seconds(2));
  Set("other", "v");
  StoreStats s = Stats();
  EXPECT_EQ(1u, s.expirations);  // only "a"
  EXPECT_EQ("<miss>", Get("a"));
  EXPECT_EQ("bbb", Get("b"));
  EXPECT_EQ("CCC", Get("c"));
}

TEST_F(MemoryStoreTest, StatsCounters) {
  Open(1 << 20, 100);
  Set("a", "1");
  Set("b", "2", seconds(1));
  EXPECT_EQ("1", Get("a"));
  EXPECT_EQ("<miss>", Get("zzz"));
  const std::vector<std::string> keys = {"a", "b", "nope"};
  auto many = store_->get_many(keys).value();
  ASSERT_EQ(3u, many.size());
  EXPECT_EQ("1", many[0].value_or("<miss>"));
  EXPECT_EQ("2", many[1].value_or("<miss>"));
  EXPECT_FALSE(many[2].has_value());
  clock_->advance(seconds(1));
  EXPECT_EQ("<miss>", Get("b"));

  StoreStats s = Stats();
  EXPECT_EQ(3u, s.hits);
  EXPECT_EQ(3u, s.misses);
  EXPECT_EQ(1u, s.expirations);
  EXPECT_EQ(0u, s.evictions);
  EXPECT_EQ(1u, s.entries);
  // set, set, get, get, get_many, get, and this stats() call.
  EXPECT_EQ(7u, s.commands_processed);
  EXPECT_EQ(8u, Stats().commands_processed);  // stats() itself is a command
}

TEST_F(MemoryStoreTest, ClearCountsOnlyLiveEntries) {
  Open(1 << 20, 100, 4);
  Set("app:1", "v");
  Set("app:2", "v", seconds(1));
  Set("app:3", "v");
  Set("other:1", "v");
  clock_->advance(seconds(1));
  EXPECT_EQ(2u, store_->clear("app:").value());
  EXPECT_EQ(1u, Stats().entries);
  EXPECT_EQ("v", Get("other:1"));
}

TEST_F(MemoryStoreTest, IncrInPlaceAndGrowing) {
  Open(1 << 20, 100);
  Set("n", "9");
  EXPECT_EQ(10, store_->incr("n").value());  // one digit more: a new block
  EXPECT_EQ(Charge(1, 2), Stats().used_memory_bytes);
  EXPECT_EQ(11, store_->incr("n").value());  // same length: in place
  EXPECT_EQ("11", Get("n"));
  EXPECT_EQ(-89, store_->incr("n", -100).value());
  EXPECT_EQ(Charge(1, 3), Stats().used_memory_bytes);
}

TEST_F(MemoryStoreTest, ShardsOption) {
  Open(1 << 20, 1000, 3);
  EXPECT_EQ("4", Stats().details.at("shards"));  // rounded up to a power of two

  Open(1 << 20, 2, 8);
  EXPECT_EQ("2", Stats().details.at("shards"));  // every shard holds an entry

  Open(256 << 20, 1'000'000, 0);
  const std::size_t automatic = std::stoul(Stats().details.at("shards"));
  EXPECT_GE(automatic, 16u);
  EXPECT_LE(automatic, 64u);
  EXPECT_EQ(0u, automatic & (automatic - 1));

  Open(64 << 10, 1000, 0);
  EXPECT_EQ("1", Stats().details.at("shards"));  // a small store is not split
}

TEST_F(MemoryStoreTest, ShardedStoreHoldsEveryKey) {
  Open(64 << 20, 100000, 16);
  for (int i = 0; i < 5000; ++i) Set("key:" + std::to_string(i), std::to_string(i));
  EXPECT_EQ(5000u, Stats().entries);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(std::to_string(i), Get("key:" + std::to_string(i)));
  EXPECT_EQ(0u, Stats().evictions);
}

TEST_F(MemoryStoreTest, ZeroBoundsAreClamped) {
  Open(0, 0, 0);
  Set("a", "1");
  EXPECT_EQ("1", Get("a"));
  Set("b", "2");
  EXPECT_EQ(1u, Stats().entries);
}

TEST_F(MemoryStoreTest, ManyThreadsSameAndDifferentKeys) {
  // A small budget so that eviction and reclaim run concurrently too.
  Open(64 << 10, 200, 4);
  constexpr int kThreads = 4;
  constexpr int kOps = 4000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      const std::string own = "own:" + std::to_string(t) + ":";
      for (int i = 0; i < kOps; ++i) {
        const std::string shared = "shared:" + std::to_string(i % 7);
        const std::string mine = own + std::to_string(i % 50);
        switch (i % 8) {
          case 0: (void)store_->set(shared, std::string(i % 300, 's'), milliseconds(5)); break;
          case 1: (void)store_->get(shared); break;
          case 2: (void)store_->add(shared, "added"); break;
          case 3: (void)store_->remove_if_equals(shared, "added"); break;
          case 4: (void)store_->incr("counter:" + std::to_string(i % 3)); break;
          case 5: (void)store_->set(mine, std::to_string(i)); break;
          case 6: (void)store_->get(mine); break;
          case 7: (void)store_->touch(mine, seconds(1)); break;
        }
        if (t == 0 && i % 100 == 0) clock_->advance(milliseconds(1));
        if (t == 1 && i % 500 == 0) (void)store_->stats();
      }
    });
  }
  for (auto& th : threads) th.join();
  StoreStats s = Stats();
  EXPECT_LE(s.entries, 200u);
  EXPECT_LE(s.used_memory_bytes, s.max_memory_bytes);
  // Every call, plus thread 1's stats() calls and this one.
  EXPECT_EQ(std::uint64_t{kThreads} * kOps + kOps / 500 + 1, s.commands_processed);
}

TEST_F(MemoryStoreTest, ConcurrentIncrLosesNothing) {
  Open(1 << 20, 1000, 4);
  constexpr int kThreads = 4;
  constexpr int kOps = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this] {
      for (int i = 0; i < kOps; ++i) {
        ASSERT_TRUE(store_->incr("hits").has_value());
        (void)store_->set("noise:" + std::to_string(i % 64), "x");
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(std::to_string(kThreads * kOps), Get("hits"));
}

// --- Hash flooding (issue 11, finding 3).
//
// The store used to hash keys with a public function: a fixed seed, then per
// 16-byte block h = Fold(w0 ^ K1, w1 ^ h) with Fold(a, b) the XOR of the two
// halves of the 128-bit product a * b. A block whose second word w1 equals
// the running state h multiplies by zero, so h becomes 0 whatever came
// before and whatever the block's first word w0 is. Before the second block
// the state depends only on the first block and the length, so an attacker
// searches first blocks offline until that state's 8 bytes are themselves
// valid key characters, writes them as the second block's second word, and
// then has 8 free bytes (w0) per key: 62^8 alphanumeric keys with one hash,
// one shard, one chain. OldHashKey is that function, kept here only to build
// those keys.

__extension__ typedef unsigned __int128 OldU128;
constexpr std::uint64_t kOldSeed = 0x2d358dccaa6c78a5ull;
constexpr std::uint64_t kOldK1 = 0x8bb84b93962eacc9ull;
constexpr std::uint64_t kOldK2 = 0x4b33a62ed433d4a3ull;

std::uint64_t OldFold(std::uint64_t a, std::uint64_t b) {
  const OldU128 product = static_cast<OldU128>(a) * b;
  return static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
}
std::uint64_t OldLoad64(const char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
std::uint64_t OldLoad32(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::uint64_t OldHashKey(std::string_view key) {
  const char* p = key.data();
  std::size_t n = key.size();
  std::uint64_t h = kOldSeed ^ OldFold(n ^ kOldK1, kOldK2);
  while (n > 16) {
    h = OldFold(OldLoad64(p) ^ kOldK1, OldLoad64(p + 8) ^ h);
    p += 16;
    n -= 16;
  }
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  if (n >= 8) {
    a = OldLoad64(p);
    b = OldLoad64(p + n - 8);
  } else if (n >= 4) {
    a = OldLoad32(p);
    b = OldLoad32(p + n - 4);
  } else if (n > 0) {
    const auto byte = [](char c) { return static_cast<std::uint64_t>(static_cast<unsigned char>(c)); };
    a = (byte(p[0]) << 16) | (byte(p[n / 2]) << 8) | byte(p[n - 1]);
  }
  return OldFold(a ^ kOldK2 ^ h, b ^ kOldK1 ^ n);
}

constexpr std::string_view kAlnum =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

// Writes `v` in base 62 into the 8 bytes at `out`.
void Base62(std::uint64_t v, char* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = kAlnum[v % kAlnum.size()];
    v /= kAlnum.size();
  }
}

bool IsAlnum(char c) { return kAlnum.find(c) != std::string_view::npos; }

// `count` distinct stored keys (":1:" + an alphanumeric logical key, as
// AssistantCache::set stores /v1/kv/{key}) of 48 bytes that all have the same
// old hash. Bytes: 0..15 the first block (":1:flood" + 8 searched), 16..23 the
// free word, 24..31 the state after the first block, 32..47 any fixed tail.
std::vector<std::string> OldHashFloodKeys(std::size_t count) {
  std::string key = ":1:flood--------xxxxxxxxyyyyyyyy-same-chain-tail";
  const std::uint64_t h0 = kOldSeed ^ OldFold(key.size() ^ kOldK1, kOldK2);
  std::uint64_t h1 = 0;
  for (std::uint64_t i = 0;; ++i) {  // ~(256 / 62)^8 = 85,000 tries expected
    Base62(i, key.data() + 8);
    h1 = OldFold(OldLoad64(key.data()) ^ kOldK1, OldLoad64(key.data() + 8) ^ h0);
    char bytes[8];
    std::memcpy(bytes, &h1, sizeof bytes);
    if (std::all_of(bytes, bytes + 8, IsAlnum)) {
      std::memcpy(key.data() + 24, bytes, sizeof bytes);
      break;
    }
  }
  std::vector<std::string> keys;
  for (std::size_t j = 0; j < count; ++j) {
    Base62(j * 7919, key.data() + 16);  // any 8 alphanumerics do
    keys.push_back(key);
  }
  return keys;
}

TEST(MemoryStoreHashFloodTest, OldHashCollisionsSpreadOverShardsAndChains) {
  if constexpr (std::endian::native != std::endian::little) {
    GTEST_SKIP() << "the old hash read words in native order; the keys are built for little-endian";
  }
  constexpr std::size_t kCount = 4096;
  const std::vector<std::string> keys = OldHashFloodKeys(kCount);

  // Valid keys: each is what KeyMaker stores for an alphanumeric logical key.
  const KeyMaker maker = KeyMaker::create().value();
  std::set<std::string> distinct;
  std::set<std::uint64_t> old_hashes;
  for (const std::string& key : keys) {
    ASSERT_EQ(maker.make(std::string_view(key).substr(3)).value(), key);
    distinct.insert(key);
    old_hashes.insert(OldHashKey(key));
  }
  ASSERT_EQ(distinct.size(), kCount);
  ASSERT_EQ(old_hashes.size(), 1u) << "the construction no longer attacks the old hash";

  MemoryStoreOptions o;
  o.shards = 16;
  o.max_bytes = 64u << 20;
  o.max_entries = 1u << 20;
  auto store = make_memory_store(o);
  for (const std::string& key : keys) ASSERT_TRUE(store->set(key, "v", Ttl::never()).has_value());
  for (const std::string& key : keys) ASSERT_EQ(store->get(key).value().value_or("<miss>"), "v");

  // Under the old hash: one shard held all 4096 keys in one chain. Under a
  // random hash, 256 keys a shard on average (standard deviation 16) and
  // chains of a few entries at a load factor of at most 1 (a chain of 16
  // among 256 has odds of about 1e-11).
  const auto layout = internal::memory_store_layout(*store);
  ASSERT_TRUE(layout.has_value());
  EXPECT_EQ(layout->shards, 16u);
  EXPECT_EQ(layout->entries, kCount);
  EXPECT_LE(layout->fullest_shard, 2 * kCount / 16);
  EXPECT_LE(layout->longest_chain, 16u);
}

TEST(MemoryStoreHashFloodTest, LayoutIsOnlyForMemoryStores) {
  auto store = make_memory_store();
  ASSERT_TRUE(store->set("a", "1", Ttl::never()).has_value());
  const auto layout = internal::memory_store_layout(*store);
  ASSERT_TRUE(layout.has_value());
  EXPECT_EQ(layout->entries, 1u);
  EXPECT_EQ(layout->longest_chain, 1u);
  EXPECT_EQ(layout->fullest_shard, 1u);
}

}  // namespace
}  // namespace aicache
