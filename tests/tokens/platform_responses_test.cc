// The parsers of the token endpoints' answers, one table per platform API,
// and the sorting of errors from platform API calls (is_invalid_token_error).
#include "tokens/platform_responses.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "aicache/token_provider.h"

namespace aicache::tokens {
namespace {

using Parser = std::function<ParseResult(int, std::string_view)>;

struct Case {
  std::string name;
  int http_status;
  std::string body;
  // Success: the token and expires_in. Failure: the kind and platform code.
  bool ok;
  std::string token = {};
  long long expires_in = 0;
  FetchFailure kind = FetchFailure::kRetryable;
  int platform_code = 0;
  std::string platform_error_code = {};
};

void Check(const Parser& parse, const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const ParseResult r = parse(c.http_status, c.body);
    if (c.ok) {
      ASSERT_TRUE(r.has_value()) << r.error().message;
      EXPECT_EQ(r->access_token, c.token);
      EXPECT_EQ(r->expires_in.count(), c.expires_in);
      continue;
    }
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, c.kind) << r.error().message;
    EXPECT_EQ(r.error().platform_code, c.platform_code);
    EXPECT_EQ(r.error().platform_error_code, c.platform_error_code);
    EXPECT_EQ(r.error().http_status, c.http_status);
    EXPECT_FALSE(r.error().message.empty());
  }
}

// Failures every errcode-style API (WeChat, WeCom, DingTalk legacy) sorts the
// same way: answers that are not the expected JSON.
std::vector<Case> MalformedCases() {
  using F = FetchFailure;
  return {
      {"EmptyBody", 200, "", false, {}, 0, F::kRetryable},
      {"NotJson", 200, "<html>502 Bad Gateway</html>", false, {}, 0, F::kRetryable},
      {"Truncated", 200, R"({"access_token":"ABC)", false, {}, 0, F::kRetryable},
      {"NotAnObject", 200, R"(["access_token"])", false, {}, 0, F::kRetryable},
      {"NoToken", 200, R"({"expires_in":7200})", false, {}, 0, F::kRetryable},
      {"TokenNotString", 200, R"({"access_token":42,"expires_in":7200})", false, {}, 0,
       F::kRetryable},
      {"EmptyToken", 200, R"({"access_token":"","expires_in":7200})", false, {}, 0, F::kRetryable},
      {"TokenWithSpace", 200, R"({"access_token":"A B","expires_in":7200})", false, {}, 0,
       F::kRetryable},
      {"NoExpiry", 200, R"({"access_token":"T"})", false, {}, 0, F::kRetryable},
      {"ExpiryString", 200, R"({"access_token":"T","expires_in":"7200"})", false, {}, 0,
       F::kRetryable},
      {"ExpiryFloat", 200, R"({"access_token":"T","expires_in":7200.5})", false, {}, 0,
       F::kRetryable},
      {"ExpiryZero", 200, R"({"access_token":"T","expires_in":0})", false, {}, 0, F::kRetryable},
      {"ExpiryNegative", 200, R"({"access_token":"T","expires_in":-5})", false, {}, 0,
       F::kRetryable},
      {"ErrcodeString", 200, R"({"errcode":"40013","errmsg":"x"})", false, {}, 0, F::kRetryable},
      {"Http500", 500, "<html>Internal Server Error</html>", false, {}, 0, F::kRetryable},
      {"Http502Json", 502, R"({"access_token":"T","expires_in":7200})", false, {}, 0,
       F::kRetryable},
      {"Http404", 404, "not found", false, {}, 0, F::kRetryable},
  };
}

