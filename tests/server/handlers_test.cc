// The service's handlers called directly: an HttpRequest in, an HttpResponse
// out, over a memory store on a manual clock and a token provider of the
// test's own. No socket, no thread, no sleep: what the transport adds
// (framing, deadlines, connections) is tested in connections_test and
// http_framing_test, the whole service in server_test.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <deque>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "aicache/assistant_cache.h"
#include "aicache/log.h"
#include "aicache/memory_store.h"
#include "aicache/testing/manual_clock.h"
#include "aicache/token_manager.h"
#include "server/data_handlers.h"
#include "server/http_message.h"
#include "server/observability.h"
#include "server/request_policy.h"
#include "server/routes.h"
#include "server/service_stats.h"
#include "server/token_handlers.h"
#include "server/ttl_signals_json.h"
#include "server/warmup.h"
#include "support/faulty_store.h"

namespace aicache {
namespace {

using namespace std::chrono_literals;
using server::HttpFields;
using server::HttpRequest;
using server::HttpResponse;
using server::Route;
using ::testing::HasSubstr;

constexpr std::string_view kApiToken = "0123456789abcdef0123456789abcdef";

// A request as the transport hands it over: the target split and decoded.
HttpRequest Request(std::string method, std::string_view target, HttpFields headers = {},
                    std::string body = {}) {
  HttpRequest r;
  r.method = std::move(method);
  r.target = std::string(target);
  EXPECT_TRUE(server::parse_target(target, r.path, r.query)) << target;
  r.headers = std::move(headers);
  if (r.header("Host") == std::nullopt) r.headers.emplace_back("Host", "localhost");
  r.body = std::move(body);
  r.remote = "127.0.0.1:50000";
  return r;
}

std::optional<std::string> Header(const HttpResponse& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (server::iequals(n, name)) return v;
  }
  return std::nullopt;
}

nlohmann::json Json(const HttpResponse& r) {
  EXPECT_EQ(r.content_type, "application/json");
  auto j = nlohmann::json::parse(r.payload(), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.payload();
  return j;
}

// The "code" of an error answer, checking its shape on the way.
std::string ErrorCode(const HttpResponse& r) {
  const auto j = Json(r);
  if (!j.is_object() || !j.contains("error")) return "<no error: " + std::string(r.payload()) + ">";
  EXPECT_TRUE(j["error"]["message"].is_string()) << r.payload();
  return j["error"]["code"].get<std::string>();
}

// The library's warnings (an injected outage, a refused fetch) are expected
// here: silence, not stderr.
class Quiet : public ::testing::Environment {
 public:
  void SetUp() override { set_log_handler({}); }
};
[[maybe_unused]] const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new Quiet);

// --- Who may ask ---------------------------------------------------------------------------

TEST(RequestPolicy, RefusesLongPathsUnknownRoutesAndWrongMethods) {
  const server::RequestPolicy policy("", {});
  auto long_path = policy.check_head(Request("GET", "/v1/kv/" + std::string(3000, 'k')));
  ASSERT_TRUE(long_path);
  EXPECT_EQ(long_path->status, 414);
  EXPECT_EQ(ErrorCode(*long_path), "uri_too_long");

  auto unknown = policy.check_head(Request("GET", "/v2/nope"));
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(ErrorCode(*unknown), "not_found");

  auto wrong = policy.check_head(Request("POST", "/v1/kv/a"));
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 405);
  EXPECT_EQ(ErrorCode(*wrong), "method_not_allowed");
  EXPECT_EQ(Header(*wrong, "Allow"), "GET, HEAD, PUT, DELETE");
  // A method the service has never heard of is named "other", not echoed.
  auto odd = policy.check_head(Request("BREW", "/healthz"));
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->status, 405);
  EXPECT_THAT(Json(*odd)["error"]["message"].get<std::string>(), HasSubstr("other is not allowed"));

  EXPECT_FALSE(policy.check_head(Request("GET", "/v1/kv/a")));
  EXPECT_FALSE(policy.check_head(Request("HEAD", "/v1/conversations/c")));
  EXPECT_FALSE(policy.check_head(Request("POST", "/v1/tokens/wechat/wx1/refresh")));
}

TEST(RequestPolicy, WithoutAnApiTokenOnlyLocalHostsAndOwnOriginsAreServed) {
  const server::RequestPolicy policy("", {"Aicache.Internal:8080"});
  auto status = [&](HttpFields headers) {
    HttpRequest r = Request("GET", "/v1/kv/a", std::move(headers));
    auto refused = policy.check_head(r);
    return refused ? refused->status : 0;
  };
  for (const char* host : {"localhost", "LOCALHOST:8080", "127.0.0.1:1", "[::1]:8080", "[::1]",
                           "aicache.internal", "AICACHE.internal:9"}) {
    EXPECT_EQ(status({{"Host", host}}), 0) << host;
  }
  for (const char* host : {"evil.example", "127.0.0.1.nip.io", "localhost.evil", "[::2]"}) {
    HttpRequest r = Request("GET", "/v1/kv/a", {{"Host", host}});
    auto refused = policy.check_head(r);
    ASSERT_TRUE(refused) << host;
    EXPECT_EQ(refused->status, 403) << host;
    EXPECT_EQ(ErrorCode(*refused), "forbidden_host") << host;
  }
  // HTTP/1.0 without a Host is not a browser.
  HttpRequest no_host = Request("GET", "/v1/kv/a");
  no_host.headers.clear();
  EXPECT_FALSE(policy.check_head(no_host));

  // Origins: the service's own (as the Host names it) only.
  EXPECT_EQ(status({{"Host", "localhost:80"}, {"Origin", "http://localhost:80"}}), 0);
  EXPECT_EQ(status({{"Host", "localhost:80"}, {"Origin", "HTTP://LocalHost:80"}}), 0);
  EXPECT_EQ(status({{"Host", "localhost:80"}, {"Origin", "http://localhost:81"}}), 403);
  EXPECT_EQ(status({{"Host", "localhost"}, {"Origin", "https://localhost"}}), 403);
  EXPECT_EQ(status({{"Host", "localhost"}, {"Origin", "null"}}), 403);
  EXPECT_EQ(status({{"Host", "localhost"}, {"Sec-Fetch-Site", "cross-site"}}), 403);
  EXPECT_EQ(status({{"Host", "localhost"}, {"Sec-Fetch-Site", "same-origin"}}), 0);
  auto cross = policy.check_head(
      Request("POST", "/v1/tokens/wechat/wx1/refresh", {{"Sec-Fetch-Site", "Cross-Site"}}));
  ASSERT_TRUE(cross);
  EXPECT_EQ(ErrorCode(*cross), "forbidden_origin");
}

