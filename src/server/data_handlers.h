// The data routes: GET, HEAD, PUT and DELETE of /v1/conversations/{id},
// /v1/ai-configs/{user_id} and /v1/kv/{key} over AssistantCache.
//
//   GET     the entry's JSON text, 404 "not_found" on a miss
//   HEAD    the same, with X-Aicache-Ttl (seconds rounded up, or "never")
//   PUT     a JSON document (nesting up to 128), ?ttl=SECONDS (0 removes);
//           {"stored": true|false}
//   DELETE  {"deleted": true|false}
//   GET /v1/export/{family}?cursor=C&count=N (family conversation, ai_config
//           or kv; count 1..1000, default 500): a page of the family's
//           entries, {"entries": [{"family", "id", "value", "ttl"?}, ...],
//           "cursor": "..." | null, "skipped": N}; "ttl" is the whole
//           seconds left, rounded up, absent for an entry without expiry;
//           pass "cursor" back until it is null (AssistantCache::export_page)
//   /v1/kv  PUT and DELETE of a reserved key ("ai_assistant:...") are
//           400 "reserved_key" naming the typed route (threat model,
//           finding 1); GET reads them.
//
// Knows nothing of the transport or of threads: serve() blocks as long as
// the store does, and the caller decides where it runs.
//
// Thread safety: serve() may be called from any thread.
#pragma once

#include <cstddef>
#include <memory>

#include "aicache/assistant_cache.h"
#include "server/http_message.h"
#include "server/routes.h"
#include "server/service_stats.h"

namespace aicache::server {

class DataHandlers {
 public:
  // `max_body_bytes` bounds the JSON parse of a PUT body (the transport
  // bounds the wire). `stats` must outlive the handlers.
  DataHandlers(std::shared_ptr<AssistantCache> cache, ServiceStats& stats,
               std::size_t max_body_bytes);

  // `m` is match_route(req.path): kKv, kConversation or kAiConfig, with a
  // method the route allows (the RequestPolicy checked both).
  HttpResponse serve(const RouteMatch& m, const HttpRequest& req) const;

  // serve() if it can answer without blocking (a GET whose entry is in
  // process memory: AssistantCache::get_if_local); nullopt otherwise, and
  // then nothing was counted or done: call serve() where blocking is fine.
  std::optional<HttpResponse> serve_if_local(const RouteMatch& m, const HttpRequest& req) const;

 private:
  HttpResponse get(const RouteMatch& m, bool head) const;
  HttpResponse export_page(const RouteMatch& m, const HttpRequest& req) const;
  HttpResponse remove(const RouteMatch& m) const;
  HttpResponse put(const RouteMatch& m, const HttpRequest& req) const;
  void add_ttl_header(const RouteMatch& m, HttpResponse& res) const;
  // 200 with the entry's JSON, 404 on a miss, the error's answer on a failure.
  HttpResponse entry_response(Lookup<JsonDocument> got) const;
  HttpResponse fail(const Error& error) const;

  std::shared_ptr<AssistantCache> cache_;
  ServiceStats& stats_;
  const std::size_t max_body_bytes_;
};

}  // namespace aicache::server
