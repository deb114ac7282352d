// EntryTable on its own: lookups by key within a shared chain, links, removal
// from any place in a chain, growth, and a random sequence against std::map.
#include "memory/entry_table.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "memory/entry_pool.h"

namespace aicache::memory {
namespace {

Entry* Find(EntryTable& table, const Entry* like) {
  return *table.find_link(like->key(), like->hash);
}

void Insert(EntryTable& table, Entry* e) {
  Entry** at = table.find_link(e->key(), e->hash);
  ASSERT_EQ(nullptr, *at) << "already present: " << e->key();
  table.insert(at, e);
}

TEST(EntryTableTest, EmptyTable) {
  EntryTable table;
  EXPECT_EQ(0u, table.size());
  EXPECT_EQ(EntryTable::kInitialBuckets, table.bucket_count());
  EXPECT_EQ(nullptr, *table.find_link("absent", 42));
  EXPECT_EQ(0u, table.longest_chain());
}

// Entries with the same hash share a chain; lookups compare keys, and an
// entry can be removed from the head, the middle or the end of its chain.
TEST(EntryTableTest, OneChainOfCollidingKeys) {
  EntryPool pool;
  EntryTable table;
  std::vector<Entry*> e;
  for (const char* k : {"a", "b", "c", "d"}) {
    e.push_back(pool.make(k, kNoDeadline, 7));
    Insert(table, e.back());
  }
  EXPECT_EQ(4u, table.size());
  EXPECT_EQ(4u, table.longest_chain());
  for (Entry* x : e) {
    EXPECT_EQ(x, Find(table, x));
    EXPECT_EQ(x, *table.link_of(x));
  }
  EXPECT_EQ(nullptr, *table.find_link("e", 7));  // same chain, absent key
  EXPECT_EQ(nullptr, *table.find_link("a", 8));  // same key, other hash

  // Chains push at the head: the chain is d c b a.
  EXPECT_EQ(e[1], table.erase(table.link_of(e[1])));  // middle
  EXPECT_EQ(e[3], table.erase(table.link_of(e[3])));  // head
  EXPECT_EQ(e[0], table.erase(table.link_of(e[0])));  // end
  EXPECT_EQ(1u, table.size());
  EXPECT_EQ(nullptr, Find(table, e[0]));
  EXPECT_EQ(nullptr, Find(table, e[1]));
  EXPECT_EQ(e[2], Find(table, e[2]));
  EXPECT_EQ(nullptr, Find(table, e[3]));
}

// The store replaces an entry by erasing it at its link and inserting the new
// one at the same link, with one walk of the chain.
TEST(EntryTableTest, ReplaceAtTheSameLink) {
  EntryPool pool;
  EntryTable table;
  Entry* before = pool.make("x", kNoDeadline, 3);
  Entry* other = pool.make("y", kNoDeadline, 3);
  Insert(table, before);
  Insert(table, other);
  Entry* after = pool.make("x", kNoDeadline, 3, "new");
  Entry** at = table.find_link("x", 3);
  ASSERT_EQ(before, *at);
  table.erase(at);
  table.insert(at, after);
  EXPECT_EQ(2u, table.size());
  EXPECT_EQ(after, Find(table, after));
  EXPECT_EQ(other, Find(table, other));
}

TEST(EntryTableTest, GrowsToKeepChainsShort) {
  EntryPool pool;
  EntryTable table;
  std::mt19937 rng(7);
  std::vector<Entry*> e;
  for (int i = 0; i < 5000; ++i) {
    e.push_back(pool.make("k" + std::to_string(i), kNoDeadline, static_cast<std::uint32_t>(rng())));
    Insert(table, e.back());
    ASSERT_LE(table.size(), table.bucket_count());
    ASSERT_TRUE(std::has_single_bit(table.bucket_count()));
  }
  EXPECT_EQ(8192u, table.bucket_count());
  for (Entry* x : e) ASSERT_EQ(x, Find(table, x)) << x->key();
  // Random 32-bit hashes at load ~0.6: no long chains.
  EXPECT_LE(table.longest_chain(), 10u);
}

// Random inserts and erasures, with many collisions (hashes from a small
// range), against a std::map from key to entry.
TEST(EntryTableTest, RandomOperationsMatchAReferenceMap) {
  EntryPool pool;
  EntryTable table;
  std::map<std::string, Entry*> model;
  std::mt19937 rng(99);
  for (int step = 0; step < 20'000; ++step) {
    const std::string key = "k" + std::to_string(rng() % 300);
    const auto hash = static_cast<std::uint32_t>(rng() % 40);  // the hash need not fit the key
    const auto found = model.find(key);
    if (found == model.end()) {
      Entry* e = pool.make(key, kNoDeadline, hash);
      Insert(table, e);
      model[key] = e;
    } else {
      Entry** at = table.find_link(key, found->second->hash);
      ASSERT_EQ(found->second, *at) << key;
      table.erase(at);
      model.erase(found);
    }
    ASSERT_EQ(model.size(), table.size());
  }
  for (const auto& [key, e] : model) ASSERT_EQ(e, *table.link_of(e)) << key;
}

}  // namespace
}  // namespace aicache::memory
