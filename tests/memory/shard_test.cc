// Shard on its own, single-threaded: random operations against a std::map
// model of what each key holds, checking after every step the invariants
// that tie the table, the LRU list and the heap together (shard.h).
#include "memory/shard.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>

namespace aicache::memory {

class ShardTestPeer {
 public:
  // The invariants shard.h states, and the budgets.
  static void ExpectInvariants(Shard& shard) {
    std::set<const Entry*> listed;
    std::size_t charge = 0;
    std::size_t expiring = 0;
    for (Entry* e = shard.lru_.oldest(); e != nullptr; e = shard.lru_.newer(e)) {
      ASSERT_TRUE(listed.insert(e).second) << "listed twice: " << e->key();
      ASSERT_EQ(e, *shard.table_.find_link(e->key(), e->hash)) << "not in the table: " << e->key();
      charge += charge_of(e);
      if (e->deadline != kNoDeadline) ++expiring;
    }
    ASSERT_EQ(shard.table_.size(), listed.size());
    ASSERT_EQ(expiring, shard.heap_.size());
    for (std::size_t i = 0; i < shard.heap_.slots().size(); ++i) {
      const Entry* e = shard.heap_.slots()[i];
      ASSERT_TRUE(listed.contains(e)) << "in the heap only: " << e->key();
      ASSERT_EQ(i, e->heap_index);
      if (i > 0) {
        ASSERT_LE(shard.heap_.slots()[(i - 1) / 2]->deadline, e->deadline);
      }
    }
    ASSERT_EQ(charge, shard.charge_);
    ASSERT_LE(shard.charge_, shard.byte_budget_);
    ASSERT_LE(shard.table_.size(), shard.entry_budget_);
  }
};

namespace {

struct Held {
  std::string value;
  std::int64_t deadline;
};

// What the shard should hold: the last write of each key. With `exact`, no
// eviction can happen and every answer must match the model; otherwise the
// budgets are small, the shard may have evicted what the model holds, and
// only hits are checked (never stale) besides the invariants.
void RunRandomOperations(std::uint32_t seed, std::size_t byte_budget, std::size_t entry_budget,
                         bool exact) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  Shard shard;
  shard.set_budget(byte_budget, entry_budget);
  std::map<std::string, Held> model;
  std::mt19937 rng(seed);
  std::int64_t now = 1000;

  auto live = [&](const std::string& key) -> const Held* {
    const auto it = model.find(key);
    if (it == model.end()) return nullptr;
    if (it->second.deadline <= now) {
      model.erase(it);
      return nullptr;
    }
    return &it->second;
  };
  auto random_key = [&] { return "k" + std::to_string(rng() % 48); };
  // Either a counter in canonical form or text that incr refuses.
  auto random_value = [&] {
    if (rng() % 2 == 0) return std::to_string(static_cast<int>(rng() % 2001) - 1000);
    return "x" + std::string(rng() % 40, 'v');
  };
  auto random_deadline = [&] {
    return rng() % 4 == 0 ? kNoDeadline : now + 1 + static_cast<std::int64_t>(rng() % 40);
  };
  auto hash_of = [](std::string_view key) {
    return static_cast<std::uint32_t>(key.size() * 31 + key.back());
  };

