// RedisStore on a real Redis Cluster (3 masters, 3 replicas; RedisCluster in
// tests/support):
//
// - the Store contract (store_contract_test.cc), near cache on and off, on
//   one cluster shared by the process (this binary runs as one CTest entry:
//   a cluster takes a few seconds to form);
// - what only a cluster has: keys spread over the masters, multi-key calls
//   split by master with results in the caller's order, a store whose map
//   is stale (per-key MOVED inside a pipeline), stats per node, settings;
// - faults (ClusterFaults.*, each on its own cluster): a master SIGKILLed
//   under 32 threads, and a slot migrated under load (the ASK path).
#include "support/redis_cluster.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/redis_store.h"
#include "redis/cluster_slot.h"
#include "store_contract.h"

namespace aicache::testing {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

RedisCluster& SharedCluster() {
  static RedisCluster cluster;
  return cluster;
}

RedisStoreOptions ClusterOptions(RedisCluster& cluster, std::size_t near_cache_max_bytes) {
  RedisStoreOptions options;
  options.cluster_nodes = cluster.seeds();
  options.pool_size = 16;
  options.default_ttl = std::chrono::seconds(300);
  options.near_cache_max_bytes = near_cache_max_bytes;
  return options;
}

std::shared_ptr<Store> MakeClusterStore(RedisStoreOptions options) {
  auto store = make_redis_store(std::move(options));
  if (!store) throw std::runtime_error(store.error().to_string());
  return std::move(*store);
}

StoreUnderTest ClusterStoreUnderTest(bool near_cache) {
  return {.name = near_cache ? "Cluster" : "ClusterNoNearCache",
          .make =
              [near_cache](std::shared_ptr<const Clock> /*clock*/) {
                return MakeClusterStore(
                    ClusterOptions(SharedCluster(), near_cache ? std::size_t{64} << 20 : 0));
              },
          .clock_driven = false,
          .key_prefix = fmt::format("contract:{}:", ::getpid())};
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Cluster, StoreContract,
                         ::testing::Values(ClusterStoreUnderTest(true),
                                           ClusterStoreUnderTest(false)),
                         StoreUnderTestName);

namespace {

// Keys whose slots fall on every master: `n` keys "prefix<i>".
std::vector<std::string> Keys(const std::string& prefix, int n) {
  std::vector<std::string> keys;
  for (int i = 0; i < n; ++i) keys.push_back(fmt::format("{}{}", prefix, i));
  return keys;
}

class ClusterStore : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    store_ = MakeClusterStore(ClusterOptions(SharedCluster(), GetParam() ? 64u << 20 : 0));
    prefix_ = fmt::format("cluster:{}:{}:", ::getpid(),
                          ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override { (void)store_->clear(prefix_); }

  std::shared_ptr<Store> store_;
  std::string prefix_;
};

TEST_P(ClusterStore, KeysSpreadOverEveryMaster) {
  const auto keys = Keys(prefix_, 300);
  std::vector<std::pair<std::string, std::string>> entries;
  for (const auto& k : keys) entries.emplace_back(k, "v:" + k);
  ASSERT_TRUE(store_->set_many(entries, Ttl::use_default()));
  auto stats = store_->stats();
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->details["topology"], "cluster");
  int masters_with_keys = 0;
  int masters = 0;
  for (std::size_t i = 0; i < SharedCluster().size(); ++i) {
    const std::string node = fmt::format("node.127.0.0.1:{}.", SharedCluster().port(i));
    if (!stats->details.contains(node + "role")) continue;
    ++masters;
    EXPECT_EQ(stats->details[node + "role"], "master");
    EXPECT_TRUE(stats->details.contains(node + "used_memory"));
    if (std::stoull(stats->details[node + "keys"]) > 0) ++masters_with_keys;
  }
  EXPECT_EQ(masters, 3);
  EXPECT_EQ(masters_with_keys, 3);
  EXPECT_GE(stats->entries, keys.size());
}

TEST_P(ClusterStore, ManyKeyCallsKeepTheCallersOrder) {
  auto keys = Keys(prefix_, 100);
  std::vector<std::pair<std::string, std::string>> entries;
  for (std::size_t i = 0; i < keys.size(); i += 2) entries.emplace_back(keys[i], "v:" + keys[i]);
  ASSERT_TRUE(store_->set_many(entries, Ttl::use_default()));
  // Twice: the second time from the near cache when it is on.
  for (int round = 0; round < 2; ++round) {
    auto values = store_->get_many(keys);
    ASSERT_TRUE(values) << values.error().to_string();
    ASSERT_EQ(values->size(), keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (i % 2 == 0) {
        EXPECT_EQ((*values)[i], "v:" + keys[i]) << keys[i];
      } else {
        EXPECT_EQ((*values)[i], std::nullopt) << keys[i];
      }
    }
  }
  auto removed = store_->remove_many(keys);
  ASSERT_TRUE(removed) << removed.error().to_string();
  EXPECT_EQ(*removed, entries.size());
  auto after = store_->get_many(keys);
  ASSERT_TRUE(after);
  for (const auto& v : *after) EXPECT_EQ(v, std::nullopt);
}

TEST_P(ClusterStore, HashTaggedKeysGoInOneCommand) {
  std::vector<std::string> keys;
  for (int i = 0; i < 20; ++i) keys.push_back(fmt::format("{}{{tag}}:{}", prefix_, i));
  std::vector<std::pair<std::string, std::string>> entries;
  for (const auto& k : keys) entries.emplace_back(k, k);
  ASSERT_TRUE(store_->set_many(entries, Ttl::use_default()));
  auto values = store_->get_many(keys);
  ASSERT_TRUE(values) << values.error().to_string();
  for (std::size_t i = 0; i < keys.size(); ++i) EXPECT_EQ((*values)[i], keys[i]);
  auto removed = store_->remove_many(keys);
  ASSERT_TRUE(removed);
  EXPECT_EQ(*removed, keys.size());
}

TEST_P(ClusterStore, ScriptsAndLeasesStaySingleKey) {
  const std::string key = prefix_ + "lease";
  auto added = store_->add(key, "owner-1", std::chrono::seconds(30));
  ASSERT_TRUE(added);
  EXPECT_TRUE(*added);
  auto again = store_->add(key, "owner-2", std::chrono::seconds(30));
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);
  auto wrong = store_->remove_if_equals(key, "owner-2");
  ASSERT_TRUE(wrong);
  EXPECT_FALSE(*wrong);
  auto right = store_->remove_if_equals(key, "owner-1");
  ASSERT_TRUE(right) << right.error().to_string();
  EXPECT_TRUE(*right);
  for (int i = 0; i < 30; ++i) {
    auto n = store_->incr(fmt::format("{}counter:{}", prefix_, i), 5, Ttl::use_default());
    ASSERT_TRUE(n) << n.error().to_string();
    EXPECT_EQ(*n, 5);
  }
}

