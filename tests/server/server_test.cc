// The HTTP service end to end: a real Server on a free loopback port, a real
// HTTP client (the project's libcurl client), the memory store or a real redis-server, and the
// token platforms' local fake.
#include "aicache/server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "aicache/log.h"
#include "aicache/memory_store.h"
#include "aicache/redis_store.h"
#include "aicache/testing/manual_clock.h"
#include "support/fake_platform.h"
#include "support/http_test_client.h"
#include "support/faulty_store.h"
#include "support/log_capture.h"
#include "support/raw_connection.h"
#include "support/redis_server.h"
#include "support/server_fixture.h"

namespace aicache {
namespace {

using namespace std::chrono_literals;
using testing::FakeEndpoint;
using testing::FakeFault;
using testing::FakePlatform;
using testing::LogCapture;
using testing::RedisServer;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kSecret = "s3cret-never-shown";
constexpr std::string_view kApiToken = "api-token-123-0123456789abcdef-xyz";

nlohmann::json Json(const testing::HttpTestResult& r) {
  EXPECT_TRUE(r);
  if (!r) return nullptr;
  auto parsed = nlohmann::json::parse(r->body, nullptr, false);
  EXPECT_FALSE(parsed.is_discarded()) << r->body;
  return parsed;
}

std::string ErrorCodeOf(const testing::HttpTestResult& r) {
  auto j = Json(r);
  if (!j.is_object() || !j.contains("error")) return "<no error object: " + r->body + ">";
  EXPECT_TRUE(j["error"]["message"].is_string()) << r->body;
  return j["error"]["code"].get<std::string>();
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { set_log_handler({}); }
  void TearDown() override {
    server_.stop();
    set_log_handler({});  // back to silence, not stderr
  }

  // Starts a server over `store` (memory by default) with one WeChat app
  // "wx1" registered against the fake.
  void Start(ServerOptions options = {}, std::shared_ptr<Store> store = nullptr,
             bool with_tokens = true) {
    if (!store) store = clock_ ? make_memory_store({.clock = clock_}) : make_memory_store();
    auto cache = AssistantCache::create(
        std::move(store),
        {.key_prefix = "srv",
         .store_errors = AssistantCacheOptions::StoreErrors::kTreatAsMiss});
    ASSERT_TRUE(cache) << cache.error().to_string();
    cache_ = std::move(*cache);
    if (with_tokens) {
      TokenManagerOptions token_options = token_options_;
      if (clock_) token_options.clock = clock_;
      token_options.backoff_initial = 1ms;
      token_options.max_attempts = 2;
      token_options.http.total_timeout = 2s;
      auto tokens = TokenManager::create(cache_, std::move(token_options));
      ASSERT_TRUE(tokens) << tokens.error().to_string();
      tokens_ = std::move(*tokens);
      AddApp("wx1");
    }
    ASSERT_NO_FATAL_FAILURE(server_.start(cache_, tokens_, std::move(options)));
  }

  void AddApp(std::string app_id) {
    AppCredentials app{.channel = Channel::kWeChat, .app_id = std::move(app_id),
                       .secret = std::string(kSecret), .base_url = fake_.base_url()};
    fake_.add_app(app);
    ASSERT_TRUE(tokens_->add_app(app));
  }

  testing::HttpTestClient Client() { return server_.client(); }

  FakePlatform fake_;
  // When set before Start(): the time of the memory store and the token
  // manager, so tests step over refresh limits without sleeping.
  std::shared_ptr<ManualClock> clock_;
  TokenManagerOptions token_options_;
  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> tokens_;
  testing::ServerFixture server_;
};

// --- Operations ---------------------------------------------------------------

TEST_F(ServerTest, HealthzAndReadyz) {
  Start();
  auto client = Client();
  auto health = client.get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(Json(health), nlohmann::json({{"status", "ok"}}));
  auto ready = client.get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
}

TEST_F(ServerTest, DashboardIsHtml) {
  Start();
  auto r = Client().get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_THAT(r->body, HasSubstr("<title>aicache"));
}

TEST_F(ServerTest, UnknownRouteIs404) {
  Start();
  auto client = Client();
  for (const char* path : {"/nope", "/v1", "/v1/", "/v1/tokens/wechat", "/healthz/x"}) {
    auto r = client.get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << path;
    EXPECT_EQ(ErrorCodeOf(r), "not_found") << path;
  }
  auto put = client.put("/nope", R"({"a":1})");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 404);
  EXPECT_EQ(ErrorCodeOf(put), "not_found");
}

TEST_F(ServerTest, WrongMethodIs405WithAllow) {
  Start();
  auto client = Client();
  auto post = client.post("/v1/kv/a", R"({"a":1})");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(ErrorCodeOf(post), "method_not_allowed");
  EXPECT_EQ(post->header("Allow"), "GET, HEAD, PUT, DELETE");

  auto get = client.get("/v1/tokens/wechat/wx1/refresh");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405);
  EXPECT_EQ(get->header("Allow"), "POST");

  auto del = client.del("/metrics");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 405);
  EXPECT_EQ(del->header("Allow"), "GET, HEAD");
}

// --- Data routes -----------------------------------------------------------------

TEST_F(ServerTest, KvPutGetDelete) {
  Start();
  auto client = Client();
  auto miss = client.get("/v1/kv/greeting");
  ASSERT_TRUE(miss);
  EXPECT_EQ(miss->status, 404);
  EXPECT_EQ(ErrorCodeOf(miss), "not_found");

  auto put = client.put("/v1/kv/greeting", R"({"hello": ["world", 1]})");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 200) << put->body;
  EXPECT_EQ(Json(put), nlohmann::json({{"stored", true}}));

  auto get = client.get("/v1/kv/greeting");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->header("Content-Type"), "application/json");
  EXPECT_EQ(Json(get), nlohmann::json::parse(R"({"hello": ["world", 1]})"));

  // Keys may hold slashes.
  auto slashed = client.put("/v1/kv/a/b/c", "42");
  ASSERT_TRUE(slashed);
  EXPECT_EQ(slashed->status, 200);
  EXPECT_EQ(Json(client.get("/v1/kv/a/b/c")), 42);

  auto del = client.del("/v1/kv/greeting");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200);
  EXPECT_EQ(Json(del), nlohmann::json({{"deleted", true}}));
  auto again = client.del("/v1/kv/greeting");
  EXPECT_EQ(Json(again), nlohmann::json({{"deleted", false}}));
  EXPECT_EQ(client.get("/v1/kv/greeting")->status, 404);
}

