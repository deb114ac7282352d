// Server on cpp-httplib: one pre-routing handler answers every request that
// has no body (the fast path: no regex, no body read); requests with a body
// are answered by catch-all handlers after httplib has read the body, so the
// body limit (413) applies and a keep-alive connection never holds an unread
// body. Both paths go through Service::dispatch.
//
// Metrics and the access log are written from httplib's logger, which runs
// once per answered request, errors httplib makes itself (400, 413, 414)
// included.
#include "aicache/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fmt/format.h>
#include <httplib.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <ctime>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "aicache/log.h"
#include "server/connections.h"
#include "server/dashboard_html.h"
#include "server/http_errors.h"
#include "server/metrics.h"
#include "server/routes.h"

namespace aicache {
namespace {

using server::ErrorOrigin;
using server::HttpError;
using server::Route;
using server::RouteMatch;
using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kJson = "application/json";
// Longer paths are refused before any matching (keys are at most 250 bytes).
constexpr std::size_t kMaxPathBytes = 2048;
// Nesting accepted in PUT bodies.
constexpr std::size_t kMaxJsonDepth = 128;
// A token call slower than this may have fetched; only then is the fetch
// counter consulted (TokenManager::stats() reads the store).
constexpr auto kFetchProbeThreshold = std::chrono::milliseconds(1);

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

bool is_loopback(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6) != 0;
  }
  return false;
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

bool has_body(const httplib::Request& req) {
  if (req.has_header("Transfer-Encoding")) return true;
  const auto length = req.get_header_value("Content-Length");
  return !length.empty() && length != "0";
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

// The start of the request a worker thread is serving (set in pre-routing,
// read in the logger on the same thread).
struct RequestTiming {
  bool started = false;
  SteadyClock::time_point start;
};
thread_local RequestTiming t_timing;

std::string_view status_code_name(int status) {
  switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 416: return "range_not_satisfiable";
    case 503: return "unavailable";
    default: return status < 500 ? "bad_request" : "internal";
  }
}

server::ConnectionLimits connection_limits(const ServerOptions& options) {
  using std::chrono::milliseconds;
  server::ConnectionLimits limits;
  limits.ready_threads = options.threads;
  limits.max_connections = options.max_connections;
  limits.keep_alive_timeout = milliseconds(options.keep_alive_timeout);
  limits.io_timeout = milliseconds(options.io_timeout);
  limits.request_timeout = milliseconds(options.request_timeout);
  return limits;
}

// --- The service ------------------------------------------------------------------

class HttpServer final : public Server {
 public:
  HttpServer(std::shared_ptr<AssistantCache> cache, std::shared_ptr<TokenManager> tokens,
             ServerOptions options, ListenAddress address)
      : cache_(std::move(cache)),
        tokens_(std::move(tokens)),
        options_(std::move(options)),
        address_(std::move(address)),
        started_at_(SteadyClock::now()),
        limits_(connection_limits(options_)),
        http_(limits_, connections_),
        http_requests_("aicache_http_requests_total",
                       "HTTP requests answered, by route template, method and status.",
                       {"route", "method", "status"}),
        http_duration_("aicache_http_request_duration_seconds",
                       "Time from the parsed request head to the answer, by route template.",
                       {"route"}, server::latency_buckets()),
        fetch_duration_("aicache_token_fetch_duration_seconds",
                        "Duration of token requests served by this server that went upstream: "
                        "every POST .../refresh, and every GET of a token during which this "
                        "process fetched (the fetch counter moved). Background refreshes are "
                        "not observed.",
                        {"channel", "app"}, server::latency_buckets()) {}

  ~HttpServer() override { stop(); }

  Status start() override;
  std::uint16_t port() const override { return port_.load(); }
  void stop() override;
  void wait() override;

 private:
  void configure();
  httplib::Server::HandlerResponse pre_route(const httplib::Request& req, httplib::Response& res);
  void dispatch(const httplib::Request& req, httplib::Response& res);
  void on_answered(const httplib::Request& req, const httplib::Response& res);

  void serve_data(const RouteMatch& m, const httplib::Request& req, httplib::Response& res);
  void set_ttl_header(const RouteMatch& m, httplib::Response& res);
  void serve_token(const RouteMatch& m, const httplib::Request& req, httplib::Response& res);
  void serve_readyz(httplib::Response& res);
  void serve_stats(httplib::Response& res);
  void serve_metrics(httplib::Response& res);