TEST(PlatformResponsesTest, WeChatTokenAndErrors) {
  using F = FetchFailure;
  std::vector<Case> cases = {
      {"Fresh", 200, R"({"access_token":"ACCESS_TOKEN","expires_in":7200})", true, "ACCESS_TOKEN",
       7200},
      {"StableRemaining", 200, R"({"access_token":"STABLE","expires_in":345})", true, "STABLE", 345},
      {"ErrcodeZeroWithToken", 200, R"({"errcode":0,"access_token":"T","expires_in":7000})", true,
       "T", 7000},
      {"Busy", 200, R"({"errcode":-1,"errmsg":"system error"})", false, {}, 0, F::kRetryable, -1},
      {"WrongSecret", 200, R"({"errcode":40001,"errmsg":"invalid credential"})", false, {}, 0,
       F::kConfiguration, 40001},
      {"GrantType", 200, R"({"errcode":40002,"errmsg":"invalid grant_type"})", false, {}, 0,
       F::kConfiguration, 40002},
      {"AppId", 200, R"({"errcode":40013,"errmsg":"invalid appid"})", false, {}, 0,
       F::kConfiguration, 40013},
      {"AppSecret", 200, R"({"errcode":40125,"errmsg":"invalid appsecret"})", false, {}, 0,
       F::kConfiguration, 40125},
      {"IpWhitelist", 200, R"({"errcode":40164,"errmsg":"invalid ip"})", false, {}, 0,
       F::kConfiguration, 40164},
      {"Quota", 200, R"({"errcode":45009,"errmsg":"reach max api daily quota limit"})", false, {},
       0, F::kQuotaExceeded, 45009},
      {"TooOften", 200, R"({"errcode":45011,"errmsg":"api minute-quota reach limit"})", false, {},
       0, F::kRetryable, 45011},
      {"UnknownCode", 200, R"({"errcode":48001,"errmsg":"api unauthorized"})", false, {}, 0,
       F::kRetryable, 48001},
  };
  for (Case c : MalformedCases()) cases.push_back(std::move(c));
  Check(parse_wechat_token_response, cases);
}

TEST(PlatformResponsesTest, WeComTokenAndErrors) {
  using F = FetchFailure;
  std::vector<Case> cases = {
      {"Fresh", 200, R"({"errcode":0,"errmsg":"ok","access_token":"WECOM","expires_in":7200})",
       true, "WECOM", 7200},
      {"Busy", 200, R"({"errcode":-1,"errmsg":"system busy"})", false, {}, 0, F::kRetryable, -1},
      {"WrongSecret40001", 200, R"({"errcode":40001,"errmsg":"invalid secret"})", false, {}, 0,
       F::kConfiguration, 40001},
      {"CorpId", 200, R"({"errcode":40013,"errmsg":"invalid corpid"})", false, {}, 0,
       F::kConfiguration, 40013},
      {"WrongSecret40091", 200, R"({"errcode":40091,"errmsg":"secret is invalid"})", false, {}, 0,
       F::kConfiguration, 40091},
      {"Quota", 200, R"({"errcode":45009,"errmsg":"api freq out of limit"})", false, {}, 0,
       F::kQuotaExceeded, 45009},
      {"Concurrent", 200, R"({"errcode":45033,"errmsg":"api concurrent out of limit"})", false, {},
       0, F::kRetryable, 45033},
      {"IpWhitelist", 200, R"({"errcode":60020,"errmsg":"not allow to access from your ip"})",
       false, {}, 0, F::kConfiguration, 60020},
  };
  for (Case c : MalformedCases()) cases.push_back(std::move(c));
  Check(parse_wecom_token_response, cases);
}

