#include "support/fake_platform.h"

#include <fmt/format.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace aicache::testing {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;
using TimePoint = Clock::TimePoint;

FakeFault FakeFault::platform_error(int code, std::string message) {
  FakeFault f;
  f.kind = Kind::kPlatformError;
  f.code = code;
  f.message = std::move(message);
  return f;
}
FakeFault FakeFault::oauth2_error(int http_status, std::string error_code, std::string message) {
  FakeFault f;
  f.kind = Kind::kPlatformError;
  f.http_status = http_status;
  f.error_code = std::move(error_code);
  f.message = std::move(message);
  return f;
}
FakeFault FakeFault::http_status_code(int status) {
  FakeFault f;
  f.kind = Kind::kHttpStatus;
  f.http_status = status;
  return f;
}
FakeFault FakeFault::non_json() { return FakeFault{.kind = Kind::kNonJson}; }
FakeFault FakeFault::truncated_json() { return FakeFault{.kind = Kind::kTruncatedJson}; }
FakeFault FakeFault::oversized(std::size_t bytes) {
  return FakeFault{.kind = Kind::kOversized, .bytes = bytes};
}
FakeFault FakeFault::close_connection() { return FakeFault{.kind = Kind::kCloseConnection}; }
FakeFault FakeFault::dingtalk_ban() { return FakeFault{.kind = Kind::kDingTalkBan}; }

namespace {

constexpr int kEndpoints = 8;

// A request body larger than this ends the connection unanswered: the
// clients under test send a few hundred bytes at most.
constexpr std::uint64_t kMaxRequestBody = 64 * 1024;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX escapes decoded; in a query '+' is a space (form encoding). A malformed
// escape is kept as it stands rather than refused: the handler then sees a
// wrong secret or app id and answers with the platform's error code, which
// is what a client under test must cope with.
std::string percent_decode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%' && i + 2 < in.size()) {
      const int hi = hex_digit(in[i + 1]);
      const int lo = hex_digit(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

using Params = std::map<std::string, std::string, std::less<>>;

// "a=1&b=x%20y" -> {a: 1, b: "x y"}; a name given twice keeps its first value.
Params parse_query(std::string_view query) {
  Params params;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    params.emplace(percent_decode(pair.substr(0, eq), true),
                   eq == std::string_view::npos ? std::string()
                                                : percent_decode(pair.substr(eq + 1), true));
  }
  return params;
}

// One parsed request, as the endpoint handlers see it.
struct Request {
  http::request<http::string_body> message;
  std::string path;  // percent-decoded, without the query
  Params query;

  // A query parameter, decoded; empty if absent.
  std::string param(std::string_view name) const {
    const auto it = query.find(name);
    return it == query.end() ? std::string() : it->second;
  }
  // A header (names are case-insensitive); empty if absent.
  std::string header(std::string_view name) const {
    const auto value = message[boost::beast::string_view(name.data(), name.size())];
    return std::string(value.data(), value.size());
  }
  const std::string& body() const { return message.body(); }
};

// What a handler answers; the session turns it into an HTTP response.
struct Reply {
  int status = 404;  // until a handler answers
  std::string content_type = "text/plain";
  std::string body;
  // kCloseConnection: the headers promise `promised_bytes` of body, `body`
  // is sent, then the connection is closed.
  std::optional<std::size_t> promised_bytes;

  void set_content(std::string content, std::string type) {
    body = std::move(content);
    content_type = std::move(type);
  }
};

// The platforms' usual messages for the codes tests inject.
std::string default_message(int code) {
  switch (code) {
    case -1: return "system error";
    case 40001: return "invalid credential, access_token is invalid or not latest";
    case 40002: return "invalid grant_type";
    case 40013: return "invalid appid";
    case 40014: return "invalid access_token";
    case 40125: return "invalid appsecret";
    case 40164: return "invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist";
    case 42001: return "access_token expired";
    case 45009: return "reach max api daily quota limit";
    case 45011: return "api minute-quota reach limit  mustslower  retry next minute";
    case 45033: return "api concurrent out of limit";
    case 60020: return "not allow to access from your ip";
    case 40089: return "invalid appkey or appsecret";
    default: return "error";
  }
}

void reply_json(Reply& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json; charset=utf-8");
}

void reply_errcode(Reply& res, int code, std::string message) {
  if (message.empty()) message = default_message(code);
  reply_json(res, 200, json{{"errcode", code}, {"errmsg", std::move(message)}});
}

void reply_oauth2_error(Reply& res, int status, std::string code, std::string message) {
  reply_json(res, status, json{{"code", std::move(code)}, {"message", std::move(message)}});
}

bool is_errcode_endpoint(FakeEndpoint e) {
  return e != FakeEndpoint::kDingTalkOAuth2Token && e != FakeEndpoint::kDingTalkOAuth2Api;
}

}  // namespace