  // After a token call: observe its duration if this process fetched.
  void observe_token_call(std::string_view channel, std::string_view app,
                          SteadyClock::duration took, bool always);
  void note_error(const Error& error);

  static void send_json(httplib::Response& res, int status, const std::string& body);
  static void send_error(httplib::Response& res, const HttpError& error);

  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> tokens_;
  const ServerOptions options_;
  const ListenAddress address_;
  const SteadyClock::time_point started_at_;

  const server::ConnectionLimits limits_;
  server::ConnectionStats connections_;
  server::Listener http_;
  std::thread thread_;
  std::atomic<std::uint16_t> port_{0};

  std::mutex state_mutex_;
  std::condition_variable stopped_cv_;
  bool running_ = false;  // guarded by state_mutex_
  bool stopped_ = false;  // guarded by state_mutex_

  // Figures of this server.
  std::atomic<std::uint64_t> requests_total_{0};
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::uint64_t> sets_{0};            // successful PUTs
  std::atomic<std::uint64_t> store_failures_{0};  // store outages this server answered
  std::atomic<std::uint64_t> last_store_errors_{0};  // AssistantCache's, when last read
  server::CounterFamily http_requests_;
  server::HistogramFamily http_duration_;
  server::HistogramFamily fetch_duration_;
  std::mutex fetch_counts_mutex_;
  std::map<std::string, std::uint64_t, std::less<>> fetch_counts_;  // "channel/app" → fetches
};

// --- Lifecycle ------------------------------------------------------------------------

namespace {

// cpp-httplib 0.11 listens with a backlog of 5 and offers no way to change
// it. Clients that reconnect (keep-alive ends after 1000 requests) or arrive
// in bursts then overflow the queue, their SYNs are dropped, and they retry
// after a second: p99 latencies of hundreds of milliseconds under wrk. On
// Linux a second listen() on a listening socket changes its backlog, so the
// bound socket is found among this process's descriptors (listening, on our
// port) and given a real backlog.
void widen_listen_backlog(std::uint16_t port) {
  DIR* fds = ::opendir("/proc/self/fd");
  if (fds == nullptr) return;
  while (const dirent* entry = ::readdir(fds)) {
    int fd = -1;
    const std::string_view name = entry->d_name;
    if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc{}) continue;
    int listening = 0;
    socklen_t length = sizeof(listening);
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0 || !listening) {
      continue;
    }
    sockaddr_storage address{};
    length = sizeof(address);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) continue;
    std::uint16_t bound = 0;
    if (address.ss_family == AF_INET) {
      bound = ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
    } else if (address.ss_family == AF_INET6) {
      bound = ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
    }
    if (bound == port) (void)::listen(fd, SOMAXCONN);
  }
  ::closedir(fds);
}

}  // namespace

