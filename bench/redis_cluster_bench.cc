// RedisStore on a Redis Cluster (3 masters, 3 replicas, all on this
// machine) beside the same store on one redis-server, and the failover time.
//
//   redis_cluster_bench [--rounds=N] [--calls=N] [--replicas=N]
//
// --replicas is the replicas per master (default 1; 0: a 3-master cluster
// without replicas, so that a SET costs no replication: on a 2-core machine
// the replica is one more process competing with the client for the cores,
// and the set figure mixes the client's path with replication's CPU).
//
// Prints, for each of N rounds (the conditions interleaved, so that the
// machine's load falls on all of them alike), the p50 and p99 of:
//   single get      RedisStore::get on one server
//   single set      RedisStore::set on one server (the set's own baseline)
//   cluster get     RedisStore::get on the cluster (keys on every master)
//   cluster set     RedisStore::set on the cluster
//   get_many(100)   100 keys spread over the 3 masters, one call
//   100 gets        the same keys, 100 get() calls
// and, in the medians only, the cluster get and raw GETs of one master's
// keys (no alternation between the servers), and with replicas the get and
// get_many(100) of a store with read_from_replicas (each read goes to the
// key's master's replica).
// each beside raw hiredis on the same server, then the medians over the
// rounds and the ratios the targets name (issue 15: cluster get and set p50
// <= 1.15x a single-node get; get_many(100) >= 10x faster than 100 gets;
// the set also against the single-node set), and finally (with replicas)
// the failover: a master SIGKILLed
// while one thread writes keys of its slots, the time to the first write
// that succeeds again (the replica promoted after --cluster-node-timeout
// 1000 ms, the store's map refreshed).
//
// The near cache is off in every store: each call is a round trip. Figures
// are loopback round trips on a shared machine: compare them as ratios within
// one run.
#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "aicache/redis_store.h"
#include "redis_bench_server.h"
#include "redis/cluster_slot.h"
#include "support/redis_cluster.h"
#include "support/redis_server.h"

namespace {

using namespace aicache;
using aicache::bench::RawRedis;
using SteadyClock = std::chrono::steady_clock;

std::shared_ptr<Store> Open(RedisStoreOptions options) {
  options.near_cache_max_bytes = 0;
  auto store = make_redis_store(std::move(options));
  if (!store) throw std::runtime_error(store.error().to_string());
  return std::move(*store);
}

struct Figures {
  double p50 = 0;
  double p99 = 0;
};

template <class Fn>
Figures Measure(int calls, Fn&& fn) {
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(calls));
  for (int i = 0; i < calls; ++i) {
    const auto start = SteadyClock::now();
    fn(i);
    us.push_back(std::chrono::duration<double, std::micro>(SteadyClock::now() - start).count());
  }
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[std::min(us.size() - 1, us.size() * 99 / 100)]};
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void Check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(what);
}

