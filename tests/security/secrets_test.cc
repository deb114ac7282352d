// Secrets never leak: with a known app secret, API token and Redis password,
// every service route, log line, error message, statistic, metric, dashboard
// response and CLI output is searched for them (raw, percent-encoded, or just
// their distinctive core): none may appear.
//
// In process: a Server over a password-protected redis-server and the token
// platforms' fake, with every log line captured. As a real binary: the
// `aicache` commands and `aicache serve`, their stdout and stderr captured.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/log.h"
#include "aicache/redis_store.h"
#include "aicache/server.h"
#include "aicache/token_manager.h"
#include "aicache/token_provider.h"
#include "support/child_process.h"
#include "support/fake_platform.h"
#include "support/http_test_client.h"
#include "support/log_capture.h"
#include "support/redis_server.h"
#include "support/temp_dir.h"
#include "support/server_fixture.h"

namespace aicache {
namespace {

using namespace std::chrono_literals;
using testing::FakeEndpoint;
using testing::FakeFault;
using testing::FakePlatform;
using testing::LogCapture;
using testing::RedisServer;
namespace fs = std::filesystem;

// The secrets. The Redis password needs percent-encoding in a URL.
constexpr std::string_view kAppSecret = "APPSECRET-7f3a9c";
// 32 characters at least: weaker tokens are refused at start (threat model,
// finding 4).
constexpr std::string_view kApiToken = "APITOKEN-51d2e8-b7c0e1f2a3d4c5b6a7f8";
constexpr std::string_view kRedisPassword = "REDISPASS-c4b6a1:@/%";
constexpr std::string_view kRedisPasswordEncoded = "REDISPASS-c4b6a1%3A%40%2F%25";

// What must never appear: each secret raw and percent-encoded, and the
// distinctive cores (which also catch truncated or re-encoded forms).
const std::vector<std::string>& needles() {
  static const std::vector<std::string> all = {
      std::string(kAppSecret), std::string(kApiToken), std::string(kRedisPassword),
      std::string(kRedisPasswordEncoded), "7f3a9c", "51d2e8", "c4b6a1"};
  return all;
}

// Checks one piece of output: one failure naming every secret found in it
// and `what` it was.
void expect_clean(std::string_view what, std::string_view text) {
  std::string found;
  for (const std::string& needle : needles()) {
    if (text.find(needle) != std::string_view::npos) found += " \"" + needle + "\"";
  }
  EXPECT_TRUE(found.empty()) << "secret(s)" << found << " leaked in " << what << ":\n" << text;
}

std::string describe(const testing::HttpTestResult& r) {
  if (!r) return "<no response: " + r.error() + ">";
  std::string text = std::to_string(r->status) + "\n";
  for (const auto& [name, value] : r->headers) text += name + ": " + value + "\n";
  return text + "\n" + r->body;
}

TEST(SecretsCheckTest, TheCheckSeesEverySecret) {
  for (const std::string& needle : needles()) {
    EXPECT_NONFATAL_FAILURE(expect_clean("sample", "before " + needle + " after"), "leaked");
  }
  EXPECT_NONFATAL_FAILURE(expect_clean("sample", "redis://:REDISPASS-c4b6a1%3A%40@h"), "leaked");
}

// --- In process -------------------------------------------------------------------

class SecretsInProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_log_handler({});
    try {
      testing::RedisServerOptions options;
      options.password = std::string(kRedisPassword);
      redis_ = std::make_unique<RedisServer>(options);
    } catch (const std::exception& e) {
      // Never skipped: a secret-leak test that silently does not run
      // proves nothing (issue 11).
      FAIL() << "redis-server did not start: " << e.what();
    }
    logs_ = std::make_unique<LogCapture>();
  }

  void TearDown() override {
    server_.stop();  // the access log is complete
    tokens_.reset();
    if (logs_) {
      const auto lines = logs_->lines();
      for (const auto& line : lines) expect_clean("log line", line);
      EXPECT_FALSE(lines.empty());  // the access log at least
    }
    logs_.reset();
  }

