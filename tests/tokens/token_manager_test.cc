// TokenManager against the local platform fakes over real HTTP, on a manual
// clock: waiting advances the clock, nothing sleeps for a TTL.
#include "aicache/token_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <expected>
#include <set>
#include <thread>
#include <vector>

#include "aicache/keys.h"
#include "aicache/memory_store.h"
#include "aicache/testing/manual_clock.h"
#include "support/fake_platform.h"
#include "support/faulty_store.h"

namespace aicache {
namespace {

using namespace std::chrono_literals;
using testing::FakeEndpoint;
using testing::FakeFault;
using testing::FakePlatform;
using ::testing::HasSubstr;
using ::testing::Not;

class TokenManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = make_memory_store({.clock = clock_});
    cache_ = std::shared_ptr<AssistantCache>(*AssistantCache::create(store_, {.key_prefix = "t"}));
    manager_ = MakeManager("process-a");
  }

  std::shared_ptr<TokenManager> MakeManager(std::string owner, TokenManagerOptions options = {}) {
    options.clock = clock_;
    options.sleep = [clock = clock_](std::chrono::nanoseconds d) { clock->advance(d); };
    options.owner_id = std::move(owner);
    options.http.total_timeout = 2s;
    auto manager = TokenManager::create(cache_, std::move(options));
    EXPECT_TRUE(manager) << manager.error().to_string();
    return std::move(*manager);
  }

  AppCredentials App(std::string api = "plain", Channel channel = Channel::kWeChat,
                     std::string app_id = "wx1") {
    AppCredentials app{.channel = channel, .app_id = std::move(app_id), .secret = kSecret,
                       .api = std::move(api), .base_url = fake_.base_url()};
    if (channel == Channel::kWeCom) app.agent_id = "1000002";
    fake_.add_app(app);
    return app;
  }

  void AddApp(TokenManager& manager, const AppCredentials& app) {
    ASSERT_TRUE(manager.add_app(app));
  }

  std::string Get(TokenManager& manager, std::string_view app = "wx1") {
    auto token = manager.get("wechat", app);
    EXPECT_TRUE(token) << token.error().to_string();
    return token ? token->access_token : std::string();
  }

  static constexpr const char* kSecret = "s3cr3t-app-secret";
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  FakePlatform fake_{{.clock = clock_}};
  std::shared_ptr<Store> store_;
  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> manager_;
};

TEST_F(TokenManagerTest, ColdStartFetchesOnceThenServesFromTheStore) {
  AddApp(*manager_, App());
  const std::string token = Get(*manager_);
  EXPECT_FALSE(token.empty());
  EXPECT_EQ(Get(*manager_), token);
  EXPECT_EQ(Get(*manager_), token);
  EXPECT_EQ(fake_.token_calls(), 1u);
}

// A provider that answers with whatever lifetime it is given.
class FixedLifetimeProvider final : public TokenProvider {
 public:
  FixedLifetimeProvider(std::string app_id, std::chrono::seconds lifetime)
      : app_{.channel = Channel::kWeChat, .app_id = std::move(app_id), .secret = "s"},
        lifetime_(lifetime) {}
  std::expected<FetchedToken, FetchError> fetch(bool) override {
    ++fetches;
    return FetchedToken{"token-" + std::to_string(fetches.load()), lifetime_};
  }
  const AppCredentials& app() const override { return app_; }
  std::atomic<int> fetches{0};

 private:
  AppCredentials app_;
  std::chrono::seconds lifetime_;
};

// Threat model, finding 6: a provider's lifetime is clamped before it turns
// into milliseconds and a store expiry (seconds::max() used to overflow).
TEST_F(TokenManagerTest, AbsurdLifetimesOfAnyProviderAreClamped) {
  auto forever = std::make_unique<FixedLifetimeProvider>("wxforever", std::chrono::seconds::max());
  auto* forever_p = forever.get();
  ASSERT_TRUE(manager_->add_app(std::move(forever)));
  auto token = manager_->get("wechat", "wxforever");
  ASSERT_TRUE(token) << token.error().to_string();
  EXPECT_EQ(token->expires_in, kMaxTokenLifetime);
  auto ttl = cache_->ttl("ai_assistant:access_token:wechat:wxforever");
  ASSERT_TRUE(ttl);
  EXPECT_EQ(ttl->state, KeyTtl::State::kExpiring);
  EXPECT_EQ(ttl->remaining, std::chrono::milliseconds(kMaxTokenLifetime));
  // Stored, so served without another fetch until the day is nearly over.
  clock_->advance(std::chrono::hours(23));
  EXPECT_EQ(manager_->get("wechat", "wxforever")->access_token, "token-1");
  EXPECT_EQ(forever_p->fetches.load(), 1);

  ASSERT_TRUE(manager_->add_app(std::make_unique<FixedLifetimeProvider>("wxneg", -1s)));
  token = manager_->get("wechat", "wxneg");
  ASSERT_TRUE(token) << token.error().to_string();
  EXPECT_EQ(token->expires_in, kMinTokenLifetime);
}

