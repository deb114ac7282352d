// RedisStore on Redis Sentinel (issue 15), with real processes: one master,
// one replica, three sentinels (support/redis_sentinel_group.h).
//
// - The master SIGKILLed while threads write and read: calls fail with
//   errors, never a wrong value, while the replica is promoted, then succeed
//   again on the new master; writes acknowledged and replicated (WAIT)
//   before the kill are all there.
// - A failover ordered through a sentinel (SENTINEL FAILOVER: the old master
//   keeps running, then turns into a replica and answers READONLY) is
//   followed, non-idempotent commands included.
// - Each way of noticing a failover alone, with the store's +switch-master
//   subscription on a server that announces nothing: a keyless call (INFO)
//   timing out on a frozen master, whose retry goes to the new master; and
//   READONLY from the demoted master, which sends even a non-idempotent
//   command to the new one.
// - Discovery errors: a master no sentinel knows, every sentinel down, a
//   wrong sentinel password, no master name; each message names the master
//   and never a password.
//
// The store contract on a Sentinel-managed master is in
// redis_sentinel_contract_test.cc. Waiting for a failover is polling with a
// generous deadline; nothing here asserts how long anything took (the
// failover time is measured by bench/sentinel_failover_bench.cc).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "aicache/redis_store.h"
#include "support/redis_sentinel_group.h"
#include "support/redis_server.h"

namespace aicache::testing {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// Deadlines for a failover on a loaded 2-core machine (down-after 1 s, then
// the sentinels' vote and the promotion): bounds for giving up, not figures.
constexpr auto kFailoverDeadline = 60s;
constexpr auto kRecoveryDeadline = 30s;

RedisStoreOptions SentinelOptions(const RedisSentinelGroup& group) {
  RedisStoreOptions options;
  options.sentinel = group.sentinel_options();
  options.connect_timeout = 200ms;
  options.socket_timeout = 500ms;
  options.pool_wait_timeout = 500ms;
  options.pool_size = 16;
  return options;
}

std::shared_ptr<Store> MakeStore(RedisStoreOptions options) {
  auto store = make_redis_store(std::move(options));
  EXPECT_TRUE(store) << store.error().to_string();
  return store ? std::move(*store) : nullptr;
}

std::string Detail(Store& store, const std::string& name) {
  auto stats = store.stats();
  if (!stats) return "(stats failed: " + stats.error().to_string() + ")";
  auto it = stats->details.find(name);
  return it == stats->details.end() ? std::string() : it->second;
}

std::string Address(std::uint16_t port) { return fmt::format("127.0.0.1:{}", port); }

// Polls `ok` until it holds; false at the deadline.
template <class F>
bool Eventually(F&& ok, std::chrono::seconds deadline) {
  const auto until = SteadyClock::now() + deadline;
  while (!ok()) {
    if (SteadyClock::now() > until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// Writes "<seq>" under the thread's own keys and reads them back.
constexpr int kThreads = 8;
constexpr int kKeys = 4;

struct Writer {
  std::array<std::atomic<std::uint64_t>, kKeys> attempted{};  // last seq sent
  std::array<std::atomic<std::uint64_t>, kKeys> acked{};      // last seq acknowledged
  std::atomic<std::uint64_t> successes{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> wrong_values{0};
  std::atomic<std::uint64_t> wrong_errors{0};
  std::string last_problem;  // written by the thread, read after join
};

std::string WriterKey(int t, int k) { return fmt::format("sentinel:fault:{}:{}", t, k); }

std::optional<std::uint64_t> SeqOf(std::string_view value) {
  std::uint64_t seq = 0;
  const auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), seq);
  if (ec != std::errc() || p != value.data() + value.size()) return std::nullopt;
  return seq;
}

void RunWriter(Store& store, int t, Writer& w, const std::atomic<bool>& stop) {
  std::uint64_t seq = 0;
  auto failed = [&](const Error& e) {
    w.failures.fetch_add(1);
    // A refused connection fails at once: pace the retries, leaving the
    // machine's CPUs to the sentinels doing the failover.
    std::this_thread::sleep_for(2ms);
    // What a failover may cause: unreachable, timed out, all connections
    // busy waiting on a dead master, or READONLY (kUnavailable).
    if (e.code != ErrorCode::kUnavailable && e.code != ErrorCode::kTimeout &&
        e.code != ErrorCode::kResourceExhausted) {
      w.wrong_errors.fetch_add(1);
      w.last_problem = e.to_string();
    }
  };
  while (!stop.load()) {
    for (int k = 0; k < kKeys && !stop.load(); ++k) {
      const std::string key = WriterKey(t, k);
      ++seq;
      w.attempted[k].store(seq);
      if (auto set = store.set(key, std::to_string(seq), Ttl(std::chrono::seconds(600)))) {
        w.acked[k].store(seq);
        w.successes.fetch_add(1);
      } else {
        failed(set.error());
      }
      auto got = store.get(key);
      if (!got) {
        failed(got.error());
        continue;
      }
      // Only this thread writes the key: a value is one it sent (a lost
      // write may bring back an older one after the failover), never more.
      if (*got) {
        const auto read = SeqOf(**got);
        if (!read || *read > w.attempted[k].load()) {
          w.wrong_values.fetch_add(1);
          w.last_problem = fmt::format("{} read '{}'", key, **got);
        }
      }
    }
  }
}

TEST(RedisSentinelFaults, MasterKilledUnderLoadTheStoreFollowsThePromotion) {
  RedisSentinelGroup group;
  const std::uint16_t replica_port = group.server(1).port();
  auto store = MakeStore(SentinelOptions(group));
  ASSERT_TRUE(store);
  EXPECT_EQ(Detail(*store, "topology"), "sentinel");
  EXPECT_EQ(Detail(*store, "sentinel_master"), group.master_name());
  EXPECT_EQ(Detail(*store, "sentinel_master_address"), Address(group.server(0).port()));

  std::array<Writer, kThreads> writers;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] { RunWriter(*store, t, writers[t], stop); });
  }
  ASSERT_TRUE(Eventually(
      [&] {
        for (const Writer& w : writers) {
          if (w.successes.load() < 20) return false;
        }
        return true;
      },
      30s));

