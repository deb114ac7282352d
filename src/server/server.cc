// The service's wiring: Server::create checks the options; HttpServer holds
// the transport (server::HttpTransport, Boost.Beast; see http_transport.h
// for framing, limits and deadlines), the thread pools, the request policy
// and the handlers, and decides where each request runs. The handlers
// themselves know nothing of the transport or of threads:
//
//   request_policy.h  who may ask (route, method, Host, Origin, API token)
//   data_handlers.h   /v1/conversations, /v1/ai-configs, /v1/kv
//   token_handlers.h  /v1/tokens/...
//   observability.h   /healthz, /readyz, /v1/stats, /metrics, the dashboard
//   service_stats.h   the figures they keep
//
// Where a request runs. The I/O threads must never block, so:
//   * /healthz, the dashboard and every refusal are answered on the I/O
//     thread;
//   * on a process-local store (the memory store never blocks), the data
//     routes, token invalidation and a token still fresh in the store are
//     answered there too — the common path pays no thread hop; on Redis, so
//     is a data GET the near cache holds (DataHandlers::serve_if_local);
//   * everything else that may block (any call into Redis, a token fetch or
//     the wait for another's) runs on the worker pool, and /metrics,
//     /readyz and /v1/stats on a pool of their own, so that a stopped Redis
//     holding every worker cannot also hold the operators' view of it.
//   A full queue answers 503 at once.
//
// Who may ask. Every check that needs only the head is made before the body
// is read (RequestPolicy::check_head).
#include "aicache/server.h"

#include <fmt/format.h>

#include <atomic>
#include <charconv>
#include <functional>
#include <mutex>

#include "aicache/api_token.h"
#include "aicache/log.h"
#include "aicache/net.h"
#include "core/try.h"
#include "server/data_handlers.h"
#include "server/handler_support.h"
#include "server/http_errors.h"
#include "server/http_message.h"
#include "server/http_transport.h"
#include "server/observability.h"
#include "server/request_policy.h"
#include "server/routes.h"
#include "server/service_stats.h"
#include "server/token_handlers.h"
#include "server/warmup.h"
#include "server/worker_pool.h"

namespace aicache {
namespace {

using server::HttpRequest;
using server::HttpResponse;
using server::Responder;
using server::Route;
using server::RouteMatch;

// The operations routes' own pool: small, and apart from the data workers.
constexpr std::size_t kOpsThreads = 2;
constexpr std::size_t kOpsQueue = 64;

// --- Listen address ---------------------------------------------------------------

struct ListenAddress {
  std::string host;
  int port = 0;
};

Result<ListenAddress> parse_listen(std::string_view listen) {
  ListenAddress out;
  std::string_view port;
  if (listen.starts_with('[')) {
    const auto close = listen.find(']');
    if (close == std::string_view::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("listen address \"{}\" is not [HOST]:PORT", listen));
    }
    out.host = std::string(listen.substr(1, close - 1));
    port = listen.substr(close + 2);
  } else {
    const auto colon = listen.rfind(':');
    if (colon == std::string_view::npos || listen.find(':') != colon) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("listen address \"{}\" is not HOST:PORT", listen));
    }
    out.host = std::string(listen.substr(0, colon));
    port = listen.substr(colon + 1);
  }
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), out.port);
  if (out.host.empty() || port.empty() || ec != std::errc() || end != port.data() + port.size() ||
      out.port < 0 || out.port > 65535) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("listen address \"{}\" needs a host and a port 0-65535", listen));
  }
  return out;
}

Status check_options(const AssistantCache* cache, const ServerOptions& options) {
  if (!cache) return make_error(ErrorCode::kInvalidArgument, "the server needs a cache");
  if (options.max_connections == 0 || options.threads == 0 || options.max_queued_requests == 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "max_connections, threads and max_queued_requests must be positive");
  }
  if (options.max_body_bytes == 0) {
    return make_error(ErrorCode::kInvalidArgument, "max_body_bytes must be positive");
  }
  if (options.io_timeout.count() <= 0 || options.request_timeout.count() <= 0 ||
      options.keep_alive_timeout.count() < 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "io_timeout and request_timeout must be positive and keep_alive_timeout "
                      "not negative");
  }
  if (!options.api_token.empty()) AICACHE_TRY(validate_api_token(options.api_token));
  return {};
}

// --- The service ------------------------------------------------------------------