// A store that read the map before a slot moved sends a group's pipeline to
// the old owner: the keys of that slot come back MOVED one by one, and are
// read, written or removed again at the new owner, in the caller's order.
TEST_P(ClusterStore, StaleMapFollowsMovedInsidePipelines) {
  RedisCluster& cluster = SharedCluster();
  const auto stale = MakeClusterStore(ClusterOptions(cluster, GetParam() ? 64u << 20 : 0));
  // Keys of several slots, one slot of which moves.
  auto keys = Keys(prefix_, 60);
  const std::uint16_t slot = redis::key_slot(keys[0]);
  const std::size_t from = cluster.owner_of(slot, 0).value();
  std::size_t to = from;
  // Another master: the owner of some other key's slot.
  for (const auto& k : keys) {
    const std::size_t owner = cluster.owner_of(redis::key_slot(k), 0).value();
    if (owner != from) {
      to = owner;
      break;
    }
  }
  ASSERT_NE(to, from);
  std::vector<std::pair<std::string, std::string>> entries;
  for (const auto& k : keys) entries.emplace_back(k, "old:" + k);
  ASSERT_TRUE(store_->set_many(entries, Ttl::use_default()));
  // The stale store reads everything once (and caches it when on).
  ASSERT_TRUE(stale->get_many(keys));

  cluster.migrate_slot(slot, from, to, 100, {});

  // MOVED replies sent by the masters (Redis counts the error replies it
  // sends).
  const auto moved_replies = [&] {
    unsigned long long sum = 0;
    for (std::size_t node = 0; node < cluster.size(); ++node) {
      const std::string info = cluster.command(node, {"INFO", "errorstats"}).value_or("");
      const auto at = info.find("errorstat_MOVED:count=");
      if (at != std::string::npos) sum += std::stoull(info.substr(at + 22));
    }
    return sum;
  };
  const auto moved_before = moved_replies();
  auto values = stale->get_many(keys);
  ASSERT_TRUE(values) << values.error().to_string();
  // The stale store was answered MOVED for the keys of the slot (inside the
  // group's pipeline, then once more each when re-run alone).
  EXPECT_GT(moved_replies(), moved_before);
  for (std::size_t i = 0; i < keys.size(); ++i) EXPECT_EQ((*values)[i], "old:" + keys[i]);
  for (auto& [k, v] : entries) v = "new:" + k;
  const auto stale2 = MakeClusterStore(ClusterOptions(cluster, GetParam() ? 64u << 20 : 0));
  ASSERT_TRUE(stale2->get_many(keys));
  cluster.migrate_slot(slot, to, from, 100, {});
  ASSERT_TRUE(stale2->set_many(entries, Ttl::use_default()));
  auto fresh = store_->get_many(keys);
  ASSERT_TRUE(fresh) << fresh.error().to_string();
  for (std::size_t i = 0; i < keys.size(); ++i) EXPECT_EQ((*fresh)[i], "new:" + keys[i]);
  cluster.migrate_slot(slot, from, to, 100, {});
  auto removed = stale2->remove_many(keys);
  ASSERT_TRUE(removed) << removed.error().to_string();
  EXPECT_EQ(*removed, keys.size());
  // Back where it was, for the other tests.
  cluster.migrate_slot(slot, to, from, 100, {});
}

std::string NearCacheName(const ::testing::TestParamInfo<bool>& param) {
  return param.param ? "On" : "Off";
}