TEST_F(ServerTest, ConversationsAndAiConfigs) {
  Start();
  auto client = Client();
  const std::string conversation = R"({"messages":[{"role":"user","content":"你好"}]})";
  ASSERT_EQ(client.put("/v1/conversations/c-1", conversation)->status, 200);
  auto got = client.get("/v1/conversations/c-1");
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(Json(got), nlohmann::json::parse(conversation));
  // Stored under the typed key, not the generic one.
  auto typed = cache_->get_conversation("c-1");
  ASSERT_TRUE(typed.hit());
  EXPECT_EQ(client.get("/v1/kv/c-1")->status, 404);

  ASSERT_EQ(client.put("/v1/ai-configs/u42", R"({"model":"x"})")->status, 200);
  EXPECT_EQ(Json(client.get("/v1/ai-configs/u42")), nlohmann::json({{"model", "x"}}));
  auto typed_config = cache_->get_ai_config("u42");
  ASSERT_TRUE(typed_config.hit());

  EXPECT_EQ(Json(client.del("/v1/conversations/c-1")), nlohmann::json({{"deleted", true}}));
  EXPECT_EQ(client.get("/v1/conversations/c-1")->status, 404);
  EXPECT_EQ(Json(client.del("/v1/ai-configs/u42")), nlohmann::json({{"deleted", true}}));
  EXPECT_EQ(client.get("/v1/ai-configs/u42")->status, 404);
}

TEST_F(ServerTest, TtlQuery) {
  Start();
  auto client = Client();
  ASSERT_EQ(client.put("/v1/kv/t?ttl=100", "1")->status, 200);
  auto ttl = cache_->ttl("t");
  ASSERT_TRUE(ttl);
  EXPECT_EQ(ttl->state, KeyTtl::State::kExpiring);
  EXPECT_GT(ttl->remaining, 90s);
  EXPECT_LE(ttl->remaining, 100s);

  // A HEAD answers the remaining TTL in whole seconds, rounded up, or
  // "never"; conversations and AI configs too (their typed keys). A GET
  // leaves it out: it would cost a store call.
  EXPECT_FALSE(client.get("/v1/kv/t")->header("X-Aicache-Ttl").has_value());
  auto got = client.head("/v1/kv/t");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->header("X-Aicache-Ttl"), "100");
  ASSERT_TRUE(cache_->set("forever", JsonDocument::string("x"), Ttl::never()));
  EXPECT_EQ(client.head("/v1/kv/forever")->header("X-Aicache-Ttl"), "never");
  ASSERT_EQ(client.put("/v1/conversations/c?ttl=50", "{}")->status, 200);
  EXPECT_EQ(client.head("/v1/conversations/c")->header("X-Aicache-Ttl"), "50");
  ASSERT_EQ(client.put("/v1/ai-configs/u?ttl=7", "{}")->status, 200);
  EXPECT_EQ(client.head("/v1/ai-configs/u")->header("X-Aicache-Ttl"), "7");
  auto miss = client.head("/v1/kv/none");
  ASSERT_TRUE(miss);
  EXPECT_EQ(miss->status, 404);
  EXPECT_FALSE(miss->header("X-Aicache-Ttl").has_value());

  // 0 removes, as Django does.
  auto removed = client.put("/v1/kv/t?ttl=0", "1");
  ASSERT_TRUE(removed);
  EXPECT_EQ(removed->status, 200);
  EXPECT_EQ(Json(removed), nlohmann::json({{"stored", false}}));
  EXPECT_EQ(client.get("/v1/kv/t")->status, 404);

  for (const char* bad : {"-1", "1.5", "abc", "", "1e3", "%2B5", "99999999999999999999", "%205"}) {
    auto r = client.put(std::string("/v1/kv/t?ttl=") + bad, "1");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << "ttl=" << bad;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_argument") << "ttl=" << bad;
  }
  auto twice = client.put("/v1/kv/t?ttl=1&ttl=2", "1");
  EXPECT_EQ(twice->status, 400);
}

TEST_F(ServerTest, MalformedJsonIs400) {
  Start();
  auto client = Client();
  for (const std::string& body :
       {std::string("{"), std::string("not json"), std::string("{\"a\":1} trailing"),
        std::string(200, '[') + std::string(200, ']')}) {
    auto r = client.put("/v1/kv/k", body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_json") << body;
  }
  // An empty body is not JSON either.
  auto empty = client.put("/v1/kv/k", "");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->status, 400);
  EXPECT_EQ(client.get("/v1/kv/k")->status, 404);
}

TEST_F(ServerTest, InvalidKeyIs400WithTheLibrarysMessage) {
  Start();
  auto client = Client();
  auto spaced = client.get("/v1/kv/has%20space");
  ASSERT_TRUE(spaced);
  EXPECT_EQ(spaced->status, 400);
  EXPECT_EQ(ErrorCodeOf(spaced), "invalid_argument");

  auto colon = client.put("/v1/conversations/a:b", "{}");
  ASSERT_TRUE(colon);
  EXPECT_EQ(colon->status, 400);
  EXPECT_THAT(Json(colon)["error"]["message"].get<std::string>(), HasSubstr("':'"));

  auto long_key = client.get("/v1/kv/" + std::string(300, 'k'));
  EXPECT_EQ(long_key->status, 400);
  auto empty = client.get("/v1/kv/");
  EXPECT_EQ(empty->status, 400);
  auto bad_app = client.get("/v1/tokens/wechat/a%20b");
  EXPECT_EQ(bad_app->status, 400);
  EXPECT_EQ(ErrorCodeOf(bad_app), "invalid_argument");
}

TEST_F(ServerTest, BodyOverTheLimitIs413) {
  ServerOptions options;
  options.max_body_bytes = 1024;
  Start(options);
  auto client = Client();
  const std::string big = "\"" + std::string(2000, 'x') + "\"";
  auto r = client.put("/v1/kv/big", big);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(ErrorCodeOf(r), "payload_too_large");
  EXPECT_EQ(client.get("/v1/kv/big")->status, 404);
  // Just under the limit is fine.
  const std::string fits = "\"" + std::string(1000, 'x') + "\"";
  EXPECT_EQ(client.put("/v1/kv/big", fits)->status, 200);
}