TEST(RequestPolicy, WithAnApiTokenTheTokenIsTheGate) {
  const server::RequestPolicy policy(std::string(kApiToken), {});
  const std::string bearer = "Bearer " + std::string(kApiToken);

  auto missing = policy.check_head(Request("GET", "/v1/stats"));
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 401);
  EXPECT_EQ(ErrorCode(*missing), "unauthorized");
  EXPECT_EQ(Json(*missing)["error"]["message"], "an API token is required");
  EXPECT_EQ(Header(*missing, "WWW-Authenticate"), "Bearer realm=\"aicache\"");

  for (std::string wrong : {std::string("Bearer wrong"), bearer + "x", bearer.substr(0, 20),
                            std::string("Basic ") + std::string(kApiToken), std::string("Bearer ")}) {
    auto refused = policy.check_head(Request("GET", "/v1/kv/a", {{"Authorization", wrong}}));
    ASSERT_TRUE(refused) << wrong;
    EXPECT_EQ(refused->status, 401) << wrong;
    EXPECT_EQ(Json(*refused)["error"]["message"], "the API token is wrong") << wrong;
  }
  EXPECT_FALSE(policy.check_head(Request("GET", "/v1/kv/a", {{"Authorization", bearer}})));
  EXPECT_FALSE(policy.check_head(
      Request("GET", "/v1/kv/a", {{"authorization", "bEARER " + std::string(kApiToken)}})));
  // The operations routes outside /v1 need no token.
  for (const char* path : {"/", "/healthz", "/readyz", "/metrics"}) {
    EXPECT_FALSE(policy.check_head(Request("GET", path))) << path;
  }
  // With a token there is no browser policy: a page cannot send the header.
  EXPECT_FALSE(policy.check_head(
      Request("GET", "/v1/kv/a", {{"Host", "aicache.example"}, {"Authorization", bearer}})));
  // Route and method come first: no token is asked of a request refused anyway.
  EXPECT_EQ(policy.check_head(Request("GET", "/v1/nope"))->status, 404);
  EXPECT_EQ(policy.check_head(Request("PATCH", "/v1/kv/a"))->status, 405);
}

TEST(RequestPolicy, Helpers) {
  EXPECT_EQ(server::host_name("[::1]:8080"), "[::1]");
  EXPECT_EQ(server::host_name("Example.ORG:80"), "example.org");
  EXPECT_EQ(server::host_name("localhost"), "localhost");
  EXPECT_TRUE(server::constant_time_equals("abc", "abc"));
  EXPECT_FALSE(server::constant_time_equals("abc", "abd"));
  EXPECT_FALSE(server::constant_time_equals("abc", std::string_view("abc\0", 4)));
  EXPECT_FALSE(server::constant_time_equals("", "a"));
  EXPECT_TRUE(server::constant_time_equals("", ""));
}

// --- Data routes ---------------------------------------------------------------------------

class DataHandlersTest : public ::testing::Test {
 protected:
  DataHandlersTest()
      : clock_(std::make_shared<ManualClock>()),
        faulty_(std::make_shared<testing::FaultyStore>(make_memory_store({.clock = clock_}))),
        cache_(AssistantCache::create(faulty_, {.key_prefix = "h", .clock = clock_}).value()),
        data_(cache_, stats_, 1u << 20) {}

  HttpResponse Serve(std::string method, std::string_view target, std::string body = {}) {
    const HttpRequest req = Request(std::move(method), target, {}, std::move(body));
    return data_.serve(server::match_route(req.path), req);
  }

  std::shared_ptr<ManualClock> clock_;
  std::shared_ptr<testing::FaultyStore> faulty_;
  std::shared_ptr<AssistantCache> cache_;
  server::ServiceStats stats_;
  server::DataHandlers data_;
};

TEST_F(DataHandlersTest, PutGetHeadDelete) {
  for (std::string_view route : {"/v1/kv/", "/v1/conversations/", "/v1/ai-configs/"}) {
    SCOPED_TRACE(route);
    const std::string path = std::string(route) + "a/b";
    auto miss = Serve("GET", path);
    EXPECT_EQ(miss.status, 404);
    EXPECT_EQ(ErrorCode(miss), "not_found");

    auto put = Serve("PUT", path + "?ttl=90", R"({"hello": ["world", 1]})");
    EXPECT_EQ(put.status, 200);
    EXPECT_EQ(Json(put), nlohmann::json({{"stored", true}}));

    auto get = Serve("GET", path);
    EXPECT_EQ(get.status, 200);
    EXPECT_EQ(Json(get), nlohmann::json::parse(R"({"hello": ["world", 1]})"));
    EXPECT_EQ(Header(get, "X-Aicache-Ttl"), std::nullopt);  // a GET pays no extra store call

    clock_->advance(200ms);
    auto head = Serve("HEAD", path);
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(Header(head, "X-Aicache-Ttl"), "90");  // 89.8 s, rounded up

    auto del = Serve("DELETE", path);
    EXPECT_EQ(Json(del), nlohmann::json({{"deleted", true}}));
    EXPECT_EQ(Json(Serve("DELETE", path)), nlohmann::json({{"deleted", false}}));
    EXPECT_EQ(Serve("GET", path).status, 404);
  }
  EXPECT_EQ(stats_.sets.load(), 3u);
}