  // Everything acknowledged so far is replicated once a write made after it
  // on another connection is: the replication stream is in order.
  std::array<std::array<std::uint64_t, kKeys>, kThreads> floor{};
  for (int t = 0; t < kThreads; ++t) {
    for (int k = 0; k < kKeys; ++k) floor[t][k] = writers[t].acked[k].load();
  }
  const auto waited = RedisSentinelGroup::commands(
      group.server(0).port(), {{"SET", "sentinel:fault:marker", "1"}, {"WAIT", "1", "5000"}});
  ASSERT_EQ(waited, std::vector<std::string>{"1"}) << "the replica did not acknowledge";

  group.server(0).kill();
  ASSERT_TRUE(group.wait_for_master(1, kFailoverDeadline)) << group.sentinel(0).read_log();

  // Every thread is served again by the new master.
  std::array<std::uint64_t, kThreads> before{};
  for (int t = 0; t < kThreads; ++t) before[t] = writers[t].successes.load();
  const bool recovered = Eventually(
      [&] {
        for (int t = 0; t < kThreads; ++t) {
          if (writers[t].successes.load() < before[t] + 10) return false;
        }
        return true;
      },
      kRecoveryDeadline);
  stop.store(true);
  for (auto& th : threads) th.join();
  EXPECT_TRUE(recovered) << "not every thread writes again after the promotion";

  std::uint64_t failures = 0;
  for (const Writer& w : writers) {
    failures += w.failures.load();
    EXPECT_EQ(w.wrong_values.load(), 0u) << w.last_problem;
    EXPECT_EQ(w.wrong_errors.load(), 0u) << w.last_problem;
  }
  EXPECT_GT(failures, 0u) << "the kill went unnoticed";

  for (int t = 0; t < kThreads; ++t) {
    for (int k = 0; k < kKeys; ++k) {
      auto got = store->get(WriterKey(t, k));
      ASSERT_TRUE(got) << got.error().to_string();
      ASSERT_TRUE(*got) << WriterKey(t, k) << " lost";
      const auto seq = SeqOf(**got);
      ASSERT_TRUE(seq);
      EXPECT_GE(*seq, floor[t][k]) << WriterKey(t, k) << " lost a replicated write";
    }
  }
  EXPECT_EQ(Detail(*store, "sentinel_master_address"), Address(replica_port));
  EXPECT_EQ(Detail(*store, "endpoint"), fmt::format("redis://{}/0", Address(replica_port)));
  EXPECT_GE(std::stoull(Detail(*store, "sentinel_failovers")), 1u);
}

// Writes `marker` on the master and waits until the replica has it (WAIT),
// then has a sentinel order a failover and waits until the replica is the
// master the sentinels name.
void ReplicateThenOrderFailover(RedisSentinelGroup& group, const std::string& marker) {
  const auto waited = RedisSentinelGroup::commands(
      group.server(0).port(), {{"SET", marker, "1"}, {"WAIT", "1", "5000"}});
  ASSERT_EQ(waited, std::vector<std::string>{"1"});
  const auto ordered = RedisSentinelGroup::command(group.sentinel(0).port(),
                                                   {"SENTINEL", "FAILOVER", group.master_name()});
  ASSERT_EQ(ordered, std::vector<std::string>{"OK"});
  ASSERT_TRUE(group.wait_for_master(1, kFailoverDeadline)) << group.sentinel(0).read_log();
}

