#include "support/fake_platform.h"

#include <fmt/format.h>
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>

namespace aicache::testing {

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

void reply_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json; charset=utf-8");
}

void reply_errcode(httplib::Response& res, int code, std::string message) {
  if (message.empty()) message = default_message(code);
  reply_json(res, 200, json{{"errcode", code}, {"errmsg", std::move(message)}});
}

void reply_oauth2_error(httplib::Response& res, int status, std::string code, std::string message) {
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

  httplib::Server server;
  std::thread thread;
  std::uint16_t port = 0;

  mutable std::mutex mu;
  std::condition_variable stop_cv;
  bool stopping = false;
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

  // Counts the call, waits the latency, and pops a fault if one is due.
  std::optional<FakeFault> enter(FakeEndpoint e) {
    std::unique_lock lock(mu);
    ++counts[static_cast<int>(e)];
    if (latency.count() > 0) {
      stop_cv.wait_for(lock, latency, [this] { return stopping; });
    }
    auto& q = faults[static_cast<int>(e)];
    if (q.empty()) return std::nullopt;
    FakeFault f = q.front();
    q.pop_front();
    return f;
  }

  static void apply(const FakeFault& f, FakeEndpoint e, httplib::Response& res) {
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
        res.status = 200;
        // Promise 1000 bytes, send a few, then give up: httplib closes the
        // connection and the client sees a response cut short.
        res.set_content_provider(
            1000, "application/json",
            [](std::size_t offset, std::size_t, httplib::DataSink& sink) {
              if (offset == 0) {
                static constexpr char kStart[] = R"({"access_token":")";
                sink.write(kStart, sizeof(kStart) - 1);
                return true;
              }
              return false;
            });
        return;
      case FakeFault::Kind::kDingTalkBan:
        reply_json(res, 403, json{{"status", 1111}, {"wait", 5}, {"punish", "deny"}});
        return;
    }
  }

  template <class Handler>
  void route_get(const char* path, FakeEndpoint e, Handler handler) {
    server.Get(path, [this, e, handler](const httplib::Request& req, httplib::Response& res) {
      if (auto f = enter(e)) return apply(*f, e, res);
      handler(req, res);
    });
  }
  template <class Handler>
  void route_post(const char* path, FakeEndpoint e, Handler handler) {
    server.Post(path, [this, e, handler](const httplib::Request& req, httplib::Response& res) {
      if (auto f = enter(e)) return apply(*f, e, res);
      handler(req, res);
    });
  }

  // --- the endpoints

  void wechat_plain(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    if (req.get_param_value("grant_type") != "client_credential") {
      return reply_errcode(res, 40002, "");
    }
    const std::string appid = req.get_param_value("appid");
    const auto app = wechat_secrets.find(appid);
    if (app == wechat_secrets.end()) return reply_errcode(res, 40013, "");
    if (req.get_param_value("secret") != app->second) return reply_errcode(res, 40001, "");
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

  void wechat_stable(const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body, nullptr, false);
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

  void wecom(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    const std::string corp = req.get_param_value("corpid");
    const auto agents = wecom_agents.find(corp);
    if (agents == wecom_agents.end()) return reply_errcode(res, 40013, "invalid corpid");
    const auto agent = agents->second.find(req.get_param_value("corpsecret"));
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

  void dingtalk_legacy(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    const std::string key = req.get_param_value("appkey");
    const auto app = dingtalk_secrets.find(key);
    if (app == dingtalk_secrets.end() || req.get_param_value("appsecret") != app->second) {
      return reply_errcode(res, 40089, "");
    }
    const std::string token = dingtalk_fetch(key);
    reply_json(res, 200, json{{"errcode", 0}, {"errmsg", "ok"}, {"access_token", token},
                              {"expires_in", options.token_lifetime.count()}});
  }

  void dingtalk_oauth2(const httplib::Request& req, httplib::Response& res) {
    if (req.get_header_value("Content-Type").find("application/json") == std::string::npos) {
      return reply_oauth2_error(res, 400, "MissingBody", "body is mandatory for this action.");
    }
    json body = json::parse(req.body, nullptr, false);
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

  void tencent_api(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    const std::string token = req.get_param_value("access_token");
    if (token.empty()) return reply_errcode(res, 41001, "access_token missing");
    const auto it = tokens.find(token);
    const Channel ch = it == tokens.end() ? Channel::kWeChat : it->second.channel;
    const int code = check(ch, token);
    if (code != 0) return reply_errcode(res, code, "");
    reply_json(res, 200, json{{"errcode", 0}, {"errmsg", "ok"}});
  }

  void dingtalk_legacy_api(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    const int code = check(Channel::kDingTalk, req.get_param_value("access_token"));
    if (code != 0) return reply_errcode(res, code, "不合法的access_token");
    reply_json(res, 200, json{{"errcode", 0}, {"errmsg", "ok"}});
  }

  void dingtalk_oauth2_api(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    const int code = check(Channel::kDingTalk, req.get_header_value("x-acs-dingtalk-access-token"));
    if (code != 0) {
      return reply_oauth2_error(res, 400, "InvalidAuthentication", "不合法的access_token");
    }
    reply_json(res, 200, json{{"result", "ok"}});
  }
};

FakePlatform::FakePlatform(FakePlatformOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.options = std::move(options);
  m.clock = m.options.clock ? m.options.clock : Clock::real();

  using E = FakeEndpoint;
  using Req = httplib::Request;
  using Res = httplib::Response;
  m.route_get("/cgi-bin/token", E::kWeChatToken, [&m](const Req& q, Res& s) { m.wechat_plain(q, s); });
  m.route_post("/cgi-bin/stable_token", E::kWeChatStableToken,
               [&m](const Req& q, Res& s) { m.wechat_stable(q, s); });
  m.route_get("/cgi-bin/gettoken", E::kWeComToken, [&m](const Req& q, Res& s) { m.wecom(q, s); });
  m.route_get("/gettoken", E::kDingTalkLegacyToken,
              [&m](const Req& q, Res& s) { m.dingtalk_legacy(q, s); });
  m.route_post("/v1.0/oauth2/accessToken", E::kDingTalkOAuth2Token,
               [&m](const Req& q, Res& s) { m.dingtalk_oauth2(q, s); });
  m.route_get("/cgi-bin/fake_api", E::kTencentApi, [&m](const Req& q, Res& s) { m.tencent_api(q, s); });
  m.route_get("/fake_api", E::kDingTalkLegacyApi,
              [&m](const Req& q, Res& s) { m.dingtalk_legacy_api(q, s); });
  m.route_get("/v1.0/fake_api", E::kDingTalkOAuth2Api,
              [&m](const Req& q, Res& s) { m.dingtalk_oauth2_api(q, s); });

  // Enough workers for many concurrent callers held by the latency.
  m.server.new_task_queue = [] { return new httplib::ThreadPool(64); };
  m.server.set_keep_alive_timeout(1);
  m.server.set_tcp_nodelay(true);  // headers and body go in separate writes
  const int port = m.server.bind_to_any_port("127.0.0.1");
  if (port <= 0) throw std::runtime_error("FakePlatform: cannot bind a port on 127.0.0.1");
  m.port = static_cast<std::uint16_t>(port);
  m.thread = std::thread([&m] { m.server.listen_after_bind(); });
  // httplib's stop() does nothing before the accept loop runs, so a fake
  // destroyed right away would never stop: wait for the loop.
  while (!m.server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

FakePlatform::~FakePlatform() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->stop_cv.notify_all();
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
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