class HttpServer final : public Server, private server::RequestHandler {
 public:
  HttpServer(std::shared_ptr<AssistantCache> cache, std::shared_ptr<TokenManager> tokens,
             ServerOptions options, ListenAddress address)
      : options_(std::move(options)),
        address_(std::move(address)),
        local_store_(cache->process_local()),
        policy_(options_.api_token, options_.allowed_hosts),
        data_(cache, stats_, options_.max_body_bytes),
        tokens_(tokens, stats_, options_.max_body_bytes),
        warmup_(tokens && options_.warmup_timeout.count() > 0
                    ? std::make_shared<server::Warmup>(tokens, options_.warmup_timeout)
                    : nullptr),
        observability_(std::move(cache), std::move(tokens), stats_,
                       [this] { return serving_figures(); }, warmup_) {}

  ~HttpServer() override { stop(); }

  Status start() override;
  std::uint16_t port() const override { return transport_ ? transport_->port() : 0; }
  void stop() override;
  Status wait() override;

 private:
  // server::RequestHandler
  std::optional<HttpResponse> check_head(const HttpRequest& head) override;
  void handle(HttpRequest request, Responder respond) override;
  HttpResponse refusal(int status, std::string_view code, std::string_view message) override;
  void answered(const server::AnsweredRequest& request) override;

  // Runs `work` on `pool`, answering its result; 503 if the pool is full.
  void offload(server::WorkerPool& pool, Responder respond, std::function<HttpResponse()> work);
  server::ServingFigures serving_figures() const;

  const ServerOptions options_;
  const ListenAddress address_;
  const bool local_store_;  // store calls never block: answer on the I/O thread

  server::ServiceStats stats_;
  const server::RequestPolicy policy_;
  const server::DataHandlers data_;
  server::TokenHandlers tokens_;
  const std::shared_ptr<server::Warmup> warmup_;  // null: no warm-up
  const server::ObservabilityHandlers observability_;

  std::unique_ptr<server::WorkerPool> workers_;
  std::unique_ptr<server::WorkerPool> ops_workers_;
  std::unique_ptr<server::HttpTransport> transport_;

  std::mutex state_mutex_;
  bool started_ = false;  // guarded by state_mutex_
  bool stopped_ = false;  // guarded by state_mutex_
};

// --- Lifecycle ------------------------------------------------------------------------

Status HttpServer::start() {
  {
    std::lock_guard lock(state_mutex_);
    if (started_) return make_error(ErrorCode::kFailedPrecondition, "the server was already started");
    started_ = true;
  }
  using std::chrono::milliseconds;
  AICACHE_ASSIGN_OR_RETURN(
      auto transport,
      server::HttpTransport::create(
          server::TransportOptions{
              .host = address_.host,
              .port = static_cast<std::uint16_t>(address_.port),
              .require_loopback = options_.api_token.empty(),
              .io_threads = options_.io_threads,
              .max_connections = options_.max_connections,
              .max_head_bytes = options_.max_head_bytes,
              .max_body_bytes = options_.max_body_bytes,
              .keep_alive_timeout = milliseconds(options_.keep_alive_timeout),
              .io_timeout = milliseconds(options_.io_timeout),
              .request_timeout = milliseconds(options_.request_timeout)},
          *this));
  // Threads, sockets and event loops are made here; any that cannot be
  // (a pids or descriptor limit) is an error to report, not a crash.
  try {
    workers_ = std::make_unique<server::WorkerPool>("aicache-worker", options_.threads,
                                                    options_.max_queued_requests);
    ops_workers_ = std::make_unique<server::WorkerPool>("aicache-ops", kOpsThreads, kOpsQueue);
    transport_ = std::move(transport);
    if (auto started = transport_->start(); !started) {
      transport_->stop();
      return started;
    }
  } catch (const std::exception& e) {
    if (transport_) transport_->stop();
    return make_error(ErrorCode::kUnavailable, fmt::format("cannot start serving: {}", e.what()));
  }
  log_message(LogLevel::kInfo, fmt::format("serving on {}:{} ({} I/O threads, {} workers)",
                                           address_.host, transport_->port(),
                                           transport_->io_threads(), workers_->threads()));
  // Serving already: /readyz says 503 while the tokens are fetched.
  if (warmup_) warmup_->start();
  return {};
}

void HttpServer::stop() {
  std::lock_guard lock(state_mutex_);
  if (!started_ || stopped_) return;
  stopped_ = true;
  if (warmup_) warmup_->stop();
  // The transport waits for the requests being handled, so the pools they
  // run on stop after it.
  if (transport_) transport_->stop();
  if (workers_) workers_->shutdown();
  if (ops_workers_) ops_workers_->shutdown();
}

Status HttpServer::wait() {
  {
    std::lock_guard lock(state_mutex_);
    if (!transport_) return {};
  }
  return transport_->wait();
}

