// Server: `aicache serve`, the central token and cache service over HTTP.
//
// The platforms recommend one central service that owns the access tokens
// while every worker asks it; programs in any language (the Django app among
// them) get tokens and cached data from it. Routes (JSON unless noted):
//
//   GET    /v1/tokens/{channel}/{app}             {"access_token": "...", "expires_in": N}
//   POST   /v1/tokens/{channel}/{app}/invalidate  body {"access_token": "..."}: compare-and-invalidate
//   POST   /v1/tokens/{channel}/{app}/refresh     fetch a new token now; with
//                                                 ?force_refresh=true WeChat's stable API
//                                                 also revokes the current one (20 a day).
//                                                 Limited per app, across processes sharing
//                                                 the store: one per [tokens]
//                                                 min_refresh_interval (60 s), and at most
//                                                 forced_refreshes_per_day (10) forced; else
//                                                 429 with Retry-After and no upstream call
//                                                 (TokenManager::refresh)
//   GET|PUT|DELETE /v1/conversations/{id}         PUT takes a JSON document, ?ttl=SECONDS
//   GET|PUT|DELETE /v1/ai-configs/{user_id}       likewise
//   GET|PUT|DELETE /v1/kv/{key}                   likewise (any JSON value); keys starting
//                                                 with "ai_assistant:" (the typed entries and
//                                                 the token manager's state, keys.h) may be
//                                                 read but not written: PUT and DELETE are
//                                                 400 "reserved_key" naming the typed route
//   HEAD   of those three                         no body; the entry's remaining TTL in
//                                                 "X-Aicache-Ttl: <seconds, rounded up>" or
//                                                 "X-Aicache-Ttl: never" (a GET does not
//                                                 pay the extra store call)
//   GET    /v1/export/{family}?cursor=C&count=N   a page of a family's entries (conversation,
//                                                 ai_config, kv) with their TTLs, for
//                                                 `aicache export` (data_handlers.h)
//   GET    /v1/stats                              store and token-app figures, hits and misses
//                                                 by family, the hottest keys; never a secret
//   GET    /metrics                               Prometheus text format
//   GET    /healthz                               alive
//   GET    /readyz                                the store answers and the warm-up is done
//                                                 (503 if not, listing the apps not ready)
//   GET    /                                      the dashboard (HTML)
//
// Errors are {"error": {"code": "...", "message": "..."}} (with "platform_code"
// and "platform_message" for upstream failures): 400 malformed JSON, invalid
// or reserved key or a request whose framing is refused (the connection is then closed:
// see src/server/http_transport.h), 401 missing or wrong API token, 403 a
// Host or Origin a token-less service does not serve, 404 unknown key or
// app, 405 wrong method, 413 body over the limit, 414 path too long, 415 a
// request with Content-Encoding, 429 a refresh beyond the refresh limits
// (with Retry-After), 431 request head over 16 KiB, 502 upstream
// failure, 503 store unavailable, or the server at its connection limit or
// with every worker busy (with Retry-After). Range is ignored (always the
// whole answer).
//
// With an API token set, every /v1 route needs "Authorization: Bearer <token>"
// (compared in constant time). The server refuses to listen beyond loopback
// without one. App secrets and token values never appear in logs or stats.
//
// Thread safety: start(), stop(), wait(), port(), reconfigure() and
// count_reload() may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/status.h"
#include "aicache/token_manager.h"