TEST_F(DataHandlersTest, ExportPagesThroughAFamily) {
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(Serve("PUT", "/v1/ai-configs/u" + std::to_string(i) + "?ttl=60", R"({"m":1})").status,
              200);
  }
  std::set<std::string> ids;
  std::string cursor;
  int pages = 0;
  do {
    std::string target = "/v1/export/ai_config?count=4";
    if (!cursor.empty()) target += "&cursor=" + cursor;  // "S:B": nothing to encode
    auto r = Serve("GET", target);
    ASSERT_EQ(r.status, 200) << r.payload();
    auto j = Json(r);
    for (const auto& e : j["entries"]) {
      EXPECT_EQ(e["family"], "ai_config");
      EXPECT_EQ(e["value"], nlohmann::json({{"m", 1}}));
      EXPECT_EQ(e["ttl"], 60);
      ids.insert(e["id"].get<std::string>());
    }
    cursor = j["cursor"].is_null() ? "" : j["cursor"].get<std::string>();
    ++pages;
  } while (!cursor.empty());
  EXPECT_EQ(ids.size(), 30u);
  EXPECT_GT(pages, 1);
  EXPECT_EQ(Serve("GET", "/v1/export/token").status, 404);
  EXPECT_EQ(Serve("GET", "/v1/export/sessions").status, 404);
  EXPECT_EQ(Serve("GET", "/v1/export/kv?count=0").status, 400);
  EXPECT_EQ(Serve("GET", "/v1/export/kv?cursor=bogus").status, 400);
  EXPECT_EQ(server::route_template(server::match_route("/v1/export/kv").route),
            "/v1/export/{family}");
}

TEST_F(DataHandlersTest, TtlQueryIsStrict) {
  EXPECT_EQ(Json(Serve("PUT", "/v1/kv/k?ttl=0", "1")), nlohmann::json({{"stored", false}}));
  EXPECT_EQ(Serve("GET", "/v1/kv/k").status, 404);
  EXPECT_EQ(stats_.sets.load(), 0u);  // a removal is not a set

  for (const char* target : {"/v1/kv/k?ttl=-1", "/v1/kv/k?ttl=1.5", "/v1/kv/k?ttl=", "/v1/kv/k?ttl=x",
                             "/v1/kv/k?ttl=1&ttl=2", "/v1/kv/k?ttl=99999999999999"}) {
    auto r = Serve("PUT", target, "1");
    EXPECT_EQ(r.status, 400) << target;
    EXPECT_EQ(ErrorCode(r), "invalid_argument") << target;
  }
  EXPECT_EQ(Serve("GET", "/v1/kv/k").status, 404);

  ASSERT_EQ(Serve("PUT", "/v1/kv/k", "1").status, 200);  // no ttl: the default
  EXPECT_EQ(Header(Serve("HEAD", "/v1/kv/k"), "X-Aicache-Ttl"), "300");
}

TEST_F(DataHandlersTest, MalformedJsonAndInvalidKeysAre400) {
  for (const char* body : {"{not json", "", "[1,", "\"unterminated"}) {
    auto r = Serve("PUT", "/v1/conversations/c", body);
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_EQ(ErrorCode(r), "invalid_json") << body;
  }
  auto deep = Serve("PUT", "/v1/kv/d", std::string(129, '[') + std::string(129, ']'));
  EXPECT_EQ(deep.status, 400);
  EXPECT_EQ(ErrorCode(deep), "invalid_json");

  // The library's key rules, with its message.
  for (const char* target : {"/v1/kv/has%20space", "/v1/conversations/a:b", "/v1/ai-configs/",
                             "/v1/kv/ctl%01"}) {
    auto r = Serve("GET", target);
    EXPECT_EQ(r.status, 400) << target;
    EXPECT_EQ(ErrorCode(r), "invalid_argument") << target;
  }
  EXPECT_EQ(faulty_->failures(), 0);
}

TEST_F(DataHandlersTest, ReservedKeysAreReadableButNotWritableThroughKv) {
  ASSERT_EQ(Serve("PUT", "/v1/conversations/c1", R"({"m":1})").status, 200);
  auto read = Serve("GET", "/v1/kv/ai_assistant:conversation:c1");
  EXPECT_EQ(read.status, 200);
  EXPECT_EQ(Json(read), nlohmann::json({{"m", 1}}));

  auto put = Serve("PUT", "/v1/kv/ai_assistant:conversation:c1", "2");
  EXPECT_EQ(put.status, 400);
  EXPECT_EQ(ErrorCode(put), "reserved_key");
  EXPECT_THAT(Json(put)["error"]["message"].get<std::string>(),
              HasSubstr("/v1/conversations/{id}"));
  auto del = Serve("DELETE", "/v1/kv/ai_assistant:access_token:wechat:wx1");
  EXPECT_EQ(del.status, 400);
  EXPECT_THAT(Json(del)["error"]["message"].get<std::string>(), HasSubstr("/v1/tokens/"));
  EXPECT_EQ(Json(Serve("GET", "/v1/conversations/c1")), nlohmann::json({{"m", 1}}));
}

