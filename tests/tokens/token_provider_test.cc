// The providers over real libcurl against the local fakes of the platforms.
#include "aicache/testing/manual_clock.h"
#include "aicache/token_provider.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "aicache/clock.h"
#include "support/fake_platform.h"
#include "support/log_capture.h"

namespace aicache {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakeEndpoint;
using testing::FakeFault;
using testing::FakePlatform;

constexpr char kSecret[] = "Sup3r-S3cret/+&=value";

class TokenProviderTest : public ::testing::Test {
 protected:
  TokenProviderTest() : fake_({.clock = clock_}) {
    fake_.add_app(WeChat("plain"));
    fake_.add_app(WeCom("1000002", kSecret));
    fake_.add_app(WeCom("1000003", "other-agent-secret"));
    fake_.add_app(DingTalk("oauth2"));
  }

  AppCredentials WeChat(std::string api, std::string secret = kSecret) {
    return {.channel = Channel::kWeChat, .app_id = "wx0123456789abcdef", .secret = std::move(secret),
            .api = std::move(api)};
  }
  AppCredentials WeCom(std::string agent, std::string secret) {
    return {.channel = Channel::kWeCom, .app_id = "ww0123456789", .agent_id = std::move(agent),
            .secret = std::move(secret)};
  }
  AppCredentials DingTalk(std::string api, std::string secret = kSecret) {
    return {.channel = Channel::kDingTalk, .app_id = "dingabcdef", .secret = std::move(secret),
            .api = std::move(api)};
  }
  // A provider for `app` on the fake.
  std::unique_ptr<TokenProvider> Make(AppCredentials app, HttpOptions http = {}) {
    app.base_url = fake_.base_url();
    return make_token_provider(std::move(app), http);
  }