TEST_F(TokenManagerTest, StoresTheTokenForItsRealRemainingValidity) {
  AddApp(*manager_, App());
  const std::string token = Get(*manager_);
  auto ttl = store_->ttl("t:1:ai_assistant:access_token:wechat:wx1");
  ASSERT_TRUE(ttl);
  EXPECT_EQ(ttl->remaining, 7200s);
  // What a Django app reads from the same key is the plain token.
  EXPECT_EQ(*cache_->get_access_token("wechat", "wx1"), token);
}

TEST_F(TokenManagerTest, RefreshesWithinTheMarginAndKeepsServingMeanwhile) {
  AddApp(*manager_, App());
  const std::string first = Get(*manager_);
  clock_->advance(7200s - 301s);
  EXPECT_EQ(Get(*manager_), first);
  EXPECT_EQ(fake_.token_calls(), 1u);
  clock_->advance(2s);  // 299 s left: inside the 300 s margin
  const std::string second = Get(*manager_);
  EXPECT_NE(second, first);
  EXPECT_EQ(fake_.token_calls(), 2u);
  EXPECT_EQ(manager_->get("wechat", "wx1")->expires_in, 7200s);
}

TEST_F(TokenManagerTest, ServesTheValidTokenWhileAnotherProcessRefreshes) {
  AddApp(*manager_, App());
  const std::string first = Get(*manager_);
  clock_->advance(7200s - 100s);
  // Another process holds the lease: this one must not wait, nor fetch.
  ASSERT_EQ(store_->add("t:1:ai_assistant:token_lease:wechat:wx1", "process-b:1", 30s), true);
  EXPECT_EQ(Get(*manager_), first);
  EXPECT_EQ(fake_.token_calls(), 1u);
}

TEST_F(TokenManagerTest, ExpiredTokenIsFetchedAgain) {
  AddApp(*manager_, App());
  EXPECT_EQ(manager_->stats()[0].refresh_margin_seconds, 300);
  const std::string first = Get(*manager_);
  clock_->advance(7200s);
  EXPECT_NE(Get(*manager_), first);
  EXPECT_EQ(fake_.token_calls(), 2u);
}

TEST_F(TokenManagerTest, StableTokenIsRefreshedInsideThePlatformsReissueWindow) {
  AddApp(*manager_, App("stable"));
  const std::string first = Get(*manager_);
  // At 295 s left the stable API would still return the same token: wait.
  clock_->advance(7200s - 295s);
  EXPECT_EQ(Get(*manager_), first);
  EXPECT_EQ(fake_.token_calls(), 1u);
  clock_->advance(6s);  // 289 s left: inside the last 5 minutes
  EXPECT_NE(Get(*manager_), first);
  EXPECT_EQ(fake_.token_calls(), 2u);
  // The statistics say where this app refreshes.
  EXPECT_EQ(manager_->stats()[0].refresh_margin_seconds, 290);
}

