// Hostile input (issue 6): keys and values an attacker or a buggy caller may
// send, through AssistantCache on a real redis-server and through the HTTP
// service. Every hostile key is refused (kInvalidArgument / 400) and nothing
// reaches Redis, as a raw hiredis KEYS * shows; valid unusual keys round-trip
// and never collide; hostile values are clear errors, never a crash, a 500 or
// a silently changed value.
#include <hiredis/hiredis.h>

#include <gtest/gtest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/json.h"
#include "aicache/keys.h"
#include "aicache/log.h"
#include "aicache/memory_store.h"
#include "aicache/redis_store.h"
#include "aicache/server.h"
#include "support/http_test_client.h"
#include "support/raw_connection.h"
#include "support/redis_server.h"
#include "support/server_fixture.h"

namespace aicache {
namespace {

using testing::shared_redis_server;

constexpr std::string_view kPrefix = "hx";  // stored keys start "hx:1:"

// --- Raw Redis ------------------------------------------------------------------

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;
struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};

// A raw hiredis connection to the test's redis-server: what is really stored,
// independent of the code under test.
class RawRedis {
 public:
  RawRedis() : c_(redisConnect("127.0.0.1", shared_redis_server().port())) {
    if (!c_ || c_->err) throw std::runtime_error("cannot connect to the test redis-server");
  }

  Reply command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    return Reply(static_cast<redisReply*>(
        redisCommandArgv(c_.get(), static_cast<int>(argv.size()), argv.data(), lens.data())));
  }

  // Every key in the database, binary-safe.
  std::set<std::string> keys() {
    std::set<std::string> out;
    auto reply = command({"KEYS", "*"});
    EXPECT_TRUE(reply && reply->type == REDIS_REPLY_ARRAY);
    if (!reply || reply->type != REDIS_REPLY_ARRAY) return out;
    for (std::size_t i = 0; i < reply->elements; ++i) {
      out.emplace(reply->element[i]->str, reply->element[i]->len);
    }
    return out;
  }

  std::optional<std::string> get(const std::string& key) {
    auto reply = command({"GET", key});
    if (!reply || reply->type != REDIS_REPLY_STRING) return std::nullopt;
    return std::string(reply->str, reply->len);
  }

  void flush() {
    auto reply = command({"FLUSHALL"});
    ASSERT_TRUE(reply && reply->type != REDIS_REPLY_ERROR);
  }

 private:
  std::unique_ptr<redisContext, ContextDeleter> c_;
};

// Printable form of a hostile byte string, for failure messages.
std::string Show(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 40)) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (s.size() > 40) out += fmt::format("...({} bytes)", s.size());
  return out;
}

std::shared_ptr<Store> RedisStore() {
  auto endpoint = parse_redis_url(shared_redis_server().url());
  EXPECT_TRUE(endpoint) << endpoint.error().to_string();
  auto store = make_redis_store({.endpoint = *endpoint});
  EXPECT_TRUE(store) << store.error().to_string();
  return std::shared_ptr<Store>(std::move(*store));
}

std::shared_ptr<AssistantCache> Cache(std::shared_ptr<Store> store,
                                      std::string_view prefix = kPrefix) {
  auto cache = AssistantCache::create(
      std::move(store),
      {.key_prefix = std::string(prefix),
       .store_errors = AssistantCacheOptions::StoreErrors::kReturnError});
  EXPECT_TRUE(cache) << cache.error().to_string();
  return std::shared_ptr<AssistantCache>(std::move(*cache));
}