  std::string redis_url(std::string_view password) const {
    return "redis://:" + std::string(password) + "@127.0.0.1:" + std::to_string(redis_->port()) +
           "/0";
  }

  void Start() {
    auto endpoint = parse_redis_url(redis_url(kRedisPasswordEncoded));
    ASSERT_TRUE(endpoint) << endpoint.error().to_string();
    ASSERT_EQ(endpoint->password, kRedisPassword);
    expect_clean("RedisEndpoint::redacted_url", endpoint->redacted_url());
    RedisStoreOptions store_options;
    store_options.endpoint = *endpoint;
    store_options.pool_size = 4;
    store_options.connect_timeout = 300ms;
    store_options.socket_timeout = 300ms;
    auto store = make_redis_store(std::move(store_options));
    ASSERT_TRUE(store) << store.error().to_string();
    auto cache = AssistantCache::create(std::shared_ptr<Store>(std::move(*store)),
                                        {.key_prefix = "sec"});
    ASSERT_TRUE(cache) << cache.error().to_string();
    cache_ = std::move(*cache);

    TokenManagerOptions token_options;
    token_options.backoff_initial = 1ms;
    token_options.backoff_max = 2ms;
    token_options.max_attempts = 2;
    token_options.config_error_pause = 0s;
    // Every refresh below must reach the (faulty) platform, so that its
    // errors are checked for secrets, not answered by the refresh limits.
    token_options.min_refresh_interval = 0s;
    token_options.http.total_timeout = 2s;
    auto tokens = TokenManager::create(cache_, std::move(token_options));
    ASSERT_TRUE(tokens) << tokens.error().to_string();
    tokens_ = std::move(*tokens);
    const std::string base = fake_.base_url();
    const std::vector<AppCredentials> apps = {
        {.channel = Channel::kWeChat, .app_id = "wx1", .secret = std::string(kAppSecret),
         .base_url = base},
        {.channel = Channel::kWeChat, .app_id = "wx2", .secret = std::string(kAppSecret),
         .api = "plain", .base_url = base},
        {.channel = Channel::kWeCom, .app_id = "corp1", .agent_id = "1000002",
         .secret = std::string(kAppSecret), .base_url = base},
        {.channel = Channel::kDingTalk, .app_id = "ding1", .secret = std::string(kAppSecret),
         .api = "legacy", .base_url = base},
        {.channel = Channel::kDingTalk, .app_id = "ding2", .secret = std::string(kAppSecret),
         .base_url = base},
    };
    for (const auto& app : apps) {
      fake_.add_app(app);
      ASSERT_TRUE(tokens_->add_app(app));
    }
    // Registered on the platform with another secret: every fetch is refused.
    AppCredentials wrong{.channel = Channel::kWeChat, .app_id = "wx3", .secret = "other",
                         .api = "plain", .base_url = base};
    fake_.add_app(wrong);
    wrong.secret = std::string(kAppSecret);
    ASSERT_TRUE(tokens_->add_app(wrong));

    ServerOptions options;
    options.api_token = std::string(kApiToken);
    options.access_log = true;
    ASSERT_NO_FATAL_FAILURE(server_.start(cache_, tokens_, std::move(options)));
  }

  testing::HttpTestClient Client() { return server_.client(); }

