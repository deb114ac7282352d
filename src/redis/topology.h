// Topology: where each Redis command goes.
//
// The seam between RedisStore, which knows what to send, and the shape of
// the deployment, which knows where: one server, a Sentinel-managed master,
// or a Cluster's masters. Each reachable primary is a Node: a connection
// pool with its own near cache and invalidation tracker (client-side caching
// is per server: a key's invalidations come from the server that holds it,
// to a subscriber on that same server).
//
// RedisStore asks node_for(key) for every single-key command, partition()
// for multi-key ones, and primaries() for whole-keyspace ones (SCAN, INFO).
// Reads ask reader_for(key) and partition_reads(): the primary too, unless
// the topology reads from replicas (a Cluster with read_from_replicas), whose
// nodes then keep near caches of their own: nodes() lists every node, and
// for_each_near(key) reaches every near copy of a key.
// When a command fails, after_failure() says whether the failure means "not
// here" (a Cluster's MOVED or ASK, a demoted master's READONLY: the command
// was not applied, so even a non-idempotent one may go again, to the node
// named) or is the command's own.
//
// Nodes are handed out as shared_ptr: a topology may replace a node (a
// failover, a new slot map) while a call still holds the old one.
//
// Thread safety: implementations are safe to share between threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/clock.h"
#include "aicache/redis_store.h"
#include "redis/near_cache.h"
#include "redis/redis_pool.h"
#include "redis/tracker.h"

namespace aicache::redis {

// One primary: its pool, and its near cache and tracker when the near cache
// is on.
struct Node {
  // Opens nothing yet: the pool connects lazily; the tracker (if any)
  // starts connecting on its own thread.
  Node(ConnectionOptions connection, std::size_t pool_size, std::chrono::milliseconds pool_wait,
       std::size_t near_cache_max_bytes, std::shared_ptr<const Clock> clock,
       const TrackerOptions& tracker_template);
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  ~Node();

  const std::string endpoint;  // redacted URL, for messages and stats
  RedisPool pool;
  // Declared in this order: the tracker (whose thread uses near) stops
  // first.
  std::unique_ptr<NearCache> near;  // null: near cache off
  std::unique_ptr<Tracker> tracker;
  // A replica read from: its master's "host:port", where its reads go when
  // it fails. Empty for a primary. Set before the node is shared.
  std::string replica_of;
};

// How RedisStore builds nodes: the same pool, near cache and tracker settings
// for every node a topology creates.
struct NodeFactory {
  ConnectionOptions connection;  // the endpoint is replaced per node
  std::size_t pool_size = 50;
  std::chrono::milliseconds pool_wait{1000};
  std::size_t near_cache_max_bytes = 0;  // per node
  std::shared_ptr<const Clock> clock;
  TrackerOptions tracker;  // its connection is replaced per node

  // `read_only`: a Cluster replica's node, whose connections send READONLY.
  std::shared_ptr<Node> make(const RedisEndpoint& endpoint, bool read_only = false) const;
};

// What to do after a command failed on a node.
struct Reroute {
  enum class Action {
    kNone,      // the failure is the command's: RedisStore's own retry rules apply
    kRedirect,  // not applied there: send it (again) to `node`
  };
  Action action = Action::kNone;
  std::shared_ptr<Node> node;
  bool asking = false;  // send ASKING first (a Cluster slot being imported)
};

// A group of a multi-key call: the node, and the indexes of its keys in the
// caller's span.
struct KeyGroup {
  std::shared_ptr<Node> node;
  std::vector<std::size_t> indexes;
  // Every key in one Cluster hash slot (always, outside a Cluster): one
  // multi-key command (MGET, DEL) may take them all. Otherwise the node
  // refuses it (CROSSSLOT): one command per key, pipelined.
  bool same_slot = true;
};

class Topology {
 public:
  virtual ~Topology() = default;

  // The node that serves `key` (an empty key: any primary).
  virtual std::shared_ptr<Node> node_for(std::string_view key) = 0;

  // The keys grouped by the node serving them, groups in first-key order.
  // The default puts every key on node_for(keys[0]).
  virtual std::vector<KeyGroup> partition(std::span<const std::string_view> keys);

  // Every primary, for commands over the whole keyspace. Never empty.
  virtual std::vector<std::shared_ptr<Node>> primaries() = 0;

  // The node to read `key` from: node_for(key) unless the topology reads
  // from replicas; then one of the replicas of the key's primary (the
  // primary when it has none). A replica may lag its primary: reads that
  // must see the latest write use node_for().
  virtual std::shared_ptr<Node> reader_for(std::string_view key);

  // partition() for reads: each group's node is reader_for() its keys.
  virtual std::vector<KeyGroup> partition_reads(std::span<const std::string_view> keys);

  // Every node that may hold near cache entries: the primaries, and the
  // replicas reads go to. Default: primaries().
  virtual std::vector<std::shared_ptr<Node>> nodes();

  // Calls `fn` with the near cache of every node that may hold `key` (a
  // write drops it from each). Default: node_for(key)'s, if it has one.
  virtual void for_each_near(std::string_view key, const std::function<void(NearCache&)>& fn);

  // After `failure` of a command on `key` sent to `node`, or of opening a
  // connection to `node` for it (a kConnect failure: nothing was sent).
  virtual Reroute after_failure(Node& node, std::string_view key, const RedisFailure& failure);

  // The node that now stands in for `node` for a command meant for the node
  // itself rather than routed by key (SCAN, INFO, a connection check), when
  // such a command is retried after a transport failure: after a failover,
  // the new primary, so that the retry does not go back to the dead one.
  // Default: `node` itself (a Cluster's node keeps its SCAN cursor and its
  // share of the keyspace; a retry elsewhere would answer for another one).
  virtual std::shared_ptr<Node> successor(std::shared_ptr<Node> node);

  // A short description for stats ("single", "sentinel", "cluster").
  virtual std::string_view kind() const noexcept = 0;

  // Adds the topology's own figures to StoreStats::details (Sentinel: the
  // master's name and address, failovers followed). Default: none.
  virtual void describe(std::map<std::string, std::string>& details) const;
};

// One server, the default. (Topologies that must find their primaries
// first, such as Sentinel's, do so in their factory and fail there.)
std::unique_ptr<Topology> make_single_topology(const NodeFactory& factory,
                                               const RedisEndpoint& endpoint);

}  // namespace aicache::redis