int Flag(int argc, char** argv, const char* name, int fallback) {
  const std::string prefix = fmt::format("--{}=", name);
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) == 0) {
      return std::atoi(argv[i] + prefix.size());
    }
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) try {
  const int rounds = Flag(argc, argv, "rounds", 5);
  const int calls = Flag(argc, argv, "calls", 5000);
  const int replicas = Flag(argc, argv, "replicas", 1);

  testing::RedisServer server;
  testing::RedisCluster cluster(3, replicas);
  RedisStoreOptions single_options;
  single_options.endpoint = *parse_redis_url(server.url());
  const auto single = Open(single_options);
  RedisStoreOptions cluster_options;
  cluster_options.cluster_nodes = cluster.seeds();
  cluster_options.socket_timeout = std::chrono::milliseconds(500);
  cluster_options.connect_timeout = std::chrono::milliseconds(500);
  const auto clustered = Open(cluster_options);

  // Reads from replicas: opened once the store sees every master's replica
  // (Redis 7 lists a replica only once it has replicated something).
  std::shared_ptr<Store> from_replicas;
  auto open_from_replicas = [&] {
    RedisStoreOptions options = cluster_options;
    options.read_from_replicas = true;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
      auto store = Open(options);
      auto stats = store->stats();
      const std::string list = stats ? stats->details["replica_endpoints"] : std::string();
      if (std::count(list.begin(), list.end(), ',') == 2) return store;
      Check(std::chrono::steady_clock::now() < deadline, "replicas listed in CLUSTER SLOTS");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  };

  const std::string value(150, 'v');  // a token record
  std::vector<std::string> keys;
  for (int i = 0; i < 100; ++i) keys.push_back(fmt::format("bench:cluster:{}", i));
  for (const auto& k : keys) {
    Check(single->set(k, value, Ttl::use_default()).has_value(), "single set");
    Check(clustered->set(k, value, Ttl::use_default()).has_value(), "cluster set");
  }

  if (replicas > 0) from_replicas = open_from_replicas();

  // Raw hiredis to each key's master: what the cluster's servers cost by
  // themselves (cluster mode, replication of writes).
  std::vector<std::unique_ptr<RawRedis>> raw_nodes;
  std::vector<std::size_t> owner;
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    raw_nodes.push_back(std::make_unique<RawRedis>(cluster.port(i)));
  }
  for (const auto& k : keys) owner.push_back(cluster.owner_of(redis::key_slot(k), 0).value());
  RawRedis raw_single(server.port());

  // The keys of one master: raw GETs to it alone, against raw GETs that
  // alternate between the three masters as the keys do. On this VM a
  // process that has just served a request answers faster than one that
  // has been idle for two requests (its vCPU halted meanwhile).
  std::vector<std::size_t> first_master_keys;
  for (std::size_t k = 0; k < keys.size(); ++k) {
    if (owner[k] == owner[0]) first_master_keys.push_back(k);
  }
  std::vector<double> single_get, raw_get, single_set, raw_set, cluster_get, raw_cluster_get,
      raw_one_master_get, one_master_get, cluster_set, raw_cluster_set, many, singles,
      replica_get, replica_many;
  std::cout << fmt::format("3 masters, {} replica(s) each\n", replicas)
            << "p50 / p99 in us; raw: one hiredis connection, no store\n"
               "round  single get       raw single get   single set       raw single set   "
               "cluster get      raw cluster get  cluster set      raw cluster set  "
               "get_many(100)  100 gets\n";
  for (int round = 0; round < rounds; ++round) {
    const Figures sg = Measure(calls, [&](int i) {
      Check(single->get(keys[static_cast<std::size_t>(i) % keys.size()]).has_value(), "get");
    });
    const Figures ss = Measure(calls, [&](int i) {
      Check(single->set(keys[static_cast<std::size_t>(i) % keys.size()], value, Ttl::use_default())
                .has_value(),
            "set");
    });
    const Figures rs = Measure(calls, [&](int i) {
      raw_single.command({"SET", keys[static_cast<std::size_t>(i) % keys.size()], value, "PX",
                          "300000"});
    });
    const Figures cg = Measure(calls, [&](int i) {
      Check(clustered->get(keys[static_cast<std::size_t>(i) % keys.size()]).has_value(), "get");
    });
    const Figures rg = Measure(calls, [&](int i) {
      raw_single.command({"GET", keys[static_cast<std::size_t>(i) % keys.size()]});
    });
    const Figures rcg = Measure(calls, [&](int i) {
      const std::size_t k = static_cast<std::size_t>(i) % keys.size();
      raw_nodes[owner[k]]->command({"GET", keys[k]});
    });
    const Figures rog = Measure(calls, [&](int i) {
      const std::size_t k =
          first_master_keys[static_cast<std::size_t>(i) % first_master_keys.size()];
      raw_nodes[owner[k]]->command({"GET", keys[k]});
    });
    const Figures og = Measure(calls, [&](int i) {
      const std::size_t k =
          first_master_keys[static_cast<std::size_t>(i) % first_master_keys.size()];
      Check(clustered->get(keys[k]).has_value(), "get");
    });
    const Figures rcs = Measure(calls, [&](int i) {
      const std::size_t k = static_cast<std::size_t>(i) % keys.size();
      raw_nodes[owner[k]]->command({"SET", keys[k], value, "PX", "300000"});
    });
    const Figures cs = Measure(calls, [&](int i) {
      Check(
          clustered->set(keys[static_cast<std::size_t>(i) % keys.size()], value, Ttl::use_default())
              .has_value(),
          "set");
    });
    const Figures gm = Measure(std::max(calls / 50, 20), [&](int) {
      auto v = clustered->get_many(keys);
      Check(v.has_value() && v->size() == keys.size(), "get_many");
    });
    const Figures g100 = Measure(std::max(calls / 100, 10), [&](int) {
      for (const auto& k : keys) Check(clustered->get(k).has_value(), "get");
    });
    if (from_replicas) {
      replica_get.push_back(Measure(calls, [&](int i) {
                              Check(from_replicas->get(keys[static_cast<std::size_t>(i) %
                                                            keys.size()])
                                        .has_value(),
                                    "replica get");
                            }).p50);
      replica_many.push_back(Measure(std::max(calls / 50, 20), [&](int) {
                               auto v = from_replicas->get_many(keys);
                               Check(v.has_value() && v->size() == keys.size(), "get_many");
                             }).p50);
    }
    single_get.push_back(sg.p50);
    raw_get.push_back(rg.p50);
    single_set.push_back(ss.p50);
    raw_set.push_back(rs.p50);
    cluster_get.push_back(cg.p50);
    raw_cluster_get.push_back(rcg.p50);
    raw_one_master_get.push_back(rog.p50);
    one_master_get.push_back(og.p50);
    cluster_set.push_back(cs.p50);
    raw_cluster_set.push_back(rcs.p50);
    many.push_back(gm.p50);
    singles.push_back(g100.p50);
    auto cell = [](const Figures& f) { return fmt::format("{:6.1f} / {:6.1f}", f.p50, f.p99); };
    std::cout << fmt::format("{:5}  {}  {}  {}  {}  {}  {}  {}  {}  {:13.1f}  {:8.1f}\n",
                             round + 1, cell(sg), cell(rg), cell(ss), cell(rs), cell(cg),
                             cell(rcg), cell(cs), cell(rcs), gm.p50, g100.p50);
  }
  const double sg = Median(single_get);
  const double cg = Median(cluster_get);
  const double ss = Median(single_set);
  const double cs = Median(cluster_set);
  const double gm = Median(many);
  const double g100 = Median(singles);
  std::cout << fmt::format(
      "medians: single get {:.1f} us (raw {:.1f}); single set {:.1f} us (raw {:.1f}); cluster "
      "get {:.1f} us ({:.2f}x the single get; raw {:.1f}); cluster set {:.1f} us ({:.2f}x the "
      "single get, {:.2f}x the single set; raw {:.1f}); get_many(100) {:.1f} us vs 100 gets "
      "{:.1f} us ({:.1f}x faster); cluster get of one master's keys only {:.1f} us ({:.2f}x the "
      "single get; raw {:.1f})\n",
      sg, Median(raw_get), ss, Median(raw_set), cg, cg / sg, Median(raw_cluster_get), cs, cs / sg,
      cs / ss, Median(raw_cluster_set), gm, g100, g100 / gm, Median(one_master_get),
      Median(one_master_get) / sg, Median(raw_one_master_get));
  if (replicas == 0) return 0;  // no replica to promote: no failover
  std::cout << fmt::format(
      "read_from_replicas: get {:.1f} us ({:.2f}x the cluster get from masters), "
      "get_many(100) {:.1f} us ({:.2f}x)\n",
      Median(replica_get), Median(replica_get) / cg, Median(replica_many),
      Median(replica_many) / gm);
  from_replicas.reset();

  // Failover: node 0 is a master (redis-cli --cluster create makes the first
  // nodes masters). One thread writes keys of its slots until a write
  // succeeds after the kill.
  std::vector<std::string> victims;
  for (int i = 0; victims.size() < 20; ++i) {
    const std::string k = fmt::format("bench:failover:{}", i);
    if (cluster.owner_of(redis::key_slot(k), 1) == 0u) victims.push_back(k);
  }
  for (const auto& k : victims)
    Check(clustered->set(k, value, Ttl::use_default()).has_value(), "set");
  cluster.server(0).kill();
  const auto killed = SteadyClock::now();
  std::size_t failed = 0;
  for (std::size_t i = 0;; ++i) {
    if (clustered->set(victims[i % victims.size()], value, Ttl::use_default())) break;
    ++failed;
    if (SteadyClock::now() - killed > std::chrono::seconds(60)) {
      throw std::runtime_error("no write succeeded within 60 s of the kill");
    }
  }
  const auto recovered = SteadyClock::now();
  std::cout << fmt::format(
      "failover: first successful write {} ms after the master's SIGKILL ({} writes failed "
      "meanwhile; cluster-node-timeout 1000 ms)\n",
      std::chrono::duration_cast<std::chrono::milliseconds>(recovered - killed).count(), failed);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "redis_cluster_bench: " << e.what() << "\n";
  return 1;
}