Status HttpServer::start() {
  {
    std::lock_guard lock(state_mutex_);
    if (running_ || stopped_) {
      return make_error(ErrorCode::kFailedPrecondition, "the server was already started");
    }
  }
  configure();
  int bound = address_.port;
  if (address_.port == 0) {
    bound = http_.bind_to_any_port(address_.host);
  } else if (!http_.bind_to_port(address_.host, address_.port)) {
    bound = -1;
  }
  if (bound <= 0) {
    return make_error(ErrorCode::kUnavailable,
                      fmt::format("cannot listen on {}", options_.listen));
  }
  port_.store(static_cast<std::uint16_t>(bound));
  widen_listen_backlog(static_cast<std::uint16_t>(bound));
  {
    std::lock_guard lock(state_mutex_);
    running_ = true;
  }
  thread_ = std::thread([this] { http_.listen_after_bind(); });
  // stop() before the listener runs would be lost; wait until it runs.
  while (!http_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  log_message(LogLevel::kInfo,
              fmt::format("serving on {}:{}", address_.host, port_.load()));
  return {};
}

void HttpServer::stop() {
  std::unique_lock lock(state_mutex_);
  if (!running_) return;
  running_ = false;
  // Connections waiting on their clients close now; requests being handled
  // finish and are answered.
  http_.interrupt();
  // Stops accepting; the task queue's shutdown then lets every queued and
  // running request finish before listen_after_bind() returns.
  http_.stop();
  if (thread_.joinable()) thread_.join();
  stopped_ = true;
  lock.unlock();
  stopped_cv_.notify_all();
}

void HttpServer::wait() {
  std::unique_lock lock(state_mutex_);
  stopped_cv_.wait(lock, [this] { return stopped_; });
}

void HttpServer::configure() {
  // Connections are served by server::Listener's loop (keep-alive, timeouts
  // and deadlines: see server/connections.h), on a thread each.
  http_.new_task_queue = [this] { return new server::ConnectionWorkers(limits_, connections_); };
  // Only for the Keep-Alive header httplib writes; the loop enforces them.
  http_.set_keep_alive_max_count(limits_.max_requests_per_connection);
  http_.set_keep_alive_timeout(static_cast<time_t>(options_.keep_alive_timeout.count()));
  http_.set_payload_max_length(options_.max_body_bytes);
  http_.set_tcp_nodelay(true);

  http_.set_pre_routing_handler(
      [this](const httplib::Request& req, httplib::Response& res) { return pre_route(req, res); });
  auto handler = [this](const httplib::Request& req, httplib::Response& res) {
    dispatch(req, res);
  };
  // Only requests with a body reach these (paths are at most kMaxPathBytes).
  // "[\s\S]*", not ".*": '.' does not match '\n' or '\r', and a path may
  // decode to them (%0A); such a key must get dispatch()'s 400, not
  // httplib's own 404.
  constexpr const char* kAnyPath = "[\\s\\S]*";
  http_.Get(kAnyPath, handler);
  http_.Post(kAnyPath, handler);
  http_.Put(kAnyPath, handler);
  http_.Delete(kAnyPath, handler);
  http_.Patch(kAnyPath, handler);
  http_.Options(kAnyPath, handler);

  // Errors httplib answers itself (400, 404, 413, 414, ...) get the JSON
  // shape; answers that already have a body are left alone.
  http_.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message = res.status == 413
                              ? "the request body is over the limit"
                              : fmt::format("the request was refused (HTTP {})", res.status);
    send_error(res, server::http_error(res.status, std::string(status_code_name(res.status)),
                                       std::move(message)));
    return httplib::Server::HandlerResponse::Handled;
  }));
  http_.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        log_message(LogLevel::kError, fmt::format("request failed: {}", what));
        send_error(res, server::http_error(500, "internal", "internal error"));
      });
  http_.set_logger(
      [this](const httplib::Request& req, const httplib::Response& res) { on_answered(req, res); });
}

// --- Routing ----------------------------------------------------------------------------

httplib::Server::HandlerResponse HttpServer::pre_route(const httplib::Request& req,
                                                       httplib::Response& res) {
  t_timing = {true, SteadyClock::now()};
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  if (has_body(req) && req.path.size() <= kMaxPathBytes) {
    return httplib::Server::HandlerResponse::Unhandled;  // read the body first
  }
  dispatch(req, res);
  return httplib::Server::HandlerResponse::Handled;
}

void HttpServer::dispatch(const httplib::Request& req, httplib::Response& res) {
  if (req.path.size() > kMaxPathBytes) {
    send_error(res, server::http_error(414, "uri_too_long", "the path is too long"));
    return;
  }
  const RouteMatch m = server::match_route(req.path);
  if (m.route == Route::kUnknown) {
    send_error(res, server::http_error(404, "not_found", "no such route"));
    return;
  }
  if (!server::method_allowed(m.route, req.method)) {
    res.set_header("Allow", std::string(server::allowed_methods(m.route)));
    send_error(res, server::http_error(405, "method_not_allowed",
                                       fmt::format("{} is not allowed here; allowed: {}",
                                                   req.method,
                                                   server::allowed_methods(m.route))));
    return;
  }
  if (server::needs_auth(m.route) && !options_.api_token.empty()) {
    const std::string& header = req.get_header_value("Authorization");
    constexpr std::string_view kBearer = "bearer ";
    bool ok = false;
    if (header.size() > kBearer.size()) {
      std::string scheme = header.substr(0, kBearer.size());
      for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (scheme == kBearer) {
        ok = constant_time_equals(std::string_view(header).substr(kBearer.size()),
                                  options_.api_token);
      }
    }
    if (!ok) {
      res.set_header("WWW-Authenticate", "Bearer realm=\"aicache\"");
      send_error(res, server::http_error(401, "unauthorized",
                                         header.empty() ? "an API token is required"
                                                        : "the API token is wrong"));
      return;
    }
  }
  switch (m.route) {
    case Route::kDashboard:
      res.set_content(server::kDashboardHtml.data(), server::kDashboardHtml.size(),
                      "text/html; charset=utf-8");
      return;
    case Route::kHealthz: send_json(res, 200, R"({"status":"ok"})"); return;
    case Route::kReadyz: serve_readyz(res); return;
    case Route::kMetrics: serve_metrics(res); return;
    case Route::kStats: serve_stats(res); return;
    case Route::kKv:
    case Route::kConversation:
    case Route::kAiConfig: serve_data(m, req, res); return;
    case Route::kToken:
    case Route::kTokenInvalidate:
    case Route::kTokenRefresh: serve_token(m, req, res); return;
    case Route::kUnknown: return;
  }
}

