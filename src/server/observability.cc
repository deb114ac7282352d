#include "server/observability.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "aicache/log.h"
#include "server/dashboard_html.h"
#include "server/handler_support.h"
#include "server/http_errors.h"
#include "server/metrics.h"
#include "server/ttl_signals_json.h"

namespace aicache::server {
namespace {

using SteadyClock = std::chrono::steady_clock;

std::string rfc3339_utc(Clock::WallTimePoint t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(
      std::chrono::time_point_cast<std::chrono::seconds>(t));
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Successful fetches: attempts less failures.
std::uint64_t successful_fetches(const TokenAppStats& a) {
  const std::uint64_t failed =
      a.fetch_failures_retryable + a.fetch_failures_configuration + a.fetch_failures_quota;
  return a.fetches > failed ? a.fetches - failed : 0;
}

// pending, failed (misconfigured: not waited for) or timed_out (pending
// past the deadline).
std::string_view warmup_state(const WarmupApp& app, const WarmupStatus& status) {
  switch (app.state) {
    case WarmupApp::State::kReady: return "ready";
    case WarmupApp::State::kFailed: return "failed";
    case WarmupApp::State::kPending: return status.timed_out ? "timed_out" : "pending";
  }
  return "pending";
}

}  // namespace

ObservabilityHandlers::ObservabilityHandlers(std::shared_ptr<AssistantCache> cache,
                                             std::shared_ptr<TokenManager> tokens,
                                             ServiceStats& stats,
                                             std::function<ServingFigures()> figures,
                                             std::shared_ptr<const Warmup> warmup)
    : cache_(std::move(cache)),
      tokens_(std::move(tokens)),
      stats_(stats),
      warmup_(std::move(warmup)),
      figures_(std::move(figures)) {}

HttpResponse ObservabilityHandlers::serve(Route route) const {
  switch (route) {
    case Route::kDashboard: return dashboard();
    case Route::kHealthz: return healthz();
    case Route::kReadyz: return readyz();
    case Route::kStats: return stats();
    case Route::kMetrics: return metrics();
    default: return error_response(http_error(404, "not_found", "no such route"));
  }
}

HttpResponse ObservabilityHandlers::healthz() { return json_response(200, R"({"status":"ok"})"); }

HttpResponse ObservabilityHandlers::dashboard() {
  HttpResponse r;
  r.content_type = "text/html; charset=utf-8";
  r.static_body = kDashboardHtml;
  return r;
}

HttpResponse ObservabilityHandlers::readyz() const {
  if (auto up = cache_->stats(); !up) {
    // /readyz answers anyone: the store's error (host, port, database,
    // user) goes to the log and to /v1/stats, behind the API token.
    log_message(LogLevel::kWarning,
                fmt::format("readyz: the store does not answer: {}", up.error().message));
    return json_response(503, dump(nlohmann::json{
                                  {"status", "unavailable"},
                                  {"error", {{"code", to_string(up.error().code)},
                                             {"message", "the store does not answer"}}}}));
  }
  if (!warmup_) return json_response(200, R"({"status":"ready"})");
  // The apps not ready, by state; never an error message (anyone may ask:
  // a platform's message can name this host's address). The log and
  // /v1/stats say why.
  const WarmupStatus warm = warmup_->status();
  nlohmann::ordered_json not_ready = nlohmann::ordered_json::array();
  for (const WarmupApp& app : warm.apps) {
    if (app.state == WarmupApp::State::kReady) continue;
    not_ready.push_back({{"channel", app.channel},
                         {"app", app.app_key},
                         {"state", warmup_state(app, warm)}});
  }
  if (!warm.ready) {
    return json_response(503, dump(nlohmann::ordered_json{{"status", "warming_up"},
                                                           {"not_ready", std::move(not_ready)}}));
  }
  if (not_ready.empty()) return json_response(200, R"({"status":"ready"})");
  return json_response(
      200, dump(nlohmann::ordered_json{{"status", "ready"}, {"not_ready", std::move(not_ready)}}));
}

HttpResponse ObservabilityHandlers::stats() const {
  const ServingFigures serving = figures_();
  nlohmann::ordered_json out;
  auto stats = cache_->stats();
  if (stats) {
    stats_.last_store_errors.store(stats->store_errors, std::memory_order_relaxed);
    const StoreStats& s = stats->store;
    nlohmann::ordered_json details = nlohmann::ordered_json::object();
    for (const auto& [name, value] : s.details) details[name] = value;
    out["store"] = {{"backend", s.backend},
                    {"used_memory_bytes", s.used_memory_bytes},
                    {"used_memory_human", s.used_memory_human},
                    {"max_memory_bytes", s.max_memory_bytes},
                    {"entries", s.entries},
                    {"hits", s.hits},
                    {"misses", s.misses},
                    {"evictions", s.evictions},
                    {"expirations", s.expirations},
                    {"commands_processed", s.commands_processed},
                    {"details", std::move(details)}};
  } else {
    // The store is down: its figures are unknown, the rest still reads.
    out["store"] = nullptr;
  }
  // Reads by family, counted by this process whether or not the store
  // answers now.
  nlohmann::ordered_json families = nlohmann::ordered_json::object();
  const auto family_stats = cache_->family_stats();
  for (CacheFamily family : kCacheFamilies) {
    const FamilyStats& f = family_stats[static_cast<std::size_t>(family)];
    const std::uint64_t reads = f.hits + f.misses;
    families[std::string(to_string(family))] = {
        {"hits", f.hits},
        {"misses", f.misses},
        {"hit_rate", reads ? nlohmann::ordered_json(static_cast<double>(f.hits) /
                                                    static_cast<double>(reads))
                           : nlohmann::ordered_json(nullptr)}};
  }
  out["cache"] = {
      {"store_errors", std::max(stats_.last_store_errors.load(), stats_.store_failures.load())},
      {"families", std::move(families)},
      // Ages at hit and expired-recently misses (docs/operations.md, "Tuning TTLs").
      {"ttl_signals", ttl_signals_json(family_stats)}};
  out["server"] = {
      {"requests_total", stats_.requests_total.load()},
      {"uptime_seconds", std::chrono::duration_cast<std::chrono::seconds>(SteadyClock::now() -
                                                                          stats_.started_at)
                             .count()},
      {"in_flight", stats_.in_flight.load()},
      {"connections", {{"open", serving.connections_open},
                       {"max", serving.max_connections},
                       {"accepted_total", serving.connections_accepted},
                       {"over_capacity_total", serving.connections_over_capacity},
                       {"timed_out_total", serving.connections_timed_out},
                       {"refused_total", serving.requests_refused}}},
      {"threads", {{"io", serving.io_threads},
                   {"workers", serving.workers},
                   {"workers_busy", serving.workers_busy},
                   {"queued", serving.queued},
                   {"overloaded_total", stats_.overloaded.load()}}}};
  {
    // Configuration reloads (SIGHUP); the error never holds a secret.
    const Clock::WallTimePoint last_success{
        std::chrono::milliseconds(stats_.last_reload_success_unix_ms.load())};
    out["config"] = {{"reloads_succeeded_total", stats_.reloads_succeeded.load()},
                     {"reloads_failed_total", stats_.reloads_failed.load()},
                     {"last_reload_successful", stats_.last_reload_succeeded.load()},
                     {"last_reload_success", rfc3339_utc(last_success)},
                     {"last_reload_error", stats_.last_reload_error()}};
  }
  nlohmann::ordered_json apps = nlohmann::ordered_json::array();
  if (tokens_) {
    for (const TokenAppStats& a : tokens_->stats()) {
      nlohmann::ordered_json app = {
          {"channel", a.channel},
          {"app_key", a.app_key},
          {"hits", a.hits},
          {"fetches", a.fetches},
          {"fetch_failures", {{"retryable", a.fetch_failures_retryable},
                              {"configuration", a.fetch_failures_configuration},
                              {"quota", a.fetch_failures_quota}}},
          {"waits", a.waits},
          {"invalidations", a.invalidations}};
      app["last_fetch"] = a.last_fetch ? nlohmann::ordered_json(rfc3339_utc(*a.last_fetch))
                                       : nlohmann::ordered_json(nullptr);
      app["seconds_until_expiry"] = a.seconds_until_expiry
                                        ? nlohmann::ordered_json(*a.seconds_until_expiry)
                                        : nlohmann::ordered_json(nullptr);
      app["refresh_margin_seconds"] = a.refresh_margin_seconds;
      app["last_error"] = a.last_error;
      apps.push_back(std::move(app));
    }
  }
  out["tokens"] = std::move(apps);
  nlohmann::ordered_json hot = nlohmann::ordered_json::array();
  for (const HotKey& k : cache_->hot_keys(20)) {
    hot.push_back({{"family", to_string(k.family)}, {"id", k.id}, {"reads", k.reads}});
  }
  out["hot_keys"] = std::move(hot);
  if (warmup_) {
    const WarmupStatus warm = warmup_->status();
    nlohmann::ordered_json warm_apps = nlohmann::ordered_json::array();
    for (const WarmupApp& app : warm.apps) {
      warm_apps.push_back({{"channel", app.channel},
                           {"app_key", app.app_key},
                           {"state", warmup_state(app, warm)},
                           {"last_error", app.last_error}});
    }
    out["warmup"] = {
        {"ready", warm.ready}, {"timed_out", warm.timed_out}, {"apps", std::move(warm_apps)}};
  }
  return json_response(200, dump(out));
}

HttpResponse ObservabilityHandlers::metrics() const {
  std::string text;
  text.reserve(8192);
  TextWriter w(text);
  const Labels none;

  auto stats = cache_->stats();
  if (stats) stats_.last_store_errors.store(stats->store_errors, std::memory_order_relaxed);
  std::vector<TokenAppStats> apps;
  if (tokens_) apps = tokens_->stats();

  std::uint64_t token_sets = 0;
  for (const TokenAppStats& a : apps) token_sets += successful_fetches(a);

  // This process's reads by family (docs/operations.md). The store's own
  // keyspace figures (every client's reads, for Redis) are
  // aicache_store_hits_total and aicache_store_misses_total.
  const auto family_stats = cache_->family_stats();
  w.family("aicache_cache_hits_total", "Reads this server answered with a value, by family.",
           "counter");
  for (CacheFamily family : kCacheFamilies) {
    w.sample("aicache_cache_hits_total", {{"family", to_string(family)}},
             family_stats[static_cast<std::size_t>(family)].hits);
  }
  w.family("aicache_cache_misses_total", "Reads this server answered with a miss, by family.",
           "counter");
  for (CacheFamily family : kCacheFamilies) {
    w.sample("aicache_cache_misses_total", {{"family", to_string(family)}},
             family_stats[static_cast<std::size_t>(family)].misses);
  }
  // The TTL signals (docs/operations.md, "Tuning TTLs"); tokens have none.
  w.family("aicache_cache_hit_age_seconds",
           "Age of the entry at a hit (time since written), by family.", "histogram");
  for (CacheFamily family : kTtlFamilies) {
    const FamilyStats& f = family_stats[static_cast<std::size_t>(family)];
    const std::string_view name = to_string(family);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < f.hit_age_buckets.size(); ++i) {
      cumulative += f.hit_age_buckets[i];
      const std::string le = i < kHitAgeBoundsSeconds.size()
                                 ? std::to_string(kHitAgeBoundsSeconds[i])
                                 : std::string("+Inf");
      w.sample("aicache_cache_hit_age_seconds_bucket", {{"family", name}, {"le", le}}, cumulative);
    }
    w.sample("aicache_cache_hit_age_seconds_sum", {{"family", name}},
             static_cast<double>(f.hit_age_sum_ms) / 1000.0);
    w.sample("aicache_cache_hit_age_seconds_count", {{"family", name}}, cumulative);
  }
  w.family("aicache_cache_expired_recently_misses_total",
           "Misses of keys this server wrote that expired within the family's TTL.", "counter");
  for (CacheFamily family : kTtlFamilies) {
    w.sample("aicache_cache_expired_recently_misses_total", {{"family", to_string(family)}},
             family_stats[static_cast<std::size_t>(family)].expired_recently_misses);
  }
  if (stats) {
    const StoreStats& s = stats->store;
    w.family("aicache_store_hits_total",
             "Reads the store answered with a value (for Redis: every client's).", "counter");
    w.sample("aicache_store_hits_total", none, s.hits);
    w.family("aicache_store_misses_total",
             "Reads the store answered with a miss (for Redis: every client's).", "counter");
    w.sample("aicache_store_misses_total", none, s.misses);
  }
  w.family("aicache_cache_sets_total",
           "Entries this server stored: successful PUTs and tokens fetched by this process.",
           "counter");
  w.sample("aicache_cache_sets_total", none, stats_.sets.load() + token_sets);
  if (stats) {
    const StoreStats& s = stats->store;
    w.family("aicache_cache_evictions_total", "Entries the store evicted for memory.", "counter");
    w.sample("aicache_cache_evictions_total", none, s.evictions);
    w.family("aicache_cache_expirations_total", "Entries that expired.", "counter");
    w.sample("aicache_cache_expirations_total", none, s.expirations);
    w.family("aicache_store_used_memory_bytes", "Memory the store uses.", "gauge");
    w.sample("aicache_store_used_memory_bytes", none, s.used_memory_bytes);
    w.family("aicache_store_max_memory_bytes", "The store's memory limit (0: none).", "gauge");
    w.sample("aicache_store_max_memory_bytes", none, s.max_memory_bytes);
    w.family("aicache_store_entries", "Entries in the store.", "gauge");
    w.sample("aicache_store_entries", none, s.entries);
    // The Redis store's near cache (docs/near_cache.md), from its details.
    struct NearFigure {
      const char* detail;
      const char* metric;
      const char* help;
      const char* type;
    };
    static constexpr NearFigure kNear[] = {
        {"near_hits", "aicache_near_hits_total", "Reads served by the near cache.", "counter"},
        {"near_misses", "aicache_near_misses_total", "Reads the near cache did not serve.", "counter"},
        {"near_invalidations", "aicache_near_invalidations_total", "Keys Redis invalidated.", "counter"},
        {"near_flushes", "aicache_near_flushes_total", "Flushes (FLUSHDB/FLUSHALL) Redis announced.", "counter"},
        {"near_entries", "aicache_near_entries", "Entries in the near cache.", "gauge"},
        {"near_bytes", "aicache_near_bytes", "Bytes the near cache holds.", "gauge"},
        {"near_tracking_live", "aicache_near_tracking_live", "1 while invalidations are received.", "gauge"},
    };
    for (const NearFigure& f : kNear) {
      auto it = s.details.find(f.detail);
      if (it == s.details.end()) continue;
      w.family(f.metric, f.help, f.type);
      w.sample(f.metric, none, static_cast<std::uint64_t>(std::strtoull(it->second.c_str(), nullptr, 10)));
    }
  }
  w.family("aicache_store_up", "1 if the store answered this scrape, else 0.", "gauge");
  w.sample("aicache_store_up", none, std::uint64_t{stats ? 1u : 0u});
  w.family("aicache_store_errors_total", "Store failures (unavailable, timeout, exhausted).",
           "counter");
  w.sample("aicache_store_errors_total", none,
           std::max(stats_.last_store_errors.load(), stats_.store_failures.load()));