TEST_F(DataHandlersTest, StoreOutagesAre503AndCounted) {
  ASSERT_EQ(Serve("PUT", "/v1/kv/k", "1").status, 200);
  faulty_->fail_with(ErrorCode::kUnavailable);
  // Reads turn into misses (kTreatAsMiss, the default); writes are reported.
  EXPECT_EQ(Serve("GET", "/v1/kv/k").status, 404);
  auto put = Serve("PUT", "/v1/kv/k", "2");
  EXPECT_EQ(put.status, 503);
  EXPECT_EQ(ErrorCode(put), "unavailable");
  EXPECT_EQ(Serve("DELETE", "/v1/kv/k").status, 503);
  EXPECT_EQ(stats_.store_failures.load(), 2u);
  faulty_->heal();
  EXPECT_EQ(Json(Serve("GET", "/v1/kv/k")), 1);
}

// --- Token routes --------------------------------------------------------------------------

// Answers fetches from a script: each queued result once, then fresh tokens.
class ScriptedProvider final : public TokenProvider {
 public:
  explicit ScriptedProvider(std::string app_id)
      : app_{.channel = Channel::kWeChat, .app_id = std::move(app_id), .secret = "s3cret"} {}
  std::expected<FetchedToken, FetchError> fetch(bool) override {
    ++fetches;
    if (!script.empty()) {
      auto next = std::move(script.front());
      script.pop_front();
      return next;
    }
    return FetchedToken{"token-" + std::to_string(fetches.load()), 7200s};
  }
  const AppCredentials& app() const override { return app_; }

  std::atomic<int> fetches{0};
  std::deque<std::expected<FetchedToken, FetchError>> script;

 private:
  AppCredentials app_;
};

class TokenHandlersTest : public ::testing::Test {
 protected:
  TokenHandlersTest()
      : clock_(std::make_shared<ManualClock>()),
        cache_(AssistantCache::create(make_memory_store({.clock = clock_}),
                                      {.key_prefix = "h", .clock = clock_})
                   .value()) {
    TokenManagerOptions options;
    options.clock = clock_;
    options.sleep = [clock = clock_](std::chrono::nanoseconds d) { clock->advance(d); };
    options.max_attempts = 1;
    manager_ = std::shared_ptr<TokenManager>(TokenManager::create(cache_, options).value());
    auto provider = std::make_unique<ScriptedProvider>("wx1");
    provider_ = provider.get();
    EXPECT_TRUE(manager_->add_app(std::move(provider)));
    handlers_ = std::make_unique<server::TokenHandlers>(manager_, stats_, 1u << 20);
  }

  HttpResponse Serve(std::string method, std::string_view target, std::string body = {}) {
    const HttpRequest req = Request(std::move(method), target, {}, std::move(body));
    return handlers_->serve(server::match_route(req.path), req);
  }

  std::shared_ptr<ManualClock> clock_;
  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> manager_;
  ScriptedProvider* provider_ = nullptr;
  server::ServiceStats stats_;
  std::unique_ptr<server::TokenHandlers> handlers_;
};

TEST_F(TokenHandlersTest, GetFetchesOnceThenServesTheStoredToken) {
  const HttpRequest req = Request("GET", "/v1/tokens/wechat/wx1");
  const auto m = server::match_route(req.path);
  EXPECT_FALSE(handlers_->serve_fresh(m)) << "nothing stored yet";

  auto r = handlers_->serve(m, req);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Json(r), nlohmann::json({{"access_token", "token-1"}, {"expires_in", 7200}}));
  EXPECT_EQ(Header(r, "Cache-Control"), "no-store");
  EXPECT_EQ(provider_->fetches.load(), 1);

  auto fresh = handlers_->serve_fresh(m);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->status, 200);
  EXPECT_EQ(Json(*fresh)["access_token"], "token-1");
  EXPECT_EQ(Header(*fresh, "Cache-Control"), "no-store");
  EXPECT_EQ(Json(handlers_->serve(m, req))["access_token"], "token-1");
  EXPECT_EQ(provider_->fetches.load(), 1);
  // Each get counted once in the token family: the first fast path and the
  // fetch missed, the two after hit.
  const FamilyStats tokens = cache_->stats()->family(CacheFamily::kToken);
  EXPECT_EQ(tokens.hits, 2u);
  EXPECT_EQ(tokens.misses, 2u);
  // Only the plain GET has a fast path.
  const HttpRequest refresh = Request("POST", "/v1/tokens/wechat/wx1/refresh");
  EXPECT_FALSE(handlers_->serve_fresh(server::match_route(refresh.path)));
}

// A provider's token that is not printable ASCII is never stored nor
// served: the platform's fault (502), not the client's.
TEST_F(TokenHandlersTest, ATokenThatIsNotPrintableAsciiIsAnUpstreamError) {
  provider_->script.push_back(FetchedToken{"a\"b\\c\x01", 600s});
  auto r = Serve("GET", "/v1/tokens/wechat/wx1");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(ErrorCode(r), "upstream");
  EXPECT_EQ(r.body.find("a\\\"b"), std::string::npos) << "the bad token is not echoed";
}

TEST_F(TokenHandlersTest, TokenBodiesEscapeWhatJsonMustEscape) {
  EXPECT_EQ(server::token_body(Token{"plain", 5s}), R"({"access_token":"plain","expires_in":5})");
  auto escaped = nlohmann::json::parse(server::token_body(Token{"a\"b\\c\x01", 5s}));
  EXPECT_EQ(escaped["access_token"], "a\"b\\c\x01");
  EXPECT_EQ(escaped["expires_in"], 5);
}