void HttpServer::on_answered(const httplib::Request& req, const httplib::Response& res) {
  double seconds = 0;
  if (t_timing.started) {
    seconds = std::chrono::duration<double>(SteadyClock::now() - t_timing.start).count();
    t_timing.started = false;
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
  }
  requests_total_.fetch_add(1, std::memory_order_relaxed);
  const std::string_view route = server::route_template(
      req.path.size() > kMaxPathBytes ? Route::kUnknown : server::match_route(req.path).route);
  // Methods are from httplib's fixed list (anything else is a 400 before
  // routing, with an empty method).
  const std::string_view method = req.method.empty() ? std::string_view("unknown") : req.method;
  const std::string status = std::to_string(res.status);
  http_requests_.inc({route, method, status});
  http_duration_.observe({route}, seconds);
  if (options_.access_log) {
    log_message(LogLevel::kInfo,
                fmt::format("http method={} route={} status={} duration_ms={:.3f} remote={}",
                            method, route, res.status, seconds * 1000, req.remote_addr));
  }
}

void HttpServer::send_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, std::string(kJson));
}

void HttpServer::send_error(httplib::Response& res, const HttpError& error) {
  send_json(res, error.status, server::error_body(error));
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
void HttpServer::set_ttl_header(const RouteMatch& m, httplib::Response& res) {
  Result<KeyTtl> ttl = KeyTtl{};
  if (m.route == Route::kKv) {
    ttl = cache_->ttl(m.id);
  } else {
    auto key = m.route == Route::kConversation ? cache_->keys().conversation(m.id)
                                               : cache_->keys().ai_config(m.id);
    if (!key) return;
    ttl = cache_->store().ttl(*key);
  }
  if (!ttl) return;
  switch (ttl->state) {
    case KeyTtl::State::kMissing:
      return;
    case KeyTtl::State::kPersistent:
      res.set_header("X-Aicache-Ttl", "never");
      return;
    case KeyTtl::State::kExpiring:
      res.set_header("X-Aicache-Ttl", std::to_string((ttl->remaining.count() + 999) / 1000));
      return;
  }
}

void HttpServer::serve_data(const RouteMatch& m, const httplib::Request& req,
                            httplib::Response& res) {
  auto fail = [&](const Error& error) {
    note_error(error);
    send_error(res, server::to_http_error(error, ErrorOrigin::kData));
  };
  if (req.method == "GET" || req.method == "HEAD") {
    Result<std::optional<JsonDocument>> got =
        m.route == Route::kKv             ? cache_->get(m.id)
        : m.route == Route::kConversation ? cache_->get_conversation(m.id)
                                          : cache_->get_ai_config(m.id);
    if (!got) return fail(got.error());
    if (!*got) {
      send_error(res, server::http_error(404, "not_found", "no entry under this key"));
      return;
    }
    res.status = 200;
    const std::string_view text = (*got)->text();
    res.set_content(text.data(), text.size(), std::string(kJson));
    if (req.method == "HEAD") set_ttl_header(m, res);
    return;
  }
  if (req.method == "DELETE") {
    Result<bool> removed = m.route == Route::kKv             ? cache_->remove(m.id)
                           : m.route == Route::kConversation ? cache_->remove_conversation(m.id)
                                                             : cache_->remove_ai_config(m.id);
    if (!removed) return fail(removed.error());
    send_json(res, 200, *removed ? R"({"deleted":true})" : R"({"deleted":false})");
    return;
  }
  // PUT: ?ttl=SECONDS, strict.
  Ttl ttl = Ttl::use_default();
  bool removes = false;
  if (req.has_param("ttl")) {
    if (req.get_param_value_count("ttl") != 1) {
      send_error(res, server::http_error(400, "invalid_argument", "ttl is given more than once"));
      return;
    }
    const std::string text = req.get_param_value("ttl");
    std::int64_t secs = -1;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), secs);
    // Up to 100 years; digits only (from_chars would accept a '-').
    constexpr std::int64_t kMaxTtl = 100LL * 365 * 24 * 3600;
    if (text.empty() || text[0] == '-' || ec != std::errc() ||
        end != text.data() + text.size() || secs < 0 || secs > kMaxTtl) {
      send_error(res, server::http_error(
                          400, "invalid_argument",
                          "ttl must be a whole number of seconds, 0 (removes) or more"));
      return;
    }
    ttl = Ttl(std::chrono::seconds(secs));
    removes = secs == 0;
  }
  auto doc = JsonDocument::parse(
      req.body, JsonLimits{.max_depth = kMaxJsonDepth, .max_bytes = options_.max_body_bytes});
  if (!doc) {
    send_error(res, server::http_error(400, "invalid_json",
                                       fmt::format("the body is not JSON: {}", doc.error().message)));
    return;
  }
  Status stored = m.route == Route::kKv             ? cache_->set(m.id, *doc, ttl)
                  : m.route == Route::kConversation ? cache_->set_conversation(m.id, *doc, ttl)
                                                    : cache_->set_ai_config(m.id, *doc, ttl);
  if (!stored) return fail(stored.error());
  if (!removes) sets_.fetch_add(1, std::memory_order_relaxed);
  send_json(res, 200, removes ? R"({"stored":false})" : R"({"stored":true})");
}

