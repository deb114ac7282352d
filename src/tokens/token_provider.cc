// The token providers: one class, configured per platform API by a small
// table of (method, path, request builder, response parser).
#include "aicache/token_provider.h"

#include <fmt/format.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <utility>

#include "aicache/log.h"
#include "aicache/net.h"
#include "core/text.h"
#include "tokens/http_client.h"
#include "tokens/platform_responses.h"

namespace aicache {

std::string_view to_string(Channel channel) noexcept {
  switch (channel) {
    case Channel::kWeChat: return "wechat";
    case Channel::kWeCom: return "wecom";
    case Channel::kDingTalk: return "dingtalk";
  }
  return "unknown";
}

std::optional<Channel> parse_channel(std::string_view name) noexcept {
  if (name == "wechat") return Channel::kWeChat;
  if (name == "wecom") return Channel::kWeCom;
  if (name == "dingtalk") return Channel::kDingTalk;
  return std::nullopt;
}

std::string_view to_string(FetchFailure kind) noexcept {
  switch (kind) {
    case FetchFailure::kRetryable: return "retryable";
    case FetchFailure::kConfiguration: return "configuration";
    case FetchFailure::kQuotaExceeded: return "quota_exceeded";
    case FetchFailure::kInvalidToken: return "invalid_token";
  }
  return "unknown";
}

Error FetchError::to_error() const {
  return Error{kind == FetchFailure::kConfiguration ? ErrorCode::kConfig : ErrorCode::kUpstream,
               message};
}

std::string_view effective_api(const AppCredentials& app) noexcept {
  switch (app.channel) {
    case Channel::kWeChat: return app.api.empty() ? std::string_view("stable") : app.api;
    case Channel::kDingTalk: return app.api.empty() ? std::string_view("oauth2") : app.api;
    case Channel::kWeCom: return app.api;
  }
  return app.api;
}

Status validate(const AppCredentials& app) {
  const std::string_view channel = to_string(app.channel);
  if (app.app_id.empty()) {
    return make_error(ErrorCode::kConfig, fmt::format("{} app: the app id is empty", channel));
  }
  const std::string who = fmt::format("{} app {}", channel, app.app_id);
  if (app.secret.empty()) {
    return make_error(ErrorCode::kConfig, fmt::format("{}: the secret is empty", who));
  }
  const std::string_view api = effective_api(app);
  switch (app.channel) {
    case Channel::kWeChat:
      if (api != "stable" && api != "plain") {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: unknown api \"{}\" (wechat: stable or plain)", who, api));
      }
      break;
    case Channel::kDingTalk:
      if (api != "oauth2" && api != "legacy") {
        return make_error(
            ErrorCode::kConfig,
            fmt::format("{}: unknown api \"{}\" (dingtalk: oauth2 or legacy)", who, api));
      }
      break;
    case Channel::kWeCom:
      if (!api.empty()) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: wecom has one token api; \"{}\" is unknown", who, api));
      }
      break;
  }
  if (app.channel != Channel::kWeCom && !app.agent_id.empty()) {
    return make_error(ErrorCode::kConfig, fmt::format("{}: agent id is for wecom apps only", who));
  }
  if (!app.base_url.empty() && !app.base_url.starts_with("http://") &&
      !app.base_url.starts_with("https://")) {
    return make_error(ErrorCode::kConfig,
                      fmt::format("{}: base url must start with http:// or https://", who));
  }
  if (app.base_url.find_first_of("?# \t\r\n") != std::string::npos) {
    return make_error(ErrorCode::kConfig,
                      fmt::format("{}: base url must not hold a query, fragment or spaces", who));
  }
  // Every token request carries the secret (in the query string for three
  // of the five APIs): in clear text it may only stay on this machine. The
  // URL itself is not shown, as a proxy URL may hold credentials.
  if (app.base_url.starts_with("http://")) {
    const auto host = url_host(app.base_url);
    if (!host || !is_loopback_host(*host)) {
      return make_error(ErrorCode::kConfig,
                        fmt::format("{}: base url is http:// to a host that is not loopback "
                                    "(127.0.0.0/8, ::1, localhost), which would send the secret "
                                    "in clear text; use https://",
                                    who));
    }
  }
  return {};
}

TokenProvider::~TokenProvider() = default;

namespace tokens {
namespace {

using nlohmann::json;

enum class Api { kWeChatPlain, kWeChatStable, kWeCom, kDingTalkLegacy, kDingTalkOAuth2 };

Api api_of(const AppCredentials& app) {
  const std::string_view api = effective_api(app);
  switch (app.channel) {
    case Channel::kWeChat: return api == "plain" ? Api::kWeChatPlain : Api::kWeChatStable;
    case Channel::kWeCom: return Api::kWeCom;
    case Channel::kDingTalk: return api == "legacy" ? Api::kDingTalkLegacy : Api::kDingTalkOAuth2;
  }
  return Api::kWeChatStable;
}

std::string_view default_base(Api api) {
  switch (api) {
    case Api::kWeChatPlain:
    case Api::kWeChatStable: return "https://api.weixin.qq.com";
    case Api::kWeCom: return "https://qyapi.weixin.qq.com";
    case Api::kDingTalkLegacy: return "https://oapi.dingtalk.com";
    case Api::kDingTalkOAuth2: return "https://api.dingtalk.com";
  }
  return {};
}

void replace_all(std::string& text, std::string_view what, std::string_view with) {
  if (what.empty()) return;
  for (std::size_t pos = text.find(what); pos != std::string::npos;
       pos = text.find(what, pos + with.size())) {
    text.replace(pos, what.size(), with);
  }
}

class PlatformTokenProvider final : public TokenProvider {
 public:
  PlatformTokenProvider(AppCredentials app, HttpOptions http)
      : app_(std::move(app)), api_(api_of(app_)), http_(http) {
    if (auto ok = validate(app_); !ok) invalid_ = ok.error().message;
    base_ = app_.base_url.empty() ? std::string(default_base(api_)) : app_.base_url;
    while (!base_.empty() && base_.back() == '/') base_.pop_back();
    who_ = app_.channel == Channel::kWeCom && !app_.agent_id.empty()
               ? fmt::format("{} app {} agent {}", to_string(app_.channel), app_.app_id,
                             app_.agent_id)
               : fmt::format("{} app {}", to_string(app_.channel), app_.app_id);
  }