  // The error of a fetch that must fail, checked never to hold the secret.
  FetchError Fail(TokenProvider& p, const std::string& secret = kSecret) {
    auto r = p.fetch(false);
    EXPECT_FALSE(r.has_value()) << "got token " << (r ? r->access_token : "");
    if (r) return {};
    const FetchError& e = r.error();
    EXPECT_EQ(e.message.find(secret), std::string::npos) << e.message;
    EXPECT_EQ(e.platform_message.find(secret), std::string::npos) << e.platform_message;
    EXPECT_EQ(e.message.find("Sup3r"), std::string::npos) << e.message;
    EXPECT_EQ(e.to_error().to_string().find(secret), std::string::npos);
    return e;
  }

  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  FakePlatform fake_;
};

TEST_F(TokenProviderTest, EveryProviderFetchesAToken) {
  struct Row {
    AppCredentials app;
    FakeEndpoint endpoint;
  };
  const Row rows[] = {
      {WeChat("plain"), FakeEndpoint::kWeChatToken},
      {WeChat("stable"), FakeEndpoint::kWeChatStableToken},
      {WeChat(""), FakeEndpoint::kWeChatStableToken},  // stable is the default
      {WeCom("1000002", kSecret), FakeEndpoint::kWeComToken},
      {DingTalk("oauth2"), FakeEndpoint::kDingTalkOAuth2Token},
      {DingTalk(""), FakeEndpoint::kDingTalkOAuth2Token},  // oauth2 is the default
      {DingTalk("legacy"), FakeEndpoint::kDingTalkLegacyToken},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(std::string(to_string(row.app.channel)) + " " + row.app.api);
    const auto before = fake_.calls(row.endpoint);
    auto p = Make(row.app);
    auto r = p->fetch(false);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_FALSE(r->access_token.empty());
    EXPECT_GT(r->expires_in.count(), 0);
    EXPECT_LE(r->expires_in.count(), 7200);
    EXPECT_EQ(fake_.calls(row.endpoint), before + 1);
    EXPECT_EQ(fake_.check_token(row.app.channel, r->access_token), 0);
    EXPECT_EQ(p->app().app_id, row.app.app_id);
  }
}

TEST_F(TokenProviderTest, WrongSecretIsAConfigurationErrorWithThePlatformCode) {
  struct Row {
    AppCredentials app;
    int code;
    std::string error_code;
    int http_status;
  };
  const std::string wrong = "Wr0ng-S3cret&x=1";
  const Row rows[] = {
      {WeChat("plain", wrong), 40001, "", 200},
      {WeChat("stable", wrong), 40125, "", 200},
      {WeCom("1000002", wrong), 40001, "", 200},
      {DingTalk("legacy", wrong), 40089, "", 200},
      {DingTalk("oauth2", wrong), 0, "invalidClientIdOrSecret", 400},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(std::string(to_string(row.app.channel)) + " " + row.app.api);
    auto p = Make(row.app);
    const FetchError e = Fail(*p, wrong);
    EXPECT_EQ(e.kind, FetchFailure::kConfiguration) << e.message;
    EXPECT_EQ(e.platform_code, row.code);
    EXPECT_EQ(e.platform_error_code, row.error_code);
    EXPECT_EQ(e.http_status, row.http_status);
    EXPECT_FALSE(e.platform_message.empty());
    EXPECT_NE(e.message.find(e.platform_message), std::string::npos) << e.message;
    EXPECT_NE(e.message.find("127.0.0.1"), std::string::npos) << e.message;  // names the host
    EXPECT_EQ(e.to_error().code, ErrorCode::kConfig);
  }
}

TEST_F(TokenProviderTest, UnknownAppIdIsAConfigurationError) {
  AppCredentials app = WeChat("plain");
  app.app_id = "wxunknown";
  auto p = Make(app);
  const FetchError e = Fail(*p);
  EXPECT_EQ(e.kind, FetchFailure::kConfiguration);
  EXPECT_EQ(e.platform_code, 40013);
}

TEST_F(TokenProviderTest, IpNotWhitelistedFailsAfterExactlyOneCall) {
  fake_.inject(FakeEndpoint::kWeChatStableToken, FakeFault::platform_error(40164), 100);
  auto p = Make(WeChat("stable"));
  const FetchError e = Fail(*p);
  EXPECT_EQ(e.kind, FetchFailure::kConfiguration);
  EXPECT_EQ(e.platform_code, 40164);
  EXPECT_NE(e.message.find("40164"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("not in whitelist"), std::string::npos) << e.message;
  EXPECT_EQ(fake_.calls(FakeEndpoint::kWeChatStableToken), 1u);
}

TEST_F(TokenProviderTest, WeComIpNotWhitelisted) {
  fake_.inject(FakeEndpoint::kWeComToken, FakeFault::platform_error(60020));
  auto p = Make(WeCom("1000002", kSecret));
  const FetchError e = Fail(*p);
  EXPECT_EQ(e.kind, FetchFailure::kConfiguration);
  EXPECT_EQ(e.platform_code, 60020);
}

TEST_F(TokenProviderTest, BusyIsRetryableAndTheNextCallSucceeds) {
  fake_.inject(FakeEndpoint::kWeChatToken, FakeFault::platform_error(-1));
  auto p = Make(WeChat("plain"));
  const FetchError e = Fail(*p);
  EXPECT_EQ(e.kind, FetchFailure::kRetryable);
  EXPECT_EQ(e.platform_code, -1);
  EXPECT_EQ(e.to_error().code, ErrorCode::kUpstream);
  EXPECT_TRUE(p->fetch(false).has_value());
  EXPECT_EQ(fake_.calls(FakeEndpoint::kWeChatToken), 2u);
}

TEST_F(TokenProviderTest, DailyQuotaExceeded) {
  fake_.inject(FakeEndpoint::kWeChatToken, FakeFault::platform_error(45009));
  auto p = Make(WeChat("plain"));
  const FetchError e = Fail(*p);
  EXPECT_EQ(e.kind, FetchFailure::kQuotaExceeded);
  EXPECT_EQ(e.platform_code, 45009);
}

TEST_F(TokenProviderTest, DingTalkBanIsQuotaExceeded) {
  fake_.inject(FakeEndpoint::kDingTalkOAuth2Token, FakeFault::dingtalk_ban());
  auto p = Make(DingTalk("oauth2"));
  const FetchError e = Fail(*p);
  EXPECT_EQ(e.kind, FetchFailure::kQuotaExceeded);
  EXPECT_EQ(e.platform_code, 1111);
}

TEST_F(TokenProviderTest, TransportAndBodyFailuresAreRetryable) {
  struct Row {
    const char* name;
    FakeFault fault;
    const char* in_message;
  };
  const Row rows[] = {
      {"Http500", FakeFault::http_status_code(500), "HTTP 500"},
      {"NonJson", FakeFault::non_json(), "not JSON"},
      {"TruncatedJson", FakeFault::truncated_json(), "truncated"},
      {"Oversized", FakeFault::oversized(8 * 1024), "larger than the limit of 4096 bytes"},
      {"ConnectionClosed", FakeFault::close_connection(), "connection closed"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    for (const AppCredentials& app : {WeChat("plain"), DingTalk("oauth2")}) {
      const FakeEndpoint ep = app.channel == Channel::kWeChat ? FakeEndpoint::kWeChatToken
                                                              : FakeEndpoint::kDingTalkOAuth2Token;
      fake_.inject(ep, row.fault);
      auto p = Make(app, {.max_response_bytes = 4096});
      const FetchError e = Fail(*p);
      EXPECT_EQ(e.kind, FetchFailure::kRetryable) << e.message;
      EXPECT_NE(e.message.find(row.in_message), std::string::npos) << e.message;
      // The next call works again.
      auto ok = p->fetch(false);
      EXPECT_TRUE(ok.has_value()) << ok.error().message;
    }
  }
}

TEST_F(TokenProviderTest, SlowAnswerPastTheTotalTimeoutIsRetryable) {
  fake_.set_latency(milliseconds(3000));
  auto p = Make(WeChat("plain"), {.total_timeout = milliseconds(200)});
  const FetchError e = Fail(*p);
  EXPECT_EQ(e.kind, FetchFailure::kRetryable);
  EXPECT_NE(e.message.find("timed out"), std::string::npos) << e.message;
  EXPECT_EQ(e.http_status, 0);
}

TEST_F(TokenProviderTest, NothingListeningIsRetryable) {
  AppCredentials app = WeChat("plain");
  app.base_url = "http://127.0.0.1:1";
  auto p = make_token_provider(app, {});
  const FetchError e = Fail(*p);
  EXPECT_EQ(e.kind, FetchFailure::kRetryable);
  EXPECT_NE(e.message.find("cannot connect"), std::string::npos) << e.message;
  EXPECT_EQ(e.message.find("?"), std::string::npos) << e.message;  // no query in messages
}

TEST_F(TokenProviderTest, InvalidCredentialsFailWithoutACall) {
  AppCredentials app = WeChat("nonsense");
  auto p = make_token_provider(app, {});
  const FetchError e = Fail(*p);
  EXPECT_EQ(e.kind, FetchFailure::kConfiguration);
  EXPECT_NE(e.message.find("nonsense"), std::string::npos) << e.message;
  EXPECT_EQ(fake_.token_calls(), 0u);
}

// --- Threat model (issue 11) ------------------------------------------------------

// Finding 10: what a hostile or broken platform writes must not reach a log
// or terminal as it came: no line breaks (forged log lines), no escape
// sequences, no megabytes; filtered at the provider, so every consumer (the
// log, the CLI, the HTTP error bodies) gets clean text.
TEST_F(TokenProviderTest, HostilePlatformMessagesAreFilteredAndBounded) {
  const std::string hostile = "bad\r\naicache: info: FORGED\x1b[2J\x1b]0;owned\x07\xc2\x9b" "31m" +
                              std::string(10000, 'A');
  auto expect_clean = [](const std::string& text, std::size_t bound) {
    EXPECT_LE(text.size(), bound + 3) << text;
    for (char c : text) {
      const auto u = static_cast<unsigned char>(c);
      EXPECT_FALSE(u < 0x20 || u == 0x7f) << "control byte " << int(u) << " in " << text;
    }
    EXPECT_EQ(text.find("\xc2\x9b"), std::string::npos) << text;
  };

  auto wechat = Make(WeChat("plain"));
  fake_.inject(FakeEndpoint::kWeChatToken, FakeFault::platform_error(40164, hostile));
  FetchError e = Fail(*wechat);
  EXPECT_EQ(e.kind, FetchFailure::kConfiguration);
  EXPECT_EQ(e.platform_code, 40164);
  EXPECT_EQ(e.platform_message.rfind("bad??aicache: info: FORGED?[2J?]0;owned??31mAAA", 0), 0u)
      << e.platform_message;
  expect_clean(e.platform_message, kMaxPlatformMessageBytes);
  expect_clean(e.message, kMaxFetchMessageBytes);
  expect_clean(e.to_error().message, kMaxFetchMessageBytes);

  auto dingtalk = Make(DingTalk("oauth2"));
  fake_.inject(FakeEndpoint::kDingTalkOAuth2Token,
               FakeFault::oauth2_error(400, "Forbidden\n\x1b[0m", hostile));
  e = Fail(*dingtalk);
  EXPECT_EQ(e.platform_error_code, "Forbidden??[0m");
  expect_clean(e.platform_message, kMaxPlatformMessageBytes);
  expect_clean(e.message, kMaxFetchMessageBytes);
}

// Finding 6: expires_in up to INT64_MAX was taken as it came; beyond a day
// it overflowed on the way to milliseconds or made Redis refuse the expiry,
// below a minute every read refreshed. Clamped, and said once per app.
TEST_F(TokenProviderTest, AbsurdLifetimesAreClampedAndLoggedOnce) {
  testing::LogCapture log;
  FakePlatform forever({.clock = clock_, .token_lifetime = std::chrono::hours(24 * 3650)});
  FakePlatform blink({.clock = clock_, .token_lifetime = seconds(5)});
  for (FakePlatform* fake : {&forever, &blink}) fake->add_app(WeChat("plain"));

  AppCredentials app = WeChat("plain");
  app.base_url = forever.base_url();
  auto p = make_token_provider(app);
  for (int i = 0; i < 3; ++i) {
    auto token = p->fetch(false);
    ASSERT_TRUE(token) << token.error().message;
    EXPECT_EQ(token->expires_in, kMaxTokenLifetime);
  }
  app.base_url = blink.base_url();
  auto short_lived = make_token_provider(app);
  auto token = short_lived->fetch(false);
  ASSERT_TRUE(token) << token.error().message;
  EXPECT_EQ(token->expires_in, kMinTokenLifetime);

  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 2u) << log.all();  // once per provider, not per fetch
  EXPECT_NE(lines[0].find("expires_in 315360000 s; the token is kept 86400 s"), std::string::npos)
      << lines[0];
  EXPECT_NE(lines[1].find("expires_in 5 s; the token is kept 60 s"), std::string::npos)
      << lines[1];
  EXPECT_EQ(clamp_token_lifetime(seconds::max()), kMaxTokenLifetime);
  EXPECT_EQ(clamp_token_lifetime(seconds::min()), kMinTokenLifetime);
  EXPECT_EQ(clamp_token_lifetime(seconds(7200)), seconds(7200));
}

// Finding 7: an http:// base URL to anything but loopback would carry the
// secret across the network in clear text; refused before any request.
TEST_F(TokenProviderTest, PlainHttpBeyondLoopbackIsRefusedWithoutACall) {
  for (const char* base : {"http://proxy.example.com", "http://192.0.2.1:8080/wechat",
                           "http://127.0.0.1.example.com"}) {
    SCOPED_TRACE(base);
    AppCredentials app = WeChat("plain");
    app.base_url = base;
    EXPECT_EQ(validate(app).error().code, ErrorCode::kConfig);
    auto p = make_token_provider(app);
    const FetchError e = Fail(*p);
    EXPECT_EQ(e.kind, FetchFailure::kConfiguration);
    EXPECT_NE(e.message.find("clear text; use https://"), std::string::npos) << e.message;
  }
  for (const char* base : {"https://proxy.example.com", "http://127.0.0.1:1", "http://[::1]:1",
                           "http://localhost:1"}) {
    AppCredentials app = WeChat("plain");
    app.base_url = base;
    EXPECT_TRUE(validate(app)) << base;
  }
}

TEST_F(TokenProviderTest, WeChatPlainTokensRotateAndTheOldOneWorksFiveMoreMinutes) {
  auto p = Make(WeChat("plain"));
  auto first = p->fetch(false);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  auto second = p->fetch(false);
  ASSERT_TRUE(second.has_value()) << second.error().message;
  EXPECT_NE(first->access_token, second->access_token);
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, first->access_token), 0);