TEST_F(TokenManagerTest, OneFetchForManyThreads) {
  AddApp(*manager_, App());
  fake_.set_latency(200ms);
  constexpr int kThreads = 32;
  std::barrier start(kThreads);
  std::vector<std::string> tokens(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      auto token = manager_->get("wechat", "wx1");
      if (token) tokens[i] = token->access_token;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(fake_.token_calls(), 1u);
  EXPECT_EQ(std::set<std::string>(tokens.begin(), tokens.end()).size(), 1u);
  EXPECT_FALSE(tokens[0].empty());
  EXPECT_GE(manager_->stats()[0].waits, 1u);
}

TEST_F(TokenManagerTest, InvalidateRemovesOnlyTheTokenThatFailed) {
  AddApp(*manager_, App());
  const std::string first = Get(*manager_);
  EXPECT_EQ(manager_->invalidate("wechat", "wx1", "SOME_OTHER_TOKEN"), false);
  EXPECT_EQ(Get(*manager_), first);
  EXPECT_EQ(manager_->invalidate("wechat", "wx1", first), true);
  const std::string second = Get(*manager_);
  EXPECT_NE(second, first);
  // A late caller still holding the first token must not kill the second.
  EXPECT_EQ(manager_->invalidate("wechat", "wx1", first), false);
  EXPECT_EQ(Get(*manager_), second);
  EXPECT_EQ(fake_.token_calls(), 2u);
}

TEST_F(TokenManagerTest, ThirtyTwoCallersWithARejectedTokenRefetchOnce) {
  AddApp(*manager_, App());
  const std::string rejected = Get(*manager_);
  fake_.set_latency(50ms);
  constexpr int kThreads = 32;
  std::barrier start(kThreads);
  std::vector<std::string> tokens(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      (void)manager_->invalidate("wechat", "wx1", rejected);
      auto token = manager_->get("wechat", "wx1");
      if (token) tokens[i] = token->access_token;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(fake_.token_calls(), 2u);
  EXPECT_EQ(std::set<std::string>(tokens.begin(), tokens.end()).size(), 1u);
  EXPECT_NE(tokens[0], rejected);
}

TEST_F(TokenManagerTest, IpNotWhitelistedIsOneCallAndAConfigurationError) {
  AddApp(*manager_, App());
  fake_.inject(FakeEndpoint::kWeChatToken, FakeFault::platform_error(40164), 100);
  for (int i = 0; i < 5; ++i) {
    auto token = manager_->get("wechat", "wx1");
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::kConfig);
    EXPECT_THAT(token.error().message, HasSubstr("40164"));
    EXPECT_THAT(token.error().message, Not(HasSubstr(kSecret)));
  }
  EXPECT_EQ(fake_.token_calls(), 1u);
  EXPECT_EQ(manager_->stats()[0].fetch_failures_configuration, 1u);
}

TEST_F(TokenManagerTest, AnotherProcessesFailureIsNotRepeated) {
  AddApp(*manager_, App());
  auto other = MakeManager("process-b");
  AddApp(*other, App());
  fake_.inject(FakeEndpoint::kWeChatToken, FakeFault::platform_error(40164), 100);
  EXPECT_FALSE(manager_->get("wechat", "wx1"));
  auto token = other->get("wechat", "wx1");
  ASSERT_FALSE(token);
  EXPECT_EQ(token.error().code, ErrorCode::kConfig);
  EXPECT_THAT(token.error().message, HasSubstr("another process"));
  EXPECT_EQ(fake_.token_calls(), 1u);
}

TEST_F(TokenManagerTest, BusyPlatformIsRetriedWithBackoff) {
  AddApp(*manager_, App());
  fake_.inject(FakeEndpoint::kWeChatToken, FakeFault::platform_error(-1), 2);
  const auto before = clock_->now();
  EXPECT_FALSE(Get(*manager_).empty());
  EXPECT_EQ(fake_.token_calls(), 3u);
  // Two backoffs passed on the clock: 500 ms and 1 s, each with up to 50 % jitter.
  EXPECT_GE(clock_->now() - before, 1500ms);
  EXPECT_LE(clock_->now() - before, 2250ms);
  EXPECT_EQ(manager_->stats()[0].fetch_failures_retryable, 2u);
}

TEST_F(TokenManagerTest, UpstreamDownServesTheValidTokenToItsEndThenAClearError) {
  AddApp(*manager_, App());
  const auto expiry = clock_->now() + 7200s;
  const std::string token = Get(*manager_);
  fake_.inject(FakeEndpoint::kWeChatToken, FakeFault::http_status_code(500), 1'000'000);
  clock_->advance(7200s - 300s);
  // A request every second through the whole margin (the retries' backoff
  // moves the clock too): always the valid token.
  int requests = 0;
  while (clock_->now() + 1s < expiry) {
    ASSERT_EQ(Get(*manager_), token) << "request " << requests;
    ++requests;
    clock_->advance(1s);
  }
  clock_->advance(1s);
  auto expired = manager_->get("wechat", "wx1");
  ASSERT_FALSE(expired);
  EXPECT_EQ(expired.error().code, ErrorCode::kUpstream);
  EXPECT_THAT(expired.error().message, HasSubstr("500"));
  // Bounded by the backoff (0.5 s doubling to 60 s, 3 attempts a refresh):
  // far fewer calls than requests.
  EXPECT_GT(requests, 200);
  EXPECT_LE(fake_.token_calls(), 1u + 3u * 14u);
}

TEST_F(TokenManagerTest, QuotaExceededStopsFetchingForThatApp) {
  AddApp(*manager_, App());
  const std::string token = Get(*manager_);
  fake_.inject(FakeEndpoint::kWeChatToken, FakeFault::platform_error(45009), 1000);
  clock_->advance(7200s - 200s);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(Get(*manager_), token);
  EXPECT_EQ(fake_.token_calls(), 2u);
  EXPECT_EQ(manager_->stats()[0].fetch_failures_quota, 1u);
  EXPECT_THAT(manager_->stats()[0].last_error, HasSubstr("45009"));
}

TEST_F(TokenManagerTest, LeaseOfACrashedProcessExpiresAndAnotherFetches) {
  AddApp(*manager_, App());
  // Process B took the lease and died before storing a token.
  ASSERT_EQ(store_->add("t:1:ai_assistant:token_lease:wechat:wx1", "process-b:1", 30s), true);
  const auto before = clock_->now();
  EXPECT_FALSE(Get(*manager_).empty());
  EXPECT_EQ(fake_.token_calls(), 1u);
  EXPECT_GE(clock_->now() - before, 30s);
  EXPECT_LE(clock_->now() - before, 31s);
}

TEST_F(TokenManagerTest, BackgroundRefreshHappensBeforeTheMargin) {
  AddApp(*manager_, App());
  const std::string first = Get(*manager_);
  clock_->advance(7200s - 361s);
  EXPECT_EQ(manager_->refresh_due(), 0u);
  clock_->advance(2s);  // 359 s left: inside margin + lead (360 s)
  EXPECT_EQ(manager_->refresh_due(), 1u);
  EXPECT_EQ(fake_.token_calls(), 2u);
  EXPECT_NE(Get(*manager_), first);
  EXPECT_EQ(manager_->refresh_due(), 0u);
  EXPECT_EQ(fake_.token_calls(), 2u);
}

// The refresher must run: its first pass finds no token and fetches one. The
// wait is for that call (bounded by a deadline of real time, generous for
// sanitizer builds), never for a fixed time. On the manual clock the token
// then stays fresh, so later passes fetch nothing, and the token the
// refresher stored is what a request gets without another fetch.
TEST_F(TokenManagerTest, RefresherThreadStartsAndStops) {
  AddApp(*manager_, App());
  manager_->start_refresher(1ms);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (fake_.token_calls() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  manager_->stop_refresher();
  manager_->stop_refresher();  // idempotent
  ASSERT_GE(fake_.token_calls(), 1u) << "the refresher never fetched within 30 s";
  EXPECT_EQ(fake_.token_calls(), 1u);
  EXPECT_FALSE(Get(*manager_).empty());
  EXPECT_EQ(fake_.token_calls(), 1u);
}

TEST_F(TokenManagerTest, ASimulatedDayTakesThirteenFetchesOrFewer) {
  for (const char* api : {"plain", "stable"}) {
    SCOPED_TRACE(api);
    auto manager = MakeManager(std::string("day-") + api);
    auto app = App(api, Channel::kWeChat, std::string("wxday") + api);
    AddApp(*manager, app);
    const auto calls_before = fake_.token_calls();
    // Constant load: a request every 10 s, the refresher every 10 s.
    for (int second = 0; second < 86400; second += 10) {
      manager->refresh_due();
      ASSERT_TRUE(manager->get("wechat", app.app_id));
      clock_->advance(10s);
    }
    EXPECT_LE(fake_.token_calls() - calls_before, 13u);
  }
}

TEST_F(TokenManagerTest, ForcedRefreshFetchesEvenWhenValid) {
  AddApp(*manager_, App());
  const std::string first = Get(*manager_);
  auto refreshed = manager_->refresh("wechat", "wx1");
  ASSERT_TRUE(refreshed);
  EXPECT_NE(refreshed->access_token, first);
  EXPECT_EQ(Get(*manager_), refreshed->access_token);
}

// Threat model, finding 2: refresh() is what outside callers reach; each
// call went upstream. Within min_refresh_interval the next is kRateLimited
// with a retry_after and no upstream call, while what the manager does on
// its own (the refresher, invalidate-then-get) goes on unlimited.
TEST_F(TokenManagerTest, RefreshIsLimitedButTheManagersOwnFetchesAreNot) {
  AddApp(*manager_, App());
  ASSERT_TRUE(manager_->refresh("wechat", "wx1"));
  EXPECT_EQ(fake_.token_calls(), 1u);

  clock_->advance(20s);
  auto refused = manager_->refresh("wechat", "wx1");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kRateLimited);
  EXPECT_EQ(refused.error().retry_after, 40s);
  EXPECT_THAT(refused.error().message, HasSubstr("min_refresh_interval"));
  EXPECT_EQ(fake_.token_calls(), 1u);

  // Recovery from a rejected token is not limited.
  const std::string rejected = Get(*manager_);
  ASSERT_EQ(manager_->invalidate("wechat", "wx1", rejected), true);
  EXPECT_NE(Get(*manager_), rejected);
  EXPECT_EQ(fake_.token_calls(), 2u);
  // Nor is the background refresher, however often it runs.
  clock_->advance(7200s - 359s);
  EXPECT_EQ(manager_->refresh_due(), 1u);
  EXPECT_EQ(fake_.token_calls(), 3u);
  ASSERT_EQ(manager_->invalidate("wechat", "wx1", Get(*manager_)), true);
  EXPECT_EQ(manager_->refresh_due(), 1u);
  EXPECT_EQ(fake_.token_calls(), 4u);

  // After the interval, refresh() goes upstream again, once.
  ASSERT_TRUE(manager_->refresh("wechat", "wx1"));
  EXPECT_EQ(fake_.token_calls(), 5u);
  EXPECT_EQ(manager_->refresh("wechat", "wx1").error().code, ErrorCode::kRateLimited);
  EXPECT_EQ(fake_.token_calls(), 5u);
}

// The limit holds across processes sharing the store: the platform's quota is
// per app, so two service instances must not get twice the budget.
TEST_F(TokenManagerTest, RefreshLimitHoldsAcrossProcessesSharingTheStore) {
  const auto app = App();
  AddApp(*manager_, app);
  auto other = MakeManager("process-b");
  AddApp(*other, app);
  ASSERT_TRUE(manager_->refresh("wechat", "wx1"));
  auto refused = other->refresh("wechat", "wx1", /*platform_force=*/true);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kRateLimited);
  EXPECT_EQ(refused.error().retry_after, 60s);
  EXPECT_EQ(fake_.token_calls(), 1u);
  clock_->advance(60s);
  EXPECT_TRUE(other->refresh("wechat", "wx1"));
  EXPECT_EQ(fake_.token_calls(), 2u);
}