server::ServingFigures HttpServer::serving_figures() const {
  const server::TransportStats& connections = transport_->stats();
  return {.connections_open = connections.open.load(),
          .connections_accepted = connections.accepted.load(),
          .connections_over_capacity = connections.over_capacity.load(),
          .connections_timed_out = connections.timed_out.load(),
          .requests_refused = connections.refused.load(),
          .max_connections = options_.max_connections,
          .io_threads = transport_->io_threads(),
          .workers = workers_->threads(),
          .workers_busy = workers_->busy(),
          .queued = workers_->queued()};
}

// --- Transport callbacks ------------------------------------------------------------

HttpResponse HttpServer::refusal(int status, std::string_view code, std::string_view message) {
  return server::error_response(server::http_error(status, std::string(code), std::string(message)));
}

std::optional<HttpResponse> HttpServer::check_head(const HttpRequest& head) {
  stats_.in_flight.fetch_add(1, std::memory_order_relaxed);
  return policy_.check_head(head);
}

void HttpServer::offload(server::WorkerPool& pool, Responder respond,
                         std::function<HttpResponse()> work) {
  const bool queued = pool.try_submit([respond, work = std::move(work)] { respond(work()); });
  if (!queued) {
    stats_.overloaded.fetch_add(1, std::memory_order_relaxed);
    HttpResponse r = server::error_response(server::http_error(
        503, "overloaded", "every worker is busy and the queue is full; retry shortly"));
    r.headers.emplace_back("Retry-After", "1");
    respond(std::move(r));
  }
}

void HttpServer::handle(HttpRequest request, Responder respond) {
  const RouteMatch m = server::match_route(request.path);
  switch (m.route) {
    case Route::kDashboard:
    case Route::kHealthz:
      return respond(observability_.serve(m.route));
    case Route::kReadyz:
    case Route::kMetrics:
    case Route::kStats:
      return offload(*ops_workers_, std::move(respond),
                     [this, route = m.route] { return observability_.serve(route); });
    case Route::kKv:
    case Route::kConversation:
    case Route::kAiConfig:
      if (local_store_) return respond(data_.serve(m, request));
      // A near cache hit on Redis: answered here, no thread hop.
      if (auto local = data_.serve_if_local(m, request)) return respond(std::move(*local));
      break;
    case Route::kToken:
      // A fresh token from a local store: no fetch, no wait, no thread hop.
      if (local_store_) {
        if (auto fresh = tokens_.serve_fresh(m)) return respond(std::move(*fresh));
      }
      break;
    case Route::kTokenInvalidate:
      if (local_store_) return respond(tokens_.serve(m, request));
      break;
    case Route::kTokenRefresh:
    case Route::kExport:  // pages of many entries: on a worker
    case Route::kUnknown:
      break;
  }
  if (m.route == Route::kUnknown) {  // check_head() refused it already
    return respond(server::error_response(server::http_error(404, "not_found", "no such route")));
  }
  // The views in `m` point into the request, which moves into the task.
  auto shared = std::make_shared<HttpRequest>(std::move(request));
  const bool token_route = m.route == Route::kToken || m.route == Route::kTokenInvalidate ||
                           m.route == Route::kTokenRefresh;
  offload(*workers_, std::move(respond), [this, shared, token_route] {
    const RouteMatch again = server::match_route(shared->path);
    return token_route ? tokens_.serve(again, *shared) : data_.serve(again, *shared);
  });
}

void HttpServer::answered(const server::AnsweredRequest& a) {
  if (a.checked) stats_.in_flight.fetch_sub(1, std::memory_order_relaxed);
  stats_.answered(a.method, a.path, a.remote, a.status, a.seconds, options_.access_log);
}

}  // namespace

Result<std::shared_ptr<Server>> Server::create(std::shared_ptr<AssistantCache> cache,
                                               std::shared_ptr<TokenManager> tokens,
                                               ServerOptions options) {
  AICACHE_TRY(check_options(cache.get(), options));
  AICACHE_ASSIGN_OR_RETURN(ListenAddress address, parse_listen(options.listen));
  if (options.api_token.empty() && !is_loopback_host(address.host)) {
    return make_error(ErrorCode::kConfig,
                      fmt::format("refusing to listen on {} without an API token: set "
                                  "AICACHE_API_TOKEN, or listen on a loopback address "
                                  "(127.0.0.1, ::1, localhost)",
                                  options.listen));
  }
  return std::shared_ptr<Server>(new HttpServer(std::move(cache), std::move(tokens),
                                                std::move(options), std::move(address)));
}

}  // namespace aicache