INSTANTIATE_TEST_SUITE_P(NearCache, ClusterStore, ::testing::Values(true, false), NearCacheName);

TEST(ClusterSettings, RefusesAnotherDbAndBadSeeds) {
  RedisStoreOptions options = ClusterOptions(SharedCluster(), 0);
  options.endpoint.db = 1;
  auto db = make_redis_store(options);
  ASSERT_FALSE(db);
  EXPECT_EQ(db.error().code, ErrorCode::kConfig);
  options.endpoint.db = 0;
  options.cluster_nodes = {"127.0.0.1"};
  auto bad = make_redis_store(options);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kConfig);
  EXPECT_NE(bad.error().message.find("no port"), std::string::npos) << bad.error().message;
  // As the settings read seeds: an IPv6 address goes in brackets.
  options.cluster_nodes = {"::1:7000"};
  auto v6 = make_redis_store(options);
  ASSERT_FALSE(v6);
  EXPECT_EQ(v6.error().code, ErrorCode::kConfig);
  EXPECT_NE(v6.error().message.find("brackets"), std::string::npos) << v6.error().message;
}

TEST(ClusterSettings, ANonClusterServerIsUnavailable) {
  RedisServer plain;
  RedisStoreOptions options;
  options.cluster_nodes = {fmt::format("127.0.0.1:{}", plain.port())};
  auto store = make_redis_store(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable) << store.error().to_string();
}

TEST(ClusterSettings, OneLiveSeedIsEnough) {
  RedisStoreOptions options = ClusterOptions(SharedCluster(), 0);
  options.cluster_nodes = {fmt::format("127.0.0.1:{}", pick_free_port()),
                           SharedCluster().seeds().back()};
  auto store = make_redis_store(options);
  ASSERT_TRUE(store) << store.error().to_string();
  EXPECT_TRUE((*store)->set("cluster:seed", "x", Ttl::use_default()));
  EXPECT_TRUE((*store)->remove("cluster:seed"));
}

// --- reads from replicas -----------------------------------------------------

// The master serving `key` and its replica (node indexes).
struct MasterAndReplica {
  std::size_t master = 0;
  std::size_t replica = 0;
};

// The number after "<name>:" in an INFO text; -1 if absent.
long long InfoField(const std::string& info, std::string_view name) {
  const std::string head = fmt::format("{}:", name);
  const auto at = info.find(head);
  if (at == std::string::npos) return -1;
  return std::stoll(info.substr(at + head.size()));
}

MasterAndReplica MasterAndReplicaOf(RedisCluster& cluster, const std::string& key) {
  const std::size_t master = cluster.owner_of(redis::key_slot(key), 0).value();
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    if (i == master || !cluster.server(i).running()) continue;
    const std::string info = cluster.command(i, {"INFO", "replication"}).value();
    if (info.find("role:slave") != std::string::npos &&
        InfoField(info, "master_port") == cluster.port(master)) {
      return {master, i};
    }
  }
  throw std::runtime_error("no replica of the key's master");
}

// Waits (bounded) until `replica` has applied everything `master` wrote.
void WaitReplicated(RedisCluster& cluster, MasterAndReplica nodes) {
  const long long target =
      InfoField(cluster.command(nodes.master, {"INFO", "replication"}).value(),
                "master_repl_offset");
  const auto deadline = SteadyClock::now() + 10s;
  while (InfoField(cluster.command(nodes.replica, {"INFO", "replication"}).value(),
                   "slave_repl_offset") < target) {
    if (SteadyClock::now() > deadline) throw std::runtime_error("the replica did not catch up");
    std::this_thread::sleep_for(5ms);
  }
}

// SET on the master alone: the script turns replication off for its write,
// so the replica keeps the value it had (a replica that lags, on demand).
constexpr std::string_view kUnreplicatedSet =
    "redis.set_repl(redis.REPL_NONE) return redis.call('SET', KEYS[1], ARGV[1])";

// Reads `key` through `store` until it answers `want` (bounded); the last
// answer.
std::optional<std::string> ReadUntil(Store& store, const std::string& key,
                                     const std::string& want) {
  const auto deadline = SteadyClock::now() + 10s;
  std::optional<std::string> got;
  do {
    auto read = store.get(key);
    got = read ? *read : std::nullopt;
    if (got == want) break;
    std::this_thread::sleep_for(2ms);
  } while (SteadyClock::now() < deadline);
  return got;
}

// The number of replicas a store reads from (its stats).
std::size_t ReplicasReadFrom(Store& store) {
  auto stats = store.stats();
  if (!stats) throw std::runtime_error(stats.error().to_string());
  const std::string& list = stats->details["replica_endpoints"];
  return list.empty() ? 0 : 1 + std::count(list.begin(), list.end(), ',');
}

