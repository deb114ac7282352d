// Redis Sentinel failover as the store sees it: the time from the master's
// SIGKILL to the first successful write through a RedisStore, with a writer
// thread calling set() in a loop all along. Also printed: when a sentinel
// first named the promoted replica (polled every 20 ms), so the store's own
// share (after the promotion) shows apart from Sentinel's detection and vote,
// which down-after-milliseconds dominates.
//
//   build/bench/sentinel_failover_bench [rounds=3] [down_after_ms=1000]
//
// Each round starts a fresh group (1 master, 1 replica, 3 sentinels on
// loopback, tests/support/redis_sentinel_group.h). A plain main: one figure
// per round, then the median.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "aicache/redis_store.h"
#include "support/redis_sentinel_group.h"

namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;
using aicache::testing::RedisSentinelGroup;
using aicache::testing::RedisSentinelGroupOptions;

double Ms(SteadyClock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Round {
  double promoted_ms = 0;     // kill -> a sentinel names the replica, ROLE master
  double first_write_ms = 0;  // kill -> the store's first successful set()
};

Round RunRound(std::chrono::milliseconds down_after) {
  RedisSentinelGroupOptions go;
  go.down_after = down_after;
  RedisSentinelGroup group(go);
  aicache::RedisStoreOptions options;
  options.sentinel = group.sentinel_options();
  options.connect_timeout = 200ms;
  options.socket_timeout = 500ms;
  auto store = aicache::make_redis_store(options);
  if (!store) {
    fmt::print(stderr, "store: {}\n", store.error().to_string());
    std::exit(1);
  }

  std::atomic<bool> killed{false};
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> first_write_ns{0};
  SteadyClock::time_point kill_at;
  std::thread writer([&] {
    std::uint64_t i = 0;
    while (!stop.load()) {
      const bool after = killed.load();
      if ((*store)->set("bench:failover", std::to_string(++i), aicache::Ttl::never()) && after) {
        first_write_ns.store(SteadyClock::now().time_since_epoch().count());
        return;
      }
    }
  });
  std::this_thread::sleep_for(200ms);  // the writer is writing
  kill_at = SteadyClock::now();
  killed.store(true);
  group.server(0).kill();
  Round r;
  if (!group.wait_for_master(1, 60s)) {
    fmt::print(stderr, "no promotion within 60 s\n");
    std::exit(1);
  }
  r.promoted_ms = Ms(SteadyClock::now() - kill_at);
  const auto deadline = SteadyClock::now() + 60s;
  while (first_write_ns.load() == 0 && SteadyClock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  stop.store(true);
  writer.join();
  if (first_write_ns.load() == 0) {
    fmt::print(stderr, "no successful write within 60 s of the promotion\n");
    std::exit(1);
  }
  const SteadyClock::time_point written{SteadyClock::duration(first_write_ns.load())};
  r.first_write_ms = Ms(written - kill_at);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 3;
  const auto down_after = std::chrono::milliseconds(argc > 2 ? std::atoi(argv[2]) : 1000);
  fmt::print("Sentinel failover, down-after-milliseconds {} ms, {} rounds\n", down_after.count(),
             rounds);
  std::vector<double> writes;
  for (int i = 0; i < rounds; ++i) {
    const Round r = RunRound(down_after);
    fmt::print(
        "round {}: promoted (as polled) after {:.0f} ms; first write through the store "
        "after {:.0f} ms\n",
        i + 1, r.promoted_ms, r.first_write_ms);
    writes.push_back(r.first_write_ms);
  }
  std::sort(writes.begin(), writes.end());
  fmt::print("median: master killed -> first successful write {:.0f} ms\n",
             writes[writes.size() / 2]);
  return 0;
}