  w.family("aicache_token_fetches_total",
           "Upstream token fetch attempts by this process, by outcome.", "counter");
  for (const TokenAppStats& a : apps) {
    const std::pair<std::string_view, std::uint64_t> outcomes[] = {
        {"success", successful_fetches(a)},
        {"retryable", a.fetch_failures_retryable},
        {"configuration", a.fetch_failures_configuration},
        {"quota", a.fetch_failures_quota}};
    for (const auto& [outcome, count] : outcomes) {
      w.sample("aicache_token_fetches_total",
               {{"channel", a.channel}, {"app", a.app_key}, {"outcome", outcome}}, count);
    }
  }
  w.family("aicache_token_seconds_until_expiry", "Validity left of the stored token.", "gauge");
  for (const TokenAppStats& a : apps) {
    if (!a.seconds_until_expiry) continue;
    w.sample("aicache_token_seconds_until_expiry", {{"channel", a.channel}, {"app", a.app_key}},
             static_cast<double>(*a.seconds_until_expiry));
  }
  w.family("aicache_token_refresh_margin_seconds",
           "Validity left at which a request refreshes the token (the alert rules compare "
           "aicache_token_seconds_until_expiry with half of it).",
           "gauge");
  for (const TokenAppStats& a : apps) {
    w.sample("aicache_token_refresh_margin_seconds", {{"channel", a.channel}, {"app", a.app_key}},
             static_cast<double>(a.refresh_margin_seconds));
  }
  stats_.fetch_duration.render(text);