TEST_F(TokenManagerTest, ForcedRefreshesHaveADailyCapThatResetsAtThePlatformsMidnight) {
  // To 2026-01-02T00:00:00Z, 08:00 in China (UTC+8), from the manual clock's
  // start 1000 s after 2026-01-01T00:00Z.
  clock_->advance(24h - 1000s);
  ASSERT_EQ(clock_->wall_now().time_since_epoch() % 24h, 0s);
  auto manager = MakeManager("capped", {.forced_refreshes_per_day = 2});
  AddApp(*manager, App("stable"));
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(manager->refresh("wechat", "wx1", /*platform_force=*/true)) << i;
    clock_->advance(60s);
  }
  auto refused = manager->refresh("wechat", "wx1", /*platform_force=*/true);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kRateLimited);
  EXPECT_EQ(refused.error().retry_after, 16h - 120s);
  EXPECT_THAT(refused.error().message, HasSubstr("forced_refreshes_per_day"));
  EXPECT_EQ(fake_.token_calls(), 2u);
  // Not forced: the interval alone applies, and the refused call took none.
  ASSERT_TRUE(manager->refresh("wechat", "wx1"));
  EXPECT_EQ(fake_.token_calls(), 3u);

  clock_->advance(16h - 121s);  // a second before midnight in China
  EXPECT_EQ(manager->refresh("wechat", "wx1", true).error().retry_after, 1s);
  clock_->advance(1s);
  EXPECT_TRUE(manager->refresh("wechat", "wx1", true));
  EXPECT_EQ(fake_.token_calls(), 4u);

  // A cap of 0 refuses every forced refresh; the interval can be turned off.
  auto none = MakeManager("none", {.min_refresh_interval = 0s, .forced_refreshes_per_day = 0});
  AddApp(*none, App("stable", Channel::kWeChat, "wx0"));
  EXPECT_EQ(none->refresh("wechat", "wx0", true).error().code, ErrorCode::kRateLimited);
  EXPECT_TRUE(none->refresh("wechat", "wx0"));
  EXPECT_TRUE(none->refresh("wechat", "wx0"));
  EXPECT_EQ(fake_.token_calls(), 6u);
}