TEST(PlatformResponsesTest, DingTalkLegacyTokenAndErrors) {
  using F = FetchFailure;
  std::vector<Case> cases = {
      {"Fresh", 200, R"({"errcode":0,"errmsg":"ok","access_token":"DING","expires_in":7200})",
       true, "DING", 7200},
      {"Busy", 200, R"({"errcode":-1,"errmsg":"系统繁忙"})", false, {}, 0, F::kRetryable, -1},
      {"WrongSecret", 200, R"({"errcode":40089,"errmsg":"不合法的corpid或corpsecret"})", false,
       {}, 0, F::kConfiguration, 40089},
      {"SecretError40001", 200, R"({"errcode":40001,"errmsg":"Secret错误"})", false, {}, 0,
       F::kConfiguration, 40001},
      {"IpWhitelist", 200, R"({"errcode":60020,"errmsg":"访问ip不在白名单之中"})", false, {}, 0,
       F::kConfiguration, 60020},
      {"Ban", 403, R"({"status":1111,"wait":5,"punish":"deny"})", false, {}, 0,
       F::kQuotaExceeded, 1111},
      {"BanHttp200", 200, R"({"status":1111,"wait":5,"punish":"deny"})", false, {}, 0,
       F::kQuotaExceeded, 1111},
  };
  for (Case c : MalformedCases()) cases.push_back(std::move(c));
  Check(parse_dingtalk_legacy_token_response, cases);
}

TEST(PlatformResponsesTest, DingTalkOAuth2TokenAndErrors) {
  using F = FetchFailure;
  const std::vector<Case> cases = {
      {"Fresh", 200, R"({"accessToken":"OAUTH","expireIn":7200})", true, "OAUTH", 7200},
      {"SnakeCaseIsNotThisApi", 200, R"({"access_token":"T","expires_in":7200})", false, {}, 0,
       F::kRetryable},
      {"BadSecret", 400, R"({"code":"invalidClientIdOrSecret","message":"无效的clientId"})", false,
       {}, 0, F::kConfiguration, 0, "invalidClientIdOrSecret"},
      {"MissingBody", 400, R"({"code":"MissingBody","message":"body is mandatory"})", false, {}, 0,
       F::kConfiguration, 0, "MissingBody"},
      {"IpWhitelist", 403, R"({"code":"Forbidden.AccessDenied.IpNotInWhiteList","message":"x"})",
       false, {}, 0, F::kConfiguration, 0, "Forbidden.AccessDenied.IpNotInWhiteList"},
      {"Throttled", 429, R"({"code":"Throttling.Api","message":"slow down"})", false, {}, 0,
       F::kRetryable, 0, "Throttling.Api"},
      {"ServerError", 500, R"({"code":"ServiceUnavailable","message":"x"})", false, {}, 0,
       F::kRetryable, 0, "ServiceUnavailable"},
      {"ServerErrorHtml", 503, "<html>busy</html>", false, {}, 0, F::kRetryable},
      {"Ban", 403, R"({"status":1111,"wait":5,"punish":"deny"})", false, {}, 0,
       F::kQuotaExceeded, 1111},
      {"NotJson", 200, "<html></html>", false, {}, 0, F::kRetryable},
      {"Truncated", 200, R"({"accessToken":"AB)", false, {}, 0, F::kRetryable},
      {"NoToken", 200, R"({"expireIn":7200})", false, {}, 0, F::kRetryable},
      {"ExpiryZero", 200, R"({"accessToken":"T","expireIn":0})", false, {}, 0, F::kRetryable},
      {"ExpiryString", 200, R"({"accessToken":"T","expireIn":"7200"})", false, {}, 0,
       F::kRetryable},
  };
  Check(parse_dingtalk_oauth2_token_response, cases);
}

TEST(PlatformResponsesTest, ErrorMessagesCarryCodeAndPlatformMessage) {
  const ParseResult r =
      parse_wechat_token_response(200, R"({"errcode":40164,"errmsg":"invalid ip 1.2.3.4"})");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().platform_message, "invalid ip 1.2.3.4");
  EXPECT_NE(r.error().message.find("40164"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("invalid ip 1.2.3.4"), std::string::npos);
  EXPECT_NE(r.error().message.find("whitelist"), std::string::npos);
}

