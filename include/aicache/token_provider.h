// TokenProvider: fetches an access token from one app's platform.
//
// A TokenProvider is the client of one token endpoint for one app: WeChat
// (the stable API or the plain one), WeCom (per corp and application secret)
// or DingTalk (the current OAuth2 API or the legacy one). It makes exactly one
// HTTP request per fetch() and never retries, caches or waits: single flight,
// caching, refresh margins and backoff belong to the TokenManager above it.
//
// Thread safety: a TokenProvider may be shared between threads; concurrent
// fetch() calls are independent requests (each on its own connection, taken
// from a small pool that the provider keeps for connection reuse).
//
// Secrets: the app secret is sent to the platform and nowhere else. It never
// appears in any message this API produces (FetchError::message,
// FetchError::platform_message, Error::message), and URLs in messages name
// only the host and path, never the query.
#pragma once

#include <chrono>
#include <cstddef>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "aicache/status.h"

namespace aicache {

enum class Channel {
  kWeChat,    // WeChat Official Account (微信公众号)
  kWeCom,     // WeCom (企业微信)
  kDingTalk,  // DingTalk (钉钉)
};

// "wechat", "wecom", "dingtalk".
std::string_view to_string(Channel channel) noexcept;
// The channel named by `name` (exactly one of the names above), or nullopt.
std::optional<Channel> parse_channel(std::string_view name) noexcept;

// What identifies an app on its platform, and how to reach the platform.
struct AppCredentials {
  Channel channel = Channel::kWeChat;
  // WeChat: the appid; WeCom: the corp id; DingTalk: the app key.
  std::string app_id;
  // WeCom only: the application (agent) the secret belongs to. Not sent to
  // the platform, but it names the app: two agents of one corp are two apps.
  std::string agent_id;
  // The app secret (WeCom: the application's secret). Never printed.
  std::string secret;
  // The API flavour. WeChat: "stable" (the default when empty) or "plain";
  // DingTalk: "oauth2" (the default when empty) or "legacy"; WeCom: empty.
  std::string api;
  // "scheme://host[:port][/prefix]" without a trailing slash, https:// (or
  // http:// to a loopback host: a local proxy, a test fake); empty: the
  // platform's official base (https://api.weixin.qq.com,
  // https://qyapi.weixin.qq.com, https://api.dingtalk.com for oauth2,
  // https://oapi.dingtalk.com for legacy).
  std::string base_url;
};

// OK, or kConfig naming what is wrong (never quoting the secret): an empty
// app id or secret, an unknown API flavour for the channel, an agent id on a
// channel other than WeCom, a base URL that is not http(s)://, an http://
// base URL whose host is not loopback (the secret would travel in clear text;
// see is_loopback_host in aicache/net.h).
Status validate(const AppCredentials& app);

// The API flavour `app` uses, defaults applied: "stable", "plain", "oauth2",
// "legacy" or "" (WeCom).
std::string_view effective_api(const AppCredentials& app) noexcept;

// The lifetimes aicache keeps a token for. The platforms report 7200 s (or
// what is left of it); a value far outside would be a broken or hostile
// upstream: beyond a day, converting it to milliseconds may overflow and
// Redis refuses the expiry, so every read would fetch again; below a minute,
// every read would refresh.
inline constexpr std::chrono::seconds kMinTokenLifetime{60};
inline constexpr std::chrono::seconds kMaxTokenLifetime{24 * 3600};

// `reported` clamped to [kMinTokenLifetime, kMaxTokenLifetime].
constexpr std::chrono::seconds clamp_token_lifetime(std::chrono::seconds reported) noexcept {
  if (reported < kMinTokenLifetime) return kMinTokenLifetime;
  if (reported > kMaxTokenLifetime) return kMaxTokenLifetime;
  return reported;
}

// A token as the platform returned it.
struct FetchedToken {
  std::string access_token;
  // The remaining validity the platform reported, clamped by the providers of
  // make_token_provider() with clamp_token_lifetime() (the first clamp of a
  // provider is logged as a warning). WeChat's stable API reports what is
  // left of a token it hands out again, not 7200.
  std::chrono::seconds expires_in{0};
};

// How a fetch failed, sorted by what the caller should do about it.
enum class FetchFailure {
  // Transient: try again later with backoff. System busy (-1), rate limited
  // (45011, 45033), HTTP 5xx or 429, timeouts, connection errors, a body
  // that is not the expected JSON, is truncated or is over the size limit,
  // an unknown platform error code.
  kRetryable,
  // The app's configuration is wrong and retrying cannot help: a bad secret
  // (40001 at fetch time, 40125, 40091, DingTalk 40089 or an OAuth2 4xx), a
  // bad app id (40013), a bad grant type (40002), the caller's IP is not on
  // the whitelist (40164, 60020), an unusable base URL. Report, do not loop.
  kConfiguration,
  // The daily quota is used up (45009) or DingTalk banned the caller's IP
  // ({"status":1111,...}): stop fetching for this app for a while, keep
  // serving a still-valid token.
  kQuotaExceeded,
  // A token was rejected by a platform API. Never produced by fetch(); used
  // by callers that sort the errors of platform API calls.
  kInvalidToken,
};

// "retryable", "configuration", "quota_exceeded", "invalid_token".
std::string_view to_string(FetchFailure kind) noexcept;

// Bounds of what FetchError carries from the platform (see printable() in
// aicache/log.h).
inline constexpr std::size_t kMaxPlatformMessageBytes = 200;
inline constexpr std::size_t kMaxFetchMessageBytes = 600;

struct FetchError {
  FetchFailure kind = FetchFailure::kRetryable;
  // The platform's numeric error code (errcode, or 1111 for DingTalk's ban);
  // 0 when the platform gave none (transport failures, HTTP errors).
  int platform_code = 0;
  // DingTalk OAuth2's string error code, e.g. "InvalidAuthentication";
  // empty otherwise. Filtered as platform_message.
  std::string platform_error_code;
  // The platform's own message (errmsg / message) through printable(), at
  // most kMaxPlatformMessageBytes of it; may be empty. Safe to log and to
  // show: the platform is not trusted with what reaches a log or terminal.
  std::string platform_message;
  // The HTTP status of the answer; 0 when no answer arrived.
  int http_status = 0;
  // For humans: what was called (host and path only), what went wrong, the
  // platform's code and message. Never contains the secret; printable() and
  // at most kMaxFetchMessageBytes (plus "...").
  std::string message;

