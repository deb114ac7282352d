// The routes of the service (see include/aicache/server.h): which route a
// path names, its template for metrics and logs, and the methods it allows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace aicache::server {

// Longer paths are refused (414) before any matching; keys are at most 250
// bytes.
inline constexpr std::size_t kMaxPathBytes = 2048;

enum class Route : std::uint8_t {
  kDashboard,        // GET /
  kHealthz,          // GET /healthz
  kReadyz,           // GET /readyz
  kMetrics,          // GET /metrics
  kStats,            // GET /v1/stats
  kKv,               // GET|PUT|DELETE /v1/kv/{key}
  kConversation,     // GET|PUT|DELETE /v1/conversations/{id}
  kAiConfig,         // GET|PUT|DELETE /v1/ai-configs/{user_id}
  kToken,            // GET  /v1/tokens/{channel}/{app}
  kTokenInvalidate,  // POST /v1/tokens/{channel}/{app}/invalidate
  kTokenRefresh,     // POST /v1/tokens/{channel}/{app}/refresh
  kExport,           // GET  /v1/export/{family}?cursor=C&count=N
  kUnknown,
};

struct RouteMatch {
  Route route = Route::kUnknown;
  // The key, id or user id of the data routes (everything after the prefix,
  // slashes included, as decoded by the HTTP server); the channel and app of
  // the token routes. Views into the path.
  std::string_view id;
  std::string_view channel;
  std::string_view app;
};

RouteMatch match_route(std::string_view path) noexcept;

// "/v1/kv/{key}" and so on; "unknown" for kUnknown. Never the raw path.
std::string_view route_template(Route route) noexcept;

// The value of an Allow header: "GET, PUT, DELETE".
std::string_view allowed_methods(Route route) noexcept;

// HEAD is allowed wherever GET is.
bool method_allowed(Route route, std::string_view method) noexcept;

// Routes under /v1 (they need the API token when one is set).
bool needs_auth(Route route) noexcept;

// A method as a metric label or in a message: one of a fixed set ("GET",
// ..., "PATCH"), else "other" ("unknown" if empty), so that a client cannot
// make new series.
std::string_view method_label(std::string_view method) noexcept;

}  // namespace aicache::server