// Key parts (channel, app id, conversation id, user id) that must be refused.
std::vector<std::string> HostileParts() {
  using namespace std::string_literals;
  return {
      ""s,                      // empty
      ":"s, "a:b"s, "wx:"s, ":wx"s,          // the separator
      "*"s, "a*"s, "?"s, "[a]"s, "a\\b"s,    // glob characters
      "{"s, "}"s, "{tag}"s, "a{b}c"s,        // Redis hash tags
      " "s, "a b"s, " a"s, "a "s,            // spaces
      "\n"s, "a\nb"s, "\r\n"s, "a\r\nFLUSHALL\r\n"s, "\t"s, "a\x7f"s, "\x1b[0m"s,
      "\0"s, "a\0b"s, "a\0"s, "\0\0\0\0"s,   // NUL
      "\xff"s, "a\xfe"s, "\xc0\xaf"s,         // invalid / overlong UTF-8
      "\xed\xa0\x80"s,                       // a surrogate
      "\xe4\xb8"s, "a\xe4"s,                 // truncated sequences
      "\xf4\x90\x80\x80"s,                   // beyond U+10FFFF
      "\x80"s, "a\xbf" "b"s,                  // stray continuation bytes
      "\xc2\xa0"s, "\xe3\x80\x80"s, "\xc2\x85"s, "a\xe2\x80\xa8" "b"s,  // Unicode spaces / NEL
      "\"quoted\""s, "a'b"s, "<a>"s, "a`b"s, "a(b)"s,  // outside the allowed punctuation
      std::string(129, 'a'),                 // one byte over the part limit
      std::string(10'000, 'a'),              // 10,000 bytes
      std::string(10'000, ':'),
      std::string(10'000, '\0'),
      std::string(5'000, '\xff'),
  };
}

// Generic (Django-style) keys that must be refused. Generic keys may contain
// ':', '*' and braces (Django's own keys do), but never control characters,
// spaces or invalid UTF-8, and never more than 250 bytes with the prefix.
std::vector<std::string> HostileGenericKeys() {
  using namespace std::string_literals;
  return {
      ""s,
      std::string(246, 'k'),  // "hx:1:" + 246 = 251 bytes
      std::string(10'000, 'k'),
      " "s, "a b"s, "a\tb"s, "a\nb"s, "a\r\nDEL x\r\n"s, "a\x7f"s, "\x01"s,
      "\0"s, "a\0b"s, std::string(10'000, '\0'),
      "\xff"s, "a\xc0\xaf"s, "\xed\xa0\x80"s, "\xe4\xb8"s, "\xc2\xa0"s, "\xe3\x80\x80"s,
      "\xc2\x85"s,
  };
}

void ExpectInvalid(const Status& s, std::string_view what, std::string_view input) {
  ASSERT_FALSE(s) << what << " accepted " << Show(input);
  EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument)
      << what << " " << Show(input) << ": " << s.error().to_string();
  EXPECT_FALSE(s.error().message.empty());
}

template <class T>
void ExpectInvalid(const Result<T>& r, std::string_view what, std::string_view input) {
  ASSERT_FALSE(r) << what << " accepted " << Show(input);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument)
      << what << " " << Show(input) << ": " << r.error().to_string();
  EXPECT_FALSE(r.error().message.empty());
}

template <class T>
void ExpectInvalid(const Lookup<T>& r, std::string_view what, std::string_view input) {
  ExpectInvalid(r.result(), what, input);
}

class HostileRedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_log_handler({});
    raw_.flush();
    store_ = RedisStore();
    cache_ = Cache(store_);
  }

  RawRedis raw_;
  std::shared_ptr<Store> store_;
  std::shared_ptr<AssistantCache> cache_;
};

// --- 1. Keys through AssistantCache on Redis ------------------------------------------

TEST_F(HostileRedisTest, HostileTypedKeyPartsAreRefusedAndNothingIsWritten) {
  const auto doc = JsonDocument::parse(R"({"messages":[]})");
  ASSERT_TRUE(doc);
  const std::string valid = "wx1";
  std::size_t checked = 0;
  for (const std::string& bad : HostileParts()) {
    SCOPED_TRACE(Show(bad));
    // Token keys: the hostile part as channel, as app id, and as both.
    std::vector<std::pair<std::string, std::string>> pairs = {
        {bad, valid}, {valid, bad}, {bad, bad}, {bad + ":" + valid, valid},
        {valid, valid + ":" + bad}};
    std::vector<std::string> ids = {bad};
    if (!bad.empty()) {  // a hostile part inside a valid one
      pairs.emplace_back("we" + bad + "chat", valid);
      pairs.emplace_back(valid, valid + bad);
      ids.push_back("conv-" + bad);
      ids.push_back(bad + "-conv");
    }
    for (const auto& [channel, app] : pairs) {
      ExpectInvalid(cache_->set_access_token(channel, app, "tok"), "set_access_token", channel + "|" + app);
      ExpectInvalid(cache_->get_access_token(channel, app), "get_access_token", channel + "|" + app);
      ExpectInvalid(cache_->remove_access_token(channel, app), "remove_access_token", channel + "|" + app);
      ExpectInvalid(cache_->keys().access_token(channel, app), "KeyMaker::access_token",
                    channel + "|" + app);
      ++checked;
    }
    for (const std::string& id : ids) {
      ExpectInvalid(cache_->set_conversation(id, *doc), "set_conversation", id);
      ExpectInvalid(cache_->get_conversation(id), "get_conversation", id);
      ExpectInvalid(cache_->remove_conversation(id), "remove_conversation", id);
      ExpectInvalid(cache_->set_ai_config(id, *doc), "set_ai_config", id);
      ExpectInvalid(cache_->get_ai_config(id), "get_ai_config", id);
      ExpectInvalid(cache_->remove_ai_config(id), "remove_ai_config", id);
      ++checked;
    }
  }
  EXPECT_GT(checked, 300u);
  EXPECT_EQ(raw_.keys(), std::set<std::string>{}) << "a refused key reached Redis";
}

TEST_F(HostileRedisTest, HostileGenericKeysAreRefusedAndNothingIsWritten) {
  const auto doc = JsonDocument::parse(R"([1,2,3])");
  ASSERT_TRUE(doc);
  for (const std::string& key : HostileGenericKeys()) {
    SCOPED_TRACE(Show(key));
    ExpectInvalid(cache_->set(key, *doc), "set", key);
    ExpectInvalid(cache_->get(key), "get", key);
    ExpectInvalid(cache_->get(key, JsonDocument::integer(7)), "get with fallback", key);
    ExpectInvalid(cache_->remove(key), "remove", key);
    ExpectInvalid(cache_->incr(key), "incr", key);
    ExpectInvalid(cache_->ttl(key), "ttl", key);
    ExpectInvalid(cache_->keys().make(key), "KeyMaker::make", key);
  }
  EXPECT_EQ(raw_.keys(), std::set<std::string>{}) << "a refused key reached Redis";
}

TEST_F(HostileRedisTest, GenericKeyLengthLimitIsExactWithThePrefix) {
  const std::string longest(245, 'k');  // "hx:1:" + 245 = 250 bytes
  ASSERT_TRUE(cache_->set(longest, JsonDocument::integer(1)));
  ExpectInvalid(cache_->set(longest + "k", JsonDocument::integer(1)), "set", longest + "k");
  const auto keys = raw_.keys();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(*keys.begin(), "hx:1:" + longest);
  EXPECT_EQ(keys.begin()->size(), kMaxStoredKeyBytes);
}

// Generic keys are Django's logical keys: ':', '*', '?', '[', braces and
// quotes are legal there. They are passed to Redis as binary-safe arguments
// (never interpolated into a command or a glob), so they are stored exactly.
TEST_F(HostileRedisTest, GenericKeysWithRedisSpecialCharactersAreStoredVerbatim) {
  const std::vector<std::string> keys = {"a:b", "a*", "*", "?", "[ab]", "a\\*", "{tag}x",
                                         "x{tag}", "\"q\"", "用户:42:设置", "%00", "a%0Ab"};
  std::set<std::string> expected;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    SCOPED_TRACE(keys[i]);
    ASSERT_TRUE(cache_->set(keys[i], JsonDocument::integer(static_cast<std::int64_t>(i))));
    expected.insert("hx:1:" + keys[i]);
  }
  EXPECT_EQ(raw_.keys(), expected);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto got = cache_->get(keys[i]);
    ASSERT_TRUE(got.hit()) << keys[i];
    EXPECT_EQ(got->text(), std::to_string(i)) << keys[i];
  }
  // A glob in a prefix is not a glob in the store's clear(): clearing the
  // namespace "h*:1:" removes only its own keys. (A cache refuses such a
  // prefix since issue 11, finding 5; the store must still be literal.)
  ASSERT_TRUE(store_->set("h*:1:x", "1", Ttl(std::chrono::seconds(60))));
  auto cleared = store_->clear("h*:1:");
  ASSERT_TRUE(cleared) << cleared.error().to_string();
  EXPECT_EQ(*cleared, 1u);
  EXPECT_EQ(raw_.keys(), expected);
  EXPECT_FALSE(AssistantCache::create(store_, {.key_prefix = "h*"}));
}

