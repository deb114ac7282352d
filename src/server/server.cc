// The service: routes, policy and figures over server::HttpTransport
// (Boost.Beast; see http_transport.h for framing, limits and deadlines).
//
// Where a request runs. The I/O threads must never block, so:
//   * /healthz, the dashboard and every refusal are answered on the I/O
//     thread;
//   * on a process-local store (the memory store never blocks), the data
//     routes, token invalidation and a token still fresh in the store are
//     answered there too — the common path pays no thread hop;
//   * everything else that may block (any call into Redis, a token fetch or
//     the wait for another's) runs on the worker pool, and /metrics,
//     /readyz and /v1/stats on a pool of their own, so that a stopped Redis
//     holding every worker cannot also hold the operators' view of it.
//   A full queue answers 503 at once.
//
// Who may ask. Every check that needs only the head (route, method, Host,
// Origin, API token) is made before the body is read.
#include "aicache/server.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <ctime>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "aicache/config.h"
#include "aicache/log.h"
#include "aicache/net.h"
#include "server/dashboard_html.h"
#include "server/http_errors.h"
#include "server/http_message.h"
#include "server/http_transport.h"
#include "server/metrics.h"
#include "server/routes.h"
#include "server/worker_pool.h"

namespace aicache {
namespace {

using server::ErrorOrigin;
using server::HttpError;
using server::HttpRequest;
using server::HttpResponse;
using server::Responder;
using server::Route;
using server::RouteMatch;
using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kJson = "application/json";
// Longer paths are refused before any matching (keys are at most 250 bytes).
constexpr std::size_t kMaxPathBytes = 2048;
// Nesting accepted in PUT bodies.
constexpr std::size_t kMaxJsonDepth = 128;
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


// --- Small helpers ----------------------------------------------------------------

// Compares in time that depends only on the lengths, never on where the
// first difference is.
bool constant_time_equals(std::string_view a, std::string_view b) {
  const std::size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (std::size_t i = 0; i < n; ++i) {
    const auto ca = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto cb = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff |= static_cast<unsigned>(ca ^ cb);
  }
  return diff == 0;
}


std::string rfc3339_utc(Clock::WallTimePoint t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(
      std::chrono::time_point_cast<std::chrono::seconds>(t));
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}



// Whatever a handler may have received, nlohmann never throws while dumping.
std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// {"access_token":"...","expires_in":N}: the answer the token route gives on
// every hit, written directly (building and dumping a JSON tree for it was an
// eighth of the service's time on that route). A token with a character that
// JSON would escape takes the general path.
std::string token_body(const Token& token) {
  const std::string& t = token.access_token;
  const bool plain = std::all_of(t.begin(), t.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f &&
           c != '"' && c != '\\';
  });
  if (!plain) {
    return dump({{"access_token", t}, {"expires_in", token.expires_in.count()}});
  }
  return fmt::format(R"({{"access_token":"{}","expires_in":{}}})", t, token.expires_in.count());
}

HttpResponse json_response(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.content_type = std::string(kJson);
  r.body = std::move(body);
  return r;
}

HttpResponse error_response(const HttpError& error) {
  HttpResponse r = json_response(error.status, server::error_body(error));
  if (error.retry_after) r.headers.emplace_back("Retry-After", std::to_string(*error.retry_after));
  return r;
}

// Threat model, finding 1: /v1/kv must not write the typed entries (a forged
// token, a lease that stops every refresh). The library refuses too
// (keys.h); this answer names the route that owns the key.
std::optional<HttpError> refuse_reserved_write(std::string_view key) {
  std::string_view route;
  switch (key_family(key)) {
    case KeyFamily::kGeneric: return std::nullopt;
    case KeyFamily::kAccessToken:
    case KeyFamily::kTokenState:
      route = "the token routes /v1/tokens/{channel}/{app} (GET, POST .../invalidate, "
              "POST .../refresh)";
      break;
    case KeyFamily::kConversation: route = "/v1/conversations/{id}"; break;
    case KeyFamily::kAiConfig: route = "/v1/ai-configs/{user_id}"; break;
    case KeyFamily::kReserved: route = "the typed routes"; break;
  }
  return server::http_error(
      400, "reserved_key",
      fmt::format("keys starting with \"{}\" are reserved for typed entries; /v1/kv may read "
                  "them but not write them: use {}",
                  kReservedKeyPrefix, route));
}

// Methods as metric labels: a fixed set, so a client cannot make new series.
std::string_view method_label(std::string_view method) {
  static constexpr std::string_view kKnown[] = {"GET",    "HEAD",    "POST", "PUT",
                                                "DELETE", "OPTIONS", "PATCH"};
  if (method.empty()) return "unknown";
  for (std::string_view m : kKnown) {
    if (m == method) return m;
  }
  return "other";
}

// The host part of a Host header or an origin's authority: "[::1]:8080" →
// "[::1]", "Example.org:80" → "example.org".
std::string host_name(std::string_view authority) {
  std::string_view host = authority;
  if (host.starts_with('[')) {
    const auto close = host.find(']');
    host = close == std::string_view::npos ? host : host.substr(0, close + 1);
  } else if (const auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  std::string out(host);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// --- The service ------------------------------------------------------------------

class HttpServer final : public Server, private server::RequestHandler {
 public:
  HttpServer(std::shared_ptr<AssistantCache> cache, std::shared_ptr<TokenManager> tokens,
             ServerOptions options, ListenAddress address)
      : cache_(std::move(cache)),
        tokens_(std::move(tokens)),
        options_(std::move(options)),
        address_(std::move(address)),
        started_at_(SteadyClock::now()),
        local_store_(cache_->process_local()),
        http_requests_("aicache_http_requests_total",
                       "HTTP requests answered, by route template, method and status.",
                       {"route", "method", "status"}),
        http_duration_("aicache_http_request_duration_seconds",
                       "Time from the parsed request head to the answer, by route template.",
                       {"route"}, server::latency_buckets()),
        fetch_duration_("aicache_token_fetch_duration_seconds",
                        "Duration of each call this process made to a platform's token API "
                        "(for a request, a refresh or the background refresher; each retry "
                        "counts), by app.",
                        {"channel", "app"}, server::latency_buckets()) {
    for (const std::string& host : options_.allowed_hosts) allowed_hosts_.push_back(host_name(host));
    // The token manager reports its fetches as they happen: no per-request
    // guessing, no store round trip.
    if (tokens_) {
      fetch_listener_ = tokens_->on_fetch([this](const TokenFetchEvent& fetch) {
        fetch_duration_.observe({fetch.channel, fetch.app_key},
                                std::chrono::duration<double>(fetch.duration).count());
      });
    }
  }

  ~HttpServer() override {
    stop();
    // The manager may outlive this server (it is shared).
    if (tokens_) tokens_->remove_fetch_listener(fetch_listener_);
  }

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

  std::optional<HttpResponse> check_browser_policy(const HttpRequest& head) const;
  // Runs `work` on `pool`, answering its result; 503 if the pool is full.
  void offload(server::WorkerPool& pool, Responder respond, std::function<HttpResponse()> work);

  HttpResponse serve_data(const RouteMatch& m, const HttpRequest& req);
  void set_ttl_header(const RouteMatch& m, HttpResponse& res);
  HttpResponse serve_token(const RouteMatch& m, const HttpRequest& req);
  HttpResponse serve_readyz();
  HttpResponse serve_stats();
  HttpResponse serve_metrics();

  // After a token call: observe its duration if this process fetched.
  void note_error(const Error& error);

  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> tokens_;
  const ServerOptions options_;
  const ListenAddress address_;
  const SteadyClock::time_point started_at_;
  const bool local_store_;  // store calls never block: answer on the I/O thread
  std::vector<std::string> allowed_hosts_;  // host names, lower case

  std::unique_ptr<server::WorkerPool> workers_;
  std::unique_ptr<server::WorkerPool> ops_workers_;
  std::unique_ptr<server::HttpTransport> transport_;

  std::mutex state_mutex_;
  bool started_ = false;  // guarded by state_mutex_
  bool stopped_ = false;  // guarded by state_mutex_

  // Figures of this server.
  std::atomic<std::uint64_t> requests_total_{0};
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::uint64_t> overloaded_{0};      // 503: the worker queue was full
  std::atomic<std::uint64_t> sets_{0};            // successful PUTs
  std::atomic<std::uint64_t> store_failures_{0};  // store outages this server answered
  std::atomic<std::uint64_t> last_store_errors_{0};  // AssistantCache's, when last read
  server::CounterFamily http_requests_;
  server::HistogramFamily http_duration_;
  server::HistogramFamily fetch_duration_;
  std::uint64_t fetch_listener_ = 0;  // TokenManager::on_fetch
};

// --- Lifecycle ------------------------------------------------------------------------

Status HttpServer::start() {
  {
    std::lock_guard lock(state_mutex_);
    if (started_) return make_error(ErrorCode::kFailedPrecondition, "the server was already started");
    started_ = true;
  }
  using std::chrono::milliseconds;
  auto transport = server::HttpTransport::create(
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
      *this);
  if (!transport) return std::unexpected(std::move(transport.error()));
  // Threads, sockets and event loops are made here; any that cannot be
  // (a pids or descriptor limit) is an error to report, not a crash.
  try {
    workers_ = std::make_unique<server::WorkerPool>("aicache-worker", options_.threads,
                                                    options_.max_queued_requests);
    ops_workers_ = std::make_unique<server::WorkerPool>("aicache-ops", kOpsThreads, kOpsQueue);
    transport_ = std::move(*transport);
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
  return {};
}

void HttpServer::stop() {
  std::lock_guard lock(state_mutex_);
  if (!started_ || stopped_) return;
  stopped_ = true;
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

// --- Transport callbacks ------------------------------------------------------------

HttpResponse HttpServer::refusal(int status, std::string_view code, std::string_view message) {
  return error_response(server::http_error(status, std::string(code), std::string(message)));
}

// Without an API token the service trusts local processes, and a web page
// is not one: a browser on this machine will send a page's requests to
// loopback. A foreign Host is a DNS-rebinding page that resolved its own
// name to 127.0.0.1 (and could read the answers); a foreign Origin or a
// cross-site fetch is a page posting across sites (CSRF: a forced token
// refresh burns the platform's daily quota). With an API token, a page
// cannot send the bearer header across origins without a CORS preflight,
// which the service never grants.
std::optional<HttpResponse> HttpServer::check_browser_policy(const HttpRequest& head) const {
  if (!options_.api_token.empty()) return std::nullopt;
  const auto host = head.header("Host");
  if (!host) return std::nullopt;  // HTTP/1.0 without Host: not a browser
  const std::string name = host_name(*host);
  const bool allowed = name == "localhost" || name == "127.0.0.1" || name == "[::1]" ||
                       std::find(allowed_hosts_.begin(), allowed_hosts_.end(), name) !=
                           allowed_hosts_.end();
  if (!allowed) {
    return error_response(server::http_error(
        403, "forbidden_host",
        "this Host is not served: use localhost, 127.0.0.1 or [::1], or list the name in "
        "AICACHE_ALLOWED_HOSTS"));
  }
  if (const auto site = head.header("Sec-Fetch-Site"); site && server::iequals(*site, "cross-site")) {
    return error_response(
        server::http_error(403, "forbidden_origin", "cross-site requests are not served"));
  }
  if (const auto origin = head.header("Origin")) {
    constexpr std::string_view kScheme = "http://";
    const bool own = origin->size() == kScheme.size() + host->size() &&
                     server::iequals(origin->substr(0, kScheme.size()), kScheme) &&
                     server::iequals(origin->substr(kScheme.size()), *host);
    if (!own) {
      return error_response(server::http_error(
          403, "forbidden_origin", "requests from other origins are not served"));
    }
  }
  return std::nullopt;
}

std::optional<HttpResponse> HttpServer::check_head(const HttpRequest& head) {
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  if (head.path.size() > kMaxPathBytes) {
    return error_response(server::http_error(414, "uri_too_long", "the path is too long"));
  }
  const RouteMatch m = server::match_route(head.path);
  if (m.route == Route::kUnknown) {
    return error_response(server::http_error(404, "not_found", "no such route"));
  }
  if (!server::method_allowed(m.route, head.method)) {
    HttpResponse r = error_response(server::http_error(
        405, "method_not_allowed",
        fmt::format("{} is not allowed here; allowed: {}", method_label(head.method),
                    server::allowed_methods(m.route))));
    r.headers.emplace_back("Allow", std::string(server::allowed_methods(m.route)));
    return r;
  }
  if (auto refused = check_browser_policy(head)) return refused;
  if (server::needs_auth(m.route) && !options_.api_token.empty()) {
    const std::string_view header = head.header("Authorization").value_or("");
    constexpr std::string_view kBearer = "bearer ";
    const bool ok = header.size() > kBearer.size() &&
                    server::iequals(header.substr(0, kBearer.size()), kBearer) &&
                    constant_time_equals(header.substr(kBearer.size()), options_.api_token);
    if (!ok) {
      HttpResponse r = error_response(server::http_error(
          401, "unauthorized",
          header.empty() ? "an API token is required" : "the API token is wrong"));
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"aicache\"");
      return r;
    }
  }
  return std::nullopt;
}

void HttpServer::offload(server::WorkerPool& pool, Responder respond,
                         std::function<HttpResponse()> work) {
  const bool queued = pool.try_submit([respond, work = std::move(work)] { respond(work()); });
  if (!queued) {
    overloaded_.fetch_add(1, std::memory_order_relaxed);
    HttpResponse r = error_response(server::http_error(
        503, "overloaded", "every worker is busy and the queue is full; retry shortly"));
    r.headers.emplace_back("Retry-After", "1");
    respond(std::move(r));
  }
}

void HttpServer::handle(HttpRequest request, Responder respond) {
  const RouteMatch m = server::match_route(request.path);
  switch (m.route) {
    case Route::kDashboard: {
      HttpResponse r;
      r.content_type = "text/html; charset=utf-8";
      r.static_body = server::kDashboardHtml;
      return respond(std::move(r));
    }
    case Route::kHealthz:
      return respond(json_response(200, R"({"status":"ok"})"));
    case Route::kReadyz:
      return offload(*ops_workers_, std::move(respond), [this] { return serve_readyz(); });
    case Route::kMetrics:
      return offload(*ops_workers_, std::move(respond), [this] { return serve_metrics(); });
    case Route::kStats:
      return offload(*ops_workers_, std::move(respond), [this] { return serve_stats(); });
    case Route::kKv:
    case Route::kConversation:
    case Route::kAiConfig:
      if (local_store_) return respond(serve_data(m, request));
      break;
    case Route::kToken:
      // A fresh token from a local store: no fetch, no wait, no thread hop.
      if (local_store_ && tokens_ && validate_key_part(m.channel, "channel") &&
          validate_key_part(m.app, "app id")) {
        auto fresh = tokens_->get_if_fresh(m.channel, m.app);
        if (fresh) {
          HttpResponse r = json_response(200, token_body(*fresh));
          r.headers.emplace_back("Cache-Control", "no-store");
          return respond(std::move(r));
        }
      }
      break;
    case Route::kTokenInvalidate:
      if (local_store_) return respond(serve_token(m, request));
      break;
    case Route::kTokenRefresh:
    case Route::kUnknown:
      break;
  }
  if (m.route == Route::kUnknown) {  // check_head() refused it already
    return respond(error_response(server::http_error(404, "not_found", "no such route")));
  }
  // The views in `m` point into the request, which moves into the task.
  auto shared = std::make_shared<HttpRequest>(std::move(request));
  const bool token_route = m.route == Route::kToken || m.route == Route::kTokenInvalidate ||
                           m.route == Route::kTokenRefresh;
  offload(*workers_, std::move(respond), [this, shared, token_route] {
    const RouteMatch again = server::match_route(shared->path);
    return token_route ? serve_token(again, *shared) : serve_data(again, *shared);
  });
}

void HttpServer::answered(const server::AnsweredRequest& a) {
  if (a.checked) in_flight_.fetch_sub(1, std::memory_order_relaxed);
  requests_total_.fetch_add(1, std::memory_order_relaxed);
  const std::string_view route = server::route_template(
      a.path.empty() || a.path.size() > kMaxPathBytes ? Route::kUnknown
                                                      : server::match_route(a.path).route);
  const std::string_view method = method_label(a.method);
  const std::string status = std::to_string(a.status);
  http_requests_.inc({route, method, status});
  http_duration_.observe({route}, a.seconds);
  if (options_.access_log) {
    log_message(LogLevel::kInfo,
                fmt::format("http method={} route={} status={} duration_ms={:.3f} remote={}",
                            method, route, a.status, a.seconds * 1000, a.remote));
  }
}

void HttpServer::note_error(const Error& error) {
  if (error.code == ErrorCode::kUnavailable || error.code == ErrorCode::kTimeout ||
      error.code == ErrorCode::kResourceExhausted) {
    store_failures_.fetch_add(1, std::memory_order_relaxed);
  }
}

// --- Data routes ----------------------------------------------------------------------

// X-Aicache-Ttl on a HEAD of a data route (only there: on Redis it costs a
// round trip, which a plain GET should not pay): the remaining whole seconds,
// rounded up (an entry with 200 ms left still exists, so it never reads 0), or
// "never". Left out if the store cannot tell (it failed, or the entry expired
// since it was read): the value is still answered.
void HttpServer::set_ttl_header(const RouteMatch& m, HttpResponse& res) {
  const Result<KeyTtl> ttl = m.route == Route::kKv             ? cache_->ttl(m.id)
                             : m.route == Route::kConversation ? cache_->conversation_ttl(m.id)
                                                               : cache_->ai_config_ttl(m.id);
  if (!ttl) return;
  switch (ttl->state) {
    case KeyTtl::State::kMissing:
      return;
    case KeyTtl::State::kPersistent:
      res.headers.emplace_back("X-Aicache-Ttl", "never");
      return;
    case KeyTtl::State::kExpiring:
      res.headers.emplace_back("X-Aicache-Ttl",
                               std::to_string((ttl->remaining.count() + 999) / 1000));
      return;
  }
}

HttpResponse HttpServer::serve_data(const RouteMatch& m, const HttpRequest& req) {
  auto fail = [&](const Error& error) {
    note_error(error);
    return error_response(server::to_http_error(error, ErrorOrigin::kData));
  };
  if (req.method == "GET" || req.method == "HEAD") {
    Lookup<JsonDocument> got = m.route == Route::kKv             ? cache_->get(m.id)
                               : m.route == Route::kConversation ? cache_->get_conversation(m.id)
                                                                 : cache_->get_ai_config(m.id);
    if (got.failed()) return fail(got.error());
    if (!got) return error_response(server::http_error(404, "not_found", "no entry under this key"));
    HttpResponse res = json_response(200, std::string(got->text()));
    if (req.method == "HEAD") set_ttl_header(m, res);
    return res;
  }
  // Writes from here on (DELETE, PUT).
  if (m.route == Route::kKv) {
    if (auto refused = refuse_reserved_write(m.id)) return error_response(*refused);
  }
  if (req.method == "DELETE") {
    Result<bool> removed = m.route == Route::kKv             ? cache_->remove(m.id)
                           : m.route == Route::kConversation ? cache_->remove_conversation(m.id)
                                                             : cache_->remove_ai_config(m.id);
    if (!removed) return fail(removed.error());
    return json_response(200, *removed ? R"({"deleted":true})" : R"({"deleted":false})");
  }
  // PUT: ?ttl=SECONDS, strict.
  Ttl ttl = Ttl::use_default();
  bool removes = false;
  if (req.query_count("ttl") > 0) {
    if (req.query_count("ttl") != 1) {
      return error_response(server::http_error(400, "invalid_argument", "ttl is given more than once"));
    }
    const std::string_view text = *req.query_value("ttl");
    std::int64_t secs = -1;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), secs);
    // Up to 100 years; digits only (from_chars would accept a '-').
    constexpr std::int64_t kMaxTtl = 100LL * 365 * 24 * 3600;
    if (text.empty() || text[0] == '-' || ec != std::errc() ||
        end != text.data() + text.size() || secs < 0 || secs > kMaxTtl) {
      return error_response(server::http_error(
          400, "invalid_argument", "ttl must be a whole number of seconds, 0 (removes) or more"));
    }
    ttl = Ttl(std::chrono::seconds(secs));
    removes = secs == 0;
  }
  auto doc = JsonDocument::parse(
      req.body, JsonLimits{.max_depth = kMaxJsonDepth, .max_bytes = options_.max_body_bytes});
  if (!doc) {
    return error_response(server::http_error(
        400, "invalid_json", fmt::format("the body is not JSON: {}", doc.error().message)));
  }
  Status stored = m.route == Route::kKv             ? cache_->set(m.id, *doc, ttl)
                  : m.route == Route::kConversation ? cache_->set_conversation(m.id, *doc, ttl)
                                                    : cache_->set_ai_config(m.id, *doc, ttl);
  if (!stored) return fail(stored.error());
  if (!removes) sets_.fetch_add(1, std::memory_order_relaxed);
  return json_response(200, removes ? R"({"stored":false})" : R"({"stored":true})");
}

// --- Token routes ---------------------------------------------------------------------

HttpResponse HttpServer::serve_token(const RouteMatch& m, const HttpRequest& req) {
  auto fail = [&](const Error& error) {
    note_error(error);
    HttpResponse r = error_response(server::to_http_error(error, ErrorOrigin::kToken));
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
  };
  if (auto valid = validate_key_part(m.channel, "channel"); !valid) return fail(valid.error());
  if (auto valid = validate_key_part(m.app, "app id"); !valid) return fail(valid.error());
  if (!tokens_) {
    return error_response(server::http_error(404, "not_found", "no token apps are configured"));
  }
  auto answer = [](int status, std::string body) {
    HttpResponse r = json_response(status, std::move(body));
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
  };

  if (m.route == Route::kTokenInvalidate) {
    auto body = JsonDocument::parse(req.body, JsonLimits{.max_depth = 4,
                                                         .max_bytes = options_.max_body_bytes});
    const nlohmann::json* token = nullptr;
    if (body && body->value().is_object()) {
      auto it = body->value().find("access_token");
      if (it != body->value().end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
        token = &*it;
      }
    }
    if (!token) {
      return answer(400, server::error_body(server::http_error(
                             400, "invalid_json",
                             R"(the body must be {"access_token": "..."} with the rejected token)")));
    }
    auto invalidated =
        tokens_->invalidate(m.channel, m.app, token->get_ref<const std::string&>());
    if (!invalidated) return fail(invalidated.error());
    return answer(200, *invalidated ? R"({"invalidated":true})" : R"({"invalidated":false})");
  }

  const bool refresh = m.route == Route::kTokenRefresh;
  bool platform_force = false;
  if (refresh && req.query_count("force_refresh") > 0) {
    const std::string_view value = *req.query_value("force_refresh");
    if (req.query_count("force_refresh") != 1 ||
        (value != "true" && value != "1" && value != "false" && value != "0")) {
      return answer(400, server::error_body(server::http_error(
                             400, "invalid_argument", "force_refresh must be true, false, 1 or 0")));
    }
    platform_force = value == "true" || value == "1";
  }
  auto token = refresh ? tokens_->refresh(m.channel, m.app, platform_force)
                       : tokens_->get(m.channel, m.app);
  if (!token) return fail(token.error());
  return answer(200, token_body(*token));
}

// --- Operations routes ------------------------------------------------------------------

HttpResponse HttpServer::serve_readyz() {
  auto stats = cache_->stats();
  if (!stats) {
    // /readyz answers anyone: the store's error (host, port, database,
    // user) goes to the log and to /v1/stats, behind the API token.
    log_message(LogLevel::kWarning, fmt::format("readyz: the store does not answer: {}",
                                                stats.error().message));
    return json_response(503, dump({{"status", "unavailable"},
                                    {"error", {{"code", to_string(stats.error().code)},
                                               {"message", "the store does not answer"}}}}));
  }
  return json_response(200, R"({"status":"ready"})");
}

HttpResponse HttpServer::serve_stats() {
  const server::TransportStats& connections = transport_->stats();
  nlohmann::ordered_json out;
  auto stats = cache_->stats();
  if (stats) {
    last_store_errors_.store(stats->store_errors, std::memory_order_relaxed);
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
  out["cache"] = {{"store_errors", std::max(last_store_errors_.load(), store_failures_.load())}};
  out["server"] = {
      {"requests_total", requests_total_.load()},
      {"uptime_seconds",
       std::chrono::duration_cast<std::chrono::seconds>(SteadyClock::now() - started_at_).count()},
      {"in_flight", in_flight_.load()},
      {"connections", {{"open", connections.open.load()},
                       {"max", options_.max_connections},
                       {"accepted_total", connections.accepted.load()},
                       {"over_capacity_total", connections.over_capacity.load()},
                       {"timed_out_total", connections.timed_out.load()},
                       {"refused_total", connections.refused.load()}}},
      {"threads", {{"io", transport_->io_threads()},
                   {"workers", workers_->threads()},
                   {"workers_busy", workers_->busy()},
                   {"queued", workers_->queued()},
                   {"overloaded_total", overloaded_.load()}}}};
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
  return json_response(200, out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

HttpResponse HttpServer::serve_metrics() {
  std::string text;
  text.reserve(8192);
  server::TextWriter w(text);
  const server::Labels none;

  auto stats = cache_->stats();
  if (stats) last_store_errors_.store(stats->store_errors, std::memory_order_relaxed);
  std::vector<TokenAppStats> apps;
  if (tokens_) apps = tokens_->stats();

  std::uint64_t token_sets = 0;
  for (const TokenAppStats& a : apps) {
    const std::uint64_t failed =
        a.fetch_failures_retryable + a.fetch_failures_configuration + a.fetch_failures_quota;
    token_sets += a.fetches > failed ? a.fetches - failed : 0;
  }

  if (stats) {
    const StoreStats& s = stats->store;
    w.family("aicache_cache_hits_total", "Reads the store answered with a value.", "counter");
    w.sample("aicache_cache_hits_total", none, s.hits);
    w.family("aicache_cache_misses_total", "Reads the store answered with a miss.", "counter");
    w.sample("aicache_cache_misses_total", none, s.misses);
  }
  w.family("aicache_cache_sets_total",
           "Entries this server stored: successful PUTs and tokens fetched by this process.",
           "counter");
  w.sample("aicache_cache_sets_total", none, sets_.load() + token_sets);
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
  }
  w.family("aicache_store_up", "1 if the store answered this scrape, else 0.", "gauge");
  w.sample("aicache_store_up", none, std::uint64_t{stats ? 1u : 0u});
  w.family("aicache_store_errors_total", "Store failures (unavailable, timeout, exhausted).",
           "counter");
  w.sample("aicache_store_errors_total", none,
           std::max(last_store_errors_.load(), store_failures_.load()));

  w.family("aicache_token_fetches_total",
           "Upstream token fetch attempts by this process, by outcome.", "counter");
  for (const TokenAppStats& a : apps) {
    const std::uint64_t failed =
        a.fetch_failures_retryable + a.fetch_failures_configuration + a.fetch_failures_quota;
    const std::pair<std::string_view, std::uint64_t> outcomes[] = {
        {"success", a.fetches > failed ? a.fetches - failed : 0},
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
  fetch_duration_.render(text);

  http_requests_.render(text);
  http_duration_.render(text);
  w.family("aicache_http_requests_in_flight", "Requests being served.", "gauge");
  w.sample("aicache_http_requests_in_flight", none, static_cast<double>(in_flight_.load()));
  const server::TransportStats& connections = transport_->stats();
  w.family("aicache_http_connections_open", "Connections open.", "gauge");
  w.sample("aicache_http_connections_open", none, static_cast<double>(connections.open.load()));
  w.family("aicache_http_connections_total", "Connections accepted.", "counter");
  w.sample("aicache_http_connections_total", none, connections.accepted.load());
  w.family("aicache_http_connections_over_capacity_total",
           "Connections answered 503 and closed because max_connections were open.", "counter");
  w.sample("aicache_http_connections_over_capacity_total", none,
           connections.over_capacity.load());
  w.family("aicache_http_connection_timeouts_total",
           "Connections closed because a request or response missed its deadline or made no "
           "progress (slow or stalled clients).",
           "counter");
  w.sample("aicache_http_connection_timeouts_total", none, connections.timed_out.load());
  w.family("aicache_http_requests_refused_total",
           "Requests the transport refused for their framing or size (400, 413, 415, 431).",
           "counter");
  w.sample("aicache_http_requests_refused_total", none, connections.refused.load());
  w.family("aicache_http_workers_busy", "Worker threads running a request.", "gauge");
  w.sample("aicache_http_workers_busy", none, static_cast<double>(workers_->busy()));
  w.family("aicache_http_requests_queued", "Requests waiting for a worker thread.", "gauge");
  w.sample("aicache_http_requests_queued", none, static_cast<double>(workers_->queued()));
  w.family("aicache_http_requests_overloaded_total",
           "Requests answered 503 because every worker was busy and the queue full.",
           "counter");
  w.sample("aicache_http_requests_overloaded_total", none, overloaded_.load());
  w.family("aicache_uptime_seconds", "Seconds since the server was created.", "gauge");
  w.sample("aicache_uptime_seconds", none,
           std::chrono::duration<double>(SteadyClock::now() - started_at_).count());

  HttpResponse res;
  res.content_type = "text/plain; version=0.0.4; charset=utf-8";
  res.body = std::move(text);
  return res;
}

}  // namespace

Result<std::shared_ptr<Server>> Server::create(std::shared_ptr<AssistantCache> cache,
                                               std::shared_ptr<TokenManager> tokens,
                                               ServerOptions options) {
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
  if (!options.api_token.empty()) {
    if (auto strong = validate_api_token(options.api_token); !strong) {
      return std::unexpected(std::move(strong.error()));
    }
  }
  auto address = parse_listen(options.listen);
  if (!address) return std::unexpected(std::move(address.error()));
  if (options.api_token.empty() && !is_loopback_host(address->host)) {
    return make_error(ErrorCode::kConfig,
                      fmt::format("refusing to listen on {} without an API token: set "
                                  "AICACHE_API_TOKEN, or listen on a loopback address "
                                  "(127.0.0.1, ::1, localhost)",
                                  options.listen));
  }
  return std::shared_ptr<Server>(new HttpServer(std::move(cache), std::move(tokens),
                                                std::move(options), std::move(*address)));
}

}  // namespace aicache