TEST(PlatformResponsesTest, FetchErrorToError) {
  FetchError e;
  e.message = "m";
  e.kind = FetchFailure::kConfiguration;
  EXPECT_EQ(e.to_error().code, ErrorCode::kConfig);
  EXPECT_EQ(e.to_error().message, "m");
  e.kind = FetchFailure::kRetryable;
  EXPECT_EQ(e.to_error().code, ErrorCode::kUpstream);
  e.kind = FetchFailure::kQuotaExceeded;
  EXPECT_EQ(e.to_error().code, ErrorCode::kUpstream);
}

TEST(PlatformResponsesTest, InvalidTokenErrors) {
  struct Row {
    Channel channel;
    int http_status;
    int code;
    const char* error_code;
    bool invalid;
  };
  const Row rows[] = {
      {Channel::kWeChat, 200, 40001, "", true},
      {Channel::kWeChat, 200, 40014, "", true},
      {Channel::kWeChat, 200, 42001, "", true},
      {Channel::kWeChat, 200, 41001, "", false},
      {Channel::kWeChat, 200, 45009, "", false},
      {Channel::kWeChat, 200, 0, "", false},
      {Channel::kWeCom, 200, 40014, "", true},
      {Channel::kWeCom, 200, 42001, "", true},
      {Channel::kWeCom, 200, 40001, "", false},  // WeCom: a bad secret, not a bad token
      {Channel::kWeCom, 200, 301002, "", false},
      {Channel::kDingTalk, 200, 40014, "", true},
      {Channel::kDingTalk, 400, 0, "InvalidAuthentication", true},
      {Channel::kDingTalk, 401, 0, "InvalidAuthentication", false},
      {Channel::kDingTalk, 400, 0, "MissingParameter", false},
      {Channel::kDingTalk, 200, 42001, "", false},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(is_invalid_token_error(r.channel, r.http_status, r.code, r.error_code), r.invalid)
        << to_string(r.channel) << " " << r.http_status << " " << r.code << " " << r.error_code;
  }
}

TEST(PlatformResponsesTest, ChannelNames) {
  for (Channel c : {Channel::kWeChat, Channel::kWeCom, Channel::kDingTalk}) {
    EXPECT_EQ(parse_channel(to_string(c)), c);
  }
  EXPECT_EQ(to_string(Channel::kWeCom), "wecom");
  EXPECT_FALSE(parse_channel("WeChat").has_value());
  EXPECT_FALSE(parse_channel("").has_value());
}

TEST(PlatformResponsesTest, ValidateCredentials) {
  const AppCredentials good{.channel = Channel::kWeChat, .app_id = "wx1", .secret = "s"};
  EXPECT_TRUE(validate(good).has_value());
  EXPECT_EQ(effective_api(good), "stable");

  AppCredentials bad = good;
  bad.secret.clear();
  ASSERT_FALSE(validate(bad).has_value());
  EXPECT_EQ(validate(bad).error().code, ErrorCode::kConfig);

  bad = good;
  bad.api = "legacy";
  EXPECT_FALSE(validate(bad).has_value());
  bad = good;
  bad.app_id.clear();
  EXPECT_FALSE(validate(bad).has_value());
  bad = good;
  bad.base_url = "ftp://x";
  EXPECT_FALSE(validate(bad).has_value());
  bad = good;
  bad.agent_id = "1000002";
  EXPECT_FALSE(validate(bad).has_value());

  AppCredentials ding{.channel = Channel::kDingTalk, .app_id = "k", .secret = "topsecret"};
  EXPECT_EQ(effective_api(ding), "oauth2");
  ding.api = "legacy";
  EXPECT_TRUE(validate(ding).has_value());
  ding.api = "stable";
  ASSERT_FALSE(validate(ding).has_value());
  EXPECT_EQ(validate(ding).error().message.find("topsecret"), std::string::npos);

  AppCredentials wecom{.channel = Channel::kWeCom, .app_id = "corp", .agent_id = "1000002",
                       .secret = "s"};
  EXPECT_TRUE(validate(wecom).has_value());
  wecom.api = "plain";
  EXPECT_FALSE(validate(wecom).has_value());
}

}  // namespace
}  // namespace aicache::tokens