// Valid but unusual identifiers: UTF-8 letters and the allowed punctuation.
std::vector<std::string> UnusualValidParts() {
  std::string chinese;  // 42 three-byte letters: 126 bytes
  for (int i = 0; i < 42; ++i) chinese += "字";
  return {"用户42", "会话-一", "ユーザー", "é", "a.b", "a..b", ".", "..", "user@example.com",
          "a/b", "/", "a/b/c", "~!$&,;%^|#", "-_.@+=/", "%3A", "%2A", "a%b", "a+b", "a=b",
          "a#b", "ab", "a", "b", "ba", "1", "11", std::string(kMaxKeyPartBytes, 'z'), chinese};
}

TEST_F(HostileRedisTest, UnusualValidPartsRoundTripUnderTheirExactKeys) {
  const auto parts = UnusualValidParts();
  std::set<std::string> expected;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    SCOPED_TRACE(part);
    const std::string token = "tok-" + std::to_string(i);
    const auto doc = JsonDocument::parse(fmt::format(R"({{"i":{}}})", i));
    ASSERT_TRUE(doc);
    auto token_status = cache_->set_access_token("wechat", part, token);
    if (std::string("ai_assistant:access_token:wechat:").size() + part.size() + 5 >
        kMaxStoredKeyBytes) {
      // A 128-byte part may not fit every key shape; refused, never truncated.
      ExpectInvalid(token_status, "set_access_token", part);
    } else {
      ASSERT_TRUE(token_status) << token_status.error().to_string();
      expected.insert("hx:1:ai_assistant:access_token:wechat:" + part);
      auto got = cache_->get_access_token("wechat", part);
      ASSERT_TRUE(got.hit());
      EXPECT_EQ(*got, token);
    }
    ASSERT_TRUE(cache_->set_conversation(part, *doc));
    ASSERT_TRUE(cache_->set_ai_config(part, *doc));
    expected.insert("hx:1:ai_assistant:conversation:" + part);
    expected.insert("hx:1:ai_assistant:ai_config:" + part);
    auto conv = cache_->get_conversation(part);
    ASSERT_TRUE(conv.hit());
    EXPECT_EQ(conv->text(), doc->text());
    auto config = cache_->get_ai_config(part);
    ASSERT_TRUE(config.hit());
    EXPECT_EQ(config->text(), doc->text());
  }
  EXPECT_EQ(raw_.keys(), expected);
}