TEST_F(ServerTest, OverlongPathIs414) {
  Start();
  auto r = Client().put("/v1/kv/" + std::string(3000, 'k'), "1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 414);
  EXPECT_EQ(ErrorCodeOf(r), "uri_too_long");
}

// --- Auth --------------------------------------------------------------------------

TEST_F(ServerTest, ApiTokenGuardsV1Routes) {
  ServerOptions options;
  options.api_token = std::string(kApiToken);
  Start(options);
  auto client = Client();

  auto missing = client.get("/v1/kv/x");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 401);
  EXPECT_EQ(ErrorCodeOf(missing), "unauthorized");
  EXPECT_THAT(missing->header("WWW-Authenticate").value_or(""), HasSubstr("Bearer"));

  for (const std::string& header :
       {std::string("Bearer wrong"), std::string("Bearer api-token-12"),
        std::string("Bearer api-token-1234"), std::string("Basic ") + std::string(kApiToken),
        std::string(kApiToken)}) {
    auto wrong = client.get("/v1/kv/x", {{"Authorization", header}});
    ASSERT_TRUE(wrong);
    EXPECT_EQ(wrong->status, 401) << header;
  }
  // A PUT without the token is refused before its body is looked at.
  auto put = client.put("/v1/kv/x", "1");
  EXPECT_EQ(put->status, 401);

  const testing::HttpTestHeaders auth = {{"Authorization", "Bearer " + std::string(kApiToken)}};
  EXPECT_EQ(client.put("/v1/kv/x", "1", auth)->status, 200);
  EXPECT_EQ(client.get("/v1/kv/x", auth)->status, 200);
  EXPECT_EQ(client.get("/v1/kv/x", {{"Authorization", "bearer " + std::string(kApiToken)}})->status,
            200);
  EXPECT_EQ(client.get("/v1/stats", auth)->status, 200);
  EXPECT_EQ(client.get("/v1/stats")->status, 401);
  EXPECT_EQ(client.get("/v1/tokens/wechat/wx1")->status, 401);

  // Operations routes stay open.
  EXPECT_EQ(client.get("/healthz")->status, 200);
  EXPECT_EQ(client.get("/readyz")->status, 200);
  EXPECT_EQ(client.get("/metrics")->status, 200);
}

TEST_F(ServerTest, AuthOffNeedsNoHeader) {
  Start();
  EXPECT_EQ(Client().get("/v1/stats")->status, 200);
}

TEST(ServerCreate, RefusesNonLoopbackWithoutToken) {
  auto cache = std::shared_ptr<AssistantCache>(*AssistantCache::create(make_memory_store()));
  for (const char* listen : {"0.0.0.0:0", "192.168.1.10:8080", "[::]:0", "example.com:80"}) {
    auto server = Server::create(cache, nullptr, {.listen = listen});
    ASSERT_FALSE(server) << listen;
    EXPECT_EQ(server.error().code, ErrorCode::kConfig) << listen;
    EXPECT_THAT(server.error().message, HasSubstr("API token")) << listen;
  }
  for (const char* listen : {"127.0.0.1:0", "127.1.2.3:0", "[::1]:0", "localhost:0"}) {
    auto server = Server::create(cache, nullptr, {.listen = listen});
    EXPECT_TRUE(server) << listen << ": " << server.error().to_string();
  }
  auto with_token = Server::create(cache, nullptr, {.listen = "0.0.0.0:0", .api_token = std::string(kApiToken)});
  EXPECT_TRUE(with_token);
  for (const char* listen : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", ":80", "[::1]80",
                             "127.0.0.1:8x"}) {
    auto server = Server::create(cache, nullptr, {.listen = listen});
    ASSERT_FALSE(server) << listen;
    EXPECT_EQ(server.error().code, ErrorCode::kInvalidArgument) << listen;
  }
  EXPECT_FALSE(Server::create(nullptr, nullptr, {}));
}

TEST(ServerCreate, ListensOnIpv6Loopback) {
  auto cache = std::shared_ptr<AssistantCache>(*AssistantCache::create(make_memory_store()));
  auto server = Server::create(cache, nullptr, {.listen = "[::1]:0", .access_log = false});
  ASSERT_TRUE(server);
  auto started = (*server)->start();
  if (!started) GTEST_SKIP() << "no IPv6 loopback here: " << started.error().to_string();
  testing::HttpTestClient client("::1", (*server)->port());
  auto r = client.get("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  (*server)->stop();
}

// --- Tokens ---------------------------------------------------------------------------

TEST_F(ServerTest, TokenFetchedThroughTheService) {
  clock_ = std::make_shared<ManualClock>();
  Start();
  auto client = Client();
  auto r = client.get("/v1/tokens/wechat/wx1");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto j = Json(r);
  const std::string token = j["access_token"];
  EXPECT_FALSE(token.empty());
  EXPECT_GT(j["expires_in"].get<int>(), 7000);
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, token), 0);
  EXPECT_EQ(r->header("Cache-Control"), "no-store");

  // Served from the store the second time.
  EXPECT_EQ(Json(client.get("/v1/tokens/wechat/wx1"))["access_token"], token);
  EXPECT_EQ(fake_.token_calls(), 1u);

  // Invalidate with a stale token: nothing happens.
  auto stale = client.post("/v1/tokens/wechat/wx1/invalidate", R"({"access_token":"old"})");
  ASSERT_TRUE(stale);
  EXPECT_EQ(stale->status, 200);
  EXPECT_EQ(Json(stale), nlohmann::json({{"invalidated", false}}));
  // With the current one: removed, and the next GET fetches.
  auto invalidated = client.post("/v1/tokens/wechat/wx1/invalidate",
                                 nlohmann::json({{"access_token", token}}).dump());
  EXPECT_EQ(Json(invalidated), nlohmann::json({{"invalidated", true}}));
  ASSERT_EQ(client.get("/v1/tokens/wechat/wx1")->status, 200);
  EXPECT_EQ(fake_.token_calls(), 2u);

  // Refresh fetches now.
  auto refreshed = client.post("/v1/tokens/wechat/wx1/refresh", "");
  ASSERT_TRUE(refreshed);
  EXPECT_EQ(refreshed->status, 200) << refreshed->body;
  EXPECT_TRUE(Json(refreshed)["access_token"].is_string());
  EXPECT_EQ(fake_.token_calls(), 3u);

  // force_refresh=true also has WeChat's stable API revoke the current
  // token: a new one comes back and the old one fails at once. (After the
  // minimum interval between refreshes.)
  clock_->advance(61s);
  const std::string before = Json(client.get("/v1/tokens/wechat/wx1"))["access_token"];
  auto forced = client.post("/v1/tokens/wechat/wx1/refresh?force_refresh=true", "");
  ASSERT_TRUE(forced);
  ASSERT_EQ(forced->status, 200) << forced->body;
  const std::string after = Json(forced)["access_token"];
  EXPECT_NE(after, before);
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, before), 40001);
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, after), 0);
  for (const char* bad : {"yes", "", "2"}) {
    auto refused =
        client.post(std::string("/v1/tokens/wechat/wx1/refresh?force_refresh=") + bad, "");
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 400) << bad;
  }

  // Bad invalidate bodies.
  for (const char* body : {"", "{", "[]", R"({"access_token":1})", R"({"token":"x"})"}) {
    auto bad = client.post("/v1/tokens/wechat/wx1/invalidate", body);
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 400) << body;
  }
}