TEST_F(TokenManagerTest, RefreshLimitOptionsAreChecked) {
  for (auto options : {TokenManagerOptions{.min_refresh_interval = -1s},
                       TokenManagerOptions{.min_refresh_interval = 25h},
                       TokenManagerOptions{.forced_refreshes_per_day = -1}}) {
    auto manager = TokenManager::create(cache_, options);
    ASSERT_FALSE(manager);
    EXPECT_EQ(manager.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST_F(TokenManagerTest, WeComAppKeyNamesTheApplication) {
  auto app = App("", Channel::kWeCom, "ww123");
  AddApp(*manager_, app);
  EXPECT_EQ(TokenManager::app_key(app), "ww123.1000002");
  auto token = manager_->get("wecom", "ww123.1000002");
  ASSERT_TRUE(token) << token.error().to_string();
  EXPECT_TRUE(*store_->get("t:1:ai_assistant:access_token:wecom:ww123.1000002"));
}

TEST_F(TokenManagerTest, UnknownAppsAndDuplicatesAreRefused) {
  AddApp(*manager_, App());
  auto token = manager_->get("wechat", "nope");
  ASSERT_FALSE(token);
  EXPECT_EQ(token.error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(manager_->add_app(App()));
  auto bad = App();
  bad.secret.clear();
  bad.app_id = "wx2";
  EXPECT_EQ(manager_->add_app(bad).error().code, ErrorCode::kConfig);
}

TEST_F(TokenManagerTest, StatsHoldNeitherTokensNorSecrets) {
  AddApp(*manager_, App());
  const std::string token = Get(*manager_);
  auto stats = manager_->stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].channel, "wechat");
  EXPECT_EQ(stats[0].app_key, "wx1");
  EXPECT_EQ(stats[0].fetches, 1u);
  EXPECT_EQ(stats[0].seconds_until_expiry, 7200);
  EXPECT_TRUE(stats[0].last_fetch);
  EXPECT_THAT(stats[0].last_error, Not(HasSubstr(token)));
}

// stats() is called per scrape of /metrics and per /v1/stats: it answers
// from what this process saw of each token, with no store round trip per app.
class TokenStatsTest : public TokenManagerTest {
 protected:
  void SetUp() override {
    TokenManagerTest::SetUp();
    counted_ = std::make_shared<testing::FaultyStore>(store_);
    counted_->on_call([this] { store_calls_.fetch_add(1); });
    cache_ =
        std::shared_ptr<AssistantCache>(*AssistantCache::create(counted_, {.key_prefix = "t"}));
    manager_ = MakeManager("process-a");
  }
  // The store calls `stats` makes, and what it reports per app.
  std::vector<std::optional<std::int64_t>> Expiries(TokenManager& manager, int* calls) {
    const int before = store_calls_.load();
    std::vector<std::optional<std::int64_t>> out;
    for (const TokenAppStats& app : manager.stats()) out.push_back(app.seconds_until_expiry);
    *calls = store_calls_.load() - before;
    return out;
  }
  std::shared_ptr<testing::FaultyStore> counted_;
  std::atomic<int> store_calls_{0};
};

TEST_F(TokenStatsTest, TokensThisProcessHasSeenCostNoStoreReads) {
  for (const char* id : {"wx1", "wx2", "wx3"}) {
    AddApp(*manager_, App("plain", Channel::kWeChat, id));
    Get(*manager_, id);
  }
  int calls = -1;
  using E = std::vector<std::optional<std::int64_t>>;
  EXPECT_EQ(Expiries(*manager_, &calls), (E{7200, 7200, 7200}));
  EXPECT_EQ(calls, 0);
  // Counted down on the clock, still without reading.
  clock_->advance(100s);
  EXPECT_EQ(Expiries(*manager_, &calls), (E{7100, 7100, 7100}));
  EXPECT_EQ(calls, 0);
}

TEST_F(TokenStatsTest, TheStoreIsReadOnlyWhenWhatWasSeenCannotBeRight) {
  AddApp(*manager_, App());
  auto other = MakeManager("process-b");
  AddApp(*other, App());
  Get(*other);  // the token was fetched by another process
  using E = std::vector<std::optional<std::int64_t>>;
  int calls = -1;
  // Not seen here yet: one read, then none.
  EXPECT_EQ(Expiries(*manager_, &calls), (E{7200}));
  EXPECT_GE(calls, 1);
  EXPECT_EQ(Expiries(*manager_, &calls), (E{7200}));
  EXPECT_EQ(calls, 0);

  // Another process's refresh shows once this process reads the token.
  clock_->advance(1000s);
  ASSERT_TRUE(other->refresh("wechat", "wx1"));
  EXPECT_EQ(Expiries(*manager_, &calls), (E{6200}));  // as last seen here
  EXPECT_EQ(calls, 0);
  Get(*manager_);
  EXPECT_EQ(Expiries(*manager_, &calls), (E{7200}));
  EXPECT_EQ(calls, 0);

  // Removed here: read again (absent; absent again next time).
  const std::string token = Get(*manager_);
  ASSERT_TRUE(*manager_->invalidate("wechat", "wx1", token));
  EXPECT_EQ(Expiries(*manager_, &calls), (E{std::nullopt}));
  EXPECT_GE(calls, 1);
  EXPECT_EQ(Expiries(*manager_, &calls), (E{std::nullopt}));
  EXPECT_GE(calls, 1);

  // Seen, then expired by the clock: the store is asked what is there now.
  Get(*manager_);
  clock_->advance(7200s);
  EXPECT_EQ(Expiries(*manager_, &calls), (E{std::nullopt}));
  EXPECT_GE(calls, 1);
}

// --- Fetch reports ------------------------------------------------------------------

TEST_F(TokenManagerTest, EveryUpstreamCallIsReportedAsItHappens) {
  AddApp(*manager_, App());
  std::vector<std::pair<std::string, bool>> seen;  // app key, failed
  const auto id = manager_->on_fetch([&](const TokenFetchEvent& fetch) {
    EXPECT_EQ(fetch.channel, "wechat");
    EXPECT_GE(fetch.duration.count(), 0);
    seen.emplace_back(std::string(fetch.app_key), fetch.failure.has_value());
  });
  EXPECT_NE(id, 0u);
  Get(*manager_);  // a fetch
  Get(*manager_);  // a store hit: no report
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], std::make_pair(std::string("wx1"), false));

  // A failed call is reported with its kind; each retry is a call.
  ASSERT_TRUE(store_->remove("t:1:ai_assistant:access_token:wechat:wx1"));
  fake_.inject(FakeEndpoint::kWeChatToken, FakeFault::platform_error(-1), 1);
  Get(*manager_);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_TRUE(seen[1].second);
  EXPECT_FALSE(seen[2].second);
  EXPECT_EQ(manager_->stats()[0].fetches, 3u);
}