  clock_->advance(seconds(299));
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, first->access_token), 0);
  clock_->advance(seconds(2));
  const int code = fake_.check_token(Channel::kWeChat, first->access_token);
  EXPECT_EQ(code, 40001);
  EXPECT_TRUE(is_invalid_token_error(Channel::kWeChat, 200, code, ""));
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, second->access_token), 0);

  // A third fetch kills the first at once (if it were not dead already) and
  // gives the second its 5 minutes.
  auto third = p->fetch(false);
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, second->access_token), 0);
  clock_->advance(seconds(301));
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, second->access_token), 40001);
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, third->access_token), 0);
  clock_->advance(seconds(7200));
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, third->access_token), 42001);
}

TEST_F(TokenProviderTest, WeChatStableTokenComesBackWithTheRemainingLifetime) {
  auto p = Make(WeChat("stable"));
  auto first = p->fetch(false);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  EXPECT_EQ(first->expires_in, seconds(7200));

  clock_->advance(seconds(1000));
  auto again = p->fetch(false);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->access_token, first->access_token);
  EXPECT_EQ(again->expires_in, seconds(6200));

  clock_->advance(seconds(5855));  // 345 s left
  again = p->fetch(false);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->access_token, first->access_token);
  EXPECT_EQ(again->expires_in, seconds(345));

  // Within the last 5 minutes: a new token; the old one lives out its life.
  clock_->advance(seconds(60));
  auto rotated = p->fetch(false);
  ASSERT_TRUE(rotated.has_value());
  EXPECT_NE(rotated->access_token, first->access_token);
  EXPECT_EQ(rotated->expires_in, seconds(7200));
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, first->access_token), 0);
  clock_->advance(seconds(285));
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, first->access_token), 42001);
}