  for (int step = 0; step < 20'000; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    now += static_cast<std::int64_t>(rng() % 3);
    const std::string key = random_key();
    const std::uint32_t hash = hash_of(key);
    Graveyard dead;
    switch (rng() % 9) {
      case 0:
      case 1: {  // set, as the store does it: in place if the size allows, else put
        const std::string value = random_value();
        const std::int64_t deadline = random_deadline();
        if (!shard.overwrite(key, hash, value, deadline, now, true, dead)) {
          shard.put(Entry::create(key, hash, value, deadline), now, PutMode::kOverwrite, true,
                    dead);
        }
        model[key] = {value, deadline};
        break;
      }
      case 2: {  // add
        const std::string value = random_value();
        const std::int64_t deadline = random_deadline();
        const bool was_live = live(key) != nullptr;
        const bool added = shard.put(Entry::create(key, hash, value, deadline), now,
                                     PutMode::kOnlyIfAbsent, true, dead);
        if (exact) {
          ASSERT_EQ(!was_live, added);
        }
        if (added) model[key] = {value, deadline};
        break;
      }
      case 3:
      case 4: {  // get, with the TTL
        std::string value;
        KeyTtl ttl;
        const Held* held = live(key);
        const bool hit = shard.get(key, hash, now, &value, true, &ttl, dead);
        if (exact) {
          ASSERT_EQ(held != nullptr, hit);
        }
        if (hit) {
          ASSERT_NE(nullptr, held) << "a hit on " << key << ", which the model lacks";
          ASSERT_EQ(held->value, value);
          if (held->deadline == kNoDeadline) {
            ASSERT_EQ(KeyTtl::State::kPersistent, ttl.state);
          } else {
            ASSERT_EQ(KeyTtl::State::kExpiring, ttl.state);
            ASSERT_GT(ttl.remaining.count(), 0);
          }
        }
        break;
      }
      case 5: {  // remove, or remove_if_equals with the held value or another
        const Held* held = live(key);
        std::optional<std::string> expected;
        if (rng() % 2 == 0) expected = held != nullptr && rng() % 2 == 0 ? held->value : "other";
        const std::string_view expected_view = expected ? std::string_view(*expected) : "";
        const bool removed =
            shard.remove(key, hash, now, expected ? &expected_view : nullptr, true, dead);
        const bool predicted = held != nullptr && (!expected || *expected == held->value);
        if (exact) {
          ASSERT_EQ(predicted, removed);
        }
        if (removed) {
          ASSERT_TRUE(predicted);
        }
        if (removed || predicted) model.erase(key);  // predicted but not removed: evicted
        break;
      }
      case 6: {  // touch: a new deadline, or removal
        const bool remove = rng() % 4 == 0;
        const std::int64_t deadline = random_deadline();
        const bool was_live = live(key) != nullptr;
        const bool touched = shard.touch(key, hash, now, remove, deadline, dead);
        if (exact) {
          ASSERT_EQ(was_live, touched);
        }
        if (touched) {
          ASSERT_TRUE(was_live);
        }
        if (!touched || remove) {
          model.erase(key);
        } else {
          model[key].deadline = deadline;
        }
        break;
      }
      case 7: {  // incr
        const std::int64_t delta = static_cast<std::int64_t>(rng() % 201) - 100;
        const Held* held = live(key);
        // A held key keeps its deadline; giving a missing one the same makes
        // the model right whether or not the shard evicted it.
        const std::int64_t create_deadline = held != nullptr ? held->deadline : random_deadline();
        const auto result = shard.incr(key, hash, now, delta, false, create_deadline, dead);
        if (!result) {
          ASSERT_EQ(ErrorCode::kFailedPrecondition, result.error().code);
          ASSERT_NE(nullptr, held);
          ASSERT_EQ('x', held->value.front()) << held->value;
          break;
        }
        if (exact) {
          if (held != nullptr) {
            ASSERT_NE('x', held->value.front()) << "incr accepted " << held->value;
          }
          const std::int64_t before = held != nullptr ? std::stoll(held->value) : 0;
          ASSERT_EQ(before + delta, *result);
        }
        model[key] = {std::to_string(*result), create_deadline};
        break;
      }
      case 8: {  // remove_prefix, now and then
        if (rng() % 20 != 0) break;
        const std::string prefix = "k" + std::to_string(rng() % 5);
        std::uint64_t predicted = 0;
        for (auto it = model.begin(); it != model.end();) {
          if (it->first.starts_with(prefix)) {
            if (it->second.deadline > now) ++predicted;
            it = model.erase(it);
          } else {
            ++it;
          }
        }
        const std::uint64_t removed = shard.remove_prefix(prefix, now, dead);
        if (exact) {
          ASSERT_EQ(predicted, removed);
        }
        ASSERT_LE(removed, predicted);
        break;
      }
    }
    ASSERT_NO_FATAL_FAILURE(ShardTestPeer::ExpectInvariants(shard));
  }
  ShardStats stats;
  shard.add_stats(&stats);
  if (exact) {
    EXPECT_EQ(0u, stats.evictions);
  } else {
    EXPECT_GT(stats.evictions, 0u) << "the budget was meant to force evictions";
  }
  EXPECT_GT(stats.expirations, 0u);
}

TEST(ShardTest, RandomOperationsMatchAModelWhenNothingIsEvicted) {
  for (const std::uint32_t seed : {1u, 2u, 3u}) RunRandomOperations(seed, 1 << 20, 1000, true);
}

TEST(ShardTest, RandomOperationsUnderSmallBudgetsKeepInvariantsAndNeverServeStaleValues) {
  for (const std::uint32_t seed : {4u, 5u}) {
    RunRandomOperations(seed, 10 * charge_of(3, 20), 1000, false);  // bytes bind
    RunRandomOperations(seed, 1 << 20, 6, false);                   // entries bind
  }
}

}  // namespace
}  // namespace aicache::memory