struct FakePlatform::Impl {
  struct Token {
    Channel channel;
    TimePoint expires_at;
    std::optional<TimePoint> dies_at;  // replaced (plain) or revoked (stable)
  };
  struct PlainState {
    std::string current, previous;
  };
  struct StableState {
    std::string current;
    std::optional<TimePoint> last_force;
    int forces_today = 0;
    std::int64_t force_day = -1;
  };

  FakePlatformOptions options;
  std::shared_ptr<const Clock> clock;

  // The server: one thread runs every accept, read, write and latency timer
  // (see accept() and Session). The io_context is declared before the
  // acceptor so that it outlives it; its destructor destroys the handlers
  // ~FakePlatform abandoned, and with them the sessions and their sockets.
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::thread thread;
  std::uint16_t port = 0;

  // Guards everything below; the io thread and the test's threads share it.
  mutable std::mutex mu;
  std::chrono::milliseconds latency{0};
  std::deque<FakeFault> faults[kEndpoints];
  std::uint64_t counts[kEndpoints] = {};
  std::uint64_t issued = 0;

  // Apps: channel/app id -> secret; WeCom: corp id -> (secret -> agent).
  std::map<std::string, std::string> wechat_secrets, dingtalk_secrets;
  std::map<std::string, std::map<std::string, std::string>> wecom_agents;

  std::map<std::string, Token> tokens;             // every token ever issued
  std::map<std::string, PlainState> plain;         // by appid
  std::map<std::string, StableState> stable;       // by appid
  std::map<std::string, std::string> wecom_token;  // by corp:agent
  std::map<std::string, std::string> dingtalk_token;  // by app key

  // --- state (mu held)

  std::string issue(Channel channel, std::string_view prefix, TimePoint now) {
    ++issued;
    std::string token = fmt::format("{}-{}-{:016x}", prefix, issued,
                                    static_cast<std::uint64_t>(now.time_since_epoch().count()) *
                                        0x9E3779B97F4A7C15ULL ^ (issued << 7));
    tokens[token] = Token{channel, now + options.token_lifetime, std::nullopt};
    return token;
  }