// A store reading from replicas, made once it sees every master's replica:
// Redis 7 lists a replica in CLUSTER SLOTS only once it has replicated
// something, so a fresh cluster gets writes first (bounded).
std::shared_ptr<Store> ReplicaReadingStore(RedisCluster& cluster, std::size_t near_bytes) {
  RedisStoreOptions options = ClusterOptions(cluster, near_bytes);
  options.read_from_replicas = true;
  const auto deadline = SteadyClock::now() + 20s;
  for (;;) {
    std::shared_ptr<Store> store = MakeClusterStore(options);
    if (ReplicasReadFrom(*store) == cluster.size() / 2) return store;
    if (SteadyClock::now() > deadline) throw std::runtime_error("replicas not listed");
    std::vector<std::pair<std::string, std::string>> entries;
    for (const auto& k : Keys("replicas-listed:", 30)) entries.emplace_back(k, "x");
    (void)store->set_many(entries, Ttl(60s));
    std::this_thread::sleep_for(50ms);
  }
}

class ClusterReplicaReads : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    store_ = ReplicaReadingStore(SharedCluster(), GetParam() ? 64u << 20 : 0);
    prefix_ = fmt::format("replica:{}:{}:", ::getpid(),
                          ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override { (void)store_->clear(prefix_); }

  std::shared_ptr<Store> store_;
  std::string prefix_;
};

TEST_P(ClusterReplicaReads, ReadsGoToTheReplicaAndGetLatestToTheMaster) {
  RedisCluster& cluster = SharedCluster();
  const std::string key = prefix_ + "k";
  const MasterAndReplica nodes = MasterAndReplicaOf(cluster, key);
  ASSERT_TRUE(store_->set(key, "v0", Ttl(300s)));
  WaitReplicated(cluster, nodes);
  cluster.command(nodes.master, {"EVAL", std::string(kUnreplicatedSet), "1", key, "v1"});

  // Every read answers the replica's value...
  auto got = store_->get(key);
  ASSERT_TRUE(got) << got.error().to_string();
  EXPECT_EQ(*got, "v0");
  auto with_ttl = store_->get_with_ttl(key);
  ASSERT_TRUE(with_ttl && *with_ttl);
  EXPECT_EQ((*with_ttl)->value, "v0");
  auto many = store_->get_many(std::vector<std::string>{key, prefix_ + "absent"});
  ASSERT_TRUE(many) << many.error().to_string();
  EXPECT_EQ((*many)[0], "v0");
  EXPECT_EQ((*many)[1], std::nullopt);
  auto ttl = store_->ttl(key);
  ASSERT_TRUE(ttl);
  EXPECT_EQ(ttl->state, KeyTtl::State::kExpiring);
  // ...but get_latest, which asks the master.
  auto latest = store_->get_latest(key);
  ASSERT_TRUE(latest && *latest) << (latest ? "miss" : latest.error().to_string());
  EXPECT_EQ((*latest)->value, "v1");
  EXPECT_EQ((*latest)->ttl.state, KeyTtl::State::kPersistent);  // SET without PX
  // A store reading masters never sees the replica's value.
  auto masters = MakeClusterStore(ClusterOptions(cluster, GetParam() ? 64u << 20 : 0));
  EXPECT_EQ(masters->get(key).value(), "v1");

  // A replicated write reaches the replica's readers, near copies included
  // (the replica invalidates what it replicates).
  ASSERT_TRUE(store_->set(key, "v2", Ttl(300s)));
  EXPECT_EQ(ReadUntil(*store_, key, "v2"), "v2");
  cluster.command(nodes.master, {"SET", key, "v3"});
  EXPECT_EQ(ReadUntil(*store_, key, "v3"), "v3");
  ASSERT_TRUE(store_->remove(key));
  const auto deadline = SteadyClock::now() + 10s;
  while (store_->get(key).value().has_value() && SteadyClock::now() < deadline) {
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(store_->get(key).value(), std::nullopt);
}

TEST_P(ClusterReplicaReads, WritesAndScriptsStayOnTheMasters) {
  const std::string key = prefix_ + "lease";
  // SET NX, the compare-and-delete script and INCR's script: a replica
  // would refuse each (READONLY) or redirect it.
  EXPECT_EQ(store_->add(key, "owner-1", Ttl(30s)).value(), true);
  EXPECT_EQ(store_->add(key, "owner-2", Ttl(30s)).value(), false);
  EXPECT_EQ(store_->remove_if_equals(key, "owner-1").value(), true);
  EXPECT_EQ(store_->incr(prefix_ + "n", 2, Ttl(30s)).value(), 2);
  EXPECT_EQ(store_->incr(prefix_ + "n", 3, Ttl(30s)).value(), 5);
}

TEST_P(ClusterReplicaReads, StatsNameTheReplicas) {
  auto stats = store_->stats();
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->details["read_from_replicas"], "on");
  const std::string& replicas = stats->details["replica_endpoints"];
  EXPECT_EQ(std::count(replicas.begin(), replicas.end(), ','), 2) << replicas;
  // The nodes listed are the masters, three (a replica's INFO adds only its
  // hits and misses).
  int listed = 0;
  for (std::size_t i = 0; i < SharedCluster().size(); ++i) {
    const std::string node = fmt::format("node.127.0.0.1:{}.role", SharedCluster().port(i));
    if (stats->details.contains(node)) {
      ++listed;
      EXPECT_EQ(stats->details[node], "master");
    }
  }
  EXPECT_EQ(listed, 3);
}