TEST_F(TokenManagerTest, ARemovedListenerIsNeverCalledAgain) {
  AddApp(*manager_, App());
  int calls = 0;
  const auto id = manager_->on_fetch([&](const TokenFetchEvent&) { ++calls; });
  EXPECT_EQ(manager_->on_fetch(nullptr), 0u) << "an empty listener is ignored";
  manager_->remove_fetch_listener(id);
  manager_->remove_fetch_listener(id);      // twice: ignored
  manager_->remove_fetch_listener(12345);   // unknown: ignored
  Get(*manager_);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(fake_.token_calls(), 1u);
}

// --- reconfigure(): a configuration reload (SIGHUP) ------------------------------------

TEST_F(TokenManagerTest, ReconfigureAddsAndRemovesAppsAndLeavesTheOthersAlone) {
  const AppCredentials wx1 = App("plain", Channel::kWeChat, "wx1");
  const AppCredentials wx2 = App("plain", Channel::kWeChat, "wx2");
  AddApp(*manager_, wx1);
  const std::string token1 = Get(*manager_, "wx1");
  EXPECT_EQ(manager_->get("wechat", "wx2").error().code, ErrorCode::kNotFound);

  auto added = manager_->reconfigure({wx1, wx2});
  ASSERT_TRUE(added) << added.error().to_string();
  EXPECT_THAT(added->added, ::testing::ElementsAre("wechat/wx2"));
  EXPECT_TRUE(added->removed.empty());
  EXPECT_TRUE(added->changed.empty());
  EXPECT_FALSE(Get(*manager_, "wx2").empty());
  EXPECT_EQ(Get(*manager_, "wx1"), token1);  // untouched: no new fetch
  EXPECT_EQ(fake_.token_calls(), 2u);

  auto removed = manager_->reconfigure({wx2});
  ASSERT_TRUE(removed) << removed.error().to_string();
  EXPECT_THAT(removed->removed, ::testing::ElementsAre("wechat/wx1"));
  for (auto error : {manager_->get("wechat", "wx1").error(),
                     manager_->refresh("wechat", "wx1").error(),
                     manager_->get_if_fresh("wechat", "wx1").error(),
                     manager_->invalidate("wechat", "wx1", token1).error()}) {
    EXPECT_EQ(error.code, ErrorCode::kNotFound) << error.to_string();
  }
  ASSERT_EQ(manager_->stats().size(), 1u);
  EXPECT_EQ(manager_->stats()[0].app_key, "wx2");
  // The refresher no longer looks after it: its token runs out unrefreshed.
  clock_->advance(2h);
  EXPECT_EQ(manager_->refresh_due(), 1u);  // wx2 only
  EXPECT_EQ(fake_.token_calls(), 3u);
}