  std::expected<FetchedToken, FetchError> fetch(bool force_refresh) override {
    if (!invalid_.empty()) {
      FetchError e;
      e.kind = FetchFailure::kConfiguration;
      e.message = invalid_;
      return std::unexpected(std::move(e));
    }
    const HttpRequest request = build(force_refresh);
    auto response = http_.perform(request);
    if (!response) return std::unexpected(finish(to_fetch_error(std::move(response.error())), ""));
    auto token = parse(response->status, response->body);
    if (!token) return std::unexpected(finish(std::move(token.error()), request.label));
    const std::chrono::seconds reported = token->expires_in;
    token->expires_in = clamp_token_lifetime(reported);
    // Once per provider, i.e. per app: a platform that keeps sending such
    // values must not fill the log, but the operator must learn of it.
    if (token->expires_in != reported && !clamp_logged_.exchange(true)) {
      log_message(LogLevel::kWarning,
                  fmt::format("{}: {}: the platform reported expires_in {} s; the token is kept "
                              "{} s ({}..{} s are accepted; logged once per app)",
                              who_, request.label, reported.count(), token->expires_in.count(),
                              kMinTokenLifetime.count(), kMaxTokenLifetime.count()));
    }
    return token;
  }

  const AppCredentials& app() const override { return app_; }

 private:
  HttpRequest build(bool force_refresh) const {
    HttpRequest r;
    const std::string& id = app_.app_id;
    const std::string& secret = app_.secret;
    switch (api_) {
      case Api::kWeChatPlain:
        r.url = fmt::format("{}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
                            base_, internal::percent_encode(id), internal::percent_encode(secret));
        break;
      case Api::kWeChatStable:
        r.method = HttpRequest::Method::kPost;
        r.url = base_ + "/cgi-bin/stable_token";
        r.body = json{{"grant_type", "client_credential"},
                      {"appid", id},
                      {"secret", secret},
                      {"force_refresh", force_refresh}}
                     .dump();
        break;
      case Api::kWeCom:
        r.url = fmt::format("{}/cgi-bin/gettoken?corpid={}&corpsecret={}", base_,
                            internal::percent_encode(id), internal::percent_encode(secret));
        break;
      case Api::kDingTalkLegacy:
        r.url = fmt::format("{}/gettoken?appkey={}&appsecret={}", base_,
                            internal::percent_encode(id), internal::percent_encode(secret));
        break;
      case Api::kDingTalkOAuth2:
        r.method = HttpRequest::Method::kPost;
        r.url = base_ + "/v1.0/oauth2/accessToken";
        r.body = json{{"appKey", id}, {"appSecret", secret}}.dump();
        break;
    }
    r.headers.emplace_back("Accept", "application/json");
    if (r.method == HttpRequest::Method::kPost) {
      r.headers.emplace_back("Content-Type", "application/json");
    }
    r.label = url_label(r.url);
    return r;
  }

  ParseResult parse(int status, std::string_view body) const {
    switch (api_) {
      case Api::kWeChatPlain:
      case Api::kWeChatStable: return parse_wechat_token_response(status, body);
      case Api::kWeCom: return parse_wecom_token_response(status, body);
      case Api::kDingTalkLegacy: return parse_dingtalk_legacy_token_response(status, body);
      case Api::kDingTalkOAuth2: return parse_dingtalk_oauth2_token_response(status, body);
    }
    return parse_wechat_token_response(status, body);
  }

  // Names the app (and the endpoint, if the message does not yet), makes
  // sure the secret appears nowhere, whatever the platform or curl echoed,
  // and makes what the platform wrote safe to log and print: a hostile or
  // broken upstream may send newlines, terminal escapes or megabytes. The
  // secret goes first, so that no cut leaves a piece of it behind.
  FetchError finish(FetchError e, std::string_view label) const {
    e.message = label.empty() ? fmt::format("{}: {}", who_, e.message)
                              : fmt::format("{}: {}: {}", who_, label, e.message);
    for (std::string* text : {&e.message, &e.platform_message}) {
      replace_all(*text, app_.secret, "<secret>");
      replace_all(*text, internal::percent_encode(app_.secret), "<secret>");
    }
    e.platform_message = printable(e.platform_message, kMaxPlatformMessageBytes);
    e.message = printable(e.message, kMaxFetchMessageBytes);
    e.platform_error_code = printable(e.platform_error_code, kMaxPlatformMessageBytes);
    return e;
  }

  const AppCredentials app_;
  const Api api_;
  std::string base_;
  std::string who_;
  std::string invalid_;  // validate()'s message when the app is unusable
  std::atomic<bool> clamp_logged_{false};
  HttpClient http_;
};

}  // namespace
}  // namespace tokens

std::unique_ptr<TokenProvider> make_token_provider(AppCredentials app, HttpOptions http) {
  return std::make_unique<tokens::PlatformTokenProvider>(std::move(app), http);
}

}  // namespace aicache