// Threat model, finding 1: /v1/kv wrote any key, so a PUT of the token's key
// forged the token every GET /v1/tokens handed out, and a PUT of the lease
// with a long TTL stopped every refresh. Writes of reserved keys are refused,
// naming the typed route; reads still work.
TEST_F(ServerTest, KvRefusesWritesOfTheTypedEntriesButReadsThem) {
  Start();
  auto client = Client();
  const std::string token = Json(client.get("/v1/tokens/wechat/wx1"))["access_token"];
  ASSERT_FALSE(token.empty());

  struct Write {
    std::string method, path, route;
  };
  const std::vector<Write> writes = {
      {"PUT", "/v1/kv/ai_assistant:access_token:wechat:wx1", "/v1/tokens/{channel}/{app}"},
      {"PUT", "/v1/kv/ai_assistant%3Aaccess_token%3Awechat%3Awx1", "/v1/tokens/{channel}/{app}"},
      {"PUT", "/v1/kv/ai_assistant:token_lease:wechat:wx1?ttl=86400", "/v1/tokens/{channel}/{app}"},
      {"PUT", "/v1/kv/ai_assistant:token_refreshed:wechat:wx1?ttl=86400",
       "/v1/tokens/{channel}/{app}"},
      {"PUT", "/v1/kv/ai_assistant:access_token:wechat:wx1?ttl=0", "/v1/tokens/{channel}/{app}"},
      {"DELETE", "/v1/kv/ai_assistant:access_token:wechat:wx1", "/v1/tokens/{channel}/{app}"},
      {"DELETE", "/v1/kv/ai_assistant:token_lease:wechat:wx1", "/v1/tokens/{channel}/{app}"},
      {"PUT", "/v1/kv/ai_assistant:conversation:c1", "/v1/conversations/{id}"},
      {"DELETE", "/v1/kv/ai_assistant:ai_config:u1", "/v1/ai-configs/{user_id}"},
      {"PUT", "/v1/kv/ai_assistant:future_thing", "typed routes"},
  };
  for (const Write& w : writes) {
    SCOPED_TRACE(w.method + " " + w.path);
    auto r = w.method == "PUT" ? client.put(w.path, R"("evil")") : client.del(w.path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "reserved_key");
    EXPECT_THAT(Json(r)["error"]["message"].get<std::string>(), HasSubstr(w.route));
  }

  // Nothing was forged or frozen: the token is the fetched one, a refresh
  // goes through, and reads of the typed keys still work.
  EXPECT_EQ(Json(client.get("/v1/tokens/wechat/wx1"))["access_token"], token);
  auto read = client.get("/v1/kv/ai_assistant:access_token:wechat:wx1");
  ASSERT_TRUE(read);
  EXPECT_EQ(read->status, 200) << read->body;
  EXPECT_EQ(Json(read), token);
  auto refreshed = client.post("/v1/tokens/wechat/wx1/refresh", "");
  ASSERT_TRUE(refreshed);
  EXPECT_EQ(refreshed->status, 200) << refreshed->body;
  EXPECT_EQ(fake_.token_calls(), 2u);

  // Keys that only look alike are generic.
  for (const char* key : {"ai_assistant", "ai_assistantx:y", "x:ai_assistant:access_token:a:b",
                          "AI_ASSISTANT:access_token:wechat:wx1"}) {
    auto put = client.put(std::string("/v1/kv/") + key, "1");
    ASSERT_TRUE(put);
    EXPECT_EQ(put->status, 200) << key << ": " << put->body;
  }
}

// Threat model, finding 2: every POST .../refresh went upstream. Within the
// minimum interval the next one is 429 with Retry-After and no upstream
// call; other apps and plain GETs are unaffected.
TEST_F(ServerTest, RefreshWithinTheIntervalIs429WithRetryAfterAndNoUpstreamCall) {
  clock_ = std::make_shared<ManualClock>();
  Start();
  AddApp("wx2");
  auto client = Client();
  auto first = client.post("/v1/tokens/wechat/wx1/refresh", "");
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200) << first->body;
  EXPECT_EQ(fake_.token_calls(), 1u);

  auto second = client.post("/v1/tokens/wechat/wx1/refresh", "");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 429) << second->body;
  EXPECT_EQ(ErrorCodeOf(second), "rate_limited");
  EXPECT_EQ(second->header("Retry-After"), "60");
  EXPECT_EQ(second->header("Cache-Control"), "no-store");
  EXPECT_EQ(fake_.token_calls(), 1u);

  clock_->advance(45s);
  auto forced = client.post("/v1/tokens/wechat/wx1/refresh?force_refresh=true", "");
  ASSERT_TRUE(forced);
  EXPECT_EQ(forced->status, 429) << forced->body;
  EXPECT_EQ(forced->header("Retry-After"), "15");
  EXPECT_EQ(fake_.token_calls(), 1u);

  // The token is still served; another app has its own interval.
  EXPECT_EQ(client.get("/v1/tokens/wechat/wx1")->status, 200);
  EXPECT_EQ(client.post("/v1/tokens/wechat/wx2/refresh", "")->status, 200);
  EXPECT_EQ(fake_.token_calls(), 2u);

  clock_->advance(15s);
  auto later = client.post("/v1/tokens/wechat/wx1/refresh", "");
  ASSERT_TRUE(later);
  EXPECT_EQ(later->status, 200) << later->body;
  EXPECT_EQ(fake_.token_calls(), 3u);
}