  // Every route, each without a token, with a wrong one and with the right
  // one; every answer (status, headers, body) checked.
  void HitEveryRoute(std::string_view phase) {
    auto client = Client();
    const std::vector<testing::HttpTestHeaders> auths = {
        {},
        {{"Authorization", "Bearer wrong-token"}},
        {{"Authorization", "Basic d3Jvbmc6d3Jvbmc="}},
        {{"Authorization", "Bearer " + std::string(kApiToken)}},
    };
    const std::vector<std::string> entries = {"/v1/conversations/c1", "/v1/ai-configs/u1",
                                              "/v1/kv/k1"};
    const std::vector<std::string> token_apps = {"wechat/wx1", "wechat/wx2",
                                                 "wecom/corp1.1000002", "dingtalk/ding1",
                                                 "dingtalk/ding2", "wechat/wx3", "wechat/nope"};
    for (std::size_t a = 0; a < auths.size(); ++a) {
      const auto& h = auths[a];
      auto check = [&](std::string_view what, const testing::HttpTestResult& r) {
        expect_clean(std::string(phase) + " auth#" + std::to_string(a) + " " + std::string(what),
                     describe(r));
      };
      for (const char* path : {"/", "/healthz", "/readyz", "/metrics", "/v1/stats", "/v1/nope",
                               "/nope", "/v1/kv/bad%20key"}) {
        check(std::string("GET ") + path, client.get(path, h));
      }
      for (const auto& path : entries) {
        check("PUT " + path, client.put(path + "?ttl=60", R"({"role": "user", "n": 1})", h));
        check("PUT malformed " + path, client.put(path, "{not json", h));
        check("PUT bad ttl " + path, client.put(path + "?ttl=-5", "1", h));
        check("GET " + path, client.get(path, h));
        check("HEAD " + path, client.head(path, h));
        check("PATCH " + path, client.patch(path, "{}", h));
        check("DELETE " + path, client.del(path, h));
        check("GET miss " + path, client.get(path, h));
        // The API token where it does not belong: a query parameter.
        check("GET query " + path, client.get(path + "?token=" + std::string(kApiToken), h));
      }
      check("PUT oversized", client.put("/v1/kv/big", std::string(2u << 20, 'x'), h));
      for (const auto& app : token_apps) {
        const std::string base = "/v1/tokens/" + app;
        auto got = client.get(base, h);
        check("GET " + base, got);
        std::string token = "some-token";
        if (got && got->status == 200) {
          auto j = nlohmann::json::parse(got->body, nullptr, false);
          if (j.is_object() && j.contains("access_token")) token = j["access_token"];
        }
        check("POST refresh " + base, client.post(base + "/refresh", "", h));
        check(
            "POST invalidate " + base,
            client.post(base + "/invalidate", nlohmann::json({{"access_token", token}}).dump(), h));
        check("POST invalidate malformed " + base, client.post(base + "/invalidate", "{", h));
        check("DELETE " + base, client.del(base, h));
      }
    }
  }

  // Everything the library reports about itself.
  void CheckStats(std::string_view phase) {
    for (const auto& s : tokens_->stats()) {
      expect_clean(std::string(phase) + " TokenAppStats " + s.channel + "/" + s.app_key,
                   s.channel + " " + s.app_key + " " + s.last_error);
    }
    auto stats = cache_->stats();
    if (!stats) {
      expect_clean(std::string(phase) + " CacheStats error", stats.error().to_string());
      return;
    }
    std::string text = stats->store.backend + " " + stats->store.used_memory_human + "\n";
    for (const auto& [name, value] : stats->store.details) text += name + "=" + value + "\n";
    expect_clean(std::string(phase) + " CacheStats", text);
  }

  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<LogCapture> logs_;
  FakePlatform fake_;
  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> tokens_;
  testing::ServerFixture server_;
};

