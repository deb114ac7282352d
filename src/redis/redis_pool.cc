#include "redis/redis_pool.h"

#include <utility>

namespace aicache::redis {

RedisPool::Lease::~Lease() {
  if (pool_ != nullptr && conn_) pool_->give_back(std::move(conn_));
}

RedisPool::RedisPool(ConnectionOptions options, std::size_t size,
                     std::chrono::milliseconds wait_timeout)
    : options_(std::move(options)), size_(size == 0 ? 1 : size), wait_timeout_(wait_timeout) {
  stats_.size = size_;
}

RedisPool::~RedisPool() = default;

std::expected<RedisPool::Lease, RedisPool::AcquireFailure> RedisPool::acquire() {
  const auto deadline = std::chrono::steady_clock::now() + wait_timeout_;
  for (;;) {
    std::unique_ptr<RedisConnection> conn;
    {
      std::unique_lock lock(mu_);
      auto available = [this] { return !idle_.empty() || open_ < size_; };
      if (!available()) {
        ++stats_.waits;
        if (wait_timeout_.count() <= 0 || !cv_.wait_until(lock, deadline, available)) {
          ++stats_.timeouts;
          return std::unexpected(AcquireFailure{.exhausted = true, .failure = {}});
        }
      }
      ++in_use_;
      if (!idle_.empty()) {
        conn = std::move(idle_.back());
        idle_.pop_back();
      } else {
        ++open_;  // reserve the slot; connect below, outside the lock
      }
    }
    if (conn) {
      Lease lease(this, std::move(conn));
      if (!lease->closed_by_peer()) return lease;
      // The server went away while this connection was idle, so the others
      // are most likely dead too: close them all and open a fresh one. The
      // lease discards its broken connection when it goes out of scope.
      drop_idle();
      continue;
    }
    auto opened = RedisConnection::open(options_);
    std::lock_guard lock(mu_);
    if (!opened) {
      --open_;
      --in_use_;
      cv_.notify_one();
      return std::unexpected(
          AcquireFailure{.exhausted = false, .failure = std::move(opened.error())});
    }
    ++stats_.connects;
    if (owed_ > 0) {
      --owed_;
      ++stats_.reconnects;
    }
    return Lease(this, std::move(*opened));
  }
}

void RedisPool::give_back(std::unique_ptr<RedisConnection> conn) {
  {
    std::lock_guard lock(mu_);
    --in_use_;
    if (conn->broken()) {
      --open_;
      ++owed_;
      ++stats_.discarded;
    } else {
      idle_.push_back(std::move(conn));
    }
  }
  cv_.notify_one();
  // A discarded connection is closed here, after the lock is released.
}

void RedisPool::drop_idle() {
  std::vector<std::unique_ptr<RedisConnection>> stale;
  {
    std::lock_guard lock(mu_);
    stale.swap(idle_);
    open_ -= stale.size();
    owed_ += stale.size();
    stats_.discarded += stale.size();
  }
  cv_.notify_all();
  // `stale` closes its sockets here, outside the lock.
}

PoolCounters RedisPool::counters() const {
  std::lock_guard lock(mu_);
  PoolCounters c = stats_;
  c.open = open_;
  c.in_use = in_use_;
  return c;
}

}  // namespace aicache::redis
