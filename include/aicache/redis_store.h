// RedisStore: the production Store, shared by every process and host.
//
// Over hiredis with a connection pool. Every call returns within its timeouts
// with a value or an error; nothing blocks forever, no network I/O happens
// under a lock, and the pool reconnects by itself after Redis comes back.
//
// Thread safety: safe to share between threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/clock.h"
#include "aicache/store.h"
#include "aicache/ttl.h"

namespace aicache {

// Where and how to reach Redis. Parsed from a URL:
//   redis://[[user]:password@]host[:port][/db]
//   unix:///path/to/redis.sock[?db=N]
// rediss:// (TLS) is refused: Debian's hiredis 0.14 has no TLS, and sending
// a password in clear to a server that expects TLS is never what was meant.
struct RedisEndpoint {
  std::string host = "127.0.0.1";   // empty when unix_socket is set
  std::uint16_t port = 6379;
  std::string unix_socket;          // a path; takes precedence over host/port
  std::string user;                 // ACL user; empty = the default user
  std::string password;             // never printed; see redacted_url()
  std::int64_t db = 0;

  // The URL with the password replaced by "***", for logs and errors.
  std::string redacted_url() const;
};

// Parses a Redis URL. Errors (kConfig) name what is wrong but never echo the
// password.
Result<RedisEndpoint> parse_redis_url(std::string_view url);

struct RedisStoreOptions {
  RedisEndpoint endpoint;

  // Connections kept open. Default: 50 (the Django deployment's
  // CONNECTION_POOL_KWARGS max_connections).
  std::size_t pool_size = 50;
  // How long a call waits for a free connection before kResourceExhausted.
  std::chrono::milliseconds pool_wait_timeout{1000};
  std::chrono::milliseconds connect_timeout{1000};
  // Read/write timeout of each command.
  std::chrono::milliseconds socket_timeout{1000};
  // Retry a command once on a timeout or a broken connection (django-redis
  // retry_on_timeout). Only idempotent commands are retried.
  bool retry_on_timeout = true;

  // The TTL that Ttl::use_default() stands for. Default: 300 s.
  Ttl default_ttl = std::chrono::seconds(300);

  // The near cache: values read are kept in this process, bounded by this
  // many bytes (keys, values and ~100 bytes of bookkeeping each, LRU), and
  // served from there while Redis's client-side caching (CLIENT TRACKING,
  // Redis >= 6) guarantees they are current: another client's change, an
  // expiry, an eviction or a FLUSHDB drops them within the invalidation
  // latency (docs/near_cache.md). 0: off, every read goes to Redis.
  // Default: 64 MiB.
  std::size_t near_cache_max_bytes = std::size_t{64} << 20;

  // --- Redis Cluster --------------------------------------------------------
  // Seed nodes of a Redis Cluster, "host:port" each ("[v6]:port" for IPv6).
  // Empty: no Cluster; `endpoint` is the one server. When set, the store
  // reads the slot map (CLUSTER SLOTS) from the seeds in turn and sends each
  // key to the master serving its hash slot (CRC16 of the key or its
  // {hash tag}, mod 16384), with one pool, near cache and tracker per
  // master (pool_size and near_cache_max_bytes are per master). Reads go to
  // masters: never a replica's stale value. MOVED and ASK redirects are
  // followed (at most 5 hops) and the map is read again after them and
  // after a node fails, so a failover's promoted replica is found by itself.
  // get_many, set_many and remove_many are split by master and pipelined;
  // clear() scans every master; stats() sums them and lists each one
  // ("node.host:port.used_memory", ".keys", ".role"). `endpoint` then gives
  // only the user and password (host and port unused); its db must be 0.
  std::vector<std::string> cluster_nodes;

  // Measures near cache entries' deadlines (now + the key's PTTL when read).
  // Null: the real clock. Tests inject a ManualClock.
  std::shared_ptr<const Clock> clock;
};

// Connects (one connection, to check the endpoint, password and db) and
// returns the store. Errors: kConfig for a wrong password or db index (a
// Cluster: a db other than 0, a seed that is not host:port), kUnavailable
// for an unreachable server (a Cluster: no seed gave a slot map).
Result<std::shared_ptr<Store>> make_redis_store(RedisStoreOptions options);

}  // namespace aicache