  static std::int64_t remaining_s(const Token& t, TimePoint now) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.expires_at - now).count();
  }

  bool alive(const std::string& token, TimePoint now) const {
    const auto it = tokens.find(token);
    if (it == tokens.end()) return false;
    if (it->second.dies_at && now >= *it->second.dies_at) return false;
    return now < it->second.expires_at;
  }

  int check(Channel channel, std::string_view token_text) const {
    const TimePoint now = clock->now();
    const auto it = tokens.find(std::string(token_text));
    if (it == tokens.end()) return 40014;
    const Token& t = it->second;
    const bool tencent = channel != Channel::kDingTalk;
    if (tencent != (t.channel != Channel::kDingTalk)) return 40014;
    if (channel == Channel::kDingTalk) {
      return (t.dies_at && now >= *t.dies_at) || now >= t.expires_at ? 40014 : 0;
    }
    if (t.dies_at && now >= *t.dies_at) return 40001;
    if (now >= t.expires_at) return 42001;
    return 0;
  }

  // --- request plumbing

  using Handler = void (Impl::*)(const Request&, Reply&);
  struct Route {
    http::verb method;
    std::string_view path;
    FakeEndpoint endpoint;
    Handler handle;
  };
  // The endpoint serving `method` and `path`; null: 404.
  static const Route* find_route(http::verb method, std::string_view path);

  struct Session;
  void accept();

  // A request for `e` arrived: counts it (calls() sees it at once, while it
  // waits) and says how long it must wait before its answer.
  std::chrono::milliseconds arrive(FakeEndpoint e) {
    std::lock_guard lock(mu);
    ++counts[static_cast<int>(e)];
    return latency;
  }

  // After the latency: the fault that is due, else the endpoint's answer.
  Reply answer(const Route& route, const Request& req) {
    Reply res;
    std::optional<FakeFault> fault;
    {
      std::lock_guard lock(mu);
      auto& q = faults[static_cast<int>(route.endpoint)];
      if (!q.empty()) {
        fault = std::move(q.front());
        q.pop_front();
      }
    }
    if (fault) {
      apply(*fault, route.endpoint, res);
      return res;
    }
    try {
      (this->*route.handle)(req, res);
    } catch (const std::exception& e) {
      // A handler that throws is a bug in this fake: answer 500 with the
      // reason rather than let the exception end the server's only thread.
      res = Reply{};
      res.status = 500;
      res.set_content(fmt::format("FakePlatform: {}", e.what()), "text/plain");
    }
    return res;
  }

  static void apply(const FakeFault& f, FakeEndpoint e, Reply& res) {
    switch (f.kind) {
      case FakeFault::Kind::kPlatformError:
        if (is_errcode_endpoint(e)) {
          reply_errcode(res, f.code, f.message);
        } else {
          reply_oauth2_error(res, f.http_status == 500 && f.error_code.empty() ? 400 : f.http_status,
                             f.error_code.empty() ? std::to_string(f.code) : f.error_code,
                             f.message.empty() ? default_message(f.code) : f.message);
        }
        return;
      case FakeFault::Kind::kHttpStatus:
        res.status = f.http_status;
        res.set_content(fmt::format("<html><body><h1>{} Error</h1></body></html>", f.http_status),
                        "text/html");
        return;
      case FakeFault::Kind::kNonJson:
        res.status = 200;
        res.set_content("<html><body>502 Bad Gateway</body></html>", "text/html");
        return;
      case FakeFault::Kind::kTruncatedJson:
        res.status = 200;
        res.set_content(R"({"access_token":"ACCESS_TOKEN_CUT_SH)", "application/json");
        return;
      case FakeFault::Kind::kOversized: {
        const std::string key = e == FakeEndpoint::kDingTalkOAuth2Token ? "accessToken"
                                                                        : "access_token";
        const std::size_t overhead = key.size() + 32;
        const std::string filler(f.bytes > overhead ? f.bytes - overhead : 1, 'x');
        res.status = 200;
        res.set_content(fmt::format(R"({{"{}":"{}","expires_in":7200,"expireIn":7200}})", key,
                                    filler),
                        "application/json");
        return;
      }
      case FakeFault::Kind::kCloseConnection:
        // Promise 1000 bytes, send a few, then close: the client sees a
        // response cut short (libcurl: CURLE_PARTIAL_FILE).
        res.status = 200;
        res.set_content(R"({"access_token":")", "application/json");
        res.promised_bytes = 1000;
        return;
      case FakeFault::Kind::kDingTalkBan:
        reply_json(res, 403, json{{"status", 1111}, {"wait", 5}, {"punish", "deny"}});
        return;
    }
  }

  // --- the endpoints

  void wechat_plain(const Request& req, Reply& res) {
    std::lock_guard lock(mu);
    if (req.param("grant_type") != "client_credential") {
      return reply_errcode(res, 40002, "");
    }
    const std::string appid = req.param("appid");
    const auto app = wechat_secrets.find(appid);
    if (app == wechat_secrets.end()) return reply_errcode(res, 40013, "");
    if (req.param("secret") != app->second) return reply_errcode(res, 40001, "");
    const TimePoint now = clock->now();
    PlainState& st = plain[appid];
    if (!st.previous.empty()) {
      auto& old = tokens[st.previous];
      if (!old.dies_at || *old.dies_at > now) old.dies_at = now;
    }
    if (!st.current.empty()) {
      auto& cur = tokens[st.current];
      const TimePoint grace_end = now + options.plain_grace;
      if (!cur.dies_at || *cur.dies_at > grace_end) cur.dies_at = grace_end;
    }
    st.previous = st.current;
    st.current = issue(Channel::kWeChat, "wxplain", now);
    reply_json(res, 200,
               json{{"access_token", st.current}, {"expires_in", options.token_lifetime.count()}});
  }

  void wechat_stable(const Request& req, Reply& res) {
    json body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object()) return reply_errcode(res, 47001, "data format error");
    std::lock_guard lock(mu);
    if (body.value("grant_type", std::string()) != "client_credential") {
      return reply_errcode(res, 40002, "");
    }
    const std::string appid = body.value("appid", std::string());
    const auto app = wechat_secrets.find(appid);
    if (app == wechat_secrets.end()) return reply_errcode(res, 40013, "");
    if (body.value("secret", std::string()) != app->second) return reply_errcode(res, 40125, "");
    const bool force = body.contains("force_refresh") && body["force_refresh"].is_boolean() &&
                       body["force_refresh"].get<bool>();
    const TimePoint now = clock->now();
    StableState& st = stable[appid];
    if (force) {
      const auto day = std::chrono::duration_cast<std::chrono::hours>(
                           now.time_since_epoch()).count() / 24;
      if (day != st.force_day) {
        st.force_day = day;
        st.forces_today = 0;
      }
      if (st.last_force && now - *st.last_force < std::chrono::seconds(30)) {
        return reply_errcode(res, 45011, "");
      }
      if (st.forces_today >= 20) return reply_errcode(res, 45009, "");
      ++st.forces_today;
      st.last_force = now;
      if (!st.current.empty()) tokens[st.current].dies_at = now;  // dies at once
      st.current = issue(Channel::kWeChat, "wxstable", now);
    } else if (st.current.empty() || !alive(st.current, now) ||
               tokens[st.current].expires_at - now <= options.stable_rotation_window) {
      // New token; a token in its last minutes lives out its life.
      st.current = issue(Channel::kWeChat, "wxstable", now);
    }
    reply_json(res, 200,
               json{{"access_token", st.current},
                    {"expires_in", remaining_s(tokens[st.current], now)}});
  }

  void wecom(const Request& req, Reply& res) {
    std::lock_guard lock(mu);
    const std::string corp = req.param("corpid");
    const auto agents = wecom_agents.find(corp);
    if (agents == wecom_agents.end()) return reply_errcode(res, 40013, "invalid corpid");
    const auto agent = agents->second.find(req.param("corpsecret"));
    if (agent == agents->second.end()) return reply_errcode(res, 40001, "invalid credential");
    const TimePoint now = clock->now();
    std::string& token = wecom_token[corp + ":" + agent->second];
    if (token.empty() || !alive(token, now)) token = issue(Channel::kWeCom, "wecom", now);
    reply_json(res, 200, json{{"errcode", 0}, {"errmsg", "ok"}, {"access_token", token},
                              {"expires_in", remaining_s(tokens[token], now)}});
  }

  // DingTalk, both APIs: the same token within validity, extended.
  std::string dingtalk_fetch(const std::string& app_key) {
    const TimePoint now = clock->now();
    std::string& token = dingtalk_token[app_key];
    if (token.empty() || !alive(token, now)) {
      token = issue(Channel::kDingTalk, "ding", now);
    } else {
      tokens[token].expires_at = now + options.token_lifetime;
    }
    return token;
  }

  void dingtalk_legacy(const Request& req, Reply& res) {
    std::lock_guard lock(mu);
    const std::string key = req.param("appkey");
    const auto app = dingtalk_secrets.find(key);
    if (app == dingtalk_secrets.end() || req.param("appsecret") != app->second) {
      return reply_errcode(res, 40089, "");
    }
    const std::string token = dingtalk_fetch(key);
    reply_json(res, 200, json{{"errcode", 0}, {"errmsg", "ok"}, {"access_token", token},
                              {"expires_in", options.token_lifetime.count()}});
  }

  void dingtalk_oauth2(const Request& req, Reply& res) {
    if (req.header("Content-Type").find("application/json") == std::string::npos) {
      return reply_oauth2_error(res, 400, "MissingBody", "body is mandatory for this action.");
    }
    json body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      return reply_oauth2_error(res, 400, "InvalidParameter", "body is not valid json");
    }
    std::lock_guard lock(mu);
    const std::string key = body.value("appKey", std::string());
    const auto app = dingtalk_secrets.find(key);
    if (app == dingtalk_secrets.end() || body.value("appSecret", std::string()) != app->second) {
      return reply_oauth2_error(res, 400, "invalidClientIdOrSecret",
                                "无效的clientId或者clientSecret");
    }
    const std::string token = dingtalk_fetch(key);
    reply_json(res, 200, json{{"accessToken", token}, {"expireIn", options.token_lifetime.count()}});
  }

  void tencent_api(const Request& req, Reply& res) {
    std::lock_guard lock(mu);
    const std::string token = req.param("access_token");
    if (token.empty()) return reply_errcode(res, 41001, "access_token missing");
    const auto it = tokens.find(token);
    const Channel ch = it == tokens.end() ? Channel::kWeChat : it->second.channel;
    const int code = check(ch, token);
    if (code != 0) return reply_errcode(res, code, "");
    reply_json(res, 200, json{{"errcode", 0}, {"errmsg", "ok"}});
  }

  void dingtalk_legacy_api(const Request& req, Reply& res) {
    std::lock_guard lock(mu);
    const int code = check(Channel::kDingTalk, req.param("access_token"));
    if (code != 0) return reply_errcode(res, code, "不合法的access_token");
    reply_json(res, 200, json{{"errcode", 0}, {"errmsg", "ok"}});
  }

  void dingtalk_oauth2_api(const Request& req, Reply& res) {
    std::lock_guard lock(mu);
    const int code = check(Channel::kDingTalk, req.header("x-acs-dingtalk-access-token"));
    if (code != 0) {
      return reply_oauth2_error(res, 400, "InvalidAuthentication", "不合法的access_token");
    }
    reply_json(res, 200, json{{"result", "ok"}});
  }
};

