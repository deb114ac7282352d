#include "server/service_stats.h"

#include <fmt/format.h>

#include <string>

#include "aicache/log.h"
#include "server/routes.h"

namespace aicache::server {

ServiceStats::ServiceStats()
    : started_at(SteadyClock::now()),
      http_requests("aicache_http_requests_total",
                    "HTTP requests answered, by route template, method and status.",
                    {"route", "method", "status"}),
      http_duration("aicache_http_request_duration_seconds",
                    "Time from the parsed request head to the answer, by route template.",
                    {"route"}, latency_buckets()),
      fetch_duration("aicache_token_fetch_duration_seconds",
                     "Duration of each call this process made to a platform's token API "
                     "(for a request, a refresh or the background refresher; each retry "
                     "counts), by app.",
                     {"channel", "app"}, latency_buckets()) {
  note_reload(true, {});
  reloads_succeeded.store(0, std::memory_order_relaxed);  // the start is no reload
}

void ServiceStats::note_reload(bool succeeded, std::string_view error) {
  (succeeded ? reloads_succeeded : reloads_failed).fetch_add(1, std::memory_order_relaxed);
  last_reload_succeeded.store(succeeded, std::memory_order_relaxed);
  if (succeeded) {
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    last_reload_success_unix_ms.store(
        std::chrono::duration_cast<std::chrono::milliseconds>(now).count(),
        std::memory_order_relaxed);
  } else {
    std::lock_guard lock(reload_mutex_);
    last_reload_error_ = std::string(error);
  }
}

std::string ServiceStats::last_reload_error() const {
  std::lock_guard lock(reload_mutex_);
  return last_reload_error_;
}

void ServiceStats::note_error(const Error& error) {
  if (error.code == ErrorCode::kUnavailable || error.code == ErrorCode::kTimeout ||
      error.code == ErrorCode::kResourceExhausted) {
    store_failures.fetch_add(1, std::memory_order_relaxed);
  }
}

void ServiceStats::answered(std::string_view method, std::string_view path,
                            std::string_view remote, int status, double seconds,
                            bool access_log) {
  requests_total.fetch_add(1, std::memory_order_relaxed);
  const std::string_view route = route_template(
      path.empty() || path.size() > kMaxPathBytes ? Route::kUnknown : match_route(path).route);
  const std::string_view label = method_label(method);
  http_requests.inc({route, label, std::to_string(status)});
  http_duration.observe({route}, seconds);
  if (access_log) {
    log_message(LogLevel::kInfo,
                fmt::format("http method={} route={} status={} duration_ms={:.3f} remote={}",
                            label, route, status, seconds * 1000, remote));
  }
}

}  // namespace aicache::server
