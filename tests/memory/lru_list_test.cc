// LruList on its own: order of use, removal anywhere, the ends, and a random
// sequence of operations against a std::list holding the expected order.
#include "memory/lru_list.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <list>
#include <random>
#include <string>
#include <vector>

#include "memory/entry_pool.h"

namespace aicache::memory {
namespace {

// The keys oldest to newest, checking on the way that the list walked
// backwards is the same list and that every entry's links agree with its
// neighbours'.
std::vector<std::string> Order(LruList& lru) {
  std::vector<std::string> forward;
  const Entry* prev = nullptr;
  for (Entry* e = lru.oldest(); e != nullptr; e = lru.newer(e)) {
    EXPECT_EQ(prev, lru.older(e)) << e->key();
    forward.emplace_back(e->key());
    prev = e;
    if (forward.size() > 100'000) {
      ADD_FAILURE() << "the list does not end";
      break;
    }
  }
  EXPECT_EQ(prev, lru.newest());
  std::vector<std::string> backward;
  for (Entry* e = lru.newest(); e != nullptr && backward.size() <= forward.size();
       e = lru.older(e)) {
    backward.emplace_back(e->key());
  }
  std::reverse(backward.begin(), backward.end());
  EXPECT_EQ(forward, backward);
  EXPECT_EQ(forward.empty(), lru.empty());
  return forward;
}

using Keys = std::vector<std::string>;

TEST(LruListTest, EmptyListHasNoEnds) {
  LruList lru;
  EXPECT_TRUE(lru.empty());
  EXPECT_EQ(nullptr, lru.oldest());
  EXPECT_EQ(nullptr, lru.newest());
  EXPECT_EQ(Keys{}, Order(lru));
}

TEST(LruListTest, OneEntryIsBothEnds) {
  EntryPool pool;
  LruList lru;
  Entry* a = pool.make("a");
  lru.push_newest(a);
  EXPECT_FALSE(lru.empty());
  EXPECT_EQ(a, lru.oldest());
  EXPECT_EQ(a, lru.newest());
  EXPECT_EQ(nullptr, lru.newer(a));
  EXPECT_EQ(nullptr, lru.older(a));
  lru.move_to_newest(a);
  EXPECT_EQ(Keys{"a"}, Order(lru));
  lru.unlink(a);
  EXPECT_TRUE(lru.empty());
  EXPECT_EQ(nullptr, lru.oldest());
  EXPECT_EQ(nullptr, lru.newest());
}

TEST(LruListTest, PushOrderIsUseOrderOldestFirst) {
  EntryPool pool;
  LruList lru;
  for (const char* k : {"a", "b", "c", "d"}) lru.push_newest(pool.make(k));
  EXPECT_EQ((Keys{"a", "b", "c", "d"}), Order(lru));
  EXPECT_EQ("a", lru.oldest()->key());
  EXPECT_EQ("d", lru.newest()->key());
}

TEST(LruListTest, MoveToNewestFromEachPosition) {
  EntryPool pool;
  LruList lru;
  Entry* a = pool.make("a");
  Entry* b = pool.make("b");
  Entry* c = pool.make("c");
  for (Entry* e : {a, b, c}) lru.push_newest(e);

  lru.move_to_newest(a);  // the oldest
  EXPECT_EQ((Keys{"b", "c", "a"}), Order(lru));
  lru.move_to_newest(c);  // the middle
  EXPECT_EQ((Keys{"b", "a", "c"}), Order(lru));
  lru.move_to_newest(c);  // already the newest: nothing moves
  EXPECT_EQ((Keys{"b", "a", "c"}), Order(lru));
}

TEST(LruListTest, UnlinkFromMiddleAndEnds) {
  EntryPool pool;
  LruList lru;
  std::vector<Entry*> e;
  for (const char* k : {"a", "b", "c", "d", "e"}) {
    e.push_back(pool.make(k));
    lru.push_newest(e.back());
  }
  lru.unlink(e[2]);  // middle
  EXPECT_EQ((Keys{"a", "b", "d", "e"}), Order(lru));
  lru.unlink(e[0]);  // oldest
  EXPECT_EQ((Keys{"b", "d", "e"}), Order(lru));
  EXPECT_EQ(e[1], lru.oldest());
  lru.unlink(e[4]);  // newest
  EXPECT_EQ((Keys{"b", "d"}), Order(lru));
  EXPECT_EQ(e[3], lru.newest());
  // An unlinked entry can be linked again, as the newest.
  lru.push_newest(e[2]);
  EXPECT_EQ((Keys{"b", "d", "c"}), Order(lru));
}

// The walk Shard::remove_prefix and ~Shard do: read the successor, then
// unlink (or free) the entry.
TEST(LruListTest, WalkThatUnlinksAsItGoes) {
  EntryPool pool;
  LruList lru;
  for (const char* k : {"x1", "y1", "x2", "x3", "y2", "x4"}) lru.push_newest(pool.make(k));
  for (Entry* e = lru.oldest(); e != nullptr;) {
    Entry* next = lru.newer(e);
    if (e->key().starts_with("x")) lru.unlink(e);
    e = next;
  }
  EXPECT_EQ((Keys{"y1", "y2"}), Order(lru));
}

// Random pushes, uses and removals, checked after every step against a
// std::list of the expected order.
TEST(LruListTest, RandomOperationsMatchAReferenceList) {
  constexpr int kEntries = 64;
  EntryPool pool;
  LruList lru;
  std::vector<Entry*> entries;
  for (int i = 0; i < kEntries; ++i) entries.push_back(pool.make("k" + std::to_string(i)));
  std::vector<bool> linked(kEntries, false);
  std::list<std::string> model;  // oldest first

  std::mt19937 rng(12345);
  for (int step = 0; step < 20'000; ++step) {
    const int i = static_cast<int>(rng() % kEntries);
    Entry* e = entries[static_cast<std::size_t>(i)];
    const std::string key(e->key());
    if (!linked[static_cast<std::size_t>(i)]) {
      lru.push_newest(e);
      model.push_back(key);
      linked[static_cast<std::size_t>(i)] = true;
    } else if (rng() % 2 == 0) {
      lru.move_to_newest(e);
      model.remove(key);
      model.push_back(key);
    } else {
      lru.unlink(e);
      model.remove(key);
      linked[static_cast<std::size_t>(i)] = false;
    }
    if (step % 97 == 0 || model.size() <= 2) {
      ASSERT_EQ(Keys(model.begin(), model.end()), Order(lru)) << "step " << step;
    } else {
      // Cheaper check on the other steps: the ends.
      ASSERT_EQ(model.front(), lru.oldest()->key()) << "step " << step;
      ASSERT_EQ(model.back(), lru.newest()->key()) << "step " << step;
    }
  }
  EXPECT_EQ(Keys(model.begin(), model.end()), Order(lru));
}

}  // namespace
}  // namespace aicache::memory
