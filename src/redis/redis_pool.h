// A bounded pool of RedisConnections, created lazily.
//
// acquire() hands out an idle connection, or opens a new one while fewer
// than `size` exist, or waits up to `wait_timeout` for one to come back.
// Connections are opened and closed outside the lock: the mutex only guards
// the bookkeeping below, never network I/O.
//
// A Lease returns its connection in its destructor; a broken connection is
// discarded instead. After a disconnect (a Redis restart), drop_idle() closes
// the idle connections too, as they are presumed dead: the next call opens a
// fresh one instead of failing on each stale connection in turn.
//
// Thread safety: safe to share between threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "redis/redis_connection.h"

namespace aicache::redis {

struct PoolCounters {
  std::size_t size = 0;  // the configured maximum
  std::size_t open = 0;  // connections that exist (idle + in use)
  std::size_t in_use = 0;
  std::uint64_t waits = 0;       // acquire() calls that had to wait
  std::uint64_t timeouts = 0;    // ... and gave up (kResourceExhausted)
  std::uint64_t connects = 0;    // connections opened
  std::uint64_t reconnects = 0;  // ... of which replaced a discarded one
  std::uint64_t discarded = 0;   // connections dropped as broken or stale
};

class RedisPool {
 public:
  class Lease {
   public:
    Lease(Lease&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), conn_(std::move(other.conn_)) {}
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();

    RedisConnection& operator*() const noexcept { return *conn_; }
    RedisConnection* operator->() const noexcept { return conn_.get(); }

   private:
    friend class RedisPool;
    Lease(RedisPool* pool, std::unique_ptr<RedisConnection> conn)
        : pool_(pool), conn_(std::move(conn)) {}
    RedisPool* pool_;
    std::unique_ptr<RedisConnection> conn_;
  };

  // The outcome of acquire(): a lease, or why there is none.
  struct AcquireFailure {
    bool exhausted = false;  // waited wait_timeout for a free connection
    RedisFailure failure;    // otherwise: opening a connection failed
  };

  RedisPool(ConnectionOptions options, std::size_t size, std::chrono::milliseconds wait_timeout);
  ~RedisPool();
  RedisPool(const RedisPool&) = delete;
  RedisPool& operator=(const RedisPool&) = delete;

  std::expected<Lease, AcquireFailure> acquire();

  // Closes every idle connection (they are presumed dead after a disconnect).
  void drop_idle();

  PoolCounters counters() const;
  const ConnectionOptions& options() const noexcept { return options_; }

 private:
  void give_back(std::unique_ptr<RedisConnection> conn);

  const ConnectionOptions options_;
  const std::size_t size_;
  const std::chrono::milliseconds wait_timeout_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_:
  std::vector<std::unique_ptr<RedisConnection>> idle_;
  std::size_t open_ = 0;    // idle + in use + being opened
  std::size_t in_use_ = 0;  // handed out or being opened
  std::size_t owed_ = 0;    // discarded connections not yet replaced
  PoolCounters stats_;
};

}  // namespace aicache::redis