// Forced refreshes (WeChat revokes the live token; 20 a day) have a daily
// cap of their own; a refused one leaves a plain refresh possible.
TEST_F(ServerTest, ForcedRefreshesBeyondTheDailyCapAre429UntilThePlatformsMidnight) {
  clock_ = std::make_shared<ManualClock>();
  // To 2026-01-02T00:00:00Z, 08:00 in China (UTC+8), from the manual clock's
  // start 1000 s after 2026-01-01T00:00Z.
  clock_->advance(24h - 1000s);
  ASSERT_EQ(clock_->wall_now().time_since_epoch() % 24h, 0s);
  token_options_.forced_refreshes_per_day = 3;
  Start();
  // A platform on the same clock: its own limit on forced refreshes (one a
  // minute) must see the minutes this test steps over.
  FakePlatform platform({.clock = clock_});
  const AppCredentials app{.channel = Channel::kWeChat, .app_id = "wxcap",
                           .secret = std::string(kSecret), .base_url = platform.base_url()};
  platform.add_app(app);
  ASSERT_TRUE(tokens_->add_app(app));
  auto client = Client();
  const std::string forced = "/v1/tokens/wechat/wxcap/refresh?force_refresh=true";
  for (int i = 0; i < 3; ++i) {
    auto r = client.post(forced, "");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << i << ": " << r->body;
    clock_->advance(61s);
  }
  EXPECT_EQ(platform.token_calls(), 3u);
  auto refused = client.post(forced, "");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429) << refused->body;
  EXPECT_EQ(ErrorCodeOf(refused), "rate_limited");
  // 16 h to midnight in China, less the 183 s gone by.
  EXPECT_EQ(refused->header("Retry-After"), std::to_string(16 * 3600 - 183));
  EXPECT_EQ(platform.token_calls(), 3u);
  // The refused one took no interval: a plain refresh goes through.
  EXPECT_EQ(client.post("/v1/tokens/wechat/wxcap/refresh", "")->status, 200);
  EXPECT_EQ(platform.token_calls(), 4u);

  clock_->advance(16h);
  auto next_day = client.post(forced, "");
  ASSERT_TRUE(next_day);
  EXPECT_EQ(next_day->status, 200) << next_day->body;
  EXPECT_EQ(platform.token_calls(), 5u);
}

TEST_F(ServerTest, UnknownAppIs404) {
  Start();
  auto client = Client();
  for (const char* path : {"/v1/tokens/wechat/nope", "/v1/tokens/dingtalk/wx1"}) {
    auto r = client.get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << path;
    EXPECT_EQ(ErrorCodeOf(r), "not_found");
  }
  auto refresh = client.post("/v1/tokens/wechat/nope/refresh", "");
  EXPECT_EQ(refresh->status, 404);
}