TEST_F(TokenManagerTest, ReconfigureIsAllOrNothing) {
  const AppCredentials wx1 = App("plain", Channel::kWeChat, "wx1");
  AddApp(*manager_, wx1);
  AppCredentials bad = App("plain", Channel::kWeChat, "wx2");
  bad.api = "nonsense";
  auto refused = manager_->reconfigure({bad});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConfig);
  EXPECT_THAT(refused.error().message, HasSubstr("wechat/wx2"));
  EXPECT_THAT(refused.error().message, Not(HasSubstr(kSecret)));
  auto twice = manager_->reconfigure({wx1, wx1});
  ASSERT_FALSE(twice);
  EXPECT_THAT(twice.error().message, HasSubstr("twice"));
  // Still the old set.
  EXPECT_FALSE(Get(*manager_, "wx1").empty());
  EXPECT_EQ(manager_->get("wechat", "wx2").error().code, ErrorCode::kNotFound);
}

TEST_F(TokenManagerTest, ChangedSecretIsUsedByTheNextFetch) {
  AppCredentials app = App("plain", Channel::kWeChat, "wx1");
  AddApp(*manager_, app);
  const std::string before = Get(*manager_, "wx1");
  // The platform now knows only the new secret (the old one was rotated).
  app.secret = "n3w-app-secret";
  fake_.add_app(app);
  auto changed = manager_->reconfigure({app});
  ASSERT_TRUE(changed) << changed.error().to_string();
  EXPECT_THAT(changed->changed, ::testing::ElementsAre("wechat/wx1"));
  // The stored token is still good and still served...
  EXPECT_EQ(Get(*manager_, "wx1"), before);
  EXPECT_EQ(fake_.token_calls(), 1u);
  // ...and the next fetch authenticates with the new secret (the old one
  // would be refused with 40001).
  ASSERT_TRUE(*manager_->invalidate("wechat", "wx1", before));
  const std::string after = Get(*manager_, "wx1");
  EXPECT_NE(after, before);
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, after), 0);
  // Its figures went on counting across the change.
  EXPECT_EQ(manager_->stats()[0].fetches, 2u);
}

