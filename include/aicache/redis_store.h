// RedisStore: the production Store, shared by every process and host.
//
// Its own sockets (plain TCP, TLS through OpenSSL, or a unix socket), hiredis
// only to parse replies, and a connection pool. Every call returns within its
// timeouts with a value or an error; nothing blocks forever, no network I/O happens
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
//   rediss://[[user]:password@]host[:port][/db]     (TLS; RedisTlsOptions)
//   unix:///path/to/redis.sock[?db=N]
struct RedisEndpoint {
  std::string host = "127.0.0.1";   // empty when unix_socket is set
  std::uint16_t port = 6379;
  // rediss://: TLS, with the certificate checked as RedisTlsOptions says.
  // Never falls back to plain TCP.
  bool tls = false;
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

// How a TLS endpoint (rediss://) is trusted and how the client proves who it
// is. The files are read once, by make_redis_store(): a file that cannot be
// read or parsed is a kConfig error naming the file (never its content).
// Setting a file for a plain endpoint (redis://, unix://) is a kConfig error
// too: it asks for TLS, and a silent plain connection is never what was meant.
struct RedisTlsOptions {
  // PEM CA certificates the server's certificate must chain to. Empty: the
  // system's CAs (OpenSSL's default paths).
  std::string ca_file;
  // A client certificate (PEM, may hold the chain) and its private key, for a
  // server with tls-auth-clients. Both or neither.
  std::string cert_file;
  std::string key_file;
  // Check the server's certificate: its chain to a trusted CA, its validity
  // dates, and the host name (or IP address) of the URL, or server_name.
  // false: still encrypted, but anyone on the path can pose as the server
  // (and so read and change the traffic, the password included);
  // make_redis_store() logs a warning each time.
  bool verify = true;
  // The name sent as SNI and checked against the certificate instead of the
  // URL's host (e.g. connecting by IP to a server whose certificate names a
  // host). Empty: the URL's host (an IP address is checked as one, without
  // SNI).
  std::string server_name;
};

// A TCP address: a host name or address, and a port.
struct RedisHostPort {
  std::string host;
  std::uint16_t port = 0;
};

// Parses "host", "host:port" or "[v6 address]:port" (default_port when the
// port is left out). Errors (kConfig) quote the text, which holds no secret.
Result<RedisHostPort> parse_redis_host_port(std::string_view text, std::uint16_t default_port);

// Redis Sentinel: the master is not configured but asked of the sentinels,
// and followed through failovers (docs/design.md, "Topologies").
//
// At start, each sentinel in turn is asked SENTINEL get-master-addr-by-name
// <master_name>, and the address it gives is checked with ROLE (it must say
// "master"); the first that checks out is used. Afterwards, a connection
// failure to the master, a READONLY reply (the old master came back as a
// replica) or a +switch-master message (a background subscription to one
// sentinel) makes the store ask again (at most every 100 ms, one caller at a
// time) and move to the new master with fresh connections and a fresh near
// cache. Commands that were not applied (a refused connection, READONLY) go
// to the new master at once; the rest fail or are retried as usual.
//
// The master's user, password and db are RedisStoreOptions::endpoint's (its
// host and port are ignored; the user needs ROLE besides the store's
// commands). The sentinels have their own credentials: `username` and
// `password` (AUTH [username] password; a refusal is kConfig naming each
// sentinel).
//
// TLS to the sentinels: `tls` if set, else as the master's endpoint (a
// rediss:// URL: TLS sentinels too, as deployments run them alike). TLS
// sentinels are checked with the store's RedisTlsOptions (the same CA file,
// client certificate, verify and server_name as the master): chain, dates
// and the sentinel's host name as configured here (or server_name). A
// sentinel whose certificate is refused is passed over, its reason kept for
// the error (kConfig when every sentinel was refused so); never a plain
// connection instead. `tls = true` with a plain master (redis://) makes
// RedisTlsOptions' files apply to the sentinels only; `tls = false` with
// rediss:// reaches the sentinels in clear (their answers then steer a TLS
// store: only for a trusted network).
//
// A sentinel's port when an address leaves it out.
inline constexpr std::uint16_t kRedisSentinelPort = 26379;

struct RedisSentinelOptions {
  // Empty: no Sentinel; RedisStoreOptions::endpoint is the server.
  std::vector<RedisHostPort> sentinels;
  // The name the sentinels monitor the master under (`sentinel monitor
  // <name> ...`). Required with sentinels.
  std::string master_name;
  // AUTH to the sentinels (requirepass of their configuration, or an ACL
  // user's password); empty: none. Never printed.
  std::string password;
  // The sentinels' ACL user (AUTH username password); empty: the default
  // user (AUTH password). Printed in errors (a name, not a secret).
  std::string username;
  // TLS to the sentinels; nullopt: when RedisStoreOptions::endpoint is
  // rediss://.
  std::optional<bool> tls;
};

struct RedisStoreOptions {
  RedisEndpoint endpoint;
  // Used when endpoint.tls.
  RedisTlsOptions tls;

