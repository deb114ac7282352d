// Sharing one Redis with the Django system (django-redis, JSONSerializer).
//
// A raw hiredis client stands in for django-redis and writes (and reads) the
// exact bytes it would, with
//   CACHES["default"] = {"BACKEND": "django_redis.cache.RedisCache",
//                        "KEY_PREFIX": "blbs_erp", "VERSION": 1, "TIMEOUT": 300,
//                        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient",
//                                    "SERIALIZER": "django_redis.serializers.json.JSONSerializer"}}
// while aicache runs AssistantCache over make_redis_store with the same
// prefix and version, on a real redis-server.
//
// What django-redis does (DefaultClient):
//   key     f"{KEY_PREFIX}:{VERSION}:{key}"
//   encode  an int (not a bool) -> str(value).encode(), its decimal digits;
//           anything else -> json.dumps(value, cls=DjangoJSONEncoder).encode():
//           ensure_ascii (non-ASCII as \uXXXX, astral characters as surrogate
//           pairs), separators ", " and ": "
//   decode  int(value) first, else json.loads(value.decode())  (strict UTF-8)
//   set     SET key value PX timeout*1000 (older releases: EX timeout);
//           timeout None -> no expiry
//   incr    EVAL "EXISTS then INCRBY" on the stored digits
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <functional>
#include <string>
#include <thread>
#include <string_view>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/redis_store.h"
#include "support/redis_server.h"

namespace aicache::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

constexpr std::string_view kPrefix = "blbs_erp";

// The stored key django-redis builds for a logical key.
std::string DjangoKey(std::string_view key, int version = 1) {
  return fmt::format("{}:{}:{}", kPrefix, version, key);
}

// A raw hiredis connection: what django-redis sends and receives.
class DjangoRedis {
 public:
  explicit DjangoRedis(std::uint16_t port) : c_(redisConnect("127.0.0.1", port)) {}
  ~DjangoRedis() { redisFree(c_); }
  DjangoRedis(const DjangoRedis&) = delete;
  DjangoRedis& operator=(const DjangoRedis&) = delete;

  bool ok() const { return c_ != nullptr && c_->err == 0; }

  struct Reply {
    int type = 0;
    std::string str;
    long long integer = 0;
  };

  Reply command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), lens.data()));
    Reply out;
    if (r == nullptr) {
      ADD_FAILURE() << "raw hiredis command failed: " << (c_ ? c_->errstr : "no context");
      return out;
    }
    out.type = r->type;
    if (r->str != nullptr) out.str.assign(r->str, r->len);
    out.integer = r->integer;
    EXPECT_NE(r->type, REDIS_REPLY_ERROR) << out.str;
    freeReplyObject(r);
    return out;
  }

  // cache.set(key, value, timeout): `bytes` is what encode() produced.
  // timeout in seconds; nullopt is Django's timeout=None (no expiry).
  // `with_ex` writes "EX seconds" as django-redis releases before 5 did,
  // otherwise "PX milliseconds" as current ones do.
  void set(std::string_view key, std::string_view bytes, std::optional<int> timeout = 300,
           bool with_ex = false) {
    std::vector<std::string> args{"SET", DjangoKey(key), std::string(bytes)};
    if (timeout) {
      args.emplace_back(with_ex ? "EX" : "PX");
      args.push_back(std::to_string(with_ex ? *timeout : *timeout * 1000));
    }
    const Reply r = command(args);
    EXPECT_EQ(r.type, REDIS_REPLY_STATUS);
  }

  // The raw bytes cache.get(key) hands to decode(); nullopt for a miss.
  std::optional<std::string> get(std::string_view key) {
    const Reply r = command({"GET", DjangoKey(key)});
    if (r.type == REDIS_REPLY_NIL) return std::nullopt;
    EXPECT_EQ(r.type, REDIS_REPLY_STRING);
    return r.str;
  }

  long long pttl(std::string_view key) { return command({"PTTL", DjangoKey(key)}).integer; }

  // django-redis's incr(): fails for a missing key, INCRBY otherwise.
  long long incr(std::string_view key, long long delta = 1) {
    const Reply r = command({"EVAL",
                             "local exists = redis.call('EXISTS', KEYS[1])\n"
                             "if (exists == 1) then\n"
                             "  return redis.call('INCRBY', KEYS[1], ARGV[1])\n"
                             "else return false end\n",
                             "1", DjangoKey(key), std::to_string(delta)});
    EXPECT_EQ(r.type, REDIS_REPLY_INTEGER);
    return r.integer;
  }

 private:
  redisContext* c_;
};

