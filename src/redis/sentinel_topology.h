// SentinelTopology: one master, found through Redis Sentinel and followed
// through failovers (RedisSentinelOptions in aicache/redis_store.h has the
// user's view; docs/design.md, "Topologies").
//
// Discovery asks each sentinel in turn for the master's address (SENTINEL
// get-master-addr-by-name) and checks it with ROLE on a connection to it: a
// sentinel that has not noticed a failover yet names a replica, which is
// skipped. Replies from sentinels are checked like any input from outside.
//
// The current master is one Node (pool, near cache, tracker). When it fails
// (a connection error, a READONLY reply) or a sentinel announces
// +switch-master, discovery runs again (single-flight: concurrent callers
// wait for the one in progress; rate-limited to one per kMinInterval unless a
// sentinel announced the switch) and, if the master moved, a new Node
// replaces the old one: new connections, and an empty near cache, as
// entries read from the old master may be stale. Calls still holding the
// old Node finish (or fail) on it.
//
// A background thread keeps a subscription to +switch-master on one sentinel
// at a time, moving to the next with a growing delay when it drops, and
// rediscovering after each resubscription (a switch may have been missed).
//
// The sentinels are reached with their own credentials (AUTH [username]
// password) and, when sentinel_tls is given, over TLS with the store's
// checks (the sentinel's configured host name verified); never in clear
// instead.
//
// Thread safety: safe to share between threads; no network I/O under its
// mutex.
#pragma once

#include <memory>

#include "aicache/redis_store.h"
#include "aicache/status.h"
#include "redis/topology.h"

namespace aicache::redis {

// Finds the master (kUnavailable naming the master and every sentinel tried
// when none names a reachable master; kConfig when every sentinel refused
// the user or password, or its certificate) and starts the subscription
// thread. `sentinel_tls`: the context the sentinels are reached with (null:
// plain TCP); tls_contexts_for() decides (sentinels_use_tls()).
Result<std::unique_ptr<Topology>> make_sentinel_topology(
    const NodeFactory& factory, const RedisSentinelOptions& options,
    std::shared_ptr<const TlsContext> sentinel_tls);

}  // namespace aicache::redis