// The reads served by replicas are counted there: stats' hits and misses
// add the replicas' to the masters'.
TEST_P(ClusterReplicaReads, StatsCountTheReadsOfReplicas) {
  RedisCluster& cluster = SharedCluster();
  const std::string tagged = prefix_ + "{stats}";  // one master, one replica
  const MasterAndReplica nodes = MasterAndReplicaOf(cluster, tagged);
  constexpr std::uint64_t kKeys = 20;
  std::vector<std::pair<std::string, std::string>> entries;
  for (std::uint64_t i = 0; i < kKeys; ++i) {
    entries.emplace_back(fmt::format("{}present{}", tagged, i), "v");
  }
  ASSERT_TRUE(store_->set_many(entries, Ttl(300s)));
  WaitReplicated(cluster, nodes);
  auto before = store_->stats();
  ASSERT_TRUE(before) << before.error().to_string();
  for (std::uint64_t i = 0; i < kKeys; ++i) {
    ASSERT_EQ(store_->get(fmt::format("{}present{}", tagged, i)).value(), "v");
    ASSERT_EQ(store_->get(fmt::format("{}absent{}", tagged, i)).value(), std::nullopt);
  }
  auto after = store_->stats();
  ASSERT_TRUE(after) << after.error().to_string();
  EXPECT_GE(after->hits - before->hits, kKeys);
  EXPECT_GE(after->misses - before->misses, kKeys);
}

// The token lease is read on the master: whether a failure marker stops
// the waiters, and whether reconfigure() clears one, must not rest on a
// copy that lags (here a replica still naming the owner the master no
// longer has).
TEST_P(ClusterReplicaReads, TheTokenLeaseIsReadOnTheMaster) {
  RedisCluster& cluster = SharedCluster();
  auto cache = AssistantCache::create(store_);
  ASSERT_TRUE(cache) << cache.error().to_string();
  const std::string app = fmt::format("replica{}{}", ::getpid(), GetParam() ? "on" : "off");
  auto slot = (*cache)->token_slot("wechat", app);
  ASSERT_TRUE(slot) << slot.error().to_string();
  // The default key prefix ("") and version (1).
  const std::string lease_key = ":1:ai_assistant:token_lease:wechat:" + app;
  const MasterAndReplica nodes = MasterAndReplicaOf(cluster, lease_key);
  (void)store_->remove(lease_key);
  ASSERT_EQ(slot->try_lease("owner-1", Ttl(60s)).value(), true);
  WaitReplicated(cluster, nodes);
  ASSERT_EQ(cluster.command(nodes.master, {"GET", lease_key}), "owner-1");  // the key's name
  ASSERT_EQ(slot->lease().value_or(""), "owner-1");
  // The master's lease changes; the replica does not see it.
  cluster.command(nodes.master,
                  {"EVAL", std::string(kUnreplicatedSet), "1", lease_key, "failed kUnavailable x"});
  auto lease = slot->lease();
  ASSERT_FALSE(lease.failed()) << lease.error().to_string();
  EXPECT_EQ(lease.value_or(""), "failed kUnavailable x");
  EXPECT_EQ(store_->remove(lease_key).value(), true);
}

INSTANTIATE_TEST_SUITE_P(NearCache, ClusterReplicaReads, ::testing::Bool(), NearCacheName);

TEST(ClusterSettings, ReplicaReadsNeedACluster) {
  RedisStoreOptions options;
  options.read_from_replicas = true;
  auto store = make_redis_store(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kConfig);
  EXPECT_NE(store.error().message.find("read_from_replicas"), std::string::npos);
}

// --- faults ---------------------------------------------------------------------

// "<key>|<n>": what thread writes to `key` on its n-th write.
std::string Versioned(const std::string& key, std::uint64_t n) {
  return fmt::format("{}|{}", key, n);
}

// True when `value` is one that was written to `key` (version <= written).
bool Legitimate(const std::string& key, const std::string& value, std::uint64_t written) {
  const std::string head = key + "|";
  if (!value.starts_with(head)) return false;
  try {
    return std::stoull(value.substr(head.size())) <= written;
  } catch (const std::exception&) {
    return false;
  }
}