// What DefaultClient.decode() does with bytes, short of running Python:
// digits (with an optional sign) are an int; everything else must be text that
// json.loads accepts (nlohmann's strict parser also checks the UTF-8 that
// value.decode() requires).
bool DjangoDecodesAsInt(std::string_view bytes) {
  std::size_t i = bytes.starts_with('-') ? 1 : 0;
  if (i == bytes.size()) return false;
  for (; i < bytes.size(); ++i) {
    if (bytes[i] < '0' || bytes[i] > '9') return false;
  }
  return true;
}

nlohmann::json DjangoJsonLoads(std::string_view bytes) {
  auto parsed = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(parsed.is_discarded()) << "json.loads would refuse: " << bytes;
  return parsed;
}

class DjangoCompat : public ::testing::Test {
 protected:
  void SetUp() override {
    RedisServer& server = shared_redis_server();
    auto endpoint = parse_redis_url(server.url());
    ASSERT_TRUE(endpoint) << endpoint.error().to_string();
    RedisStoreOptions options;
    options.endpoint = *endpoint;
    options.pool_size = 4;
    auto store = make_redis_store(options);
    ASSERT_TRUE(store) << store.error().to_string();
    AssistantCacheOptions cache_options;
    cache_options.key_prefix = std::string(kPrefix);
    cache_options.key_version = 1;
    auto cache = AssistantCache::create(std::shared_ptr<Store>(std::move(*store)), cache_options);
    ASSERT_TRUE(cache) << cache.error().to_string();
    cache_ = std::move(*cache);
    django_ = std::make_unique<DjangoRedis>(server.port());
    ASSERT_TRUE(django_->ok());
    // Tests of one process share the server; start each from an empty namespace.
    ASSERT_TRUE(cache_->clear());
  }

  AssistantCache& cache() { return *cache_; }
  DjangoRedis& django() { return *django_; }

 private:
  std::shared_ptr<AssistantCache> cache_;
  std::unique_ptr<DjangoRedis> django_;
};

// ---------------------------------------------------------------------------
// Keys

TEST_F(DjangoCompat, KeysAreDjangosPrefixVersionKey) {
  EXPECT_EQ(cache().keys().access_token("wechat", "wx1").value(),
            "blbs_erp:1:ai_assistant:access_token:wechat:wx1");
  EXPECT_EQ(cache().keys().conversation("conv_1").value(),
            "blbs_erp:1:ai_assistant:conversation:conv_1");
  EXPECT_EQ(cache().keys().ai_config("u42").value(), "blbs_erp:1:ai_assistant:ai_config:u42");
  EXPECT_EQ(cache().keys().make("feature_flags").value(), "blbs_erp:1:feature_flags");
}

// ---------------------------------------------------------------------------
// Django writes, aicache reads

TEST_F(DjangoCompat, ReadsATokenDjangoWrote) {
  // cache.set("ai_assistant:access_token:wechat:wx1", "ACCESS_TOKEN_abc", 7200)
  django().set("ai_assistant:access_token:wechat:wx1", R"("ACCESS_TOKEN_abc")", 7200);
  auto token = cache().get_access_token("wechat", "wx1");
  ASSERT_TRUE(token) << token.error().to_string();
  EXPECT_EQ(*token, std::optional<std::string>("ACCESS_TOKEN_abc"));
}

// The store's near cache (on by default) serves the token it read from the
// process; Django's overwrite and delete reach it through Redis's
// invalidation, within the invalidation latency (polled, 5 s at most).
TEST_F(DjangoCompat, DjangosOverwriteAndDeleteAreSeenThroughTheNearCache) {
  django().set("ai_assistant:access_token:wechat:wx9", R"("OLD")", 7200);
  auto read = [&] { return cache().get_access_token("wechat", "wx9"); };
  ASSERT_TRUE(read() == "OLD");
  ASSERT_TRUE(read() == "OLD");  // from the near cache now
  auto eventually = [&](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  };
  django().set("ai_assistant:access_token:wechat:wx9", R"("NEW")", 7200);
  EXPECT_TRUE(eventually([&] { return read() == "NEW"; }));
  django().command({"DEL", DjangoKey("ai_assistant:access_token:wechat:wx9")});
  EXPECT_TRUE(eventually([&] { return read() == std::nullopt; }));
}