TEST_F(TokenHandlersTest, InvalidAndUnknownAppsAndNoManager) {
  auto bad = Serve("GET", "/v1/tokens/wechat/a:b");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(ErrorCode(bad), "invalid_argument");
  EXPECT_EQ(Header(bad, "Cache-Control"), "no-store");
  EXPECT_FALSE(handlers_->serve_fresh(server::match_route("/v1/tokens/wechat/a:b")));

  for (const char* target : {"/v1/tokens/wechat/nope", "/v1/tokens/dingtalk/wx1",
                             "/v1/tokens/wechat/nope/refresh"}) {
    auto r = Serve(target == std::string_view("/v1/tokens/wechat/nope/refresh") ? "POST" : "GET",
                   target);
    EXPECT_EQ(r.status, 404) << target;
    EXPECT_EQ(ErrorCode(r), "not_found") << target;
  }
  EXPECT_EQ(provider_->fetches.load(), 0);

  server::TokenHandlers none(nullptr, stats_, 1u << 20);
  const HttpRequest req = Request("GET", "/v1/tokens/wechat/wx1");
  auto r = none.serve(server::match_route(req.path), req);
  EXPECT_EQ(r.status, 404);
  EXPECT_THAT(Json(r)["error"]["message"].get<std::string>(), HasSubstr("no token apps"));
  EXPECT_FALSE(none.serve_fresh(server::match_route(req.path)));
}

TEST_F(TokenHandlersTest, InvalidateComparesTheRejectedToken) {
  ASSERT_EQ(Serve("GET", "/v1/tokens/wechat/wx1").status, 200);
  for (const char* body : {"", "{", "[]", R"({"access_token": ""})", R"({"access_token": 5})",
                           R"({"token": "token-1"})"}) {
    auto r = Serve("POST", "/v1/tokens/wechat/wx1/invalidate", body);
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_EQ(ErrorCode(r), "invalid_json") << body;
    EXPECT_EQ(Header(r, "Cache-Control"), "no-store");
  }
  auto other = Serve("POST", "/v1/tokens/wechat/wx1/invalidate", R"({"access_token": "old"})");
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(Json(other), nlohmann::json({{"invalidated", false}}));
  auto same = Serve("POST", "/v1/tokens/wechat/wx1/invalidate", R"({"access_token": "token-1"})");
  EXPECT_EQ(Json(same), nlohmann::json({{"invalidated", true}}));
  EXPECT_EQ(Json(Serve("GET", "/v1/tokens/wechat/wx1"))["access_token"], "token-2");
}

TEST_F(TokenHandlersTest, RefreshWithinTheIntervalIs429WithRetryAfter) {
  auto first = Serve("POST", "/v1/tokens/wechat/wx1/refresh");
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(provider_->fetches.load(), 1);

  clock_->advance(15s);
  auto second = Serve("POST", "/v1/tokens/wechat/wx1/refresh?force_refresh=true");
  EXPECT_EQ(second.status, 429);
  EXPECT_EQ(ErrorCode(second), "rate_limited");
  EXPECT_EQ(Header(second, "Retry-After"), "45");
  EXPECT_EQ(Header(second, "Cache-Control"), "no-store");
  EXPECT_EQ(provider_->fetches.load(), 1);

  for (const char* query : {"?force_refresh=yes", "?force_refresh=", "?force_refresh=1&force_refresh=0"}) {
    auto r = Serve("POST", std::string("/v1/tokens/wechat/wx1/refresh") + query);
    EXPECT_EQ(r.status, 400) << query;
    EXPECT_EQ(ErrorCode(r), "invalid_argument") << query;
  }
  clock_->advance(45s);
  EXPECT_EQ(Serve("POST", "/v1/tokens/wechat/wx1/refresh?force_refresh=0").status, 200);
  EXPECT_EQ(provider_->fetches.load(), 2);
}

TEST_F(TokenHandlersTest, PlatformFailuresAre502WithThePlatformsCode) {
  provider_->script.push_back(std::unexpected(FetchError{
      .kind = FetchFailure::kConfiguration, .platform_code = 40125,
      .platform_message = "invalid appsecret", .http_status = 200,
      .message = "api.weixin.qq.com/cgi-bin/stable_token: platform error 40125 (invalid appsecret)"}));
  auto r = Serve("GET", "/v1/tokens/wechat/wx1");
  EXPECT_EQ(r.status, 502);
  auto j = Json(r);
  EXPECT_EQ(j["error"]["code"], "upstream_config") << r.payload();
  EXPECT_EQ(j["error"]["platform_code"], 40125) << r.payload();
  EXPECT_THAT(std::string(r.payload()), ::testing::Not(HasSubstr("s3cret")));
  EXPECT_EQ(Header(r, "Cache-Control"), "no-store");
}

TEST_F(TokenHandlersTest, RefreshesAreObservedAsFetches) {
  ASSERT_EQ(Serve("POST", "/v1/tokens/wechat/wx1/refresh").status, 200);
  std::string text;
  stats_.fetch_duration.render(text);
  EXPECT_THAT(text, HasSubstr(R"(aicache_token_fetch_duration_seconds_count{channel="wechat",app="wx1"} 1)"));
}

// --- Observability -------------------------------------------------------------------------

class ObservabilityTest : public ::testing::Test {
 protected:
  ObservabilityTest()
      : faulty_(std::make_shared<testing::FaultyStore>(make_memory_store())),
        cache_(AssistantCache::create(faulty_, {.key_prefix = "h"}).value()),
        handlers_(cache_, nullptr, stats_, [] {
          return server::ServingFigures{.connections_open = 3,
                                        .connections_accepted = 40,
                                        .connections_over_capacity = 1,
                                        .connections_timed_out = 2,
                                        .requests_refused = 5,
                                        .max_connections = 100,
                                        .io_threads = 2,
                                        .workers = 16,
                                        .workers_busy = 4,
                                        .queued = 7};
        }) {}

  std::shared_ptr<testing::FaultyStore> faulty_;
  std::shared_ptr<AssistantCache> cache_;
  server::ServiceStats stats_;
  server::ObservabilityHandlers handlers_;
};