  // kUpstream for kRetryable, kQuotaExceeded and kInvalidToken; kConfig for
  // kConfiguration. The message is kept.
  Error to_error() const;
};

// Limits of the HTTP client under a provider.
struct HttpOptions {
  // Time to establish a TCP (and TLS) connection. Default: 3 s.
  std::chrono::milliseconds connect_timeout{3000};
  // Time for the whole request, connection included. Default: 10 s.
  std::chrono::milliseconds total_timeout{10000};
  // A larger response body is abandoned (kRetryable). Default: 64 KiB.
  std::size_t max_response_bytes = 64 * 1024;
};

class TokenProvider {
 public:
  TokenProvider() = default;
  TokenProvider(const TokenProvider&) = delete;
  TokenProvider& operator=(const TokenProvider&) = delete;
  virtual ~TokenProvider();

  // Asks the platform for a token: exactly one HTTP request, no retry.
  // `force_refresh` asks WeChat's stable API for a new token, which
  // invalidates the previous one at once (the platform allows 20 a day, 30 s
  // apart); the other APIs ignore it (WeChat's plain API always issues a new
  // token, and the previous one then works for about 5 more minutes).
  virtual std::expected<FetchedToken, FetchError> fetch(bool force_refresh) = 0;

  // The app this provider fetches for.
  virtual const AppCredentials& app() const = 0;
};

// A provider for `app`. REQUIRES nothing: if validate(app) fails, every
// fetch() fails with kConfiguration carrying that message.
std::unique_ptr<TokenProvider> make_token_provider(AppCredentials app, HttpOptions http = {});

// True when a platform API call failed because the access token it carried
// is no longer valid, so the caller should invalidate that token and fetch
// again (once): WeChat 40001, 40014, 42001; WeCom 40014, 42001; DingTalk
// errcode 40014, or HTTP 400 with code "InvalidAuthentication" (the OAuth2
// API). `platform_code` is the errcode (0 if none), `platform_error_code`
// DingTalk's string code (empty if none).
bool is_invalid_token_error(Channel channel, int http_status, int platform_code,
                            std::string_view platform_error_code) noexcept;

}  // namespace aicache