TEST_F(ServerTest, NoTokenManagerMeansTokenRoutesAre404) {
  Start({}, nullptr, /*with_tokens=*/false);
  auto r = Client().get("/v1/tokens/wechat/wx1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(Json(Client().get("/v1/stats"))["tokens"], nlohmann::json::array());
}

TEST_F(ServerTest, PlatformConfigErrorIs502WithThePlatformCode) {
  Start();
  fake_.inject(FakeEndpoint::kWeChatStableToken, FakeFault::platform_error(40125), 1);
  auto r = Client().get("/v1/tokens/wechat/wx1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502);
  auto j = Json(r);
  EXPECT_EQ(j["error"]["code"], "upstream_config") << r->body;
  EXPECT_EQ(j["error"]["platform_code"], 40125) << r->body;
  EXPECT_TRUE(j["error"]["platform_message"].is_string()) << r->body;
  EXPECT_THAT(r->body, Not(HasSubstr(kSecret)));
}

TEST_F(ServerTest, PlatformRetryableErrorIs502Upstream) {
  Start();
  fake_.inject(FakeEndpoint::kWeChatStableToken, FakeFault::platform_error(-1, "system busy"), 2);
  auto r = Client().get("/v1/tokens/wechat/wx1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502);
  auto j = Json(r);
  EXPECT_EQ(j["error"]["code"], "upstream") << r->body;
  EXPECT_EQ(j["error"]["platform_code"], -1) << r->body;
  EXPECT_EQ(j["error"]["platform_message"], "system busy") << r->body;

  // An HTTP failure carries no platform code.
  AddApp("wx2");
  fake_.inject(FakeEndpoint::kWeChatStableToken, FakeFault::http_status_code(500), 2);
  auto http = Client().get("/v1/tokens/wechat/wx2");
  EXPECT_EQ(http->status, 502);
  EXPECT_FALSE(Json(http)["error"].contains("platform_code")) << http->body;
}

// --- Stats and metrics ---------------------------------------------------------------

TEST_F(ServerTest, StatsHaveTheDashboardsShapeAndNoSecrets) {
  Start();
  auto client = Client();
  auto token = Json(client.get("/v1/tokens/wechat/wx1"))["access_token"].get<std::string>();
  client.put("/v1/kv/a", "1");
  client.get("/v1/kv/a");
  client.get("/v1/kv/missing");

  auto r = client.get("/v1/stats");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_THAT(r->body, Not(HasSubstr(token)));
  EXPECT_THAT(r->body, Not(HasSubstr(kSecret)));
  auto j = Json(r);
  const auto& store = j["store"];
  for (const char* field : {"used_memory_bytes", "max_memory_bytes", "entries", "hits", "misses",
                            "evictions", "expirations", "commands_processed"}) {
    EXPECT_TRUE(store[field].is_number_unsigned()) << field << ": " << r->body;
  }
  EXPECT_EQ(store["backend"], "memory");
  EXPECT_TRUE(store["used_memory_human"].is_string());
  EXPECT_TRUE(store["details"].is_object());
  EXPECT_GE(store["hits"].get<int>(), 1);
  EXPECT_GE(store["misses"].get<int>(), 1);
  EXPECT_TRUE(j["cache"]["store_errors"].is_number());
  // Requests are counted once answered, so the last may not be yet.
  EXPECT_GE(j["server"]["requests_total"].get<int>(), 3);
  EXPECT_TRUE(j["server"]["uptime_seconds"].is_number());
  EXPECT_GE(j["server"]["in_flight"].get<int>(), 1);  // this request
  ASSERT_EQ(j["tokens"].size(), 1u);
  const auto& app = j["tokens"][0];
  EXPECT_EQ(app["channel"], "wechat");
  EXPECT_EQ(app["app_key"], "wx1");
  EXPECT_EQ(app["fetches"], 1);
  EXPECT_TRUE(app["hits"].is_number());
  EXPECT_TRUE(app["waits"].is_number());
  EXPECT_TRUE(app["invalidations"].is_number());
  EXPECT_EQ(app["fetch_failures"],
            nlohmann::json({{"retryable", 0}, {"configuration", 0}, {"quota", 0}}));
  const std::string last_fetch = app["last_fetch"];
  EXPECT_TRUE(std::regex_match(last_fetch,
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")))
      << last_fetch;
  EXPECT_GT(app["seconds_until_expiry"].get<int>(), 7000);
  EXPECT_TRUE(app["refresh_margin_seconds"].is_number_integer());
  EXPECT_EQ(app["last_error"], "");
}

// Every line is a comment (HELP/TYPE) or a sample of a family declared
// before it; returns the samples by their full name with labels.
std::map<std::string, std::string> ParsePrometheus(const std::string& text) {
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*)");
  static const std::regex kType(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? ([-+0-9.eE]+|\+Inf|-Inf|NaN))");
  std::map<std::string, std::string> samples;
  std::set<std::string> typed;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, kHelp)) continue;
    if (std::regex_match(line, m, kType)) {
      EXPECT_TRUE(typed.insert(m[1]).second) << "TYPE twice: " << line;
      continue;
    }
    EXPECT_TRUE(std::regex_match(line, m, kSample)) << "not a sample: " << line;
    if (m.empty()) continue;
    std::string family = m[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (!typed.contains(family) && family.ends_with(suffix)) {
        family.resize(family.size() - std::string_view(suffix).size());
      }
    }
    EXPECT_TRUE(typed.contains(family)) << "no TYPE before " << line;
    samples[std::string(m[1]) + std::string(m[2])] = m[3];
  }
  return samples;
}

TEST_F(ServerTest, MetricsAreValidPrometheusText) {
  Start();
  // Fetches are observed when the call took over 1 ms (as every real
  // platform call does) and the fetch counter moved.
  fake_.set_latency(5ms);
  auto client = Client();
  ASSERT_EQ(client.get("/v1/tokens/wechat/wx1")->status, 200);
  client.put("/v1/kv/a", "1");
  client.get("/v1/kv/a");
  client.get("/v1/kv/b");
  client.get("/nope?secret=shh");

  // A request is counted after its answer is written, so the client may see
  // the answer first: scrape until the last request shows.
  testing::HttpTestResult r = client.get("/metrics");
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (r && r->body.find("route=\"unknown\"") == std::string::npos &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);  // polling a condition
    r = client.get("/metrics");
  }
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = r->body;
  for (const char* family :
       {"aicache_cache_hits_total", "aicache_cache_misses_total", "aicache_cache_sets_total",
        "aicache_cache_evictions_total", "aicache_cache_expirations_total",
        "aicache_store_used_memory_bytes", "aicache_store_entries", "aicache_store_errors_total",
        "aicache_token_fetches_total", "aicache_token_fetch_duration_seconds",
        "aicache_http_requests_total", "aicache_http_request_duration_seconds"}) {
    EXPECT_THAT(text, HasSubstr(std::string("# HELP ") + family + " ")) << family;
    EXPECT_THAT(text, HasSubstr(std::string("# TYPE ") + family + " ")) << family;
  }
  auto samples = ParsePrometheus(text);
  EXPECT_EQ(samples["aicache_http_requests_total{route=\"/v1/kv/{key}\",method=\"PUT\",status=\"200\"}"],
            "1");
  EXPECT_EQ(samples["aicache_http_requests_total{route=\"/v1/kv/{key}\",method=\"GET\",status=\"404\"}"],
            "1");
  EXPECT_EQ(samples["aicache_http_requests_total{route=\"unknown\",method=\"GET\",status=\"404\"}"],
            "1");
  EXPECT_EQ(samples["aicache_token_fetches_total{channel=\"wechat\",app=\"wx1\",outcome=\"success\"}"],
            "1");
  EXPECT_EQ(samples["aicache_token_fetches_total{channel=\"wechat\",app=\"wx1\",outcome=\"quota\"}"],
            "0");
  EXPECT_EQ(samples["aicache_cache_sets_total"], "2");  // the PUT and the fetched token
  // The app's margin (jittered per app below the configured 300 s).
  const std::string margin =
      samples["aicache_token_refresh_margin_seconds{channel=\"wechat\",app=\"wx1\"}"];
  ASSERT_FALSE(margin.empty());
  EXPECT_GT(std::stod(margin), 0);
  EXPECT_LE(std::stod(margin), 300);
  EXPECT_EQ(samples["aicache_token_fetch_duration_seconds_count{channel=\"wechat\",app=\"wx1\"}"],
            "1");
  EXPECT_EQ(
      samples["aicache_http_request_duration_seconds_bucket{route=\"/v1/kv/{key}\",le=\"+Inf\"}"],
      "3");
  EXPECT_EQ(samples["aicache_store_entries"], "2");
  EXPECT_EQ(samples["aicache_cache_hits_total{family=\"kv\"}"], "1");
  EXPECT_EQ(samples["aicache_cache_misses_total{family=\"kv\"}"], "1");
  EXPECT_NE(samples["aicache_store_hits_total"], "0");
  // Raw paths and query strings never become labels.
  EXPECT_THAT(text, Not(HasSubstr("/nope")));
  EXPECT_THAT(text, Not(HasSubstr("shh")));
}

TEST_F(ServerTest, AccessLogHasNoSecretsNorQueries) {
  LogCapture logs;
  ServerOptions options;
  options.api_token = std::string(kApiToken);
  Start(options);
  auto client = Client();
  const testing::HttpTestHeaders auth = {{"Authorization", "Bearer " + std::string(kApiToken)}};
  auto token = Json(client.get("/v1/tokens/wechat/wx1", auth))["access_token"].get<std::string>();
  client.put("/v1/kv/k?ttl=77", R"({"body":"private-value"})", auth);
  server_->stop();
  const std::string text = logs.all();
  EXPECT_THAT(text, HasSubstr("route=/v1/tokens/{channel}/{app} status=200"));
  EXPECT_THAT(text, HasSubstr("method=PUT route=/v1/kv/{key} status=200"));
  EXPECT_THAT(text, HasSubstr("remote=127.0.0.1"));
  EXPECT_THAT(text, Not(HasSubstr(token)));
  EXPECT_THAT(text, Not(HasSubstr(kApiToken)));
  EXPECT_THAT(text, Not(HasSubstr(kSecret)));
  EXPECT_THAT(text, Not(HasSubstr("ttl=77")));
  EXPECT_THAT(text, Not(HasSubstr("private-value")));
}