TEST(ClusterFaults, MasterKilledUnderLoadFailsOverWithoutWrongValues) {
  RedisCluster cluster;
  RedisStoreOptions options = ClusterOptions(cluster, 16u << 20);
  options.pool_size = 40;
  options.socket_timeout = 500ms;
  options.connect_timeout = 500ms;
  const auto store = MakeClusterStore(options);

  constexpr int kThreads = 32;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> ok{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::uint64_t> written(20, 0);
      for (std::uint64_t n = 1; !stop.load(); ++n) {
        const std::size_t i = n % written.size();
        const std::string key = fmt::format("fault:{}:{}", t, i);
        written[i] = n;
        if (store->set(key, Versioned(key, n), Ttl::use_default())) {
          ok.fetch_add(1);
        } else {
          errors.fetch_add(1);
        }
        auto value = store->get(key);
        if (!value) {
          errors.fetch_add(1);
        } else if (*value && !Legitimate(key, **value, written[i])) {
          wrong.fetch_add(1);
          ADD_FAILURE() << key << " read " << **value;
        } else {
          ok.fetch_add(1);
        }
        if (n % written.size() != 0) continue;
        // Every round, all of the thread's keys at once: spread over the
        // masters, read in one get_many.
        std::vector<std::string> keys;
        for (std::size_t k = 0; k < written.size(); ++k) {
          keys.push_back(fmt::format("fault:{}:{}", t, k));
        }
        auto values = store->get_many(keys);
        if (!values) {
          errors.fetch_add(1);
          continue;
        }
        ok.fetch_add(1);
        for (std::size_t k = 0; k < keys.size(); ++k) {
          const auto& v = (*values)[k];
          if (v && !Legitimate(keys[k], *v, written[k])) {
            wrong.fetch_add(1);
            ADD_FAILURE() << keys[k] << " read " << *v << " through get_many";
          }
        }
      }
    });
  }
  auto wait_ok_calls = [&](std::uint64_t more) {
    const std::uint64_t target = ok.load() + more;
    const auto deadline = SteadyClock::now() + 60s;
    while (ok.load() < target && SteadyClock::now() < deadline) std::this_thread::sleep_for(10ms);
    return ok.load() >= target;
  };
  EXPECT_TRUE(wait_ok_calls(2000));
  const std::uint64_t errors_before = errors.load();
  // Node 0 is a master (redis-cli --cluster create makes the first nodes
  // masters).
  cluster.server(0).kill();
  const auto killed = SteadyClock::now();
  ASSERT_TRUE(cluster.wait_settled(60s)) << "the replica was not promoted";
  const auto settled = SteadyClock::now();
  // Served again: every thread keeps succeeding once the replica leads.
  EXPECT_TRUE(wait_ok_calls(5000));
  const std::uint64_t errors_after_recovery = errors.load();
  EXPECT_TRUE(wait_ok_calls(5000));
  stop.store(true);
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_EQ(errors_before, 0u);
  // Once served again, no more errors.
  EXPECT_EQ(errors.load(), errors_after_recovery);
  std::cout << fmt::format(
      "failover under {} threads: {} calls ok, {} failed (during the failover), cluster settled "
      "{} ms after the kill\n",
      kThreads, ok.load(), errors.load(),
      std::chrono::duration_cast<std::chrono::milliseconds>(settled - killed).count());
  // A fresh pass over every key: each call succeeds.
  for (int t = 0; t < kThreads; ++t) {
    const std::string key = fmt::format("fault:{}:0", t);
    EXPECT_TRUE(store->set(key, "after", Ttl::use_default()));
    auto value = store->get(key);
    ASSERT_TRUE(value) << value.error().to_string();
    EXPECT_EQ(*value, "after");
  }
}

TEST(ClusterFaults, SlotMigratedUnderLoadFollowsAsk) {
  RedisCluster cluster;
  const auto store = MakeClusterStore(ClusterOptions(cluster, 16u << 20));
  const auto no_near = MakeClusterStore(ClusterOptions(cluster, 0));
  // 300 keys of one slot ({mig}), each thread owning its own.
  constexpr int kThreads = 8;
  constexpr int kKeysPerThread = 40;
  const std::uint16_t slot = redis::key_slot("mig");
  const std::size_t from = cluster.owner_of(slot, 0).value();
  std::size_t to = (from + 1) % 3;
  ASSERT_NE(cluster.owner_of(slot, 0), to);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kKeysPerThread; ++i) {
      const std::string key = fmt::format("{{mig}}:{}:{}", t, i);
      ASSERT_TRUE(store->set(key, Versioned(key, 0), Ttl::use_default()));
    }
  }
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> ok{0};
  std::atomic<std::uint64_t> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::uint64_t> written(kKeysPerThread, 0);
      Store& s = t % 2 == 0 ? *store : *no_near;
      for (std::uint64_t n = 1; !stop.load(); ++n) {
        const std::size_t i = n % written.size();
        const std::string key = fmt::format("{{mig}}:{}:{}", t, i);
        auto value = s.get(key);
        if (!value) {
          errors.fetch_add(1);
          ADD_FAILURE() << "get " << key << ": " << value.error().to_string();
        } else if (!*value || !Legitimate(key, **value, written[i])) {
          ADD_FAILURE() << key << " read " << value->value_or("(miss)");
        } else {
          ok.fetch_add(1);
        }
        written[i] = n;
        if (auto set = s.set(key, Versioned(key, n), Ttl::use_default()); !set) {
          errors.fetch_add(1);
          ADD_FAILURE() << "set " << key << ": " << set.error().to_string();
        }
      }
    });
  }
  std::this_thread::sleep_for(100ms);
  cluster.migrate_slot(slot, from, to, 10, [] { std::this_thread::sleep_for(20ms); });
  std::this_thread::sleep_for(200ms);
  stop.store(true);
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0u);
  EXPECT_GT(ok.load(), 0u);
  EXPECT_EQ(cluster.owner_of(slot, to), to);
  // The path under test was taken: the source answered ASK (Redis counts
  // the error replies it sent).
  EXPECT_NE(cluster.command(from, {"INFO", "errorstats"}).value_or("").find("errorstat_ASK:"),
            std::string::npos);
  std::cout << fmt::format("slot {} migrated under {} threads: {} reads ok, {} errors\n", slot,
                           kThreads, ok.load(), errors.load());
}