// No two different (channel, app id) pairs, conversation ids or user ids build
// the same stored key: every part is free of the separator.
TEST_F(HostileRedisTest, ManyValidPairsNeverCollide) {
  std::vector<std::string> parts = UnusualValidParts();
  for (std::string extra : {"wechat", "dingtalk", "wecom", "we", "chat", "wechat.", "a-b", "a_b"}) {
    parts.push_back(extra);
  }
  std::set<std::string> built;
  std::size_t attempted = 0;
  std::vector<std::pair<std::string, std::string>> stored_pairs;
  for (const auto& channel : parts) {
    for (const auto& app : parts) {
      auto key = cache_->keys().access_token(channel, app);
      if (!key) continue;  // too long together; refused, checked elsewhere
      ++attempted;
      EXPECT_TRUE(built.insert(*key).second)
          << "collision: (" << channel << ", " << app << ") -> " << *key;
      if (channel.size() + app.size() < 40) stored_pairs.emplace_back(channel, app);
    }
  }
  for (const auto& id : parts) {
    for (auto key : {cache_->keys().conversation(id), cache_->keys().ai_config(id)}) {
      ASSERT_TRUE(key) << id;
      ++attempted;
      EXPECT_TRUE(built.insert(*key).second) << "collision: " << *key;
    }
  }
  EXPECT_EQ(built.size(), attempted);
  EXPECT_GT(attempted, 1000u);

  // And in Redis: every pair gets its own entry holding its own token.
  for (std::size_t i = 0; i < stored_pairs.size(); ++i) {
    ASSERT_TRUE(cache_->set_access_token(stored_pairs[i].first, stored_pairs[i].second,
                                         "t" + std::to_string(i)));
  }
  EXPECT_EQ(raw_.keys().size(), stored_pairs.size());
  for (std::size_t i = 0; i < stored_pairs.size(); ++i) {
    auto got = cache_->get_access_token(stored_pairs[i].first, stored_pairs[i].second);
    ASSERT_TRUE(got.hit());
    EXPECT_EQ(*got, "t" + std::to_string(i));
  }
}

// --- 2. Values --------------------------------------------------------------------------

std::string Nested(std::size_t depth, std::string_view open = "[", std::string_view close = "]") {
  std::string s;
  s.reserve(depth * (open.size() + close.size()));
  for (std::size_t i = 0; i < depth; ++i) s += open;
  for (std::size_t i = 0; i < depth; ++i) s += close;
  return s;
}