TEST_F(ObservabilityTest, HealthzDashboardAndReadyz) {
  auto health = handlers_.serve(Route::kHealthz);
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(Json(health), nlohmann::json({{"status", "ok"}}));
  auto dashboard = handlers_.serve(Route::kDashboard);
  EXPECT_EQ(dashboard.content_type, "text/html; charset=utf-8");
  EXPECT_THAT(std::string(dashboard.payload()), HasSubstr("<title>aicache"));

  EXPECT_EQ(Json(handlers_.serve(Route::kReadyz)), nlohmann::json({{"status", "ready"}}));
  faulty_->fail_with(ErrorCode::kUnavailable);
  auto down = handlers_.serve(Route::kReadyz);
  EXPECT_EQ(down.status, 503);
  EXPECT_EQ(Json(down)["status"], "unavailable");
  // Anyone may ask /readyz: the store's own message stays out of the answer.
  EXPECT_THAT(std::string(down.payload()), ::testing::Not(HasSubstr("injected")));
}

TEST_F(ObservabilityTest, StatsCarryTheServingFiguresAndSurviveAStoreOutage) {
  stats_.answered("GET", "/v1/kv/a", "127.0.0.1:1", 200, 0.001, false);
  stats_.overloaded = 9;
  auto j = Json(handlers_.serve(Route::kStats));
  EXPECT_EQ(j["store"]["backend"], "memory");
  EXPECT_EQ(j["server"]["requests_total"], 1);
  EXPECT_EQ(j["server"]["connections"],
            nlohmann::json({{"open", 3}, {"max", 100}, {"accepted_total", 40},
                            {"over_capacity_total", 1}, {"timed_out_total", 2},
                            {"refused_total", 5}}));
  EXPECT_EQ(j["server"]["threads"],
            nlohmann::json({{"io", 2}, {"workers", 16}, {"workers_busy", 4}, {"queued", 7},
                            {"overloaded_total", 9}}));
  EXPECT_EQ(j["tokens"], nlohmann::json::array());
  EXPECT_EQ(j["cache"]["families"]["kv"],
            nlohmann::json({{"hits", 0}, {"misses", 0}, {"hit_rate", nullptr}}));
  ASSERT_TRUE(cache_->set("a", JsonDocument(nlohmann::json(1))));
  (void)cache_->get("a");
  (void)cache_->get("a");
  (void)cache_->get("a");
  (void)cache_->get("b");
  (void)cache_->get_conversation("c");
  auto counted = Json(handlers_.serve(Route::kStats))["cache"]["families"];
  EXPECT_TRUE(Json(handlers_.serve(Route::kStats))["hot_keys"].is_array());
  EXPECT_EQ(counted["kv"], nlohmann::json({{"hits", 3}, {"misses", 1}, {"hit_rate", 0.75}}));
  EXPECT_EQ(counted["conversation"]["misses"], 1);
  EXPECT_EQ(counted["token"]["hits"], 0);
  EXPECT_EQ(counted["ai_config"]["hits"], 0);

  faulty_->fail_with(ErrorCode::kUnavailable);
  stats_.note_error(Error{ErrorCode::kUnavailable, "down"});
  stats_.note_error(Error{ErrorCode::kInvalidArgument, "not an outage"});
  auto down = handlers_.serve(Route::kStats);
  EXPECT_EQ(down.status, 200);
  auto d = Json(down);
  EXPECT_TRUE(d["store"].is_null());
  EXPECT_GE(d["cache"]["store_errors"].get<int>(), 1);
}

TEST_F(ObservabilityTest, MetricsAreTextWithTheRequestsAnswered) {
  stats_.answered("GET", "/v1/kv/a", "127.0.0.1:1", 200, 0.001, false);
  stats_.answered("PUT", "/v1/kv/secret-key?x=1", "127.0.0.1:1", 200, 0.002, false);
  stats_.answered("BREW", "/nope", "127.0.0.1:1", 405, 0.0001, false);
  stats_.answered("", "", "127.0.0.1:1", 400, 0.0001, false);
  auto r = handlers_.serve(Route::kMetrics);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  const std::string text(r.payload());
  EXPECT_THAT(text, HasSubstr(R"(aicache_http_requests_total{route="/v1/kv/{key}",method="GET",status="200"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(aicache_http_requests_total{route="unknown",method="other",status="405"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(aicache_http_requests_total{route="unknown",method="unknown",status="400"} 1)"));
  EXPECT_THAT(text, HasSubstr("aicache_http_connections_open 3\n"));
  EXPECT_THAT(text, HasSubstr("aicache_http_requests_queued 7\n"));
  EXPECT_THAT(text, HasSubstr("aicache_store_up 1\n"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("secret-key")));
  faulty_->fail_with(ErrorCode::kUnavailable);
  EXPECT_THAT(std::string(handlers_.serve(Route::kMetrics).payload()),
              HasSubstr("aicache_store_up 0\n"));
}