// --- Token routes ---------------------------------------------------------------------

void HttpServer::serve_token(const RouteMatch& m, const httplib::Request& req,
                             httplib::Response& res) {
  auto fail = [&](const Error& error) {
    note_error(error);
    send_error(res, server::to_http_error(error, ErrorOrigin::kToken));
  };
  if (auto valid = validate_key_part(m.channel, "channel"); !valid) return fail(valid.error());
  if (auto valid = validate_key_part(m.app, "app id"); !valid) return fail(valid.error());
  if (!tokens_) {
    send_error(res, server::http_error(404, "not_found", "no token apps are configured"));
    return;
  }
  res.set_header("Cache-Control", "no-store");
  auto send_token = [&](const Token& token) {
    send_json(res, 200,
              dump({{"access_token", token.access_token},
                    {"expires_in", token.expires_in.count()}}));
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
      send_error(res, server::http_error(
                          400, "invalid_json",
                          R"(the body must be {"access_token": "..."} with the rejected token)"));
      return;
    }
    auto invalidated =
        tokens_->invalidate(m.channel, m.app, token->get_ref<const std::string&>());
    if (!invalidated) return fail(invalidated.error());
    send_json(res, 200, *invalidated ? R"({"invalidated":true})" : R"({"invalidated":false})");
    return;
  }

  const bool refresh = m.route == Route::kTokenRefresh;
  bool platform_force = false;
  if (refresh && req.has_param("force_refresh")) {
    const std::string value = req.get_param_value("force_refresh");
    if (req.get_param_value_count("force_refresh") != 1 ||
        (value != "true" && value != "1" && value != "false" && value != "0")) {
      send_error(res, server::http_error(400, "invalid_argument",
                                         "force_refresh must be true, false, 1 or 0"));
      return;
    }
    platform_force = value == "true" || value == "1";
  }
  const auto started = SteadyClock::now();
  auto token = refresh ? tokens_->refresh(m.channel, m.app, platform_force)
                       : tokens_->get(m.channel, m.app);
  const auto took = SteadyClock::now() - started;
  const bool known = token || (token.error().code != ErrorCode::kNotFound &&
                               token.error().code != ErrorCode::kInvalidArgument);
  if (known) observe_token_call(m.channel, m.app, took, refresh);
  if (!token) return fail(token.error());
  send_token(*token);
}

