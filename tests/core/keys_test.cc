#include "aicache/keys.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace aicache {
namespace {

KeyMaker Maker(std::string_view prefix = "", std::int64_t version = 1) {
  auto maker = KeyMaker::create(prefix, version);
  EXPECT_TRUE(maker) << maker.error().message;
  return *maker;
}

TEST(KeyMakerTest, DjangoDefaultKeyFunction) {
  EXPECT_EQ(*Maker().make("greeting"), ":1:greeting");
  EXPECT_EQ(*Maker("blbs_erp").make("greeting"), "blbs_erp:1:greeting");
  EXPECT_EQ(*Maker("blbs_erp", 3).make("greeting"), "blbs_erp:3:greeting");
  EXPECT_EQ(Maker("blbs_erp").namespace_prefix(), "blbs_erp:1:");
}

TEST(KeyMakerTest, TypedKeyFormats) {
  auto keys = Maker("blbs_erp");
  EXPECT_EQ(*keys.access_token("wechat", "wx123"), "blbs_erp:1:ai_assistant:access_token:wechat:wx123");
  EXPECT_EQ(*keys.conversation("conv-42"), "blbs_erp:1:ai_assistant:conversation:conv-42");
  EXPECT_EQ(*keys.ai_config("1001"), "blbs_erp:1:ai_assistant:ai_config:1001");
}

TEST(KeyMakerTest, LogicalKeyOfStoredKey) {
  auto keys = Maker("p");
  EXPECT_EQ(keys.logical("p:1:abc"), "abc");
  EXPECT_EQ(keys.logical("q:1:abc"), std::nullopt);
}

TEST(KeyMakerTest, RejectsBadKeys) {
  auto keys = Maker();
  const std::string cases[] = {"", "has space", "tab\there", "nl\n", std::string("nul\0x", 5),
                               "del\x7f", std::string(249, 'k'), "bad\xff utf8", "\xc0\xaf"};
  for (const auto& key : cases) {
    auto stored = keys.make(key);
    ASSERT_FALSE(stored) << key;
    EXPECT_EQ(stored.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(KeyMakerTest, LengthLimitCountsThePrefix) {
  auto keys = Maker("blbs_erp");  // "blbs_erp:1:" is 11 bytes
  EXPECT_TRUE(keys.make(std::string(239, 'k')));
  auto too_long = keys.make(std::string(240, 'k'));
  ASSERT_FALSE(too_long);
  EXPECT_NE(too_long.error().message.find("at most 250"), std::string::npos);
}

TEST(KeyMakerTest, AcceptsUnicodeAndPunctuationInGenericKeys) {
  auto keys = Maker();
  EXPECT_TRUE(keys.make("用户:42:设置"));
  EXPECT_TRUE(keys.make("a:b*c{d}"));
}

TEST(KeyMakerTest, RejectsBadPrefixOrVersion) {
  EXPECT_FALSE(KeyMaker::create("has space"));
  EXPECT_FALSE(KeyMaker::create("ctl\x01"));
  EXPECT_FALSE(KeyMaker::create("p", -1));
  EXPECT_FALSE(KeyMaker::create(std::string(250, 'p')));
}

// Threat model, finding 5: prefix "a" with version 1 owns "a:1:*", which
// holds every key of prefix "a:1" (version 1: "a:1:1:*"), so clear() of one
// emptied the other. No prefix may contain the separator or widen the glob.
TEST(KeyMakerTest, RejectsPrefixesThatOverlapOrWidenTheirNamespace) {
  for (std::string_view prefix : {"a:1", ":", "a*", "a?", "a[", "a]", "a\\b"}) {
    SCOPED_TRACE(prefix);
    auto maker = KeyMaker::create(prefix, 1);
    ASSERT_FALSE(maker);
    EXPECT_EQ(maker.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(maker.error().message.find("key prefix contains"), std::string::npos);
    EXPECT_NE(maker.error().message.find("not allowed in a prefix"), std::string::npos);
  }
  EXPECT_NE(KeyMaker::create("a:1").error().message.find("':' at byte 1"), std::string::npos);
  // Django's usual prefixes stay valid.
  EXPECT_TRUE(KeyMaker::create("blbs_erp"));
  EXPECT_TRUE(KeyMaker::create("my-app.v2"));
}

TEST(ReservedKeyTest, TheTypedFamiliesAreReservedAndNothingElse) {
  EXPECT_EQ(key_family("ai_assistant:access_token:wechat:wx1"), KeyFamily::kAccessToken);
  EXPECT_EQ(key_family("ai_assistant:token_lease:wechat:wx1"), KeyFamily::kTokenState);
  EXPECT_EQ(key_family("ai_assistant:token_refreshed:wechat:wx1"), KeyFamily::kTokenState);
  EXPECT_EQ(key_family("ai_assistant:conversation:c"), KeyFamily::kConversation);
  EXPECT_EQ(key_family("ai_assistant:ai_config:u"), KeyFamily::kAiConfig);
  EXPECT_EQ(key_family("ai_assistant:"), KeyFamily::kReserved);
  for (std::string_view key : {"", "ai_assistant", "ai_assistantx:y", "x:ai_assistant:a",
                               "AI_ASSISTANT:access_token:a:b", " ai_assistant:x"}) {
    EXPECT_FALSE(is_reserved_key(key)) << key;
    EXPECT_TRUE(check_generic_write(key)) << key;
  }
  auto refused = check_generic_write("ai_assistant:access_token:wechat:wx1");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  // Every typed key a KeyMaker builds is reserved.
  const KeyMaker keys = Maker("p");
  for (const auto& stored : {*keys.access_token("wechat", "a"), *keys.conversation("c"),
                             *keys.ai_config("u")}) {
    EXPECT_TRUE(is_reserved_key(*keys.logical(stored))) << stored;
  }
}

TEST(KeyPartTest, RejectsSeparatorsGlobsAndControls) {
  const std::string bad[] = {"",       "a:b",    "a b",   "a*",    "a?",    "[a]",  "{tag}",
                             "a\\b",   "a\nb",   std::string("a\0b", 3), "\xff", "a\"b",
                             "a'b",    "a\xc2\xa0" "b",  "\xe3\x80\x80", std::string(129, 'x')};
  for (const auto& part : bad) {
    auto ok = validate_key_part(part, "app id");
    ASSERT_FALSE(ok) << part;
    EXPECT_EQ(ok.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(ok.error().message.rfind("app id", 0), 0u) << ok.error().message;
  }
}

TEST(KeyPartTest, AcceptsRealIdentifiers) {
  const std::string good[] = {"wx0123456789abcdef", "ww1234567890.1000002", "dingabcdef",
                              "user@example.com",   "会话-42",              std::string(128, 'x'),
                              "a/b+c=d"};
  for (const auto& part : good) EXPECT_TRUE(validate_key_part(part, "id")) << part;
}

TEST(KeyPartTest, DifferentPartsNeverBuildTheSameKey) {
  auto keys = Maker();
  const std::string parts[] = {"a", "b", "a.b", "ab", "a-b", "b.a", "x", "ab.x"};
  std::set<std::string> seen;
  int built = 0;
  for (const auto& channel : parts) {
    for (const auto& app : parts) {
      auto key = keys.access_token(channel, app);
      ASSERT_TRUE(key);
      seen.insert(*key);
      ++built;
    }
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(built));
}

TEST(KeyPartTest, ErrorsNameThePartAndPosition) {
  auto keys = Maker();
  auto key = keys.access_token("wechat", "wx:1");
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().message.substr(0, 24), "app id contains ':' at b");
}

}  // namespace
}  // namespace aicache