TEST_F(SecretsInProcessTest, NoRouteLogStatOrErrorShowsASecret) {
  Start();
  if (HasFailure()) return;

  // Healthy: tokens are fetched, entries stored.
  auto got = tokens_->get("wechat", "wx1");
  ASSERT_TRUE(got) << got.error().to_string();
  HitEveryRoute("healthy");
  CheckStats("healthy");
  {
    // The routes answered for real: the token guards /v1, the dashboard is served.
    auto client = Client();
    const testing::HttpTestHeaders auth = {{"Authorization", "Bearer " + std::string(kApiToken)}};
    auto denied = client.get("/v1/stats");
    ASSERT_TRUE(denied);
    EXPECT_EQ(denied->status, 401);
    auto stats = client.get("/v1/stats", auth);
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->status, 200);
    auto dashboard = client.get("/");
    ASSERT_TRUE(dashboard);
    EXPECT_EQ(dashboard->status, 200);
    auto token = client.get("/v1/tokens/wechat/wx2", auth);
    ASSERT_TRUE(token);
    EXPECT_EQ(token->status, 200) << token->body;
  }

  // The platforms fail: a bad secret, an IP off the whitelist, HTTP 500,
  // garbage. Each app's fetch sees each fault, through the manager and the
  // service.
  const std::vector<std::pair<std::string, FakeEndpoint>> apps = {
      {"wechat/wx1", FakeEndpoint::kWeChatStableToken},
      {"wechat/wx2", FakeEndpoint::kWeChatToken},
      {"wecom/corp1.1000002", FakeEndpoint::kWeComToken},
      {"dingtalk/ding1", FakeEndpoint::kDingTalkLegacyToken},
      {"dingtalk/ding2", FakeEndpoint::kDingTalkOAuth2Token},
  };
  const std::vector<FakeFault> faults = {
      FakeFault::platform_error(40125), FakeFault::platform_error(40164),
      FakeFault::http_status_code(500), FakeFault::non_json(), FakeFault::truncated_json(),
      FakeFault::oauth2_error(400, "invalidClientIdOrSecret")};
  auto client = Client();
  const testing::HttpTestHeaders auth = {{"Authorization", "Bearer " + std::string(kApiToken)}};
  for (const auto& [app, endpoint] : apps) {
    const auto slash = app.find('/');
    const std::string channel = app.substr(0, slash);
    const std::string key = app.substr(slash + 1);
    for (const auto& fault : faults) {
      fake_.inject(endpoint, fault, 4);
      auto refreshed = tokens_->refresh(channel, key);
      if (!refreshed) expect_clean("TokenManager::refresh error " + app, refreshed.error().to_string());
      fake_.inject(endpoint, fault, 4);
      expect_clean("POST refresh under fault " + app,
                   describe(client.post("/v1/tokens/" + app + "/refresh", "", auth)));
      expect_clean("GET /v1/stats under fault", describe(client.get("/v1/stats", auth)));
      expect_clean("GET /metrics under fault", describe(client.get("/metrics")));
      CheckStats("platform fault " + app);
    }
  }
  // The app whose secret the platform refuses.
  auto refused = tokens_->refresh("wechat", "wx3");
  ASSERT_FALSE(refused);
  expect_clean("refused fetch", refused.error().to_string());
  tokens_->refresh_due();
  HitEveryRoute("platform failing");
  CheckStats("platform failing");

  // A wrong Redis password, and URLs that do not parse.
  {
    auto endpoint = parse_redis_url(redis_url("REDISPASS-c4b6a1-wrong"));
    ASSERT_TRUE(endpoint);
    expect_clean("redacted_url (wrong password)", endpoint->redacted_url());
    auto store = make_redis_store({.endpoint = *endpoint});
    ASSERT_FALSE(store);
    EXPECT_EQ(store.error().code, ErrorCode::kConfig) << store.error().to_string();
    expect_clean("make_redis_store (wrong password)", store.error().to_string());
  }
  for (const std::string& url :
       {"redis://:" + std::string(kRedisPasswordEncoded) + "@[bad",
        "redis://:" + std::string(kRedisPasswordEncoded) + "@127.0.0.1:99999/0",
        "redis://:" + std::string(kRedisPasswordEncoded) + "@127.0.0.1:6379/notadb",
        "rediss://:" + std::string(kRedisPasswordEncoded) + "@127.0.0.1:6379/0",
        "redis://:" + std::string(kRedisPassword) + "@127.0.0.1:6379/0",
        std::string("redis://user:REDISPASS-c4b6a1%zz@127.0.0.1/0")}) {
    auto endpoint = parse_redis_url(url);
    if (!endpoint) {
      expect_clean("parse_redis_url error", endpoint.error().to_string());
    } else {
      expect_clean("redacted_url", endpoint->redacted_url());
    }
  }

  // Redis goes away: the service answers misses and 503s, and logs.
  redis_->stop();
  HitEveryRoute("redis stopped");
  auto ready = client.get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  CheckStats("redis stopped");
  auto direct = cache_->set("k", JsonDocument::integer(1));
  ASSERT_FALSE(direct);
  expect_clean("AssistantCache::set error (redis stopped)", direct.error().to_string());
  auto token = tokens_->refresh("wechat", "wx1");
  if (!token) expect_clean("TokenManager::refresh (redis stopped)", token.error().to_string());

  // And comes back.
  redis_->restart();
  HitEveryRoute("redis restarted");
  CheckStats("redis restarted");
}