TEST(ClusterFaults, AReplicaKilledSendsReadsToItsMaster) {
  RedisCluster cluster;
  auto store = ReplicaReadingStore(cluster, 64u << 20);
  const std::string key = "replica-killed:k";
  const MasterAndReplica nodes = MasterAndReplicaOf(cluster, key);
  ASSERT_TRUE(store->set(key, "v0", Ttl(300s)));
  WaitReplicated(cluster, nodes);
  ASSERT_EQ(store->get(key).value(), "v0");  // a pooled connection to the replica
  cluster.server(nodes.replica).kill();
  // A written value, so that a read from the master is told apart from a
  // near copy: the replica is gone and cannot invalidate it, but the write
  // drops this process's copies.
  ASSERT_TRUE(store->set(key, "v1", Ttl(300s)));
  for (int i = 0; i < 20; ++i) {
    auto got = store->get(key);
    ASSERT_TRUE(got) << i << ": " << got.error().to_string();
    EXPECT_EQ(*got, "v1") << i;
    auto many = store->get_many(std::vector<std::string>{key, "replica-killed:absent"});
    ASSERT_TRUE(many) << i << ": " << many.error().to_string();
    EXPECT_EQ((*many)[0], "v1") << i;
  }
}

// A replica that answers MASTERDOWN (its link to the master is down and it
// serves no stale data) sends every kind of read to its master: a GET, an
// MGET of one slot, and a pipeline of GETs of several slots (not routed by
// a key), with and without a near cache.
TEST(ClusterFaults, AReplicaAnsweringMasterdownSendsReadsToItsMaster) {
  RedisCluster cluster;
  auto near = ReplicaReadingStore(cluster, 64u << 20);
  auto plain = ReplicaReadingStore(cluster, 0);
  const std::string key = "replica-masterdown:{a}k";
  const std::string same_slot = "replica-masterdown:{a}other";
  const MasterAndReplica nodes = MasterAndReplicaOf(cluster, key);
  // A key of another slot of the same master.
  std::string other_slot;
  for (const std::string& k : Keys("replica-masterdown:", 200)) {
    const std::uint16_t slot = redis::key_slot(k);
    if (slot != redis::key_slot(key) && cluster.owner_of(slot, 0).value() == nodes.master) {
      other_slot = k;
      break;
    }
  }
  ASSERT_FALSE(other_slot.empty());
  for (const std::string& k : {key, same_slot, other_slot}) {
    ASSERT_TRUE(near->set(k, "v0", Ttl(300s)));
  }
  WaitReplicated(cluster, nodes);
  ASSERT_EQ(near->get(key).value(), "v0");  // the replica's connections are open
  ASSERT_EQ(plain->get(key).value(), "v0");

  // The link goes down for good: the master refuses the replica's password.
  ASSERT_TRUE(cluster.command(nodes.replica, {"CONFIG", "SET", "replica-serve-stale-data", "no"}));
  ASSERT_TRUE(cluster.command(nodes.replica, {"CONFIG", "SET", "masterauth", "wrong"}));
  ASSERT_TRUE(cluster.command(nodes.replica, {"CLIENT", "KILL", "TYPE", "master"}));
  const auto deadline = SteadyClock::now() + 10s;
  while (cluster.command(nodes.replica, {"INFO", "replication"})
             .value_or("")
             .find("master_link_status:down") == std::string::npos) {
    ASSERT_LT(SteadyClock::now(), deadline) << "the replica's link stayed up";
    std::this_thread::sleep_for(5ms);
  }
  // Values the replica has not seen: the reads that answer them went to
  // the master.
  for (const std::string& k : {key, same_slot, other_slot}) {
    ASSERT_TRUE(near->set(k, "v1", Ttl(300s)));
  }
  for (Store* store : {near.get(), plain.get()}) {
    auto got = store->get(key);
    ASSERT_TRUE(got) << got.error().to_string();
    EXPECT_EQ(*got, "v1");
    auto with_ttl = store->get_with_ttl(same_slot);
    ASSERT_TRUE(with_ttl && *with_ttl) << (with_ttl ? "miss" : with_ttl.error().to_string());
    EXPECT_EQ((*with_ttl)->value, "v1");
    auto one_slot = store->get_many(std::vector<std::string>{key, same_slot});
    ASSERT_TRUE(one_slot) << one_slot.error().to_string();
    EXPECT_EQ((*one_slot)[0], "v1");
    EXPECT_EQ((*one_slot)[1], "v1");
    auto two_slots = store->get_many(std::vector<std::string>{key, other_slot});
    ASSERT_TRUE(two_slots) << two_slots.error().to_string();
    EXPECT_EQ((*two_slots)[0], "v1");
    EXPECT_EQ((*two_slots)[1], "v1");
  }
  // The replica was asked, and refused.
  EXPECT_NE(cluster.command(nodes.replica, {"INFO", "errorstats"})
                .value_or("")
                .find("errorstat_MASTERDOWN"),
            std::string::npos);
}

