// Tracker: the near cache's invalidation connection (Redis client-side
// caching in RESP2, default mode with REDIRECT).
//
// One thread owns one dedicated connection. It asks CLIENT ID, SUBSCRIBEs to
// __redis__:invalidate, and only then declares tracking live
// (NearCache::tracking_up()). The pool's connections enable tracking with
// `CLIENT TRACKING on REDIRECT <id>` before their next read under the new
// state (RedisStore does that, pipelined with the read), so a connection
// whose tracking points at an earlier subscriber is never trusted.
//
// Every message is applied on this thread as it arrives: a key list
// invalidates those keys, a null (FLUSHDB, FLUSHALL) empties the cache.
// When the connection fails (EOF, reset, CLIENT KILL, Redis restart) or stays
// silent for ping_interval and then does not answer a PING within
// ping_interval more, tracking goes down (the cache is emptied and bypassed)
// and the thread reconnects with a growing delay.
//
// Thread safety: client_id_for() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "redis/near_cache.h"
#include "redis/stop_signal.h"
#include "redis/redis_connection.h"

namespace aicache::redis {

struct TrackerOptions {
  ConnectionOptions connection;
  // Silence after which the subscriber PINGs; as long again without any
  // message and the connection is declared dead.
  std::chrono::milliseconds ping_interval{500};
  // Delay before reconnecting: doubles from min to max.
  std::chrono::milliseconds reconnect_min{20};
  std::chrono::milliseconds reconnect_max{1000};
  // Called on the tracker's thread after each key's invalidation has been
  // applied (benchmarks time the invalidation latency with it).
  std::function<void(std::string_view key)> after_invalidate;
  // Broadcast mode (tests and benchmarks only, docs/near_cache.md "REDIRECT
  // or BCAST"): the subscriber itself runs `CLIENT TRACKING on REDIRECT
  // <own id> BCAST PREFIX <bcast_prefix>` before SUBSCRIBE, so Redis sends
  // it every change under the prefix and the pool's connections need no
  // tracking of their own. Unset: default mode.
  std::optional<std::string> bcast_prefix;
};

class Tracker {
 public:
  // Starts the thread. `near` must outlive the Tracker.
  Tracker(TrackerOptions options, NearCache& near);
  ~Tracker();  // stops and joins the thread
  Tracker(const Tracker&) = delete;
  Tracker& operator=(const Tracker&) = delete;

  // The subscriber's client id while `state` is the near cache's current
  // (live) state; nullopt otherwise.
  std::optional<std::int64_t> client_id_for(std::uint64_t state) const;

  // Waits up to `timeout` for tracking to be live, or for the first attempt
  // to fail (a server without CLIENT fails at once: no reason to wait); true
  // if it is live.
  bool wait_live(std::chrono::milliseconds timeout) const;

  std::uint64_t messages() const noexcept { return messages_.load(std::memory_order_relaxed); }
  std::uint64_t connects() const noexcept { return connects_.load(std::memory_order_relaxed); }

 private:
  void run();
  // One connection's life: subscribe, go live, apply messages until it fails.
  void session();
  void handle(const redisReply& message);
  void go_down();

  const TrackerOptions options_;
  NearCache& near_;
  StopSignal stop_;  // the destructor stops and wakes the thread through it

  mutable std::mutex mu_;
  mutable std::condition_variable live_cv_;
  // Guarded by mu_:
  std::int64_t client_id_ = 0;
  std::uint64_t live_state_ = 0;  // the NearCache state client_id_ belongs to
  bool first_attempt_done_ = false;

  std::atomic<std::uint64_t> messages_{0};
  std::atomic<std::uint64_t> connects_{0};
  std::thread thread_;
};

}  // namespace aicache::redis