// Hits and misses by family carry a `family` label; the store's own keyspace
// figures moved to aicache_store_{hits,misses}_total (docs/operations.md).
TEST_F(ObservabilityTest, MetricsCountReadsByFamily) {
  ASSERT_TRUE(cache_->set_ai_config("u1", JsonDocument(nlohmann::json::object())));
  (void)cache_->get_ai_config("u1");
  (void)cache_->get_ai_config("u2");
  (void)cache_->get_ai_config("u2");
  const std::string text(handlers_.serve(Route::kMetrics).payload());
  EXPECT_THAT(text, HasSubstr("aicache_cache_hits_total{family=\"ai_config\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("aicache_cache_misses_total{family=\"ai_config\"} 2\n"));
  for (const char* family : {"token", "conversation", "kv"}) {
    EXPECT_THAT(text, HasSubstr(fmt::format("aicache_cache_hits_total{{family=\"{}\"}} 0\n", family)));
    EXPECT_THAT(text, HasSubstr(fmt::format("aicache_cache_misses_total{{family=\"{}\"}} 0\n", family)));
  }
  EXPECT_THAT(text, ::testing::Not(HasSubstr("\naicache_cache_hits_total ")));  // no unlabelled sample
  EXPECT_THAT(text, HasSubstr("aicache_store_hits_total 1\n"));
  EXPECT_THAT(text, HasSubstr("aicache_store_misses_total 2\n"));
  // The counters survive a store outage: they are this process's.
  faulty_->fail_with(ErrorCode::kUnavailable);
  EXPECT_THAT(std::string(handlers_.serve(Route::kMetrics).payload()),
              HasSubstr("aicache_cache_hits_total{family=\"ai_config\"} 1\n"));
}

// The TTL signals (docs/operations.md, "Tuning TTLs"): a histogram of ages
// at hit and the expired-recently misses, by family; none for tokens.
TEST(ObservabilityTtlSignalsTest, MetricsAndStatsCarryTheTtlSignals) {
  auto clock = std::make_shared<ManualClock>();
  auto cache = AssistantCache::create(make_memory_store({.clock = clock}),
                                      {.conversation_ttl = 60s, .clock = clock})
                   .value();
  server::ServiceStats stats;
  server::ObservabilityHandlers handlers(cache, nullptr, stats,
                                         [] { return server::ServingFigures{}; });
  ASSERT_TRUE(cache->set_conversation("c", JsonDocument(nlohmann::json(1))));
  clock->advance(10s);
  ASSERT_TRUE(cache->get_conversation("c"));  // 10 s old
  clock->advance(51s);
  EXPECT_EQ(cache->get_conversation("c"), std::nullopt);  // expired 1 s ago

  const std::string text(handlers.serve(Route::kMetrics).payload());
  EXPECT_THAT(text, HasSubstr("# TYPE aicache_cache_hit_age_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr(
      "aicache_cache_hit_age_seconds_bucket{family=\"conversation\",le=\"5\"} 0\n"
      "aicache_cache_hit_age_seconds_bucket{family=\"conversation\",le=\"15\"} 1\n"));
  EXPECT_THAT(text, HasSubstr(
      "aicache_cache_hit_age_seconds_bucket{family=\"conversation\",le=\"+Inf\"} 1\n"
      "aicache_cache_hit_age_seconds_sum{family=\"conversation\"} 10\n"
      "aicache_cache_hit_age_seconds_count{family=\"conversation\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("aicache_cache_hit_age_seconds_count{family=\"ai_config\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE aicache_cache_expired_recently_misses_total counter\n"));
  EXPECT_THAT(text, HasSubstr(
      "aicache_cache_expired_recently_misses_total{family=\"conversation\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("aicache_cache_expired_recently_misses_total{family=\"kv\"} 0\n"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("aicache_cache_hit_age_seconds_count{family=\"token\"}")));
  EXPECT_THAT(text, ::testing::Not(
      HasSubstr("aicache_cache_expired_recently_misses_total{family=\"token\"}")));

  auto j = nlohmann::json::parse(std::string(handlers.serve(Route::kStats).payload()));
  const auto& signals = j["cache"]["ttl_signals"];
  EXPECT_EQ(signals["hit_age_bounds_seconds"],
            nlohmann::json({1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200}));
  EXPECT_EQ(signals["families"]["conversation"],
            nlohmann::json({{"hit_age_buckets", {0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
                            {"hit_age_count", 1},
                            {"hit_age_sum_ms", 10'000},
                            {"expired_recently_misses", 1}}));
  EXPECT_TRUE(signals["families"].contains("ai_config"));
  EXPECT_TRUE(signals["families"].contains("kv"));
  EXPECT_FALSE(signals["families"].contains("token"));
}

// `aicache stats --server` reads the signals back; what came over the network
// may be anything, and mistyped or missing figures read as zero.
TEST(TtlSignalsJsonTest, RoundTripsAndReadsMistypedFiguresAsZero) {
  std::array<FamilyStats, kCacheFamilies.size()> written{};
  FamilyStats& kv = written[static_cast<std::size_t>(CacheFamily::kKv)];
  kv.hit_age_buckets[0] = 3;
  kv.hit_age_buckets.back() = 1;
  kv.hit_age_sum_ms = 9'000'500;
  kv.expired_recently_misses = 7;
  std::array<FamilyStats, kCacheFamilies.size()> read{};
  const nlohmann::ordered_json json = server::ttl_signals_json(written);
  server::read_ttl_signals_json(nlohmann::json::parse(json.dump()), read);
  const FamilyStats& kv_read = read[static_cast<std::size_t>(CacheFamily::kKv)];
  EXPECT_EQ(kv_read.hit_age_buckets, kv.hit_age_buckets);
  EXPECT_EQ(kv_read.hit_age_sum_ms, 9'000'500u);
  EXPECT_EQ(kv_read.expired_recently_misses, 7u);

  std::array<FamilyStats, kCacheFamilies.size()> hostile{};
  for (const char* text :
       {R"(null)", R"({"families": []})", R"({"families": {"kv": 5}})",
        R"({"families": {"kv": {"hit_age_buckets": "x", "hit_age_sum_ms": -1,
                                "expired_recently_misses": "7"}}})",
        R"({"families": {"kv": {"hit_age_buckets": [1, -2, "3", null, 1.5, 1, 1, 1, 1, 1, 1, 1, 99, 99]}}})"}) {
    server::read_ttl_signals_json(nlohmann::json::parse(text), hostile);
  }
  const FamilyStats& h = hostile[static_cast<std::size_t>(CacheFamily::kKv)];
  EXPECT_EQ(h.hit_age_buckets[0], 1u);
  EXPECT_EQ(h.hit_age_buckets[1], 0u);  // negative
  EXPECT_EQ(h.hit_age_buckets[2], 0u);  // a string
  EXPECT_EQ(h.hit_age_buckets[4], 0u);  // not an integer
  EXPECT_EQ(h.hit_age_buckets.back(), 1u);  // the 13th and 14th are ignored
  EXPECT_EQ(h.hit_age_sum_ms, 0u);
  EXPECT_EQ(h.expired_recently_misses, 0u);
}

// --- Warm-up ---------------------------------------------------------------------------

// A platform that answers only when released: a slow one.
class GatedProvider final : public TokenProvider {
 public:
  explicit GatedProvider(std::string app_id)
      : app_{.channel = Channel::kWeChat, .app_id = std::move(app_id), .secret = "s3cret"} {}
  std::expected<FetchedToken, FetchError> fetch(bool) override {
    std::unique_lock lock(mutex_);
    entered_ = true;
    changed_.notify_all();
    changed_.wait(lock, [&] { return open_; });
    return FetchedToken{"slow-token", 7200s};
  }
  const AppCredentials& app() const override { return app_; }
  void wait_entered() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return entered_; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  AppCredentials app_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool entered_ = false, open_ = false;
};

class WarmupTest : public ::testing::Test {
 protected:
  WarmupTest()
      : clock_(std::make_shared<ManualClock>()),
        cache_(AssistantCache::create(make_memory_store({.clock = clock_}),
                                      {.key_prefix = "h", .clock = clock_})
                   .value()) {
    TokenManagerOptions options;
    options.clock = clock_;
    options.sleep = [clock = clock_](std::chrono::nanoseconds d) { clock->advance(d); };
    options.max_attempts = 1;
    manager_ = TokenManager::create(cache_, options).value();
    auto ok = std::make_unique<ScriptedProvider>("wx-ok");
    auto bad = std::make_unique<ScriptedProvider>("wx-bad");
    bad->script.push_back(std::unexpected(FetchError{
        .kind = FetchFailure::kConfiguration, .platform_code = 40164,
        .platform_message = "invalid ip 203.0.113.9, not in whitelist", .http_status = 200,
        .message = "platform error 40164 (invalid ip 203.0.113.9, not in whitelist)"}));
    auto slow = std::make_unique<GatedProvider>("wx-slow");
    slow_ = slow.get();
    EXPECT_TRUE(manager_->add_app(std::move(ok)));
    EXPECT_TRUE(manager_->add_app(std::move(bad)));
    EXPECT_TRUE(manager_->add_app(std::move(slow)));
    warmup_ = std::make_shared<server::Warmup>(manager_, 30s, clock_, 1ms);
    handlers_ = std::make_unique<server::ObservabilityHandlers>(
        cache_, manager_, stats_, [] { return server::ServingFigures{}; }, warmup_);
  }
  ~WarmupTest() override {
    slow_->release();
    warmup_->stop();
  }

  // Polls the warm-up (its threads report as they finish) until `done`.
  template <class Pred>
  bool Eventually(Pred done) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!done(warmup_->status())) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::yield();  // polling a condition
    }
    return true;
  }
  static server::WarmupApp::State StateOf(const server::WarmupStatus& s, std::string_view app) {
    for (const auto& a : s.apps) {
      if (a.app_key == app) return a.state;
    }
    return server::WarmupApp::State::kPending;
  }

  std::shared_ptr<ManualClock> clock_;
  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> manager_;
  GatedProvider* slow_ = nullptr;
  server::ServiceStats stats_;
  std::shared_ptr<server::Warmup> warmup_;
  std::unique_ptr<server::ObservabilityHandlers> handlers_;
};