TEST_F(TokenManagerTest, FixedSecretIsTriedAtOnceDespiteTheCooldownOfTheWrongOne) {
  AppCredentials app = App("plain", Channel::kWeChat, "wx1");
  AppCredentials wrong = app;
  wrong.secret = "wrong-app-secret";
  AddApp(*manager_, wrong);
  auto refused = manager_->get("wechat", "wx1");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConfig);
  // Without a reload the cooldown holds (config_error_pause, 60 s).
  EXPECT_FALSE(manager_->get("wechat", "wx1"));
  const auto calls = fake_.token_calls();
  ASSERT_TRUE(manager_->reconfigure({app}));
  EXPECT_FALSE(Get(*manager_, "wx1").empty());
  EXPECT_EQ(fake_.token_calls(), calls + 1);
}

// Calls for apps that come and go while other threads reconfigure: each
// either completes or answers kNotFound; an app never removed always
// answers. (Run under TSan in CI.)
TEST_F(TokenManagerTest, ConcurrentCallsDuringReconfigureGetATokenOrUnknownApp) {
  const AppCredentials wx1 = App("plain", Channel::kWeChat, "wx1");
  const AppCredentials wx2 = App("plain", Channel::kWeChat, "wx2");
  AddApp(*manager_, wx1);
  AddApp(*manager_, wx2);
  Get(*manager_, "wx1");
  Get(*manager_, "wx2");
  std::atomic<bool> stop{false};
  std::atomic<int> stable_failures{0}, unexpected{0}, served{0}, unknown{0}, rounds{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        if (!manager_->get("wechat", "wx1")) ++stable_failures;
        auto come_and_go = manager_->get("wechat", "wx2");
        if (come_and_go) {
          ++served;
        } else if (come_and_go.error().code == ErrorCode::kNotFound) {
          ++unknown;
        } else {
          ++unexpected;
        }
        (void)manager_->get_if_fresh("wechat", "wx2");
        (void)manager_->stats();
        ++rounds;
      }
    });
  }
  // At least 200 reconfigurations, and on until the callers have made 400
  // rounds between them (however the threads are scheduled).
  for (int i = 0; i < 200 || rounds.load() < 400; ++i) {
    auto changed = manager_->reconfigure(i % 2 ? std::vector{wx1, wx2} : std::vector{wx1});
    EXPECT_TRUE(changed) << changed.error().to_string();
    (void)manager_->refresh_due();
  }
  stop = true;
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(stable_failures.load(), 0);
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_GT(served.load() + unknown.load(), 0);
  // wx2's token was in the store all along: it came back without a fetch.
  EXPECT_EQ(fake_.token_calls(), 2u);
}

}  // namespace
}  // namespace aicache