TEST_F(DjangoCompat, ReadsATokenDjangoWroteWithEscapes) {
  // json.dumps('tok"en\\x') == '"tok\\"en\\\\x"'; a token of digits stays a
  // JSON string (Django wrote a str, not an int).
  django().set("ai_assistant:access_token:wecom:corp1", R"("tok\"en\\x")", 7200);
  django().set("ai_assistant:access_token:dingtalk:app1", R"("1234567890")", 7200);
  auto escaped = cache().get_access_token("wecom", "corp1");
  ASSERT_TRUE(escaped) << escaped.error().to_string();
  EXPECT_EQ(*escaped, std::optional<std::string>(R"(tok"en\x)"));
  auto digits = cache().get_access_token("dingtalk", "app1");
  ASSERT_TRUE(digits) << digits.error().to_string();
  EXPECT_EQ(*digits, std::optional<std::string>("1234567890"));
}

TEST_F(DjangoCompat, ReadsAConversationWithChineseAndEmojiAsDjangoEscapesThem) {
  // json.dumps({"messages": [{"role": "user", "content": "你好 😀"},
  //                          {"role": "assistant", "content": "您好！有什么可以帮您？"}]})
  const std::string bytes =
      R"({"messages": [{"role": "user", "content": "\u4f60\u597d \ud83d\ude00"}, )"
      R"({"role": "assistant", "content": )"
      R"("\u60a8\u597d\uff01\u6709\u4ec0\u4e48\u53ef\u4ee5\u5e2e\u60a8\uff1f"}]})";
  django().set("ai_assistant:conversation:conv_1", bytes, 3600);

  auto conversation = cache().get_conversation("conv_1");
  ASSERT_TRUE(conversation) << conversation.error().to_string();
  ASSERT_TRUE(conversation.hit());
  // The text is kept byte for byte; the tree has the characters themselves.
  EXPECT_EQ(conversation->text(), bytes);
  const nlohmann::json& value = conversation->value();
  ASSERT_EQ(value["messages"].size(), 2u);
  EXPECT_EQ(value["messages"][0]["role"], "user");
  EXPECT_EQ(value["messages"][0]["content"], "\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80");
  EXPECT_EQ(value["messages"][1]["content"],
            "\xe6\x82\xa8\xe5\xa5\xbd\xef\xbc\x81\xe6\x9c\x89\xe4\xbb\x80\xe4\xb9\x88\xe5\x8f"
            "\xaf\xe4\xbb\xa5\xe5\xb8\xae\xe6\x82\xa8\xef\xbc\x9f");
}

TEST_F(DjangoCompat, ReadsAnAiConfigDjangoWrote) {
  // json.dumps({"model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": 2048,
  //             "system_prompt": "你是企业助手", "enabled": True, "tools": None})
  const std::string bytes =
      R"({"model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": 2048, )"
      R"("system_prompt": "\u4f60\u662f\u4f01\u4e1a\u52a9\u624b", "enabled": true, "tools": null})";
  django().set("ai_assistant:ai_config:u42", bytes, 300);

  auto config = cache().get_ai_config("u42");
  ASSERT_TRUE(config) << config.error().to_string();
  ASSERT_TRUE(config.hit());
  const nlohmann::json& value = config->value();
  EXPECT_EQ(value["model"], "gpt-4o-mini");
  EXPECT_DOUBLE_EQ(value["temperature"].get<double>(), 0.7);
  EXPECT_EQ(value["max_tokens"], 2048);
  EXPECT_EQ(value["system_prompt"],
            "\xe4\xbd\xa0\xe6\x98\xaf\xe4\xbc\x81\xe4\xb8\x9a\xe5\x8a\xa9\xe6\x89\x8b");
  EXPECT_EQ(value["enabled"], true);
  EXPECT_TRUE(value["tools"].is_null());
}

TEST_F(DjangoCompat, ReadsGenericValuesDjangoWrote) {
  django().set("flag", "true");                      // cache.set("flag", True): json, not int
  django().set("ratio", "1.5");                      // a float is json
  django().set("ids", "[1, 2, 3]");                  // a list
  django().set("when", R"("2024-05-01T12:00:00Z")"); // DjangoJSONEncoder: datetime as ISO str
  django().set("nothing", "null");                   // cache.set("nothing", None)

  auto flag = cache().get("flag");
  ASSERT_TRUE(flag.hit());
  EXPECT_EQ(flag->value(), true);
  auto ratio = cache().get("ratio");
  ASSERT_TRUE(ratio.hit());
  EXPECT_DOUBLE_EQ(ratio->value().get<double>(), 1.5);
  auto ids = cache().get("ids");
  ASSERT_TRUE(ids.hit());
  EXPECT_EQ(ids->value(), nlohmann::json({1, 2, 3}));
  auto when = cache().get("when");
  ASSERT_TRUE(when.hit());
  EXPECT_EQ(when->value(), "2024-05-01T12:00:00Z");
  // A stored None is a hit holding null, as Django's cache.get returns None
  // for it (and not the default).
  auto nothing = cache().get("nothing", JsonDocument::string("default"));
  ASSERT_TRUE(nothing);
  EXPECT_TRUE(nothing->value().is_null());
}

TEST_F(DjangoCompat, IncrementsACounterDjangoWroteAsDigits) {
  // cache.set("daily_calls", 41): an int is stored as its digits, not JSON-quoted.
  django().set("daily_calls", "41", 300);
  auto read = cache().get("daily_calls");
  ASSERT_TRUE(read.hit());
  EXPECT_EQ(read->value(), 41);

  auto n = cache().incr("daily_calls");
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 42);
  // Still digits, which Django's decode() turns back into int("42").
  EXPECT_EQ(django().get("daily_calls"), std::optional<std::string>("42"));

  auto down = cache().incr("daily_calls", -50);
  ASSERT_TRUE(down) << down.error().to_string();
  EXPECT_EQ(*down, -8);
  const auto bytes = django().get("daily_calls");
  ASSERT_TRUE(bytes);
  EXPECT_EQ(*bytes, "-8");
  EXPECT_TRUE(DjangoDecodesAsInt(*bytes));
  // An existing key keeps the TTL Django gave it.
  EXPECT_GT(django().pttl("daily_calls"), 290'000);
  EXPECT_LE(django().pttl("daily_calls"), 300'000);
}

TEST_F(DjangoCompat, SeesTheTimeoutDjangoSet) {
  django().set("ttl_px", R"("v")", 300);                            // django-redis >= 5: PX
  django().set("ttl_ex", R"("v")", 300, /*with_ex=*/true);          // older releases: EX
  django().set("ttl_none", R"("v")", std::nullopt);                 // timeout=None
  for (const char* key : {"ttl_px", "ttl_ex"}) {
    SCOPED_TRACE(key);
    auto ttl = cache().ttl(key);
    ASSERT_TRUE(ttl) << ttl.error().to_string();
    EXPECT_EQ(ttl->state, KeyTtl::State::kExpiring);
    EXPECT_GT(ttl->remaining, 295s);
    EXPECT_LE(ttl->remaining, 300s);
  }
  auto forever = cache().ttl("ttl_none");
  ASSERT_TRUE(forever);
  EXPECT_EQ(forever->state, KeyTtl::State::kPersistent);
  auto missing = cache().ttl("never_set");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->state, KeyTtl::State::kMissing);
}

TEST_F(DjangoCompat, RefusesAPickledValueInsteadOfReturningIt) {
  // What django-redis's default PickleSerializer writes for
  // cache.set(..., "ACCESS_TOKEN_abc") and cache.set(..., {"messages": []}).
  using namespace std::string_literals;
  const std::string pickled_token =
      "\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x10"
      "ACCESS_TOKEN_abc\x94."s;
  const std::string pickled_dict =
      "\x80\x04\x95\x11\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x08messages\x94]\x94s."s;
  django().set("pickled", pickled_dict);
  django().set("ai_assistant:conversation:pickled", pickled_dict);
  django().set("ai_assistant:access_token:wechat:pickled", pickled_token);

  auto generic = cache().get("pickled");
  ASSERT_FALSE(generic);
  EXPECT_EQ(generic.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(generic.error().message, HasSubstr("not JSON"));
  EXPECT_THAT(generic.error().message, HasSubstr("blbs_erp:1:pickled"));

  auto conversation = cache().get_conversation("pickled");
  ASSERT_FALSE(conversation);
  EXPECT_EQ(conversation.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(conversation.error().message, HasSubstr("not JSON"));

  auto token = cache().get_access_token("wechat", "pickled");
  ASSERT_FALSE(token);
  EXPECT_EQ(token.error().code, ErrorCode::kFailedPrecondition);
  // The token is a secret: the message names the key, never the bytes.
  EXPECT_THAT(token.error().message, Not(HasSubstr("ACCESS_TOKEN_abc")));

  // Neither does a fallback hide it: the entry exists, it is not a miss.
  auto with_default = cache().get("pickled", JsonDocument::string("default"));
  ASSERT_FALSE(with_default);
  EXPECT_EQ(with_default.error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(DjangoCompat, RefusesALoneSurrogateThatPythonCanWrite) {
  // json.dumps("\ud83d") == '"\\ud83d"': valid for Python, not UTF-8 text.
  django().set("lone", R"({"content": "\ud83d"})");
  auto value = cache().get("lone");
  ASSERT_FALSE(value);
  EXPECT_EQ(value.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(value.error().message, HasSubstr("not JSON"));
}

// ---------------------------------------------------------------------------
// aicache writes, Django reads

TEST_F(DjangoCompat, WritesATokenAsAJsonString) {
  ASSERT_TRUE(cache().set_access_token("wechat", "wx1", "ACCESS_TOKEN_abc"));
  ASSERT_TRUE(cache().set_access_token("dingtalk", "app1", "1234567890"));
  ASSERT_TRUE(cache().set_access_token("wecom", "corp1", R"(tok"en\x)"));

  EXPECT_EQ(django().get("ai_assistant:access_token:wechat:wx1"),
            std::optional<std::string>(R"("ACCESS_TOKEN_abc")"));
  // Quoted, so Django's int() fails and json.loads hands back the str.
  const auto digits = django().get("ai_assistant:access_token:dingtalk:app1");
  ASSERT_TRUE(digits);
  EXPECT_EQ(*digits, R"("1234567890")");
  EXPECT_FALSE(DjangoDecodesAsInt(*digits));
  EXPECT_EQ(DjangoJsonLoads(*digits), "1234567890");
  const auto escaped = django().get("ai_assistant:access_token:wecom:corp1");
  ASSERT_TRUE(escaped);
  EXPECT_EQ(DjangoJsonLoads(*escaped), R"(tok"en\x)");
  // The typed default: 2 h, which Django's cache.ttl() reads in seconds.
  EXPECT_GT(django().pttl("ai_assistant:access_token:wechat:wx1"), 7190'000);
  EXPECT_LE(django().pttl("ai_assistant:access_token:wechat:wx1"), 7200'000);
}

TEST_F(DjangoCompat, WritesAConversationAsJsonTextPythonLoads) {
  const nlohmann::json conversation = {
      {"messages",
       {{{"role", "user"}, {"content", "\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80"}},
        {{"role", "assistant"}, {"content", "line 1\nline \"2\"\t\\ \x01"}}}},
      {"model", "gpt-4o-mini"},
      {"turns", 2}};
  ASSERT_TRUE(cache().set_conversation("conv_2", JsonDocument(conversation)));

  const auto bytes = django().get("ai_assistant:conversation:conv_2");
  ASSERT_TRUE(bytes);
  EXPECT_FALSE(DjangoDecodesAsInt(*bytes));
  // Strict JSON in valid UTF-8 (Python's json.loads(value.decode()) accepts
  // raw UTF-8 as well as \u escapes), with the same structure.
  const nlohmann::json loaded = DjangoJsonLoads(*bytes);
  EXPECT_EQ(loaded, conversation);
  ASSERT_TRUE(loaded.is_object());
  ASSERT_TRUE(loaded["messages"].is_array());
  EXPECT_EQ(loaded["messages"][0]["content"], "\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80");
  // Control characters are escaped (json.loads is strict about them).
  for (char c : *bytes) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << "raw control byte";
  EXPECT_GT(django().pttl("ai_assistant:conversation:conv_2"), 3590'000);
}

TEST_F(DjangoCompat, WritesAnAiConfigAsJsonText) {
  const nlohmann::json config = {{"model", "gpt-4o-mini"},
                                 {"temperature", 0.7},
                                 {"max_tokens", 2048},
                                 {"enabled", true},
                                 {"tools", nullptr}};
  ASSERT_TRUE(cache().set_ai_config("u42", JsonDocument(config)));
  const auto bytes = django().get("ai_assistant:ai_config:u42");
  ASSERT_TRUE(bytes);
  const nlohmann::json loaded = DjangoJsonLoads(*bytes);
  EXPECT_EQ(loaded, config);
  EXPECT_DOUBLE_EQ(loaded["temperature"].get<double>(), 0.7);
  EXPECT_GT(django().pttl("ai_assistant:ai_config:u42"), 290'000);
  EXPECT_LE(django().pttl("ai_assistant:ai_config:u42"), 300'000);
}

TEST_F(DjangoCompat, WritesIntegersAsPlainDigits) {
  ASSERT_TRUE(cache().set("daily_calls", JsonDocument::integer(7)));
  ASSERT_TRUE(cache().set("balance", JsonDocument::integer(-12)));
  EXPECT_EQ(django().get("daily_calls"), std::optional<std::string>("7"));
  EXPECT_EQ(django().get("balance"), std::optional<std::string>("-12"));

  auto n = cache().incr("daily_calls", 5);
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 12);
  // A counter aicache creates: digits, with the store default of 300 s.
  auto created = cache().incr("new_counter");
  ASSERT_TRUE(created) << created.error().to_string();
  EXPECT_EQ(*created, 1);
  for (const char* key : {"daily_calls", "balance", "new_counter"}) {
    SCOPED_TRACE(key);
    const auto bytes = django().get(key);
    ASSERT_TRUE(bytes);
    EXPECT_THAT(*bytes, MatchesRegex("-?[0-9]+"));
    EXPECT_TRUE(DjangoDecodesAsInt(*bytes));
  }
  EXPECT_GT(django().pttl("new_counter"), 290'000);

  // Django's own cache.incr() works on what aicache wrote, and aicache reads
  // the result.
  EXPECT_EQ(django().incr("daily_calls", 30), 42);
  auto read = cache().get("daily_calls");
  ASSERT_TRUE(read.hit());
  EXPECT_EQ(read->value(), 42);
}

TEST_F(DjangoCompat, WritesNoExpiryAsDjangosTimeoutNone) {
  ASSERT_TRUE(cache().set("forever", JsonDocument::string("x"), Ttl::never()));
  EXPECT_EQ(django().pttl("forever"), -1);
  EXPECT_EQ(django().get("forever"), std::optional<std::string>(R"("x")"));
  // The store default is Django's TIMEOUT = 300.
  ASSERT_TRUE(cache().set("default_ttl", JsonDocument::string("x")));
  EXPECT_GT(django().pttl("default_ttl"), 290'000);
  EXPECT_LE(django().pttl("default_ttl"), 300'000);
}

TEST_F(DjangoCompat, ClearLeavesOtherVersionsAndPrefixesAlone) {
  django().set("mine", "1");
  django().command({"SET", DjangoKey("theirs", 2), "1"});
  django().command({"SET", "other_app:1:theirs", "1"});
  auto removed = cache().clear();
  ASSERT_TRUE(removed) << removed.error().to_string();
  EXPECT_EQ(*removed, 1u);
  EXPECT_EQ(django().get("mine"), std::nullopt);
  EXPECT_EQ(django().command({"EXISTS", DjangoKey("theirs", 2)}).integer, 1);
  EXPECT_EQ(django().command({"EXISTS", "other_app:1:theirs"}).integer, 1);
  django().command({"DEL", DjangoKey("theirs", 2), "other_app:1:theirs"});
}

}  // namespace
}  // namespace aicache::testing
