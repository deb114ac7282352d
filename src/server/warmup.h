// Warm-up: at start, `aicache serve` fetches (or finds valid in the store)
// the token of every configured app before /readyz answers 200, so a load
// balancer sends no request that would wait for a platform.
//
// Each app is fetched on its own thread (a slow platform holds up no other
// app), through TokenManager::get, so single flight, leases and the store
// work as for any request. An app is
//   ready    its token was served (fetched, or valid in the store);
//   failed   its configuration is wrong (kConfig: a bad secret, an IP not on
//            the whitelist): retrying cannot help, so it does not hold
//            readiness; it is reported, and the log says why;
//   pending  not yet, or its last attempt failed in a way that may pass
//            (the platform busy or unreachable): tried again every
//            `retry_interval` until the deadline.
// Readiness is held until no app is pending, or until `timeout` has passed
// since start() (then the pending apps are reported as timed out and the
// service answers ready: the refresher and requests keep trying).
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "aicache/clock.h"
#include "aicache/token_manager.h"

namespace aicache::server {

struct WarmupApp {
  enum class State { kPending, kReady, kFailed };
  std::string channel;
  std::string app_key;
  State state = State::kPending;
  // Of the last failed attempt; for the log and /v1/stats, never /readyz
  // (which anyone may ask).
  std::string last_error;
};

struct WarmupStatus {
  bool ready = false;      // nothing holds readiness any more
  bool timed_out = false;  // the deadline passed with apps pending
  std::vector<WarmupApp> apps;
};

class Warmup {
 public:
  // `tokens` may be null (no apps: ready at once).
  Warmup(std::shared_ptr<TokenManager> tokens, std::chrono::milliseconds timeout,
         std::shared_ptr<const Clock> clock = Clock::real(),
         std::chrono::milliseconds retry_interval = std::chrono::seconds(1));
  ~Warmup();  // stop()
  Warmup(const Warmup&) = delete;
  Warmup& operator=(const Warmup&) = delete;

  // Starts the deadline and one thread per app. Once.
  void start();
  // Ends the retries and joins the threads (a fetch under way finishes).
  void stop();

  WarmupStatus status() const;

 private:
  void warm(std::size_t index);

  const std::shared_ptr<TokenManager> tokens_;
  const std::chrono::milliseconds timeout_;
  const std::shared_ptr<const Clock> clock_;
  const std::chrono::milliseconds retry_interval_;

  mutable std::mutex mutex_;
  std::condition_variable stopping_;
  bool started_ = false;   // guarded by mutex_
  bool stopped_ = false;   // guarded by mutex_
  bool all_done_ = false;  // guarded by mutex_: no app pending, latched
  Clock::TimePoint deadline_{};
  std::vector<WarmupApp> apps_;  // guarded by mutex_
  std::vector<std::thread> threads_;
};

}  // namespace aicache::server