namespace aicache {

struct ServerOptions {
  // "HOST:PORT"; port 0 picks a free one (see Server::port()). Default:
  // loopback only. Without an API token the address actually bound must be
  // a loopback one.
  std::string listen = "127.0.0.1:8080";
  // When non-empty, /v1 routes need "Authorization: Bearer <api_token>".
  // At least 32 characters of [A-Za-z0-9._~+/=-] (validate_api_token() in
  // config.h); a weaker one is refused by create().
  std::string api_token;
  // Without an API token, requests must name this service by a loopback
  // Host (localhost, 127.0.0.1, [::1]) or one of these names (port
  // optional), and must not come from another origin: web pages are not
  // trusted (DNS rebinding, CSRF). 403 otherwise.
  std::vector<std::string> allowed_hosts;
  // Largest request body accepted, counted on the wire (413 beyond).
  // Default: 1 MiB.
  std::size_t max_body_bytes = 1u << 20;
  // Largest request head: request line and header fields (431 beyond).
  std::size_t max_head_bytes = 16 * 1024;
  // Threads that read and write connections; 0: one per core this process
  // may run on (its affinity mask: taskset, a container's cpuset). They never
  // block: calls that can (Redis, a platform fetch) run on the workers.
  std::size_t io_threads = 0;
  // Worker threads for calls that can block. Default: 16.
  std::size_t threads = 16;
  // Requests waiting for a worker; beyond, 503 at once. Default: 1024.
  std::size_t max_queued_requests = 1024;
  // Connections open at once; one more is answered 503 and closed.
  // Default: 10,000.
  std::size_t max_connections = 10'000;
  // Idle keep-alive connections are closed after this. Default: 5 s.
  std::chrono::seconds keep_alive_timeout{5};
  // A read that brings nothing for this long closes the connection.
  // Default: 5 s.
  std::chrono::seconds io_timeout{5};
  // A request (line, headers, body) must arrive within this of its first
  // byte, and the client must take the response within this too; clients
  // that trickle bytes are cut off. Default: 10 s.
  std::chrono::seconds request_timeout{10};
  // Write one access-log line per request (method, route, status, duration;
  // never bodies, tokens or query strings).
  bool access_log = true;
  // Warm-up: after start(), every token app's token is fetched (or found
  // valid in the store) and /readyz answers 503, listing the apps not yet
  // ready, until all are, or are misconfigured, or this much time has
  // passed. 0 (the default): no warm-up; `aicache serve` sets it from
  // [tokens] warmup_timeout (30 s).
  std::chrono::milliseconds warmup_timeout{0};
};

class Server {
 public:
  // Checks the options (kInvalidArgument / kConfig: a non-loopback address
  // without an API token is refused). `tokens` may be null: token routes then
  // answer 404.
  static Result<std::shared_ptr<Server>> create(std::shared_ptr<AssistantCache> cache,
                                                std::shared_ptr<TokenManager> tokens,
                                                ServerOptions options = {});
  virtual ~Server() = default;

  // Binds and starts serving on background threads. kUnavailable if the
  // address cannot be bound.
  virtual Status start() = 0;
  // The bound port (after start()).
  virtual std::uint16_t port() const = 0;
  // Stops accepting, closes connections waiting on their clients, lets the
  // requests being handled finish and be answered, and returns.
  virtual void stop() = 0;
  // Blocks until stop() has been called, or until serving failed on its
  // own (accepting connections cannot go on): then the error, and the
  // caller should stop() and exit so that a supervisor restarts it.
  virtual Status wait() = 0;

  // A configuration reload (`aicache serve` on SIGHUP). Applies the options
  // that can change while serving — api_token, allowed_hosts, access_log,
  // max_body_bytes, request_timeout — to every request whose head is read
  // from now on (one read before keeps the old ones); connections stay
  // open. A replaced API token is refused from then on, on connections
  // opened before as on new ones. The other options keep their running
  // values (they are bound to sockets and threads made at start()); the
  // names of those that `options` changes are returned, for the caller to
  // say that they need a restart.
  // Refused, changing nothing: options create() would refuse
  // (kInvalidArgument, kConfig), and turning the API token off on a server
  // started with one (kConfig: whether a token-less server may serve is
  // decided when the address is bound, so that needs a restart).
  virtual Result<std::vector<std::string>> reconfigure(const ServerOptions& options) = 0;

  // Counts a reload of the configuration, applied or not, for /v1/stats
  // ("config") and /metrics (aicache_config_reloads_total{result},
  // aicache_config_last_reload_successful,
  // aicache_config_last_reload_success_timestamp_seconds; the configuration
  // loaded at start counts as the first success). `error`: why a failed one
  // failed (shown in /v1/stats; it must hold no secret).
  virtual void count_reload(bool succeeded, std::string_view error = {}) = 0;
};

}  // namespace aicache