// Waits (bounded) until every running replica has applied what its master
// had when asked.
void WaitAllReplicated(RedisCluster& cluster) {
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    if (!cluster.server(i).running()) continue;
    const std::string info = cluster.command(i, {"INFO", "replication"}).value_or("");
    if (info.find("role:slave") == std::string::npos) continue;
    for (std::size_t m = 0; m < cluster.size(); ++m) {
      if (m != i && cluster.server(m).running() &&
          InfoField(info, "master_port") == cluster.port(m)) {
        WaitReplicated(cluster, {m, i});
      }
    }
  }
}

// Reads from replicas, with near copies, while another store writes and a
// replica takes over its master (CLUSTER FAILOVER: the replica's node is
// then a master's too, and the old master's a replica's). Every value read
// is one that was written; once the writes stop, every read converges on
// the last, although this store wrote nothing: its near copies, on
// whichever node, follow the servers' invalidations alone.
TEST(ClusterFaults, ReplicaReadsConvergeThroughAManualFailover) {
  RedisCluster cluster;
  auto reader = ReplicaReadingStore(cluster, 16u << 20);
  const auto writer = MakeClusterStore(ClusterOptions(cluster, 0));

  constexpr int kWriters = 4;
  constexpr int kReaders = 8;
  constexpr std::size_t kKeys = 16;
  auto key_of = [](int w, std::size_t i) { return fmt::format("converge:{}:{}", w, i); };
  // written[w * kKeys + i]: the last version writer w began to write to key i.
  std::vector<std::atomic<std::uint64_t>> written(kWriters * kKeys);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> reads{0};
  std::atomic<std::uint64_t> wrong{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (std::uint64_t n = 1; !stop.load(); ++n) {
        const std::size_t i = n % kKeys;
        const std::string key = key_of(w, i);
        written[w * kKeys + i].store(n);
        (void)writer->set(key, Versioned(key, n), Ttl(300s));
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      for (std::uint64_t n = 0; !stop.load(); ++n) {
        const int w = static_cast<int>((n + r) % kWriters);
        std::vector<std::string> keys;
        for (std::size_t i = 0; i < kKeys; ++i) keys.push_back(key_of(w, i));
        auto check = [&](std::size_t i, const std::optional<std::string>& v) {
          if (v && !Legitimate(keys[i], *v, written[w * kKeys + i].load())) {
            wrong.fetch_add(1);
            ADD_FAILURE() << keys[i] << " read " << *v;
          }
        };
        const std::size_t i = n % kKeys;
        if (auto one = reader->get(keys[i])) check(i, *one);
        if (n % 4 == 0) {
          if (auto many = reader->get_many(keys)) {
            for (std::size_t k = 0; k < keys.size(); ++k) check(k, (*many)[k]);
          }
        }
        // Writes of other keys: a MOVED from the old master makes this
        // store read the new map (the replica's host:port a master's too).
        if (n % 8 == 0)
          (void)reader->set(fmt::format("converge-own:{}:{}", r, n % 64), "x", Ttl(60s));
        reads.fetch_add(1);
      }
    });
  }
  auto wait_reads = [&](std::uint64_t more) {
    const std::uint64_t target = reads.load() + more;
    const auto deadline = SteadyClock::now() + 60s;
    while (reads.load() < target && SteadyClock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
  };
  wait_reads(2000);
  // A replica of the first key's master takes over.
  const MasterAndReplica nodes = MasterAndReplicaOf(cluster, key_of(0, 0));
  ASSERT_TRUE(cluster.command(nodes.replica, {"CLUSTER", "FAILOVER"}));
  const auto deadline = SteadyClock::now() + 30s;
  while (cluster.command(nodes.replica, {"INFO", "replication"}).value_or("").find("role:master") ==
         std::string::npos) {
    ASSERT_LT(SteadyClock::now(), deadline) << "the replica did not take over";
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(cluster.wait_settled(30s));
  wait_reads(2000);
  // This store reads the new map: the old master is a replica read from.
  const std::string old_master = fmt::format("127.0.0.1:{}", cluster.port(nodes.master));
  const auto map_deadline = SteadyClock::now() + 30s;
  for (;;) {
    auto stats = reader->stats();
    if (stats && stats->details["replica_endpoints"].find(old_master) != std::string::npos) break;
    ASSERT_LT(SteadyClock::now(), map_deadline) << "the new map was not read";
    std::this_thread::sleep_for(10ms);
  }
  wait_reads(2000);
  stop.store(true);
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0u);

  // The last writes, by the other store; then every read of this one
  // converges on them (bounded: the invalidations are in flight).
  std::vector<std::string> keys;
  for (int w = 0; w < kWriters; ++w) {
    for (std::size_t i = 0; i < kKeys; ++i) {
      keys.push_back(key_of(w, i));
      ASSERT_TRUE(writer->set(keys.back(), "final", Ttl(300s)));
    }
  }
  WaitAllReplicated(cluster);
  for (const std::string& key : keys) EXPECT_EQ(ReadUntil(*reader, key, "final"), "final") << key;
  auto many = reader->get_many(keys);
  ASSERT_TRUE(many) << many.error().to_string();
  for (std::size_t k = 0; k < keys.size(); ++k) EXPECT_EQ((*many)[k], "final") << keys[k];
}

}  // namespace
}  // namespace aicache::testing