TEST(RedisSentinelFaults, OrderedFailoverIsFollowedNonIdempotentCallsIncluded) {
  RedisSentinelGroup group;
  auto store = MakeStore(SentinelOptions(group));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->set("sentinel:ordered:kept", "before", Ttl::never()));
  ASSERT_TRUE(store->incr("sentinel:ordered:count", 1, Ttl::never()));
  // The sentinel promotes the replica and turns the old master, still
  // running, into its replica: writes there answer READONLY.
  ASSERT_NO_FATAL_FAILURE(ReplicateThenOrderFailover(group, "sentinel:ordered:marker"));

  // A sentinel names the promoted replica before announcing +switch-master,
  // and the old master accepts writes until the sentinels demote it (writes
  // there are lost: Sentinel's own window). The store moves on the
  // announcement or on READONLY, whichever comes first; then writes
  // succeed, and incr (never retried) is applied once.
  ASSERT_TRUE(Eventually(
      [&] { return Detail(*store, "sentinel_master_address") == Address(group.server(1).port()); },
      kRecoveryDeadline));
  ASSERT_TRUE(Eventually(
      [&] { return store->set("sentinel:ordered:after", "x", Ttl::never()).has_value(); },
      kRecoveryDeadline));
  auto count = store->incr("sentinel:ordered:count", 1, Ttl::never());
  ASSERT_TRUE(count) << count.error().to_string();
  EXPECT_EQ(*count, 2);
  auto kept = store->get("sentinel:ordered:kept");
  ASSERT_TRUE(kept) << kept.error().to_string();
  EXPECT_EQ(*kept, "before");
  EXPECT_GE(std::stoull(Detail(*store, "sentinel_failovers")), 1u);
}

// The group's sentinels behind a plain redis-server: discovery asks it first
// (it refuses SENTINEL and is skipped) and the store's +switch-master
// subscription lands on it and hears nothing, so that the store follows a
// failover only through its own calls' failures.
RedisStoreOptions DeafSubscriptionOptions(const RedisSentinelGroup& group,
                                          const RedisServer& deaf) {
  RedisStoreOptions options = SentinelOptions(group);
  options.sentinel.sentinels.insert(options.sentinel.sentinels.begin(),
                                    RedisHostPort{"127.0.0.1", deaf.port()});
  return options;
}

TEST(RedisSentinelFaults, AKeylessCallRetriedAfterRediscoveryGoesToTheNewMaster) {
  RedisSentinelGroup group;
  RedisServer deaf;
  auto store = MakeStore(DeafSubscriptionOptions(group, deaf));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->set("sentinel:keyless:k", "v", Ttl::never()));  // a pooled connection
  ASSERT_EQ(Detail(*store, "sentinel_master_address"), Address(group.server(0).port()));

  // Frozen, not dead: its connections accept and never answer, so a retry
  // sent back to it would time out too.
  group.server(0).pause();
  ASSERT_TRUE(group.wait_for_master(1, kFailoverDeadline)) << group.sentinel(0).read_log();

  // stats() sends INFO to the primary (a command without a key): it times
  // out on the frozen master, the topology rediscovers, and the one retry
  // goes to the new master instead of the frozen one.
  auto stats = store->stats();
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->details["sentinel_master_address"], Address(group.server(1).port()));
  EXPECT_EQ(stats->details["sentinel_failovers"], "1");
  EXPECT_EQ(stats->details["retries"], "1");
  auto got = store->get("sentinel:keyless:k");
  ASSERT_TRUE(got) << got.error().to_string();
  EXPECT_EQ(*got, "v");
}

TEST(RedisSentinelFaults, ReadonlyFromTheDemotedMasterAloneMakesTheStoreFollow) {
  RedisSentinelGroup group;
  RedisServer deaf;
  auto store = MakeStore(DeafSubscriptionOptions(group, deaf));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->incr("sentinel:readonly:count", 1, Ttl::never()));
  ASSERT_NO_FATAL_FAILURE(ReplicateThenOrderFailover(group, "sentinel:readonly:marker"));
  // The sentinels turn the old master, still running, into a replica.
  ASSERT_TRUE(Eventually(
      [&] {
        const auto role = RedisSentinelGroup::command(group.server(0).port(), {"ROLE"});
        return !role.empty() && role[0] == "slave";
      },
      kRecoveryDeadline));
  // The store heard nothing: its reads still go to the old master, now a
  // replica (INFO works there).
  ASSERT_EQ(Detail(*store, "sentinel_master_address"), Address(group.server(0).port()));

  // incr is never retried: it succeeds at once only because READONLY (not
  // applied) made the topology rediscover and redirect it.
  auto count = store->incr("sentinel:readonly:count", 1, Ttl::never());
  ASSERT_TRUE(count) << count.error().to_string();
  EXPECT_EQ(*count, 2);
  EXPECT_EQ(Detail(*store, "sentinel_master_address"), Address(group.server(1).port()));
  EXPECT_EQ(Detail(*store, "sentinel_failovers"), "1");
}