  stats_.http_requests.render(text);
  stats_.http_duration.render(text);
  w.family("aicache_http_requests_in_flight", "Requests being served.", "gauge");
  w.sample("aicache_http_requests_in_flight", none, static_cast<double>(stats_.in_flight.load()));
  const ServingFigures serving = figures_();
  w.family("aicache_http_connections_open", "Connections open.", "gauge");
  w.sample("aicache_http_connections_open", none, static_cast<double>(serving.connections_open));
  w.family("aicache_http_connections_total", "Connections accepted.", "counter");
  w.sample("aicache_http_connections_total", none, serving.connections_accepted);
  w.family("aicache_http_connections_over_capacity_total",
           "Connections answered 503 and closed because max_connections were open.", "counter");
  w.sample("aicache_http_connections_over_capacity_total", none,
           serving.connections_over_capacity);
  w.family("aicache_http_connection_timeouts_total",
           "Connections closed because a request or response missed its deadline or made no "
           "progress (slow or stalled clients).",
           "counter");
  w.sample("aicache_http_connection_timeouts_total", none, serving.connections_timed_out);
  w.family("aicache_http_requests_refused_total",
           "Requests the transport refused for their framing or size (400, 413, 415, 431).",
           "counter");
  w.sample("aicache_http_requests_refused_total", none, serving.requests_refused);
  w.family("aicache_http_workers_busy", "Worker threads running a request.", "gauge");
  w.sample("aicache_http_workers_busy", none, static_cast<double>(serving.workers_busy));
  w.family("aicache_http_requests_queued", "Requests waiting for a worker thread.", "gauge");
  w.sample("aicache_http_requests_queued", none, static_cast<double>(serving.queued));
  w.family("aicache_http_requests_overloaded_total",
           "Requests answered 503 because every worker was busy and the queue full.",
           "counter");
  w.sample("aicache_http_requests_overloaded_total", none, stats_.overloaded.load());
  w.family("aicache_config_reloads_total",
           "Configuration reloads (SIGHUP), by result: ok (applied) or failed (the running "
           "configuration kept).",
           "counter");
  w.sample("aicache_config_reloads_total", {{"result", "ok"}}, stats_.reloads_succeeded.load());
  w.sample("aicache_config_reloads_total", {{"result", "failed"}}, stats_.reloads_failed.load());
  w.family("aicache_config_last_reload_successful",
           "Whether the last configuration reload was applied (1) or failed (0).", "gauge");
  w.sample("aicache_config_last_reload_successful", none,
           stats_.last_reload_succeeded.load() ? 1.0 : 0.0);
  w.family("aicache_config_last_reload_success_timestamp_seconds",
           "Unix time of the last configuration load that was applied (the start, or a "
           "reload).",
           "gauge");
  w.sample("aicache_config_last_reload_success_timestamp_seconds", none,
           static_cast<double>(stats_.last_reload_success_unix_ms.load()) / 1000.0);
  w.family("aicache_uptime_seconds", "Seconds since the server was created.", "gauge");
  w.sample("aicache_uptime_seconds", none,
           std::chrono::duration<double>(SteadyClock::now() - stats_.started_at).count());

  HttpResponse res;
  res.content_type = "text/plain; version=0.0.4; charset=utf-8";
  res.body = std::move(text);
  return res;
}

}  // namespace aicache::server
