// ClusterTopology: a Redis Cluster's masters, found through its slot map.
//
// The map (CLUSTER SLOTS, asked of the known masters and then the seeds, in
// turn) says which master serves each of the 16384 hash slots; a key's slot
// is key_slot(key) (cluster_slot.h). One Node per master, keyed by
// "host:port". Reads go to masters too, so a read never sees a replica's
// stale value, unless read_from_replicas: then each master's replicas (from
// the same map) are Nodes as well, whose connections send READONLY and
// whose near caches are invalidated by the replica itself (it tracks the
// writes it replicates, so an entry never outlives its replica's copy).
// Reads of a slot rotate over its master's replicas (the master when it has
// none); a replica that cannot be reached or cannot serve (LOADING,
// MASTERDOWN) sends the read to its master, and a refresh drops it from the
// map once the cluster marks it failed. Writes, scripts, the token lease and
// get_latest() always go to the master.
//
// The map is an immutable snapshot behind a shared_mutex: node_for() (every
// GET) takes the shared lock for one array lookup and a shared_ptr copy. It
// changes in three ways:
//  * MOVED <slot> <host:port>: that slot is updated at once (a copy of the
//    map with the one entry changed; the node is created if new), the
//    command is redirected there, and a full refresh is scheduled.
//  * ASK <slot> <host:port>: the command goes there once, after ASKING; the
//    map is unchanged (the slot is still being migrated).
//  * A node that cannot be reached (or drops the connection): a full refresh
//    runs, and the caller waits for it (bounded); a command that could not
//    even connect (nothing was sent) is redirected when the slot's owner
//    changed (a replica promoted). CLUSTERDOWN and TRYAGAIN fail the command
//    and schedule a refresh.
// Refreshes run on one thread of the topology's own (single-flight), at
// most one per refresh_interval, with the interval doubling (up to
// refresh_max_backoff) while no node answers.
//
// Thread safety: safe to share between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "aicache/status.h"
#include "redis/cluster_slot.h"
#include "redis/redis_connection.h"
#include "redis/topology.h"

namespace aicache::redis {

struct ClusterOptions {
  // Seed nodes, "host:port" each: where the first map is asked for, and the
  // last resort of every refresh.
  std::vector<std::string> seeds;
  // The least time between two refreshes, and the longest it grows to while
  // refreshes fail.
  std::chrono::milliseconds refresh_interval{100};
  std::chrono::milliseconds refresh_max_backoff{2000};
  // Reads go to the masters' replicas (see above).
  bool read_from_replicas = false;
  // A refresh at least this often (0: only when a redirect or a failure
  // asks for one). Replicas need it: one that joins, or that Redis starts
  // listing in CLUSTER SLOTS (Redis 7 lists a replica only once it has
  // replicated something), causes no error that would ask for a refresh.
  std::chrono::milliseconds periodic_refresh{0};
};

// Reads the first slot map and returns the topology. kConfig for a seed that
// is not host:port, no seed, or a db other than 0 (a Cluster has only db 0);
// kUnavailable when no seed answers with a usable map (a server that is not
// a cluster node, a cluster without any slot assigned).
Result<std::unique_ptr<Topology>> make_cluster_topology(const NodeFactory& factory,
                                                        ClusterOptions options);

// The most replicas of one slot range kept (and so read from); CLUSTER
// SLOTS may list more.
inline constexpr std::size_t kMaxReplicasPerRange = 8;

// One slot range of a CLUSTER SLOTS reply: its master and (at most
// kMaxReplicasPerRange of) its replicas.
struct SlotRange {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  HostPort master;
  std::vector<HostPort> replicas;
};

// Reads a CLUSTER SLOTS reply, hostile input: every element's type, count
// and range is checked (slots 0..16383, first <= last, port 1..65535). A
// master whose address is empty is `asked_host` (the node that answered
// does not know its own address); a range whose master's address is
// unknown ("?") is skipped, and so is a replica whose address is unknown or
// empty. Any malformed element fails the whole reply.
RedisResult<std::vector<SlotRange>> parse_cluster_slots(const redisReply& reply,
                                                        std::string_view asked_host);

}  // namespace aicache::redis