TEST(RedisHostPort, ParsesAddressesAndRefusesWhatIsNotOne) {
  struct Case {
    std::string_view text;
    std::string host;
    std::uint16_t port;
  };
  const Case valid[] = {{"s1", "s1", kRedisSentinelPort},
                        {"10.0.0.1:26380", "10.0.0.1", 26380},
                        {"[::1]:5000", "::1", 5000},
                        {"[fe80::1]", "fe80::1", kRedisSentinelPort},
                        {"sentinel.internal:1", "sentinel.internal", 1}};
  for (const Case& c : valid) {
    SCOPED_TRACE(c.text);
    auto a = parse_redis_host_port(c.text, kRedisSentinelPort);
    ASSERT_TRUE(a) << a.error().to_string();
    EXPECT_EQ(a->host, c.host);
    EXPECT_EQ(a->port, c.port);
  }
  const std::string_view invalid[] = {"",      "s1:0",   "s1:65536", "s1:x",    "::1:5000",
                                      "u@s1:1", "s1:1/2", " s1",      "s1,s2",   "[::1",
                                      "[::1]x", ":26379", "s1:",      "s1\n:1"};
  for (std::string_view text : invalid) {
    SCOPED_TRACE(text);
    auto a = parse_redis_host_port(text, kRedisSentinelPort);
    ASSERT_FALSE(a);
    EXPECT_EQ(a.error().code, ErrorCode::kConfig);
  }
}

TEST(RedisSentinelDiscovery, AMasterNoSentinelKnowsIsUnavailableNamingIt) {
  RedisSentinelGroup group(RedisSentinelGroupOptions{.failover_ready = false});
  RedisStoreOptions options = SentinelOptions(group);
  options.sentinel.master_name = "no-such-master";
  auto store = make_redis_store(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  const std::string& m = store.error().message;
  EXPECT_NE(m.find("'no-such-master'"), std::string::npos) << m;
  EXPECT_NE(m.find("does not know"), std::string::npos) << m;
  for (std::size_t i = 0; i < RedisSentinelGroup::kSentinels; ++i) {
    EXPECT_NE(m.find(Address(group.sentinel(i).port())), std::string::npos) << m;
  }
}

TEST(RedisSentinelDiscovery, EverySentinelDownIsUnavailableNamingTheMaster) {
  RedisStoreOptions options;
  options.connect_timeout = 200ms;
  options.sentinel.master_name = "mymaster";
  for (int i = 0; i < 3; ++i) options.sentinel.sentinels.push_back({"127.0.0.1", pick_free_port()});
  auto store = make_redis_store(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  const std::string& m = store.error().message;
  EXPECT_NE(m.find("'mymaster'"), std::string::npos) << m;
  for (const RedisHostPort& s : options.sentinel.sentinels) {
    EXPECT_NE(m.find(Address(s.port)), std::string::npos) << m;
  }
}

TEST(RedisSentinelDiscovery, SentinelsWithoutAMasterNameAreAConfigError) {
  RedisStoreOptions options;
  options.sentinel.sentinels.push_back({"127.0.0.1", 26379});
  auto store = make_redis_store(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kConfig);
  EXPECT_NE(store.error().message.find("master"), std::string::npos) << store.error().message;
}

TEST(RedisSentinelDiscovery, TheSentinelPasswordIsUsedAndNeverShown) {
  RedisSentinelGroupOptions group_options;
  group_options.failover_ready = false;
  group_options.sentinel_password = "sentinel-secret-42";
  RedisSentinelGroup group(group_options);

  RedisStoreOptions options = SentinelOptions(group);
  auto store = MakeStore(options);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->set("sentinel:auth", "v", Ttl::never()));
  EXPECT_EQ(Detail(*store, "sentinel_master_address"), Address(group.server(0).port()));

  options.sentinel.password = "wrong-password-17";
  auto refused = make_redis_store(options);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConfig) << refused.error().message;
  EXPECT_EQ(refused.error().message.find("wrong-password-17"), std::string::npos);
  EXPECT_EQ(refused.error().message.find("sentinel-secret-42"), std::string::npos);
  EXPECT_NE(refused.error().message.find(group.master_name()), std::string::npos);
}

}  // namespace
}  // namespace aicache::testing
