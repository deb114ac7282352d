// The service's own figures: what it answered, what it refused for load,
// what it stored, and the store outages it met. The handlers count into
// one ServiceStats; /v1/stats and /metrics (observability.h) read it.
//
// Thread safety: every member may be used from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "aicache/status.h"
#include "server/metrics.h"

namespace aicache::server {

struct ServiceStats {
  using SteadyClock = std::chrono::steady_clock;

  ServiceStats();

  // A store outage (unavailable, timeout, exhausted) a handler answered.
  void note_error(const Error& error);

  // After every answer, the transport's own refusals included: the request
  // counters and latency, and one access-log line when `access_log` (method,
  // route template, status, duration, peer; never the raw path, a query,
  // a body or a token). `path` empty or too long to route is "unknown".
  void answered(std::string_view method, std::string_view path, std::string_view remote,
                int status, double seconds, bool access_log);

  // A configuration reload, applied or not (Server::count_reload).
  void note_reload(bool succeeded, std::string_view error);
  // Why the last failed reload failed ("" if none failed yet).
  std::string last_reload_error() const;

  const SteadyClock::time_point started_at;

  // Configuration reloads. The configuration loaded at start counts as the
  // first success (as Prometheus' own prometheus_config_* series do), so the
  // timestamp is never 0 and an alert on it needs no special case.
  std::atomic<std::uint64_t> reloads_succeeded{0};
  std::atomic<std::uint64_t> reloads_failed{0};
  std::atomic<bool> last_reload_succeeded{true};
  std::atomic<std::int64_t> last_reload_success_unix_ms{0};  // set by the constructor

  std::atomic<std::uint64_t> requests_total{0};
  std::atomic<std::int64_t> in_flight{0};
  std::atomic<std::uint64_t> overloaded{0};         // 503: the worker queue was full
  std::atomic<std::uint64_t> sets{0};               // successful PUTs
  std::atomic<std::uint64_t> store_failures{0};     // store outages this server answered
  std::atomic<std::uint64_t> last_store_errors{0};  // AssistantCache's, when last read

  CounterFamily http_requests;
  HistogramFamily http_duration;
  // Token requests that went upstream (token_handlers.cc decides which).
  HistogramFamily fetch_duration;

 private:
  mutable std::mutex reload_mutex_;
  std::string last_reload_error_;  // guarded by reload_mutex_
};

}  // namespace aicache::server