const FakePlatform::Impl::Route* FakePlatform::Impl::find_route(http::verb method,
                                                                std::string_view path) {
  using E = FakeEndpoint;
  using V = http::verb;
  static constexpr Route kRoutes[] = {
      {V::get, "/cgi-bin/token", E::kWeChatToken, &Impl::wechat_plain},
      {V::post, "/cgi-bin/stable_token", E::kWeChatStableToken, &Impl::wechat_stable},
      {V::get, "/cgi-bin/gettoken", E::kWeComToken, &Impl::wecom},
      {V::get, "/gettoken", E::kDingTalkLegacyToken, &Impl::dingtalk_legacy},
      {V::post, "/v1.0/oauth2/accessToken", E::kDingTalkOAuth2Token, &Impl::dingtalk_oauth2},
      {V::get, "/cgi-bin/fake_api", E::kTencentApi, &Impl::tencent_api},
      {V::get, "/fake_api", E::kDingTalkLegacyApi, &Impl::dingtalk_legacy_api},
      {V::get, "/v1.0/fake_api", E::kDingTalkOAuth2Api, &Impl::dingtalk_oauth2_api},
  };
  for (const Route& r : kRoutes) {
    if (r.method == method && r.path == path) return &r;
  }
  return nullptr;
}

// One client connection: read a request, wait the latency, answer, and again
// while the client keeps the connection alive. Every step is an asynchronous
// operation on the io thread, so a request held by the latency (a timer, not
// a blocked thread) holds up nobody else. The pending operation's handler
// owns the session; when nothing is pending any more the session (and its
// socket) goes.
struct FakePlatform::Impl::Session : std::enable_shared_from_this<Session> {
  Session(Impl& owner, tcp::socket accepted)
      : impl(owner), socket(std::move(accepted)), timer(socket.get_executor()) {}

