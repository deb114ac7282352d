// The token routes over TokenManager:
//
//   GET  /v1/tokens/{channel}/{app}             {"access_token": "...", "expires_in": N}
//   POST /v1/tokens/{channel}/{app}/invalidate  body {"access_token": "..."}:
//                                               {"invalidated": true|false}
//   POST /v1/tokens/{channel}/{app}/refresh     ?force_refresh=true|false|1|0; 429 with
//                                               Retry-After beyond the refresh limits
//
// Every answer has Cache-Control: no-store. Without a TokenManager every
// token route is 404 "not_found". Errors map through to_http_error() with
// ErrorOrigin::kToken (502 with the platform's code for upstream failures).
//
// Knows nothing of the transport or of threads: serve() blocks as long as a
// fetch (or the wait for another's) does, and the caller decides where it
// runs.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "aicache/token_manager.h"
#include "server/http_message.h"
#include "server/routes.h"
#include "server/service_stats.h"

namespace aicache::server {

class TokenHandlers {
 public:
  // `tokens` may be null. `stats` must outlive the handlers.
  // Observes every upstream fetch of `tokens` in stats.fetch_duration.
  TokenHandlers(std::shared_ptr<TokenManager> tokens, ServiceStats& stats,
                std::size_t max_body_bytes);
  ~TokenHandlers();
  TokenHandlers(const TokenHandlers&) = delete;
  TokenHandlers& operator=(const TokenHandlers&) = delete;

  // kToken: the token if it is still fresh in the store (one store read,
  // never a fetch nor a wait: TokenManager::get_if_fresh); nullopt when it
  // is not, or on any error: serve() then answers.
  std::optional<HttpResponse> serve_fresh(const RouteMatch& m) const;

  // `m` is match_route(req.path): kToken, kTokenInvalidate or
  // kTokenRefresh, with a method the route allows.
  HttpResponse serve(const RouteMatch& m, const HttpRequest& req);

  // A configuration reload: the bound of the JSON parse of later bodies.
  void set_max_body_bytes(std::size_t bytes) noexcept {
    max_body_bytes_.store(bytes, std::memory_order_relaxed);
  }

 private:
  HttpResponse invalidate(const RouteMatch& m, const HttpRequest& req);
  HttpResponse get_or_refresh(const RouteMatch& m, const HttpRequest& req);
  HttpResponse fail(const Error& error) const;

  std::shared_ptr<TokenManager> tokens_;
  ServiceStats& stats_;
  std::atomic<std::size_t> max_body_bytes_;  // set_max_body_bytes()
  std::uint64_t fetch_listener_ = 0;  // TokenManager::on_fetch
};

// {"access_token":"...","expires_in":N}, the answer to every token hit.
std::string token_body(const Token& token);

}  // namespace aicache::server