// --- Redis -------------------------------------------------------------------------------

// The warm-up wired into a real server: /readyz turns 200 once the app's
// token is fetched from the (fake) platform, and a request then finds it in
// the store without another fetch.
TEST_F(ServerTest, WarmUpFetchesEveryTokenBeforeReady) {
  ServerOptions options;
  options.warmup_timeout = 30s;
  Start(options);
  auto client = Client();
  testing::HttpTestResult ready = client.get("/readyz");
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (ready && ready->status == 503 && std::chrono::steady_clock::now() < until) {
    EXPECT_EQ(Json(ready)["status"], "warming_up");
    std::this_thread::sleep_for(5ms);  // polling a condition
    ready = client.get("/readyz");
  }
  ASSERT_TRUE(ready);
  ASSERT_EQ(ready->status, 200) << ready->body;
  EXPECT_EQ(Json(ready), nlohmann::json({{"status", "ready"}}));
  EXPECT_EQ(Json(client.get("/v1/stats"))["warmup"]["apps"][0]["state"], "ready");
  ASSERT_EQ(client.get("/v1/tokens/wechat/wx1")->status, 200);
  EXPECT_EQ(Json(client.get("/v1/stats"))["tokens"][0]["fetches"], 1);
}

TEST_F(ServerTest, RedisStoppedMeansNotReadyAndMissesNotCrashes) {
  RedisServer redis;
  auto endpoint = parse_redis_url(redis.url());
  ASSERT_TRUE(endpoint);
  auto store = make_redis_store({.endpoint = *endpoint,
                                 .connect_timeout = 200ms,
                                 .socket_timeout = 200ms});
  ASSERT_TRUE(store) << store.error().to_string();
  Start({}, std::shared_ptr<Store>(std::move(*store)));
  auto client = Client();
  ASSERT_EQ(client.put("/v1/kv/r", R"({"x":1})")->status, 200);
  EXPECT_EQ(Json(client.get("/v1/kv/r")), nlohmann::json({{"x", 1}}));
  EXPECT_EQ(client.get("/readyz")->status, 200);
  EXPECT_EQ(Json(client.get("/v1/stats"))["store"]["backend"], "redis");
  // The Redis store's near cache shows in /v1/stats and /metrics.
  EXPECT_EQ(Json(client.get("/v1/kv/r")), nlohmann::json({{"x", 1}}));
  EXPECT_EQ(Json(client.get("/v1/stats"))["store"]["details"]["near_cache"], "on");
  EXPECT_EQ(ParsePrometheus(client.get("/metrics")->body)["aicache_near_tracking_live"], "1");
  // Another client of the same Redis (a second store without a near cache,
  // as Django's django-redis would be) overwrites the value: the service
  // serves the new one once Redis's invalidation has arrived.
  {
    auto other = make_redis_store({.endpoint = *endpoint, .near_cache_max_bytes = 0});
    ASSERT_TRUE(other) << other.error().to_string();
    ASSERT_TRUE((*other)->set(*cache_->keys().make("r"), R"({"x":2})"));
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (Json(client.get("/v1/kv/r")) != nlohmann::json({{"x", 2}}) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(Json(client.get("/v1/kv/r")), nlohmann::json({{"x", 2}}));
  }

  redis.stop();
  auto ready = client.get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  // Anyone may ask /readyz: it names no host, port or database (issue 11,
  // finding 9); the store's own error is in the log and /v1/stats.
  EXPECT_EQ(Json(ready)["error"]["message"], "the store does not answer") << ready->body;
  EXPECT_THAT(ready->body, Not(HasSubstr("127.0.0.1")));
  EXPECT_THAT(ready->body, Not(HasSubstr(std::to_string(endpoint->port))));
  // Reads are misses (kTreatAsMiss), writes report the outage.
  auto get = client.get("/v1/kv/r");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 404);
  auto put = client.put("/v1/kv/r", "2");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 503);
  EXPECT_EQ(ErrorCodeOf(put), "unavailable");
  auto del = client.del("/v1/kv/r");
  EXPECT_EQ(del->status, 503);
  // A token cannot be read nor stored: 503, not a crash.
  auto token = client.get("/v1/tokens/wechat/wx1");
  ASSERT_TRUE(token);
  EXPECT_EQ(token->status, 503) << token->body;
  // Stats still answer, without store figures.
  auto stats = client.get("/v1/stats");
  ASSERT_EQ(stats->status, 200);
  auto j = Json(stats);
  EXPECT_TRUE(j["store"].is_null());
  EXPECT_GE(j["cache"]["store_errors"].get<int>(), 2);
  auto metrics = client.get("/metrics");
  ASSERT_EQ(metrics->status, 200);
  auto samples = ParsePrometheus(metrics->body);
  EXPECT_EQ(samples["aicache_store_up"], "0");
  EXPECT_NE(samples["aicache_store_errors_total"], "0");

  redis.restart();
  EXPECT_EQ(client.get("/readyz")->status, 200);
  EXPECT_EQ(client.put("/v1/kv/r", "3")->status, 200);
}

// --- Shutdown ------------------------------------------------------------------------------

// stop() lets a request being handled finish and be answered. The request
// is held inside the store until stop() is under way, so no sleep stands in
// for "in flight" or for "stopping".
TEST_F(ServerTest, RequestInFlightDuringStopCompletes) {
  auto store = std::make_shared<testing::FaultyStore>(make_memory_store());
  ASSERT_NO_FATAL_FAILURE(Start({}, store, /*with_tokens=*/false));
  ASSERT_TRUE(cache_->set("held", JsonDocument::parse(R"({"v":1})").value()));
  std::promise<void> arrived;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> first{true};
  store->on_call([&arrived, released, &first] {
    if (!first.exchange(false)) return;  // only the request's read is held
    arrived.set_value();
    released.wait();
  });

  testing::HttpTestResult result = std::unexpected(std::string("no answer"));
  std::thread request([&] { result = Client().get("/v1/kv/held"); });
  ASSERT_EQ(arrived.get_future().wait_for(30s), std::future_status::ready)
      << "the request never reached the store";

  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    server_->stop();
    stopped = true;
  });
  // stop() first stops accepting: once a new connection is refused it is
  // under way, and it must still be waiting for the request it holds.
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (testing::RawConnection(server_->port()).connected() &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(2ms);  // polling a condition
  }
  EXPECT_FALSE(testing::RawConnection(server_->port()).connected()) << "still accepting";
  EXPECT_FALSE(stopped.load()) << "stop() returned while a request was in flight";
  release.set_value();
  stopper.join();
  request.join();
  store->on_call({});
  ASSERT_TRUE(result) << result.error();
  EXPECT_EQ(result->status, 200) << result->body;
  EXPECT_EQ(Json(result), nlohmann::json({{"v", 1}}));
  EXPECT_EQ(result->header("Connection"), "close");
  // After stop, nothing answers.
  testing::HttpTestClient late(server_->port(), {.connect_timeout = 1s});
  EXPECT_FALSE(late.get("/healthz"));
}