// --- The real binary ------------------------------------------------------------

using testing::Outcome;

// The real binary in `cwd` with only `env`; with `on_started`, called with
// its pid while its output is read.
Outcome run_cli(const std::vector<std::string>& args, const fs::path& cwd,
                const std::vector<std::string>& env,
                const std::function<void(pid_t)>& on_started = {}) {
  return testing::run_child(AICACHE_CLI_PATH, args, cwd, env, on_started);
}

class SecretsCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    try {
      testing::RedisServerOptions options;
      options.password = std::string(kRedisPassword);
      redis_ = std::make_unique<RedisServer>(options);
    } catch (const std::exception& e) {
      // Never skipped: a secret-leak test that silently does not run
      // proves nothing (issue 11).
      FAIL() << "redis-server did not start: " << e.what();
    }
    use_platform(fake_);
  }

  // Registers the apps on `fake` and points aicache.toml at it.
  void use_platform(FakePlatform& fake) {
    fake.add_app({.channel = Channel::kWeChat, .app_id = "wx1", .secret = std::string(kAppSecret)});
    fake.add_app({.channel = Channel::kWeChat, .app_id = "wx2", .secret = std::string(kAppSecret)});
    dir_.write("aicache.toml",
               "[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\nsecret_env = \"WX_SECRET\"\n"
               "base_url = \"" + fake.base_url() + "\"\n"
               "\n[[apps]]\nchannel = \"wechat\"\napp_id = \"wx2\"\napi = \"plain\"\n"
               "secret_env = \"WX_SECRET\"\nbase_url = \"" + fake.base_url() + "\"\n"
               // Every refresh must reach the platform (see above).
               "\n[tokens]\nmin_refresh_interval = 0\n");
  }

  // The secrets in the environment; Redis database `db`.
  std::vector<std::string> env(std::string_view password, int db = 0) const {
    return {"REDIS_URL=redis://:" + std::string(password) + "@127.0.0.1:" +
                std::to_string(redis_->port()) + "/" + std::to_string(db),
            "AICACHE_API_TOKEN=" + std::string(kApiToken), "WX_SECRET=" + std::string(kAppSecret),
            "AICACHE_KEY_PREFIX=sec"};
  }

  // Runs every command; checks every output.
  void RunEveryCommand(std::string_view phase, const std::vector<std::string>& e) {
    const std::vector<std::vector<std::string>> commands = {
        {"set", "k", "v"},
        {"set", "j", R"({"a": 1})", "--ttl", "60"},
        {"get", "k"},
        {"get", "missing"},
        {"ttl", "j"},
        {"ttl", "missing"},
        {"del", "k"},
        {"del", "k"},
        {"stats"},
        {"stats", "--json"},
        {"token", "wechat", "wx1"},
        {"token", "wechat", "wx1", "--json"},
        {"token", "wechat", "wx2", "--force-refresh"},
        {"token", "wechat", "nope"},
        {"token", "invalidate", "wechat", "wx1", "not-the-token"},
        {"token", "invalidate", "wechat", "wx2", "not-the-token"},
        {"get", "bad key"},
        {"--help"},
        {"serve", "--listen", "nonsense"},
    };
    for (const auto& args : commands) {
      const Outcome r = run_cli(args, dir_.path(), e);
      const std::string what = std::string(phase) + " " + ::testing::PrintToString(args) +
                               " exit " + std::to_string(r.exit_code);
      expect_clean(what + " stdout", r.out);
      expect_clean(what + " stderr", r.err);
    }
  }

  testing::TempDir dir_;
  FakePlatform fake_;
  std::unique_ptr<RedisServer> redis_;
};

