// ExpiryHeap on its own: order, removal from anywhere, entries that never
// expire, rescheduling, and random sequences against a reference model,
// checking the heap property and every back-pointer after each step.
#include "memory/expiry_heap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "memory/entry_pool.h"

namespace aicache::memory {
namespace {

// Checks the invariants that expiry_heap.h states: each slot's entry knows
// its slot, no parent is later than its children, and the heap holds exactly
// `expected` (the linked entries that expire).
void ExpectValidHeap(const ExpiryHeap& heap, const std::set<const Entry*>& expected) {
  const auto slots = heap.slots();
  ASSERT_EQ(expected.size(), slots.size());
  ASSERT_EQ(expected.size(), heap.size());
  ASSERT_EQ(expected.empty(), heap.empty());
  std::set<const Entry*> held;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    ASSERT_EQ(i, slots[i]->heap_index) << "slot " << i << " holds " << slots[i]->key();
    ASSERT_NE(kNoDeadline, slots[i]->deadline) << slots[i]->key();
    if (i > 0) {
      ASSERT_LE(slots[(i - 1) / 2]->deadline, slots[i]->deadline) << "slot " << i;
    }
    ASSERT_TRUE(held.insert(slots[i]).second) << "twice in the heap: " << slots[i]->key();
  }
  ASSERT_EQ(expected, held);
  if (slots.empty()) {
    ASSERT_EQ(nullptr, heap.earliest());
  } else {
    ASSERT_EQ(slots[0], heap.earliest());
  }
}

// Unlinks the earliest entry until none is left; returns their deadlines.
std::vector<std::int64_t> Drain(ExpiryHeap& heap) {
  std::vector<std::int64_t> out;
  while (Entry* e = heap.earliest()) {
    out.push_back(e->deadline);
    heap.unlink(e);
    if (out.size() > 100'000) break;
  }
  return out;
}

TEST(ExpiryHeapTest, EmptyHeap) {
  ExpiryHeap heap;
  EXPECT_TRUE(heap.empty());
  EXPECT_EQ(0u, heap.size());
  EXPECT_EQ(nullptr, heap.earliest());
  EXPECT_TRUE(heap.slots().empty());
  EXPECT_TRUE(Drain(heap).empty());
}

TEST(ExpiryHeapTest, EarliestDeadlineFirst) {
  EntryPool pool;
  ExpiryHeap heap;
  std::set<const Entry*> linked;
  for (std::int64_t d : {50, 30, 90, 10, 70, 20, 80, 60, 40}) {
    Entry* e = pool.make("k" + std::to_string(d), d);
    heap.link(e);
    linked.insert(e);
    ExpectValidHeap(heap, linked);
  }
  EXPECT_EQ(10, heap.earliest()->deadline);
  EXPECT_EQ((std::vector<std::int64_t>{10, 20, 30, 40, 50, 60, 70, 80, 90}), Drain(heap));
  ExpectValidHeap(heap, {});
}

TEST(ExpiryHeapTest, EntriesThatNeverExpireTakeNoSlot) {
  EntryPool pool;
  ExpiryHeap heap;
  Entry* forever = pool.make("forever");  // kNoDeadline
  Entry* soon = pool.make("soon", 5);
  heap.link(forever);
  ExpectValidHeap(heap, {});
  heap.link(soon);
  ExpectValidHeap(heap, {soon});
  heap.unlink(forever);  // linked, but in no slot: nothing changes
  ExpectValidHeap(heap, {soon});

  // A deadline brings it in; "never" takes it out again.
  heap.link(forever);
  heap.set_deadline(forever, 1);
  ExpectValidHeap(heap, {soon, forever});
  EXPECT_EQ(forever, heap.earliest());
  heap.set_deadline(forever, kNoDeadline);
  EXPECT_EQ(kNoDeadline, forever->deadline);
  ExpectValidHeap(heap, {soon});
  heap.set_deadline(forever, kNoDeadline);  // never to never: nothing to do
  ExpectValidHeap(heap, {soon});
}

TEST(ExpiryHeapTest, UnlinkFromTheMiddleAndTheEnds) {
  EntryPool pool;
  ExpiryHeap heap;
  std::vector<Entry*> e;
  std::set<const Entry*> linked;
  for (std::int64_t d = 1; d <= 15; ++d) {  // a full heap of four levels
    e.push_back(pool.make("k" + std::to_string(d), d));
    heap.link(e.back());
    linked.insert(e.back());
  }
  ExpectValidHeap(heap, linked);
  // Inserted in order, each entry sits in slot deadline - 1.
  Entry* middle = heap.slots()[5];
  Entry* last = heap.slots().back();
  Entry* root = heap.slots()[0];
  for (Entry* gone : {middle, last, root}) {
    heap.unlink(gone);
    linked.erase(gone);
    ExpectValidHeap(heap, linked);
  }
  EXPECT_EQ((std::vector<std::int64_t>{2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14}), Drain(heap));
}

// The last entry moved into the vacated slot may have to move up, not down:
// it can come from another subtree with earlier deadlines.
TEST(ExpiryHeapTest, UnlinkCanMoveTheLastEntryUp) {
  EntryPool pool;
  ExpiryHeap heap;
  std::set<const Entry*> linked;
  // Left subtree late, right subtree early.
  for (std::int64_t d : {0, 100, 1, 101, 102, 2, 3}) {
    Entry* x = pool.make("k" + std::to_string(d), d);
    heap.link(x);
    linked.insert(x);
  }
  ExpectValidHeap(heap, linked);
  Entry* deep_left = heap.slots()[3];  // 101, under 100
  ASSERT_EQ(101, deep_left->deadline);
  heap.unlink(deep_left);  // the last (3) takes slot 3 and must rise above 100
  linked.erase(deep_left);
  ExpectValidHeap(heap, linked);
  EXPECT_EQ((std::vector<std::int64_t>{0, 1, 2, 3, 100, 102}), Drain(heap));
}

TEST(ExpiryHeapTest, RescheduleMovesUpAndDown) {
  EntryPool pool;
  ExpiryHeap heap;
  std::vector<Entry*> e;
  std::set<const Entry*> linked;
  for (std::int64_t d = 10; d <= 100; d += 10) {
    e.push_back(pool.make("k" + std::to_string(d), d));
    heap.link(e.back());
    linked.insert(e.back());
  }
  heap.set_deadline(e[0], 1000);  // the root goes to the bottom
  ExpectValidHeap(heap, linked);
  EXPECT_EQ(20, heap.earliest()->deadline);
  heap.set_deadline(e[9], 5);  // a leaf goes to the top
  ExpectValidHeap(heap, linked);
  EXPECT_EQ(e[9], heap.earliest());
  heap.set_deadline(e[4], 50);  // unchanged
  ExpectValidHeap(heap, linked);
  EXPECT_EQ((std::vector<std::int64_t>{5, 20, 30, 40, 50, 60, 70, 80, 90, 1000}), Drain(heap));
}

TEST(ExpiryHeapTest, EqualDeadlines) {
  EntryPool pool;
  ExpiryHeap heap;
  std::set<const Entry*> linked;
  for (int i = 0; i < 20; ++i) {
    Entry* x = pool.make("k" + std::to_string(i), i % 2 == 0 ? 7 : 3);
    heap.link(x);
    linked.insert(x);
    ExpectValidHeap(heap, linked);
  }
  const auto drained = Drain(heap);
  EXPECT_EQ(std::vector<std::int64_t>(10, 3),
            std::vector<std::int64_t>(drained.begin(), drained.begin() + 10));
  EXPECT_EQ(std::vector<std::int64_t>(10, 7),
            std::vector<std::int64_t>(drained.begin() + 10, drained.end()));
}

// Random links, unlinks, reschedules (to and from "never") and pops of the
// earliest, checked after every step against a model: a std::map from entry
// to deadline of the linked entries, and a std::multiset of the deadlines
// that expire. Deadlines are drawn from a small range so that ties are
// common.
TEST(ExpiryHeapTest, RandomOperationsMatchAReferenceModel) {
  constexpr int kEntries = 200;
  for (const std::uint32_t seed : {1u, 2u, 3u, 20261130u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    EntryPool pool;
    ExpiryHeap heap;
    std::vector<Entry*> entries;
    for (int i = 0; i < kEntries; ++i) entries.push_back(pool.make("k" + std::to_string(i)));
    std::map<const Entry*, std::int64_t> model;  // linked entries
    std::multiset<std::int64_t> deadlines;       // of those that expire
    std::mt19937 rng(seed);
    auto random_deadline = [&] {
      return rng() % 10 == 0 ? kNoDeadline : static_cast<std::int64_t>(rng() % 64);
    };
    auto in_heap = [&] {
      std::set<const Entry*> s;
      for (const auto& [e, d] : model) {
        if (d != kNoDeadline) s.insert(e);
      }
      return s;
    };

    for (int step = 0; step < 5'000; ++step) {
      Entry* e = entries[rng() % kEntries];
      const int op = static_cast<int>(rng() % 4);
      const auto found = model.find(e);
      if (found == model.end()) {
        e->deadline = random_deadline();  // the shard sets it before linking
        heap.link(e);
        model[e] = e->deadline;
        if (e->deadline != kNoDeadline) deadlines.insert(e->deadline);
      } else if (op == 0) {
        heap.unlink(e);
        if (found->second != kNoDeadline) deadlines.erase(deadlines.find(found->second));
        model.erase(found);
      } else if (op == 1 && !heap.empty()) {
        // Pop the earliest, as active reclaim does.
        Entry* first = heap.earliest();
        ASSERT_EQ(*deadlines.begin(), first->deadline) << "step " << step;
        heap.unlink(first);
        deadlines.erase(deadlines.begin());
        model.erase(first);
      } else {
        const std::int64_t d = random_deadline();
        heap.set_deadline(e, d);
        ASSERT_EQ(d, e->deadline);
        if (found->second != kNoDeadline) deadlines.erase(deadlines.find(found->second));
        if (d != kNoDeadline) deadlines.insert(d);
        found->second = d;
      }
      ASSERT_NO_FATAL_FAILURE(ExpectValidHeap(heap, in_heap())) << "step " << step;
      if (!deadlines.empty()) {
        ASSERT_EQ(*deadlines.begin(), heap.earliest()->deadline) << "step " << step;
      }
    }
    const std::vector<std::int64_t> sorted(deadlines.begin(), deadlines.end());
    EXPECT_EQ(sorted, Drain(heap));
  }
}

}  // namespace
}  // namespace aicache::memory
