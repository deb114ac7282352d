// Fuzz target: the service's routing table and error bodies
// (src/server/routes.h, src/server/http_errors.h), without the network.
//
// Input: the path to route (every method is tried on it).
// Properties, beyond "no crash":
//  - a matched route rebuilds the path exactly from its template's prefix
//    and the captured id, or channel and app (nothing is lost or invented);
//  - its template and Allow list are never empty, and method_allowed()
//    agrees with the Allow list for every method the service's metrics name;
//  - the JSON error body of a message with any bytes (as parsed for
//    platform details) is valid JSON with the code and message as strings.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "server/http_errors.h"
#include "server/routes.h"

namespace {

using aicache::server::Route;

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr std::string_view kMethods[] = {"GET",   "HEAD",    "PUT",   "DELETE", "POST",
                                         "PATCH", "OPTIONS", "TRACE", "CONNECT"};

// The path a match stands for.
std::string rebuilt(const aicache::server::RouteMatch& m) {
  switch (m.route) {
    case Route::kKv:
      return "/v1/kv/" + std::string(m.id);
    case Route::kConversation:
      return "/v1/conversations/" + std::string(m.id);
    case Route::kAiConfig:
      return "/v1/ai-configs/" + std::string(m.id);
    case Route::kExport:
      return "/v1/export/" + std::string(m.id);
    case Route::kToken:
    case Route::kTokenInvalidate:
    case Route::kTokenRefresh: {
      std::string path = "/v1/tokens/" + std::string(m.channel) + "/" + std::string(m.app);
      if (m.route == Route::kTokenInvalidate) path += "/invalidate";
      if (m.route == Route::kTokenRefresh) path += "/refresh";
      return path;
    }
    default:
      return std::string(aicache::server::route_template(m.route));
  }
}

bool listed(std::string_view allow, std::string_view method) {
  // "GET, HEAD, PUT, DELETE": compare whole entries.
  while (!allow.empty()) {
    const auto comma = allow.find(", ");
    if (allow.substr(0, comma) == method) return true;
    if (comma == std::string_view::npos) break;
    allow.remove_prefix(comma + 2);
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view path(reinterpret_cast<const char*>(data), size);

  const auto m = aicache::server::match_route(path);
  if (m.route == Route::kUnknown) {
    check(aicache::server::allowed_methods(m.route).empty());
    check(!aicache::server::needs_auth(m.route));
  } else {
    check(rebuilt(m) == path);
    check(aicache::server::route_template(m.route) != "unknown");
    const std::string_view allow = aicache::server::allowed_methods(m.route);
    check(!allow.empty());
    for (std::string_view method : kMethods) {
      check(aicache::server::method_allowed(m.route, method) == listed(allow, method));
    }
    check(aicache::server::needs_auth(m.route) == path.starts_with("/v1/"));
  }

  aicache::server::HttpError error =
      aicache::server::http_error(400, "bad_request", std::string(path));
  aicache::server::parse_platform_details(path, error);
  const auto body = nlohmann::json::parse(aicache::server::error_body(error), nullptr, false);
  check(body.is_object() && body.contains("error"));
  check(body["error"]["code"] == "bad_request" && body["error"]["message"].is_string());
  if (error.platform_code) check(body["error"].contains("platform_code"));
  return 0;
}