TEST_F(SecretsCliTest, NoCommandPrintsASecret) {
  const auto ok_env = env(kRedisPasswordEncoded);
  // Sanity: the setup works, so the checks below see real answers.
  const Outcome set = run_cli({"set", "k", "v"}, dir_.path(), ok_env);
  ASSERT_EQ(set.exit_code, 0) << set.err;
  const Outcome token = run_cli({"token", "wechat", "wx1"}, dir_.path(), ok_env);
  ASSERT_EQ(token.exit_code, 0) << token.err;

  RunEveryCommand("redis up", ok_env);
  RunEveryCommand("wrong redis password", env("REDISPASS-c4b6a1-wrong"));
  RunEveryCommand("raw password in the URL", env(kRedisPassword));

  // A secret the platform refuses (database 1: no token stored yet).
  auto wrong_secret = env(kRedisPasswordEncoded, 1);
  std::erase(wrong_secret, "WX_SECRET=" + std::string(kAppSecret));
  wrong_secret.push_back("WX_SECRET=" + std::string(kAppSecret) + "-wrong");
  const Outcome refused = run_cli({"token", "wechat", "wx1"}, dir_.path(), wrong_secret);
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_THAT(refused.err, ::testing::HasSubstr("40125"));
  RunEveryCommand("wrong app secret", wrong_secret);

  // The platform fails: each fault on its own platform fake and database,
  // where no token is stored and no failure has paused fetching yet.
  int db = 2;
  for (const auto& [fault, code] :
       {std::pair{FakeFault::platform_error(40125), "40125"},
        std::pair{FakeFault::platform_error(40164), "40164"},
        std::pair{FakeFault::http_status_code(500), "500"}}) {
    const auto failing_env = env(kRedisPasswordEncoded, db++);
    FakePlatform failing;
    use_platform(failing);
    failing.inject(FakeEndpoint::kWeChatStableToken, fault, 3);
    failing.inject(FakeEndpoint::kWeChatToken, fault, 3);
    const Outcome failed = run_cli({"token", "wechat", "wx1"}, dir_.path(), failing_env);
    EXPECT_NE(failed.exit_code, 0);
    EXPECT_THAT(failed.err, ::testing::HasSubstr(code));
    expect_clean(std::string("token under fault ") + code, failed.out + failed.err);
    RunEveryCommand(std::string("platform failing ") + code, failing_env);
  }
  use_platform(fake_);

  // Without an API token, beyond loopback: refused (and nothing printed).
  auto no_token = ok_env;
  std::erase(no_token, "AICACHE_API_TOKEN=" + std::string(kApiToken));
  const Outcome open = run_cli({"serve", "--listen", "0.0.0.0:0"}, dir_.path(), no_token);
  EXPECT_EQ(open.exit_code, 2) << open.err;
  expect_clean("serve beyond loopback", open.out + open.err);

  // Redis down.
  redis_->stop();
  RunEveryCommand("redis stopped", ok_env);
}

