#include "server/token_handlers.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "aicache/json.h"
#include "aicache/keys.h"
#include "core/try.h"
#include "server/handler_support.h"
#include "server/http_errors.h"

namespace aicache::server {
namespace {

HttpResponse no_store(HttpResponse r) {
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

HttpResponse answer(int status, std::string body) {
  return no_store(json_response(status, std::move(body)));
}

Status validate_app(const RouteMatch& m) {
  AICACHE_TRY(validate_key_part(m.channel, "channel"));
  return validate_key_part(m.app, "app id");
}

// ?force_refresh on a refresh: absent or false/0 → false, true/1 → true,
// anything else (or twice) → an error.
Result<bool> parse_force_refresh(const HttpRequest& req) {
  const std::size_t count = req.query_count("force_refresh");
  if (count == 0) return false;
  const std::string_view value = *req.query_value("force_refresh");
  if (count != 1 || (value != "true" && value != "1" && value != "false" && value != "0")) {
    return make_error(ErrorCode::kInvalidArgument, "force_refresh must be true, false, 1 or 0");
  }
  return value == "true" || value == "1";
}

}  // namespace

// Written directly (building and dumping a JSON tree for it was an eighth of
// the service's time on that route). A token with a character that JSON
// would escape takes the general path.
std::string token_body(const Token& token) {
  const std::string& t = token.access_token;
  const bool plain = std::all_of(t.begin(), t.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f &&
           c != '"' && c != '\\';
  });
  if (!plain) {
    return dump(nlohmann::json{{"access_token", t}, {"expires_in", token.expires_in.count()}});
  }
  return fmt::format(R"({{"access_token":"{}","expires_in":{}}})", t, token.expires_in.count());
}

TokenHandlers::TokenHandlers(std::shared_ptr<TokenManager> tokens, ServiceStats& stats,
                             std::size_t max_body_bytes)
    : tokens_(std::move(tokens)), stats_(stats), max_body_bytes_(max_body_bytes) {
  // The token manager reports each upstream call as it happens: no guessing
  // from a request's duration, no store round trip per request.
  if (tokens_) {
    fetch_listener_ = tokens_->on_fetch([&stats](const TokenFetchEvent& fetch) {
      stats.fetch_duration.observe({fetch.channel, fetch.app_key},
                                   std::chrono::duration<double>(fetch.duration).count());
    });
  }
}

TokenHandlers::~TokenHandlers() {
  // The manager is shared and may outlive these handlers and `stats_`.
  if (tokens_) tokens_->remove_fetch_listener(fetch_listener_);
}

std::optional<HttpResponse> TokenHandlers::serve_fresh(const RouteMatch& m) const {
  if (!tokens_ || m.route != Route::kToken || !validate_app(m)) return std::nullopt;
  auto fresh = tokens_->get_if_fresh(m.channel, m.app);
  if (!fresh) return std::nullopt;
  return answer(200, token_body(*fresh));
}

HttpResponse TokenHandlers::fail(const Error& error) const {
  stats_.note_error(error);
  return no_store(error_response(to_http_error(error, ErrorOrigin::kToken)));
}

HttpResponse TokenHandlers::serve(const RouteMatch& m, const HttpRequest& req) {
  if (auto valid = validate_app(m); !valid) return fail(valid.error());
  if (!tokens_) return error_response(http_error(404, "not_found", "no token apps are configured"));
  if (m.route == Route::kTokenInvalidate) return invalidate(m, req);
  return get_or_refresh(m, req);
}

HttpResponse TokenHandlers::invalidate(const RouteMatch& m, const HttpRequest& req) {
  auto body = JsonDocument::parse(req.body,
                                  JsonLimits{.max_depth = 4,
                                             .max_bytes = max_body_bytes_.load(
                                                 std::memory_order_relaxed)});
  const std::string* token = nullptr;
  if (body && body->value().is_object()) {
    auto it = body->value().find("access_token");
    if (it != body->value().end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
      token = &it->get_ref<const std::string&>();
    }
  }
  if (!token) {
    return answer(400, error_body(http_error(
                           400, "invalid_json",
                           R"(the body must be {"access_token": "..."} with the rejected token)")));
  }
  auto invalidated = tokens_->invalidate(m.channel, m.app, *token);
  if (!invalidated) return fail(invalidated.error());
  return answer(200, *invalidated ? R"({"invalidated":true})" : R"({"invalidated":false})");
}

HttpResponse TokenHandlers::get_or_refresh(const RouteMatch& m, const HttpRequest& req) {
  const bool refresh = m.route == Route::kTokenRefresh;
  bool platform_force = false;
  if (refresh) {
    auto force = parse_force_refresh(req);
    if (!force) {
      return answer(400, error_body(http_error(400, "invalid_argument", force.error().message)));
    }
    platform_force = *force;
  }
  auto token = refresh ? tokens_->refresh(m.channel, m.app, platform_force)
                       : tokens_->get(m.channel, m.app);
  if (!token) return fail(token.error());
  return answer(200, token_body(*token));
}

}  // namespace aicache::server
