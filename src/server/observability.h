// The operations routes: GET /healthz (alive), /readyz (the store answers
// and the warm-up is done; 503 if not, listing the apps not yet ready), /v1/stats (store, server and token-app figures as JSON, never
// a secret), /metrics (Prometheus text format 0.0.4) and / (the dashboard).
//
// The figures of the transport and the worker pools come through a
// function the wiring supplies (ServingFigures), so these handlers need
// neither sockets nor threads.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "aicache/assistant_cache.h"
#include "aicache/token_manager.h"
#include "server/http_message.h"
#include "server/routes.h"
#include "server/service_stats.h"
#include "server/warmup.h"

namespace aicache::server {

// The transport's and the worker pools' figures, as of now.
struct ServingFigures {
  std::int64_t connections_open = 0;
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_over_capacity = 0;
  std::uint64_t connections_timed_out = 0;
  std::uint64_t requests_refused = 0;  // by the transport, for framing or size
  std::size_t max_connections = 0;
  std::size_t io_threads = 0;
  std::size_t workers = 0;
  std::size_t workers_busy = 0;
  std::size_t queued = 0;
};

class ObservabilityHandlers {
 public:
  // `tokens` may be null (no token apps). `stats` must outlive the handlers.
  // `warmup`, when given, holds /readyz at 503 until it is done (warmup.h).
  ObservabilityHandlers(std::shared_ptr<AssistantCache> cache,
                        std::shared_ptr<TokenManager> tokens, ServiceStats& stats,
                        std::function<ServingFigures()> figures,
                        std::shared_ptr<const Warmup> warmup = nullptr);

  // kDashboard, kHealthz, kReadyz, kStats or kMetrics (they read nothing
  // of the request). /readyz, /v1/stats and /metrics call the store (they
  // block while it does); / and /healthz never do.
  HttpResponse serve(Route route) const;

  static HttpResponse healthz();
  static HttpResponse dashboard();
  HttpResponse readyz() const;
  HttpResponse stats() const;
  HttpResponse metrics() const;

 private:
  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> tokens_;
  ServiceStats& stats_;
  std::shared_ptr<const Warmup> warmup_;
  std::function<ServingFigures()> figures_;
};

}  // namespace aicache::server