TEST_F(WarmupTest, ReadyWhenEveryAppIsReadyOrMisconfigured) {
  EXPECT_EQ(handlers_->serve(Route::kReadyz).status, 503) << "not started";
  warmup_->start();
  slow_->wait_entered();
  ASSERT_TRUE(Eventually([](const server::WarmupStatus& s) {
    return StateOf(s, "wx-ok") == server::WarmupApp::State::kReady &&
           StateOf(s, "wx-bad") == server::WarmupApp::State::kFailed;
  }));
  auto r = handlers_->serve(Route::kReadyz);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(Json(r), nlohmann::json::parse(R"({"status": "warming_up", "not_ready": [
      {"channel": "wechat", "app": "wx-bad", "state": "failed"},
      {"channel": "wechat", "app": "wx-slow", "state": "pending"}]})"));
  // Anyone may ask /readyz: the platform's message (this host's address)
  // is for the log and /v1/stats.
  EXPECT_THAT(std::string(r.payload()), ::testing::Not(HasSubstr("203.0.113.9")));
  auto stats = Json(handlers_->serve(Route::kStats));
  EXPECT_EQ(stats["warmup"]["ready"], false);
  EXPECT_THAT(stats["warmup"]["apps"][1]["last_error"].get<std::string>(), HasSubstr("40164"));

  slow_->release();
  ASSERT_TRUE(Eventually([](const server::WarmupStatus& s) { return s.ready; }));
  r = handlers_->serve(Route::kReadyz);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Json(r), nlohmann::json::parse(R"({"status": "ready", "not_ready": [
      {"channel": "wechat", "app": "wx-bad", "state": "failed"}]})"));
  EXPECT_FALSE(warmup_->status().timed_out);
  // The tokens are in the store: requests find them there.
  EXPECT_TRUE(manager_->get_if_fresh("wechat", "wx-slow"));
}

TEST_F(WarmupTest, TheDeadlineEndsTheWait) {
  warmup_->start();
  slow_->wait_entered();
  EXPECT_EQ(handlers_->serve(Route::kReadyz).status, 503);
  clock_->advance(30s);
  auto r = handlers_->serve(Route::kReadyz);
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(std::string(r.payload()), HasSubstr(R"({"channel":"wechat","app":"wx-slow","state":"timed_out"})"));
  EXPECT_TRUE(warmup_->status().timed_out);
}

TEST(Warmup, WithoutAppsOrTimeoutIsReadyAtOnce) {
  server::Warmup none(nullptr, 30s);
  none.start();
  EXPECT_TRUE(none.status().ready);
}

}  // namespace
}  // namespace aicache