// wait() returns once stop() has run, whether it was waiting already or not.
TEST_F(ServerTest, WaitReturnsAfterStop) {
  Start();
  std::atomic<bool> waited{false};
  std::thread waiter([&] {
    EXPECT_TRUE(server_->wait());
    waited = true;
  });
  EXPECT_FALSE(waited.load()) << "wait() returned before stop()";
  server_->stop();
  waiter.join();
  EXPECT_TRUE(waited.load());
  server_->stop();  // twice is fine
  EXPECT_TRUE(server_->wait());  // and wait() after stop() returns at once
}

// --- reconfigure(): a configuration reload (SIGHUP) -----------------------------------

// The settings a reload applies take effect on the next request, on
// connections opened before it as on new ones; an old API token stops
// working at once.
TEST_F(ServerTest, ReconfigureSwapsTheApiTokenAndLimitsOnOpenConnections) {
  ServerOptions options;
  options.api_token = std::string(kApiToken);
  ASSERT_NO_FATAL_FAILURE(Start(options));
  const std::string old_auth = "Authorization: Bearer " + std::string(kApiToken) + "\r\n";
  const std::string new_token = "new-api-token-0123456789abcdef-0123";
  const std::string new_auth = "Authorization: Bearer " + new_token + "\r\n";
  testing::RawConnection before(server_.port());
  ASSERT_TRUE(before.send("GET /v1/kv/k HTTP/1.1\r\nHost: t\r\n" + old_auth + "\r\n"));
  EXPECT_EQ(before.read_response(), 404);  // authorised; no such key

  options.api_token = new_token;
  options.max_body_bytes = 16;
  options.listen = "127.0.0.1:1";  // needs a restart: kept, and named
  options.max_connections = 5;
  auto kept = server_->reconfigure(options);
  ASSERT_TRUE(kept) << kept.error().to_string();
  EXPECT_THAT(*kept, ::testing::UnorderedElementsAre("listen", "max_connections"));

  // The same connection: the old token is refused, the new one served.
  ASSERT_TRUE(before.send("GET /v1/kv/k HTTP/1.1\r\nHost: t\r\n" + old_auth + "\r\n"));
  EXPECT_EQ(before.read_response(), 401);
  ASSERT_TRUE(before.send("GET /v1/kv/k HTTP/1.1\r\nHost: t\r\n" + new_auth + "\r\n"));
  EXPECT_EQ(before.read_response(), 404);
  // The new body limit.
  const std::string body = "\"0123456789abcdefghij\"";
  ASSERT_TRUE(before.send("PUT /v1/kv/k HTTP/1.1\r\nHost: t\r\n" + new_auth +
                          "Content-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body));
  EXPECT_EQ(before.read_response(), 413);
  testing::RawConnection after(server_.port());
  ASSERT_TRUE(after.send("GET /v1/kv/k HTTP/1.1\r\nHost: t\r\n" + old_auth + "\r\n"));
  EXPECT_EQ(after.read_response(), 401);
}

TEST_F(ServerTest, ReconfigureRefusesTurningTheApiTokenOffAndChangesNothing) {
  ServerOptions options;
  options.api_token = std::string(kApiToken);
  ASSERT_NO_FATAL_FAILURE(Start(options));
  ServerOptions off = options;
  off.api_token.clear();
  off.max_body_bytes = 16;
  auto refused = server_->reconfigure(off);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConfig);
  EXPECT_THAT(refused.error().message, HasSubstr("restart"));
  ServerOptions weak = options;
  weak.api_token = "short";
  EXPECT_FALSE(server_->reconfigure(weak));
  // Still the old token and the old limit.
  auto client = Client();
  const testing::HttpTestHeaders auth = {{"Authorization", "Bearer " + std::string(kApiToken)}};
  EXPECT_EQ(client.get("/v1/kv/k")->status, 401);
  EXPECT_EQ(client.put("/v1/kv/k", "\"0123456789abcdefghij\"", auth)->status, 200);
}

TEST_F(ServerTest, ReloadsAreCountedInStatsAndMetrics) {
  ASSERT_NO_FATAL_FAILURE(Start());
  auto client = Client();
  auto metrics = client.get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("aicache_config_reloads_total{result=\"ok\"} 0\n"));
  EXPECT_THAT(metrics->body, HasSubstr("aicache_config_reloads_total{result=\"failed\"} 0\n"));
  EXPECT_THAT(metrics->body, HasSubstr("aicache_config_last_reload_successful 1\n"));
  server_->count_reload(true);
  server_->count_reload(false, "aicache.toml:3:1: expected a value");
  metrics = client.get("/metrics");
  EXPECT_THAT(metrics->body, HasSubstr("aicache_config_reloads_total{result=\"ok\"} 1\n"));
  EXPECT_THAT(metrics->body, HasSubstr("aicache_config_reloads_total{result=\"failed\"} 1\n"));
  EXPECT_THAT(metrics->body, HasSubstr("aicache_config_last_reload_successful 0\n"));
  EXPECT_THAT(metrics->body, HasSubstr("aicache_config_last_reload_success_timestamp_seconds "));
  auto stats = nlohmann::json::parse(client.get("/v1/stats")->body);
  EXPECT_EQ(stats["config"]["reloads_succeeded_total"], 1);
  EXPECT_EQ(stats["config"]["reloads_failed_total"], 1);
  EXPECT_EQ(stats["config"]["last_reload_successful"], false);
  EXPECT_EQ(stats["config"]["last_reload_error"], "aicache.toml:3:1: expected a value");
}

}  // namespace
}  // namespace aicache
