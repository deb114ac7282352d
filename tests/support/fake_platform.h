// Local fakes of the token platforms (WeChat, WeCom, DingTalk) for tests.
//
//   auto clock = std::make_shared<ManualClock>();
//   FakePlatform fake({.clock = clock});
//   fake.add_app({.channel = Channel::kWeChat, .app_id = "wx1", .secret = "s3cret"});
//   auto provider = make_token_provider({... .base_url = fake.base_url()});
//
// A real HTTP/1.1 server (Boost.Beast on Asio) on 127.0.0.1, a free port,
// with keep-alive, serving every token endpoint aicache calls, under the
// platforms' own paths (query parameters are percent-decoded, '+' is a space):
//   GET  /cgi-bin/token           WeChat plain: a new token on every fetch; the
//                                 previous one keeps working for 5 minutes
//                                 (options.plain_grace), older ones die at once.
//   POST /cgi-bin/stable_token    WeChat stable: the same token with the
//                                 *remaining* lifetime; a new one only within
//                                 the last 5 minutes (the old one then lives
//                                 out its life) or on force_refresh (the old
//                                 one dies at once; 30 s apart, 20 a day).
//   GET  /cgi-bin/gettoken        WeCom: per (corp id, secret) = per agent, the
//                                 same token with its remaining lifetime.
//   GET  /gettoken                DingTalk legacy } one token per app, shared by
//   POST /v1.0/oauth2/accessToken DingTalk OAuth2 } both; a fetch within validity
//                                 returns it again and extends it to the full
//                                 lifetime.
// Wrong credentials answer with the platform's code: WeChat plain 40013
// (unknown appid) / 40001 (wrong secret), stable 40013 / 40125, WeCom 40013 /
// 40001, DingTalk legacy 40089, OAuth2 HTTP 400 "invalidClientIdOrSecret".
//
// "Business API" endpoints that check a token the way the platforms do:
//   GET /cgi-bin/fake_api?access_token=T    WeChat and WeCom: errcode 0, or
//                 40001 (a replaced WeChat token past its grace, or revoked by
//                 force_refresh), 42001 (expired), 40014 (unknown).
//   GET /fake_api?access_token=T            DingTalk legacy: errcode 0 or 40014.
//   GET /v1.0/fake_api, header x-acs-dingtalk-access-token: T
//                 DingTalk OAuth2: HTTP 200, or HTTP 400
//                 {"code":"InvalidAuthentication","message":...}.
//
// Time comes from the injected Clock (a ManualClock in tests), so token
// lifetimes and grace periods are tested by advancing it, never by sleeping.
// Latency (real time: a timer each request waits on before its answer) and
// faults (the next N calls of an endpoint) are injected. Every endpoint counts
// its calls. Other paths, or the wrong method, answer 404.
//
// Serving: one thread of the fake's own runs an Asio io_context; every
// connection is a chain of asynchronous reads, latency waits and writes on
// it, so a request held by the latency holds up no other (tests fire dozens
// at once) and the handlers never run concurrently. The destructor stops the
// io_context and joins the thread: pending requests are abandoned and their
// connections closed, without waiting out the latency.
//
// Thread safety: every method may be called from any thread while the server
// serves requests on its own thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "aicache/clock.h"
#include "aicache/testing/manual_clock.h"
#include "aicache/token_provider.h"

namespace aicache::testing {

enum class FakeEndpoint {
  kWeChatToken,          // GET  /cgi-bin/token
  kWeChatStableToken,    // POST /cgi-bin/stable_token
  kWeComToken,           // GET  /cgi-bin/gettoken
  kDingTalkLegacyToken,  // GET  /gettoken
  kDingTalkOAuth2Token,  // POST /v1.0/oauth2/accessToken
  kTencentApi,           // GET  /cgi-bin/fake_api
  kDingTalkLegacyApi,    // GET  /fake_api
  kDingTalkOAuth2Api,    // GET  /v1.0/fake_api
};

// One misbehaviour of an endpoint.
struct FakeFault {
  enum class Kind {
    kPlatformError,    // errcode endpoints: HTTP 200 {"errcode":code,"errmsg":message};
                       // OAuth2: HTTP http_status {"code":error_code,"message":message}
    kHttpStatus,       // HTTP http_status with a small HTML body (default 500)
    kNonJson,          // HTTP 200, an HTML page
    kTruncatedJson,    // HTTP 200, a complete response whose JSON is cut short
    kOversized,        // HTTP 200, valid JSON of `bytes` bytes
    kCloseConnection,  // headers promise a body, then the connection is closed
    kDingTalkBan,      // HTTP 403 {"status":1111,"wait":5,"punish":"deny"}
  };
  Kind kind = Kind::kPlatformError;
  int code = 0;             // kPlatformError on errcode endpoints
  std::string error_code;   // kPlatformError on OAuth2 (empty: the decimal code)
  std::string message;      // empty: the platform's usual message for `code`
  int http_status = 500;    // kHttpStatus; kPlatformError on OAuth2 (400 if 500 left)
  std::size_t bytes = 0;    // kOversized

  static FakeFault platform_error(int code, std::string message = {});
  static FakeFault oauth2_error(int http_status, std::string error_code, std::string message = {});
  static FakeFault http_status_code(int status);
  static FakeFault non_json();
  static FakeFault truncated_json();
  static FakeFault oversized(std::size_t bytes);
  static FakeFault close_connection();
  static FakeFault dingtalk_ban();
};

struct FakePlatformOptions {
  // Time for token lifetimes; default: Clock::real().
  std::shared_ptr<const Clock> clock;
  // Lifetime of a newly issued token (expires_in of a fresh token).
  std::chrono::seconds token_lifetime{7200};
  // WeChat plain: how long a replaced token keeps working.
  std::chrono::seconds plain_grace{300};
  // WeChat stable: a fetch within this much of the end issues a new token.
  std::chrono::seconds stable_rotation_window{300};
};

class FakePlatform {
 public:
  // Starts serving; throws std::runtime_error if it cannot.
  explicit FakePlatform(FakePlatformOptions options = {});
  ~FakePlatform();
  FakePlatform(const FakePlatform&) = delete;
  FakePlatform& operator=(const FakePlatform&) = delete;

  // "http://127.0.0.1:PORT", for AppCredentials::base_url.
  std::string base_url() const;
  std::uint16_t port() const noexcept;

  // Registers an app: channel, app_id (WeCom: corp id), agent_id (WeCom),
  // secret. api and base_url are ignored (an app may use either API).
  void add_app(const AppCredentials& app);

  // Every later request to a token or API endpoint waits this long first.
  void set_latency(std::chrono::milliseconds latency);

  // The next `times` calls of `endpoint` misbehave as `fault` (after the
  // latency, before anything else). Faults queue up in order.
  void inject(FakeEndpoint endpoint, FakeFault fault, int times = 1);

  // Calls received by an endpoint (faulty ones included).
  std::uint64_t calls(FakeEndpoint endpoint) const;
  // Calls of the five token endpoints together.
  std::uint64_t token_calls() const;

  // What the platform's API would say about `token` now: 0 if it is valid,
  // else the errcode (40001, 40014, 42001; DingTalk: 40014).
  int check_token(Channel channel, std::string_view token) const;

  // Tokens issued so far, by all token endpoints.
  std::uint64_t tokens_issued() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace aicache::testing