  Impl& impl;
  tcp::socket socket;
  asio::steady_timer timer;
  boost::beast::flat_buffer buffer;  // may hold the start of the next request
  std::optional<http::request_parser<http::string_body>> parser;
  Request request;
  const Route* route = nullptr;
  http::response<http::string_body> response;  // must live until written
  std::string raw;                             // likewise, for a cut-short answer

  void read_request() {
    // Beast's parsers serve one message each.
    parser.emplace();
    parser->body_limit(kMaxRequestBody);
    http::async_read(socket, buffer, *parser,
                     [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                       self->on_request(ec);
                     });
  }

  void on_request(boost::system::error_code ec) {
    // The client closed the connection, or sent something that is not HTTP.
    if (ec) return close();
    request.message = parser->release();
    const auto target = request.message.target();
    const std::string_view text(target.data(), target.size());
    const auto q = text.find('?');
    request.path = percent_decode(text.substr(0, q), false);
    request.query = q == std::string_view::npos ? Params{} : parse_query(text.substr(q + 1));
    route = find_route(request.message.method(), request.path);
    if (route == nullptr) return send(Reply{});  // 404
    const std::chrono::milliseconds wait = impl.arrive(route->endpoint);
    if (wait.count() <= 0) return send(impl.answer(*route, request));
    timer.expires_after(wait);
    timer.async_wait([self = shared_from_this()](boost::system::error_code timer_ec) {
      if (timer_ec) return;
      self->send(self->impl.answer(*self->route, self->request));
    });
  }