TEST_F(SecretsCliTest, ServePrintsNoSecret) {
  const std::uint16_t port = testing::pick_free_port();
  auto e = env(kRedisPasswordEncoded);
  e.push_back("AICACHE_LISTEN=127.0.0.1:" + std::to_string(port));
  std::vector<std::string> bodies;
  std::vector<std::string> remote_outputs;
  bool answered = false;
  const Outcome r = run_cli({"serve"}, dir_.path(), e, [&](pid_t pid) {
    testing::HttpTestClient client(port, {.connect_timeout = 1s, .total_timeout = 10s});
    for (int i = 0; i < 200 && !answered; ++i) {
      auto health = client.get("/healthz");
      answered = health && health->status == 200;
      if (!answered) std::this_thread::sleep_for(25ms);
    }
    const testing::HttpTestHeaders auth = {{"Authorization", "Bearer " + std::string(kApiToken)}};
    const testing::HttpTestHeaders wrong = {{"Authorization", "Bearer wrong-token"}};
    for (const auto& h : {testing::HttpTestHeaders{}, wrong, auth}) {
      bodies.push_back(describe(client.get("/", h)));
      bodies.push_back(describe(client.get("/readyz", h)));
      bodies.push_back(describe(client.get("/metrics", h)));
      bodies.push_back(describe(client.get("/v1/stats", h)));
      bodies.push_back(describe(client.put("/v1/kv/k?ttl=60", "1", h)));
      bodies.push_back(describe(client.get("/v1/kv/k", h)));
      bodies.push_back(describe(client.get("/v1/kv/k?token=" + std::string(kApiToken), h)));
      bodies.push_back(describe(client.get("/v1/tokens/wechat/wx1", h)));
      fake_.inject(FakeEndpoint::kWeChatToken, FakeFault::platform_error(40164), 5);
      bodies.push_back(describe(client.post("/v1/tokens/wechat/wx2/refresh", "", h, "text/plain")));
      fake_.inject(FakeEndpoint::kWeChatToken, FakeFault::http_status_code(500), 5);
      bodies.push_back(describe(client.post("/v1/tokens/wechat/wx2/refresh", "", h, "text/plain")));
    }
    // The CLI through the service, with the right API token and a wrong one.
    const std::string url = "http://127.0.0.1:" + std::to_string(port);
    auto wrong_env = e;
    std::erase(wrong_env, "AICACHE_API_TOKEN=" + std::string(kApiToken));
    // Well formed, so that the service (not the CLI's own check) refuses it.
    wrong_env.push_back("AICACHE_API_TOKEN=wrong-token-0123456789abcdef0123456789");
    for (const auto& cli_env : {e, wrong_env}) {
      for (const std::vector<std::string>& args :
           {std::vector<std::string>{"set", "r", "1"}, {"get", "r"}, {"ttl", "r"}, {"del", "r"},
            {"stats"}, {"stats", "--json"}, {"token", "wechat", "wx1"},
            {"token", "wechat", "wx1", "--json"}, {"token", "invalidate", "wechat", "wx1", "x"}}) {
        auto with_server = args;
        with_server.insert(with_server.end(), {"--server", url});
        const Outcome c = run_cli(with_server, dir_.path(), cli_env);
        remote_outputs.push_back(::testing::PrintToString(with_server) + " exit " +
                                 std::to_string(c.exit_code) + "\n" + c.out + c.err);
      }
    }
    redis_->stop();  // store failures logged by the service
    bodies.push_back(describe(client.get("/readyz", auth)));
    bodies.push_back(describe(client.get("/v1/kv/k", auth)));
    bodies.push_back(describe(client.put("/v1/kv/k", "1", auth)));
    bodies.push_back(describe(client.get("/v1/stats", auth)));
    bodies.push_back(describe(client.get("/metrics")));
    ::kill(pid, SIGTERM);
  });
  EXPECT_TRUE(answered) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.err.empty());  // the access log and the store failures
  expect_clean("serve stdout", r.out);
  expect_clean("serve stderr", r.err);
  for (const auto& body : bodies) expect_clean("serve response", body);
  EXPECT_EQ(remote_outputs.size(), 18u);
  for (const auto& output : remote_outputs) expect_clean("CLI --server", output);
}

}  // namespace
}  // namespace aicache