TEST_F(TokenProviderTest, WeChatStableForceRefreshKillsTheOldTokenAtOnce) {
  auto p = Make(WeChat("stable"));
  auto first = p->fetch(false);
  ASSERT_TRUE(first.has_value());
  auto forced = p->fetch(true);
  ASSERT_TRUE(forced.has_value()) << forced.error().message;
  EXPECT_NE(forced->access_token, first->access_token);
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, first->access_token), 40001);
  // The platform allows a forced refresh only 30 s after the last one.
  const FetchError e = [&] {
    auto r = p->fetch(true);
    EXPECT_FALSE(r.has_value());
    return r ? FetchError{} : r.error();
  }();
  EXPECT_EQ(e.platform_code, 45011);
  EXPECT_EQ(e.kind, FetchFailure::kRetryable);
  clock_->advance(seconds(31));
  EXPECT_TRUE(p->fetch(true).has_value());
}

TEST_F(TokenProviderTest, WeComSameTokenWithinValidityPerAgent) {
  auto agent2 = Make(WeCom("1000002", kSecret));
  auto agent3 = Make(WeCom("1000003", "other-agent-secret"));
  auto a = agent2->fetch(false);
  auto b = agent3->fetch(false);
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_NE(a->access_token, b->access_token);
  clock_->advance(seconds(100));
  auto again = agent2->fetch(false);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->access_token, a->access_token);
  EXPECT_EQ(again->expires_in, seconds(7100));
  clock_->advance(seconds(7100));
  EXPECT_EQ(fake_.check_token(Channel::kWeCom, a->access_token), 42001);
  auto fresh = agent2->fetch(false);
  ASSERT_TRUE(fresh.has_value());
  EXPECT_NE(fresh->access_token, a->access_token);
}

TEST_F(TokenProviderTest, DingTalkSameTokenWithinValidityAndExtended) {
  auto oauth2 = Make(DingTalk("oauth2"));
  auto legacy = Make(DingTalk("legacy"));
  auto a = oauth2->fetch(false);
  ASSERT_TRUE(a.has_value());
  clock_->advance(seconds(7000));
  auto b = legacy->fetch(false);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->access_token, a->access_token);
  EXPECT_EQ(b->expires_in, seconds(7200));
  clock_->advance(seconds(7000));  // alive only because the fetch extended it
  EXPECT_EQ(fake_.check_token(Channel::kDingTalk, a->access_token), 0);
  clock_->advance(seconds(201));
  EXPECT_EQ(fake_.check_token(Channel::kDingTalk, a->access_token), 40014);
}

TEST_F(TokenProviderTest, FetchesFromManyThreadsShareOneProvider) {
  auto p = Make(WeCom("1000002", kSecret));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 5; ++j) {
        if (p->fetch(false).has_value()) ok.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 40);
  EXPECT_EQ(fake_.calls(FakeEndpoint::kWeComToken), 40u);
}

}  // namespace
}  // namespace aicache