  void send(Reply reply) {
    if (reply.promised_bytes) {
      // Written by hand: Beast, rightly, will not send a body shorter than
      // its Content-Length.
      raw = fmt::format("HTTP/1.1 {} OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{}",
                        reply.status, reply.content_type, *reply.promised_bytes, reply.body);
      asio::async_write(socket, asio::buffer(raw),
                        [self = shared_from_this()](boost::system::error_code, std::size_t) {
                          self->close();
                        });
      return;
    }
    response = {};
    response.version(request.message.version());
    response.result(static_cast<unsigned>(reply.status));
    response.set(http::field::content_type, reply.content_type);
    response.body() = std::move(reply.body);
    // libcurl keeps connections alive; HTTP/1.0 or "Connection: close" ends
    // the connection after this answer.
    response.keep_alive(request.message.keep_alive());
    response.prepare_payload();
    http::async_write(socket, response,
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (ec || self->response.need_eof()) return self->close();
                        self->read_request();
                      });
  }

  // Sends FIN after what was written; the socket closes with the session.
  void close() {
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
  }
};

void FakePlatform::Impl::accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket peer) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      // Each answer is one write; without Nagle it leaves at once even while
      // the client's delayed ACK of the previous answer is outstanding.
      peer.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(*this, std::move(peer))->read_request();
    }
    // A failed accept (say, out of descriptors) drops that connection only.
    accept();
  });
}

FakePlatform::FakePlatform(FakePlatformOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.options = std::move(options);
  m.clock = m.options.clock ? m.options.clock : Clock::real();

  try {
    const tcp::endpoint local(asio::ip::make_address_v4("127.0.0.1"), 0);
    m.acceptor.open(local.protocol());
    m.acceptor.bind(local);
    m.acceptor.listen(asio::socket_base::max_listen_connections);
    m.port = m.acceptor.local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error(fmt::format("FakePlatform: cannot listen on 127.0.0.1: {}", e.what()));
  }
  // Listening already: a client may connect as soon as base_url() is known;
  // the kernel queues it until the io thread accepts.
  m.accept();
  m.thread = std::thread([&m] { m.ioc.run(); });
}

FakePlatform::~FakePlatform() {
  // Abandons every pending accept, read, write and latency wait at once (a
  // request held by the latency does not delay the end of a test). The
  // abandoned handlers, and the sessions they own, are destroyed with the
  // io_context after the thread has gone.
  impl_->ioc.stop();
  impl_->thread.join();
}

std::string FakePlatform::base_url() const { return fmt::format("http://127.0.0.1:{}", impl_->port); }
std::uint16_t FakePlatform::port() const noexcept { return impl_->port; }

void FakePlatform::add_app(const AppCredentials& app) {
  std::lock_guard lock(impl_->mu);
  switch (app.channel) {
    case Channel::kWeChat: impl_->wechat_secrets[app.app_id] = app.secret; break;
    case Channel::kWeCom: impl_->wecom_agents[app.app_id][app.secret] = app.agent_id; break;
    case Channel::kDingTalk: impl_->dingtalk_secrets[app.app_id] = app.secret; break;
  }
}

void FakePlatform::set_latency(std::chrono::milliseconds latency) {
  std::lock_guard lock(impl_->mu);
  impl_->latency = latency;
}

void FakePlatform::inject(FakeEndpoint endpoint, FakeFault fault, int times) {
  std::lock_guard lock(impl_->mu);
  for (int i = 0; i < times; ++i) impl_->faults[static_cast<int>(endpoint)].push_back(fault);
}

std::uint64_t FakePlatform::calls(FakeEndpoint endpoint) const {
  std::lock_guard lock(impl_->mu);
  return impl_->counts[static_cast<int>(endpoint)];
}

std::uint64_t FakePlatform::token_calls() const {
  std::lock_guard lock(impl_->mu);
  std::uint64_t n = 0;
  for (int i = 0; i <= static_cast<int>(FakeEndpoint::kDingTalkOAuth2Token); ++i) n += impl_->counts[i];
  return n;
}

int FakePlatform::check_token(Channel channel, std::string_view token) const {
  std::lock_guard lock(impl_->mu);
  return impl_->check(channel, token);
}

std::uint64_t FakePlatform::tokens_issued() const {
  std::lock_guard lock(impl_->mu);
  return impl_->issued;
}

}  // namespace aicache::testing
