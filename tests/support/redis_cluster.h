// A real Redis Cluster for tests: 3 masters and 3 replicas by default, each
// a RedisServer (redis_server.h) with --cluster-enabled yes on a free
// loopback port, joined by `redis-cli --cluster create ... --cluster-yes`.
//
//   RedisCluster cluster;            // created, cluster_state:ok everywhere
//   options.cluster_nodes = cluster.seeds();
//
// The constructor returns once every node reports cluster_state:ok and every
// replica's link to its master is up; it throws std::runtime_error if the
// cluster does not form. The servers are killed in the destructor.
//
// Not thread-safe: drive one RedisCluster from one thread (commands to the
// nodes open their own connection each, so other threads may use the
// cluster through a store meanwhile).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/redis_server.h"

namespace aicache::testing {

class RedisCluster {
 public:
  explicit RedisCluster(int masters = 3, int replicas_per_master = 1);
  ~RedisCluster();
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  std::size_t size() const noexcept { return servers_.size(); }
  RedisServer& server(std::size_t i) { return *servers_.at(i); }
  std::uint16_t port(std::size_t i) const { return servers_.at(i)->port(); }
  // "127.0.0.1:<port>" of every node (the seeds of RedisStoreOptions).
  std::vector<std::string> seeds() const;

  // Runs one command on node i and returns its reply as text (a status,
  // bulk string or integer); nullopt for a nil; throws on an error reply or
  // a transport failure. Arrays are not supported (see slot_keys()).
  std::optional<std::string> command(std::size_t i, const std::vector<std::string>& args);

  // The node (index) that node `asked` believes serves `slot`, from its
  // CLUSTER NODES; nullopt if none.
  std::optional<std::size_t> owner_of(std::uint16_t slot, std::size_t asked);
  // This node's cluster id.
  std::string id(std::size_t i);

  // Waits up to `timeout` for every running node to report
  // cluster_state:ok; false if one did not.
  bool wait_ok(std::chrono::milliseconds timeout);
  // Waits up to `timeout` until every running node agrees that each slot's
  // owner is a running master (after a failover); false otherwise.
  bool wait_settled(std::chrono::milliseconds timeout);

  // Moves `slot` from node `from` to node `to` with its keys, the way
  // redis-cli --cluster reshard does: SETSLOT IMPORTING / MIGRATING, then
  // MIGRATE in batches of `batch` keys (`between_batches` runs between two;
  // clients meanwhile get ASK for the keys already moved), then SETSLOT
  // NODE on every master; returns once every node names `to` as the owner.
  void migrate_slot(std::uint16_t slot, std::size_t from, std::size_t to, std::size_t batch,
                    const std::function<void()>& between_batches);

 private:
  // The keys of `slot` on node i, at most `count`.
  std::vector<std::string> slot_keys(std::size_t i, std::uint16_t slot, std::size_t count);

  std::vector<std::unique_ptr<RedisServer>> servers_;
};

}  // namespace aicache::testing
