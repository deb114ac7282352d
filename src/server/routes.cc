#include "server/routes.h"

namespace aicache::server {

RouteMatch match_route(std::string_view path) noexcept {
  RouteMatch m;
  if (path == "/") {
    m.route = Route::kDashboard;
  } else if (path == "/healthz") {
    m.route = Route::kHealthz;
  } else if (path == "/readyz") {
    m.route = Route::kReadyz;
  } else if (path == "/metrics") {
    m.route = Route::kMetrics;
  } else if (path == "/v1/stats") {
    m.route = Route::kStats;
  } else if (path.starts_with("/v1/export/")) {
    m.route = Route::kExport;
    m.id = path.substr(11);
  } else if (path.starts_with("/v1/kv/")) {
    m.route = Route::kKv;
    m.id = path.substr(7);
  } else if (path.starts_with("/v1/conversations/")) {
    m.route = Route::kConversation;
    m.id = path.substr(18);
  } else if (path.starts_with("/v1/ai-configs/")) {
    m.route = Route::kAiConfig;
    m.id = path.substr(15);
  } else if (path.starts_with("/v1/tokens/")) {
    std::string_view rest = path.substr(11);
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos) return m;  // no app: unknown
    m.channel = rest.substr(0, slash);
    std::string_view app = rest.substr(slash + 1);
    m.route = Route::kToken;
    // App ids may contain '/', so the action is the last segment, and only
    // when an app remains before it.
    constexpr std::string_view kInvalidate = "/invalidate";
    constexpr std::string_view kRefresh = "/refresh";
    if (app.size() > kInvalidate.size() && app.ends_with(kInvalidate)) {
      m.route = Route::kTokenInvalidate;
      app.remove_suffix(kInvalidate.size());
    } else if (app.size() > kRefresh.size() && app.ends_with(kRefresh)) {
      m.route = Route::kTokenRefresh;
      app.remove_suffix(kRefresh.size());
    }
    m.app = app;
  }
  return m;
}

std::string_view route_template(Route route) noexcept {
  switch (route) {
    case Route::kDashboard: return "/";
    case Route::kHealthz: return "/healthz";
    case Route::kReadyz: return "/readyz";
    case Route::kMetrics: return "/metrics";
    case Route::kStats: return "/v1/stats";
    case Route::kKv: return "/v1/kv/{key}";
    case Route::kConversation: return "/v1/conversations/{id}";
    case Route::kAiConfig: return "/v1/ai-configs/{user_id}";
    case Route::kToken: return "/v1/tokens/{channel}/{app}";
    case Route::kTokenInvalidate: return "/v1/tokens/{channel}/{app}/invalidate";
    case Route::kTokenRefresh: return "/v1/tokens/{channel}/{app}/refresh";
    case Route::kExport: return "/v1/export/{family}";
    case Route::kUnknown: break;
  }
  return "unknown";
}

std::string_view allowed_methods(Route route) noexcept {
  switch (route) {
    case Route::kKv:
    case Route::kConversation:
    case Route::kAiConfig: return "GET, HEAD, PUT, DELETE";
    case Route::kTokenInvalidate:
    case Route::kTokenRefresh: return "POST";
    case Route::kUnknown: return "";
    default: return "GET, HEAD";
  }
}

bool method_allowed(Route route, std::string_view method) noexcept {
  const bool get = method == "GET" || method == "HEAD";
  switch (route) {
    case Route::kKv:
    case Route::kConversation:
    case Route::kAiConfig: return get || method == "PUT" || method == "DELETE";
    case Route::kTokenInvalidate:
    case Route::kTokenRefresh: return method == "POST";
    case Route::kUnknown: return false;
    default: return get;
  }
}

bool needs_auth(Route route) noexcept {
  switch (route) {
    case Route::kDashboard:
    case Route::kHealthz:
    case Route::kReadyz:
    case Route::kMetrics:
    case Route::kUnknown: return false;
    default: return true;
  }
}

std::string_view method_label(std::string_view method) noexcept {
  static constexpr std::string_view kKnown[] = {"GET",    "HEAD",    "POST", "PUT",
                                                "DELETE", "OPTIONS", "PATCH"};
  if (method.empty()) return "unknown";
  for (std::string_view m : kKnown) {
    if (m == method) return m;
  }
  return "other";
}

}  // namespace aicache::server
