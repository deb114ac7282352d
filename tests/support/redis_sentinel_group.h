// A Redis Sentinel deployment for tests: one master, one replica of it
// (--replicaof) and three sentinels (redis-server <conf> --sentinel, quorum
// 2), all real processes on free loopback ports, killed in the destructor.
//
//   RedisSentinelGroup group;           // replicating, every sentinel aware
//   RedisStoreOptions options;
//   options.sentinel = group.sentinel_options();
//   auto store = make_redis_store(options);
//   group.server(0).kill();             // the master dies...
//   group.wait_for_master(1, 60s);      // ...and the replica is promoted
//
// Failure detection is fast (down-after-milliseconds 1000 by default), so
// a failover takes a few seconds.
//
// Not thread-safe: drive a group from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "aicache/redis_store.h"
#include "support/redis_server.h"

namespace aicache::testing {

struct RedisSentinelGroupOptions {
  std::string master_name = "aicache-test";
  // The sentinels' requirepass (and sentinel-pass among themselves); empty:
  // none.
  std::string sentinel_password;
  // The sentinels' ACL user (password: sentinel_password), also the one they
  // use among themselves; their default user is then off. Empty: none.
  std::string sentinel_user;
  // Every server and sentinel also listens with TLS (tls_port()); the
  // sentinels monitor the master's TLS port (tls-replication), so the
  // master they name is a TLS one, and sentinel_options() names the
  // sentinels' TLS ports. The plain ports stay, for the group's own checks.
  std::optional<RedisServerTls> tls;
  std::chrono::milliseconds down_after{1000};
  std::chrono::milliseconds failover_timeout{5000};
  // With a replica, and the constructor waits until the sentinels know it
  // and each other (a few seconds: sentinels announce themselves every 2 s).
  // false: the master and the sentinels only, ready as soon as they run,
  // enough for tests without a failover.
  bool failover_ready = true;
  // How long the constructor waits for replication and for the sentinels to
  // know the replica and each other.
  std::chrono::milliseconds ready_timeout{30000};
};

class RedisSentinelGroup {
 public:
  // Starts everything and waits until a failover could happen; throws
  // std::runtime_error if it cannot.
  explicit RedisSentinelGroup(RedisSentinelGroupOptions options = {});
  ~RedisSentinelGroup();
  RedisSentinelGroup(const RedisSentinelGroup&) = delete;
  RedisSentinelGroup& operator=(const RedisSentinelGroup&) = delete;

  const std::string& master_name() const noexcept { return options_.master_name; }
  // 0: started as the master; 1: started as its replica (failover_ready).
  RedisServer& server(std::size_t i) { return *servers_.at(i); }
  RedisServer& sentinel(std::size_t i) { return *sentinels_.at(i); }
  static constexpr std::size_t kSentinels = 3;

  // The sentinels' addresses (their TLS ports with options.tls), the
  // master's name, the sentinel user and password.
  RedisSentinelOptions sentinel_options() const;
  // "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3" (REDIS_SENTINELS's form; the
  // TLS ports with options.tls).
  std::string sentinel_list() const;

  // The server (0 or 1) that a live sentinel names as the master and that
  // says ROLE master; nullopt if none does.
  std::optional<std::size_t> current_master() const;
  // Polls current_master() until it is `index`; false after `timeout`.
  bool wait_for_master(std::size_t index, std::chrono::milliseconds timeout) const;

  // One command on 127.0.0.1:port with a plain hiredis connection (AUTH
  // [user] `password` first if set). The reply flattened: a string, an
  // integer as text, an array's elements in order (one level), nil as
  // "(nil)"; an error reply or a failed connection as one "ERR..." string.
  static std::vector<std::string> command(std::uint16_t port, const std::vector<std::string>& args,
                                          const std::string& password = {},
                                          const std::string& user = {});
  // Several commands on one connection (WAIT counts the connection's own
  // writes); the last one's reply, as command() gives it.
  static std::vector<std::string> commands(std::uint16_t port,
                                           const std::vector<std::vector<std::string>>& list,
                                           const std::string& password = {},
                                           const std::string& user = {});

 private:
  void start_replica(std::chrono::steady_clock::time_point deadline);
  // Every sentinel knows the replica and the two other sentinels.
  bool sentinels_ready() const;

  RedisSentinelGroupOptions options_;
  std::vector<std::unique_ptr<RedisServer>> servers_;
  std::vector<std::unique_ptr<RedisServer>> sentinels_;
};

}  // namespace aicache::testing