void HttpServer::observe_token_call(std::string_view channel, std::string_view app,
                                    SteadyClock::duration took, bool always) {
  if (!always && took < kFetchProbeThreshold) return;  // a store hit
  const std::string key = fmt::format("{}/{}", channel, app);
  bool fetched = always;
  for (const TokenAppStats& s : tokens_->stats()) {
    if (s.channel != channel || s.app_key != app) continue;
    std::lock_guard lock(fetch_counts_mutex_);
    std::uint64_t& seen = fetch_counts_[key];
    if (s.fetches > seen) fetched = true;
    seen = s.fetches;
  }
  if (fetched) {
    fetch_duration_.observe({channel, app}, std::chrono::duration<double>(took).count());
  }
}

// --- Operations routes ------------------------------------------------------------------

void HttpServer::serve_readyz(httplib::Response& res) {
  auto stats = cache_->store().stats();
  if (!stats) {
    send_json(res, 503,
              dump({{"status", "unavailable"},
                    {"error", {{"code", to_string(stats.error().code)},
                               {"message", stats.error().message}}}}));
    return;
  }
  send_json(res, 200, R"({"status":"ready"})");
}

void HttpServer::serve_stats(httplib::Response& res) {
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
      {"connections", {{"open", connections_.open.load()},
                       {"waiting", connections_.waiting.load()},
                       {"threads", connections_.threads.load()},
                       {"max", options_.max_connections},
                       {"accepted_total", connections_.accepted.load()},
                       {"timed_out_total", connections_.timed_out.load()}}}};
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
  send_json(res, 200, out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void HttpServer::serve_metrics(httplib::Response& res) {
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
  w.family("aicache_http_connections_open", "Connections being served.", "gauge");
  w.sample("aicache_http_connections_open", none,
           static_cast<double>(connections_.open.load()));
  w.family("aicache_http_connections_waiting",
           "Connections accepted and waiting for a thread (max_connections reached).", "gauge");
  w.sample("aicache_http_connections_waiting", none,
           static_cast<double>(connections_.waiting.load()));
  w.family("aicache_http_connections_total", "Connections accepted.", "counter");
  w.sample("aicache_http_connections_total", none, connections_.accepted.load());
  w.family("aicache_http_connection_timeouts_total",
           "Connections closed because a request or response missed its deadline or made no "
           "progress (slow or stalled clients).",
           "counter");
  w.sample("aicache_http_connection_timeouts_total", none, connections_.timed_out.load());
  w.family("aicache_uptime_seconds", "Seconds since the server was created.", "gauge");
  w.sample("aicache_uptime_seconds", none,
           std::chrono::duration<double>(SteadyClock::now() - started_at_).count());

  res.status = 200;
  res.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
}

}  // namespace

Result<std::unique_ptr<Server>> Server::create(std::shared_ptr<AssistantCache> cache,
                                               std::shared_ptr<TokenManager> tokens,
                                               ServerOptions options) {
  if (!cache) return make_error(ErrorCode::kInvalidArgument, "the server needs a cache");
  if (options.max_connections == 0) {
    return make_error(ErrorCode::kInvalidArgument, "max_connections must be positive");
  }
  options.threads = std::min(options.threads, options.max_connections);
  if (options.max_body_bytes == 0) {
    return make_error(ErrorCode::kInvalidArgument, "max_body_bytes must be positive");
  }
  if (options.io_timeout.count() <= 0 || options.request_timeout.count() <= 0 ||
      options.keep_alive_timeout.count() < 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "io_timeout and request_timeout must be positive and keep_alive_timeout "
                      "not negative");
  }
  auto address = parse_listen(options.listen);
  if (!address) return std::unexpected(std::move(address.error()));
  if (options.api_token.empty() && !is_loopback(address->host)) {
    return make_error(ErrorCode::kConfig,
                      fmt::format("refusing to listen on {} without an API token: set "
                                  "AICACHE_API_TOKEN, or listen on a loopback address "
                                  "(127.0.0.1, ::1, localhost)",
                                  options.listen));
  }
  return std::unique_ptr<Server>(new HttpServer(std::move(cache), std::move(tokens),
                                                std::move(options), std::move(*address)));
}

}  // namespace aicache