TEST(HostileJson, DeepNestingIsAnErrorNotACrash) {
  std::string objects;
  for (int i = 0; i < 10'000; ++i) objects += R"({"a":)";
  objects += "1";
  objects += std::string(10'000, '}');
  std::string open_objects;
  for (int i = 0; i < 1'000'000; ++i) open_objects += R"({"":)";
  const std::string cases[] = {Nested(10'000), objects, std::string(10'000, '['),
                               Nested(1'000'000), open_objects};
  for (const auto& text : cases) {
    auto doc = JsonDocument::parse(text);
    ASSERT_FALSE(doc) << text.size();
    EXPECT_EQ(doc.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(doc.error().message.find("nested deeper than 512"), std::string::npos)
        << doc.error().message;
  }
  // Exactly at the limit is fine.
  EXPECT_TRUE(JsonDocument::parse(Nested(512)));
  EXPECT_FALSE(JsonDocument::parse(Nested(513)));
}

TEST(HostileJson, OverlongTextIsRefusedBeforeParsing) {
  const std::string text = "\"" + std::string(2000, 'x') + "\"";
  auto doc = JsonDocument::parse(text, JsonLimits{.max_bytes = 1000});
  ASSERT_FALSE(doc);
  EXPECT_EQ(doc.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(doc.error().message.find("over the limit"), std::string::npos);
}

// JSON text is stored as text. A number outside double's range cannot be
// represented by the parser (nlohmann reports "number overflow"), so it is
// refused; a huge integer that a double can approximate, and an underflowing
// one, are accepted and kept exactly as written, never rewritten.
TEST(HostileJson, OutOfRangeNumbersAreRefusedOrKeptExactly) {
  for (std::string_view text : {"1e400", "-1e400", R"({"n":1e400})", "[1,2,-1E+999]",
                                "1e99999999999999999999"}) {
    auto doc = JsonDocument::parse(text);
    ASSERT_FALSE(doc) << text;
    EXPECT_EQ(doc.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(doc.error().message.find("overflow"), std::string::npos) << doc.error().message;
  }
  for (std::string_view text :
       {"123456789012345678901234567890", "-123456789012345678901234567890",
        "18446744073709551616", "-9223372036854775809", "1e-400", "0.1000000000000000000001",
        R"({"n":123456789012345678901234567890})"}) {
    auto doc = JsonDocument::parse(text);
    ASSERT_TRUE(doc) << text << ": " << doc.error().message;
    EXPECT_EQ(doc->text(), text);
  }
}

TEST_F(HostileRedisTest, OutOfRangeNumbersStoredThroughTheCacheAreKeptExactly) {
  const std::string text = R"({"n":123456789012345678901234567890,"m":1e-400})";
  auto doc = JsonDocument::parse(text);
  ASSERT_TRUE(doc);
  ASSERT_TRUE(cache_->set_conversation("c1", *doc));
  EXPECT_EQ(raw_.get("hx:1:ai_assistant:conversation:c1"), text);
  auto got = cache_->get_conversation("c1");
  ASSERT_TRUE(got.hit());
  EXPECT_EQ(got->text(), text);
}

// A value someone else (Django, redis-cli) wrote that is nested too deep or
// out of range is reported (kFailedPrecondition), never handed out, never a
// crash.
TEST_F(HostileRedisTest, HostileStoredValuesAreNotACrash) {
  ASSERT_TRUE(raw_.command({"SET", "hx:1:ai_assistant:conversation:deep", Nested(10'000)}));
  ASSERT_TRUE(raw_.command({"SET", "hx:1:ai_assistant:conversation:big", "1e400"}));
  for (std::string_view id : {"deep", "big"}) {
    auto got = cache_->get_conversation(id);
    ASSERT_FALSE(got) << id << " handed out a value it cannot have validated";
    EXPECT_EQ(got.error().code, ErrorCode::kFailedPrecondition) << got.error().to_string();
  }
}

void ExpectIncrOverflow(Store& store, const std::string& key) {
  ASSERT_TRUE(store.set(key, "9223372036854775807"));
  auto r = store.incr(key, 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kOutOfRange) << r.error().to_string();
  EXPECT_EQ(*store.get(key), std::optional<std::string>("9223372036854775807"));

  r = store.incr(key, std::numeric_limits<std::int64_t>::max());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kOutOfRange);

  ASSERT_TRUE(store.set(key, "-9223372036854775808"));
  r = store.incr(key, -1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kOutOfRange) << r.error().to_string();
  r = store.incr(key, std::numeric_limits<std::int64_t>::min());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kOutOfRange);
  EXPECT_EQ(*store.get(key), std::optional<std::string>("-9223372036854775808"));

  // A stored number beyond int64 is not an integer to incr; unchanged.
  ASSERT_TRUE(store.set(key, "9223372036854775808"));
  r = store.incr(key, 1);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().code == ErrorCode::kFailedPrecondition ||
              r.error().code == ErrorCode::kOutOfRange)
      << r.error().to_string();
  EXPECT_EQ(*store.get(key), std::optional<std::string>("9223372036854775808"));

  // At the edge it still works.
  ASSERT_TRUE(store.set(key, "9223372036854775806"));
  EXPECT_EQ(store.incr(key, 1), std::numeric_limits<std::int64_t>::max());
}

TEST(HostileIncr, OverflowOnMemoryStore) {
  auto store = make_memory_store();
  ExpectIncrOverflow(*store, "hx:1:n");
}

TEST_F(HostileRedisTest, OverflowOnRedisStore) {
  ExpectIncrOverflow(*store_, "hx:1:n");
  EXPECT_EQ(raw_.get("hx:1:n"), "9223372036854775807");
}

TEST_F(HostileRedisTest, OverflowThroughAssistantCache) {
  ASSERT_TRUE(cache_->incr("n", std::numeric_limits<std::int64_t>::max()));
  auto r = cache_->incr("n", 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kOutOfRange);
  EXPECT_EQ(raw_.get("hx:1:n"), "9223372036854775807");
}

// --- The HTTP service ------------------------------------------------------------------

class HostileHttpTest : public HostileRedisTest {
 protected:
  void SetUp() override {
    HostileRedisTest::SetUp();
    ServerOptions options;
    options.access_log = false;
    options.threads = 4;
    ASSERT_NO_FATAL_FAILURE(server_.start(cache_, nullptr, std::move(options)));
  }

  // Sends the paths below byte for byte (no encoding, no ".." resolution).
  testing::HttpTestClient Client() {
    return server_.client({.connect_timeout = std::chrono::seconds(5),
                           .total_timeout = std::chrono::seconds(60)});
  }

  // Sends `request` as raw bytes; returns the status of the answer (0: none).
  int RawRequest(std::string_view request) {
    testing::RawConnection connection(server_->port());
    if (!connection.send(request)) return 0;
    return connection.read_response(nullptr, std::chrono::seconds(10));
  }

  testing::ServerFixture server_;
};

// The answer's body is a JSON error object with a code and a message.
void ExpectJsonErrorBody(const std::string& text, std::string_view what) {
  auto body = nlohmann::json::parse(text, nullptr, false);
  ASSERT_TRUE(body.is_object() && body.contains("error")) << what << ": " << text;
  EXPECT_TRUE(body["error"]["code"].is_string()) << text;
  EXPECT_TRUE(body["error"]["message"].is_string()) << text;
}

void ExpectJsonError(const testing::HttpTestResult& r, std::string_view what) {
  ASSERT_TRUE(r) << what << ": " << r.error();
  ExpectJsonErrorBody(r->body, what);
}

TEST_F(HostileHttpTest, DeeplyNestedBodyIs400AndNothingIsStored) {
  auto client = Client();
  for (const std::string& body : {Nested(10'000), Nested(129), std::string(10'000, '[')}) {
    for (std::string_view path : {"/v1/conversations/x", "/v1/ai-configs/x", "/v1/kv/x"}) {
      auto r = client.put(std::string(path), body);
      ASSERT_TRUE(r) << path;
      EXPECT_EQ(r->status, 400) << path << " " << r->body;
      ExpectJsonError(r, path);
    }
  }
  // 128 is the service's limit.
  auto r = client.put("/v1/kv/ok", Nested(128));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(raw_.keys(), std::set<std::string>{"hx:1:ok"});
}

TEST_F(HostileHttpTest, HundredMegabyteBodyIs413AndNothingIsStored) {
  constexpr std::size_t kTotal = 100u << 20;
  const std::string chunk(64u << 10, ' ');  // whitespace: valid JSON padding
  {
    // Streamed 64 KiB at a time, never held whole, over a raw connection.
    // The server answers 413 as soon as it sees the Content-Length; the
    // sender may then fail to write the rest (refused, or nothing taken for
    // 5 s), which is fine: no crash, nothing stored.
    testing::RawConnection connection(server_->port());
    ASSERT_TRUE(connection.connected());
    connection.set_send_timeout(std::chrono::seconds(5));
    bool sending = connection.send(fmt::format(
        "PUT /v1/conversations/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: {}\r\n\r\n",
        kTotal));
    for (std::size_t sent = 0; sending && sent < kTotal; sent += chunk.size()) {
      sending = connection.send(chunk);
    }
    std::string body;
    const int status = connection.read_response(&body, std::chrono::seconds(30));
    if (status != 0) {
      EXPECT_EQ(status, 413) << body;
      ExpectJsonErrorBody(body, "100 MB");
    } else {
      ADD_FAILURE() << "no answer to the 100 MB body";
    }
  }
  auto client = Client();
  // Declared but never sent: refused from the header alone.
  EXPECT_EQ(RawRequest("PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 104857600\r\n\r\n"),
            413);
  // Just over the 1 MiB limit.
  auto over = client.put("/v1/kv/x", std::string((1u << 20) + 1, ' '));
  ASSERT_TRUE(over);
  EXPECT_EQ(over->status, 413);
  EXPECT_EQ(raw_.keys(), std::set<std::string>{});
  // The service still works afterwards.
  auto ok = Client().put("/v1/kv/after", "1");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(HostileHttpTest, OutOfRangeNumbersAreRefusedOrReturnedByteForByte) {
  auto client = Client();
  for (std::string body : {"1e400", "-1e400", R"({"n":-1e400})"}) {
    auto r = client.put("/v1/conversations/n", body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body << ": " << r->body;
    ExpectJsonError(r, body);
  }
  EXPECT_EQ(raw_.keys(), std::set<std::string>{});
  for (std::string body : {"123456789012345678901234567890", "-123456789012345678901234567890",
                           R"({"n":18446744073709551616,"m":1e-400,"f":0.30000000000000000001})"}) {
    auto put = client.put("/v1/conversations/n", body);
    ASSERT_TRUE(put);
    ASSERT_EQ(put->status, 200) << body << ": " << put->body;
    auto get = client.get("/v1/conversations/n");
    ASSERT_TRUE(get);
    EXPECT_EQ(get->status, 200);
    EXPECT_EQ(get->body, body);
    EXPECT_EQ(raw_.get("hx:1:ai_assistant:conversation:n"), body);
  }
}

struct PathCase {
  std::string path;
  std::vector<int> allowed;  // acceptable statuses
};

// Hostile paths: every answer is a clear JSON error (or a plain success for
// paths that decode to a valid key), never a 500, never a crash, and nothing
// hostile stored.
TEST_F(HostileHttpTest, HostilePathsAreClearErrors) {
  const std::string long_key(3000, 'k');
  const std::vector<PathCase> cases = {
      {"/v1/kv/a%00b", {400}},
      {"/v1/kv/%00", {400}},
      {"/v1/conversations/a%00", {400}},
      {"/v1/ai-configs/%00%00", {400}},
      {"/v1/kv/a%0Ab", {400}},
      {"/v1/conversations/a%0D%0AFLUSHALL", {400}},
      {"/v1/conversations/a%20b", {400}},
      {"/v1/conversations/a%3Ab", {400}},
      {"/v1/conversations/a%2Ab", {400}},
      {"/v1/conversations/%7Btag%7D", {400}},
      {"/v1/ai-configs/%ff", {400}},
      {"/v1/ai-configs/%e4%b8", {400}},
      {"/v1/ai-configs/%c0%af", {400}},
      {"/v1/kv/%ed%a0%80", {400}},
      {"/v1/conversations/" + long_key, {414}},
      {"/v1/kv/" + long_key, {414}},
      {"/v1/ai-configs/" + std::string(2100, '%'), {400}},  // malformed escapes first
      {"/v1/tokens/wechat/" + long_key, {414}},
      {"/" + std::string(10'000, 'a'), {414}},
      {"/v1/kv/" + std::string(300, 'k'), {400}},            // under 2048, over 250
      {"/v1/conversations/" + std::string(129, 'c'), {400}},  // over the part limit
      {"/v1/conversations/", {400, 404}},
      {"/v1/kv/", {400, 404}},
      {"/v1/kv/%zz", {400, 404}},
      {"/v1/kv/%", {400, 404}},
      {"/v1/kv/%%", {400, 404}},
      {"/v1/kv/%4", {400, 404}},
      {"/v1/conversations/%zz", {400, 404}},
      {"/v1/../healthz", {404}},
      {"/v1/kv/../../etc/passwd", {404}},  // a valid generic key; nothing stored
      {"/v1/conversations/..", {404}},
      {"/v1/conversations/../x", {404}},
      {"/v1/conversations/a%2Fb", {404}},
      {"/v1/tokens/wechat%00/app", {400}},
      {"/v1/tokens/wechat/a%0Ab", {400}},
      {"/v1/tokens/we%3Achat/app", {400}},
      {"/v1/tokens/wechat/app%20x/refresh", {400}},
      {"/v1/tokens/wechat/app", {404}},  // no token manager
      {"/v1/tokens/%ff/app/invalidate", {400}},
  };
  auto client = Client();
  auto expect_clear = [](const testing::HttpTestResult& r, std::string_view method) {
    ASSERT_TRUE(r) << method << ": " << r.error();
    EXPECT_NE(r->status, 500) << method << ": " << r->body;
    if (r->status != 200) ExpectJsonError(r, method);
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(Show(c.path));
    const bool token_route = c.path.starts_with("/v1/tokens/");
    const bool token_action = token_route && (c.path.ends_with("/invalidate") ||
                                              c.path.ends_with("/refresh"));
    const bool refused = c.allowed == std::vector<int>{400} || c.allowed == std::vector<int>{414};
    // The route's own method answers as the case says.
    auto natural =
        token_action ? client.post(c.path, R"({"access_token":"t"})") : client.get(c.path);
    expect_clear(natural, "natural method");
    EXPECT_TRUE(std::find(c.allowed.begin(), c.allowed.end(), natural->status) !=
                c.allowed.end())
        << "status " << natural->status << ": " << natural->body;

    // Every other method: the same, or 405 where the route does not take it.
    auto get = client.get(c.path);
    auto del = client.del(c.path);
    auto put = client.put(c.path, R"({"x":1})");
    auto post = client.post(c.path, R"({"access_token":"t"})");
    expect_clear(get, "GET");
    expect_clear(del, "DELETE");
    expect_clear(put, "PUT");
    expect_clear(post, "POST");
    if (refused && !token_route) {
      // A hostile key is refused the same way whatever the method.
      EXPECT_EQ(get->status, c.allowed.front()) << get->body;
      EXPECT_EQ(del->status, c.allowed.front()) << del->body;
      EXPECT_EQ(put->status, c.allowed.front()) << put->body;
    }
  }
  // Only paths that decode to valid keys may have stored anything, and only
  // under their exact keys.
  for (const std::string& key : raw_.keys()) {
    EXPECT_TRUE(key == "hx:1:%zz" || key == "hx:1:%" || key == "hx:1:%%" || key == "hx:1:%4" ||
                key == "hx:1:../../etc/passwd" || key == "hx:1:ai_assistant:conversation:.." ||
                key == "hx:1:ai_assistant:conversation:../x" ||
                key == "hx:1:ai_assistant:conversation:a/b" ||
                key == "hx:1:ai_assistant:conversation:%zz")
        << Show(key);
  }
}

// "%2F" and "/" decode to the same logical key (one key, not a collision);
// a literal "%2F" in a key needs "%252F".
TEST_F(HostileHttpTest, PercentEncodingDecodesToOneLogicalKey) {
  auto client = Client();
  auto put = client.put("/v1/conversations/a%2Fb", "1");
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 200) << put->body;
  auto get = client.get("/v1/conversations/a/b");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->body, "1");
  put = client.put("/v1/conversations/a%252Fb", "2");
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 200) << put->body;
  EXPECT_EQ(raw_.keys(), (std::set<std::string>{"hx:1:ai_assistant:conversation:a/b",
                                                 "hx:1:ai_assistant:conversation:a%2Fb"}));
  put = client.put("/v1/conversations/%E7%94%A8%E6%88%B742", "3");
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 200) << put->body;
  EXPECT_EQ(raw_.get("hx:1:ai_assistant:conversation:用户42"), "3");
}

// Bytes that are not a request line the service takes: a 4xx (an unknown
// method is 405, a line over the head limit 431), never a crash.
TEST_F(HostileHttpTest, MalformedRequestLinesAre400) {
  using namespace std::string_literals;
  const std::string requests[] = {
      "GET /v1/kv/a\0b HTTP/1.1\r\nHost: x\r\n\r\n"s,
      "GET /v1/kv/a b HTTP/1.1\r\nHost: x\r\n\r\n"s,
      "GET /v1/kv/a\rb HTTP/1.1\r\nHost: x\r\n\r\n"s,
      "GET /v1/kv/\xff HTTP/1.1\r\nHost: localhost\r\n\r\n"s,
      "BREW /v1/kv/a HTTP/1.1\r\nHost: localhost\r\n\r\n"s,
      "GET " + std::string(100'000, 'a') + " HTTP/1.1\r\nHost: localhost\r\n\r\n",
  };
  for (const auto& request : requests) {
    const int status = RawRequest(request);
    EXPECT_TRUE(status == 400 || status == 404 || status == 405 || status == 414 ||
                status == 431 || status == 0)
        << Show(request) << " -> " << status;
    EXPECT_NE(status, 500);
  }
  EXPECT_EQ(raw_.keys(), std::set<std::string>{});
  auto ok = Client().get("/healthz");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

}  // namespace
}  // namespace aicache