  // Connections kept open. Default: 50 (the Django deployment's
  // CONNECTION_POOL_KWARGS max_connections).
  std::size_t pool_size = 50;
  // How long a call waits for a free connection before kResourceExhausted.
  std::chrono::milliseconds pool_wait_timeout{1000};
  // Bounds the opening of each connection: the host name lookup (a DNS
  // server that does not answer is a timeout, "resolution of <host> timed
  // out after N ms"; an IP address needs no lookup), the TCP connect and
  // the TLS handshake together. <= 0: no bound.
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
  // masters: never a replica's stale value, unless read_from_replicas.
  // MOVED and ASK redirects are
  // followed (at most 5 hops) and the map is read again after them and
  // after a node fails, so a failover's promoted replica is found by itself.
  // get_many, set_many and remove_many are split by master and pipelined;
  // clear() scans every master; stats() sums them and lists each one
  // ("node.host:port.used_memory", ".keys", ".role"). `endpoint` then gives
  // only the user and password (host and port unused); its db must be 0.
  std::vector<std::string> cluster_nodes;

  // A Cluster's reads (get, get_with_ttl, get_many, ttl) go to the replicas
  // of each key's master, in turn (to the master when it has none), which
  // then each have a pool, near cache and tracker of their own; writes,
  // scripts, the token lease and get_latest() stay on the masters. The
  // price: a read may return a value older than the newest write by the
  // replication lag (this process's own writes included), where reading
  // masters never does. A replica that is unreachable or cannot serve
  // (LOADING, MASTERDOWN) sends the read to its master. Only with
  // cluster_nodes (kConfig otherwise). Default: off.
  bool read_from_replicas = false;

  // Measures near cache entries' deadlines (now + the key's PTTL when read).
  // Null: the real clock. Tests inject a ManualClock.
  std::shared_ptr<const Clock> clock;

  // Redis Sentinel (see RedisSentinelOptions); off by default.
  RedisSentinelOptions sentinel;
};

// Connects (one connection, to check the endpoint, password and db) and
// returns the store. With sentinels, finds the master through them first;
// with cluster nodes, reads the slot map from them. Errors: kConfig for a
// wrong password or db index (a Cluster: a db other than 0, a seed that is
// not host:port), sentinels without a master name, an unreadable TLS file or
// a server's (or every sentinel's) certificate that fails verification (the
// reason named: expired, unknown issuer, host name mismatch), every sentinel
// refusing the sentinel user or password; kUnavailable for an unreachable
// server, a failed TLS handshake (e.g. a plain port), when no sentinel names
// a reachable master (the message names the master and each sentinel tried,
// with what went wrong there), or when no Cluster seed gave a slot map.
Result<std::shared_ptr<Store>> make_redis_store(RedisStoreOptions options);

}  // namespace aicache
