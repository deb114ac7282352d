#include "aicache/json.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace aicache {
namespace {

TEST(JsonDocumentTest, DefaultIsNull) {
  JsonDocument doc;
  EXPECT_EQ(doc.text(), "null");
  EXPECT_TRUE(doc.value().is_null());
}

TEST(JsonDocumentTest, ParseKeepsTextExactly) {
  auto doc = JsonDocument::parse(R"({"a": [1, 2.5, "三"], "b": null})");
  ASSERT_TRUE(doc) << doc.error().message;
  EXPECT_EQ(doc->text(), R"({"a": [1, 2.5, "三"], "b": null})");
  EXPECT_EQ(doc->value()["a"][2], "三");
}

TEST(JsonDocumentTest, FromTreeSerialisesCompactly) {
  JsonDocument doc(nlohmann::json{{"role", "user"}, {"content", "你好"}});
  EXPECT_EQ(doc.text(), R"({"content":"你好","role":"user"})");
  EXPECT_EQ(doc.value()["role"], "user");
}

TEST(JsonDocumentTest, ScalarHelpers) {
  EXPECT_EQ(JsonDocument::integer(42).text(), "42");
  EXPECT_EQ(JsonDocument::integer(-7).text(), "-7");
  EXPECT_EQ(JsonDocument::string("a\"b").text(), R"("a\"b")");
}

TEST(JsonDocumentTest, RejectsMalformedTextWithPosition) {
  struct Case {
    const char* text;
  } cases[] = {{""}, {"{"}, {"{\"a\":}"}, {"[1,2"}, {"tru"}, {"{} {}"}, {"\"\xff\""}, {"NaN"}};
  for (const auto& c : cases) {
    auto doc = JsonDocument::parse(c.text);
    ASSERT_FALSE(doc) << c.text;
    EXPECT_EQ(doc.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(doc.error().message.find("JSON"), std::string::npos) << doc.error().message;
  }
}

TEST(JsonDocumentTest, RefusesDeepNesting) {
  std::string deep(10'000, '[');
  deep.append(10'000, ']');
  auto doc = JsonDocument::parse(deep);
  ASSERT_FALSE(doc);
  EXPECT_NE(doc.error().message.find("nested deeper than 512"), std::string::npos);

  std::string ok(100, '[');
  ok.append(100, ']');
  EXPECT_TRUE(JsonDocument::parse(ok));
}

TEST(JsonDocumentTest, RefusesTextOverTheSizeLimit) {
  auto doc = JsonDocument::parse("[1,2,3]", JsonLimits{.max_depth = 8, .max_bytes = 4});
  ASSERT_FALSE(doc);
  EXPECT_NE(doc.error().message.find("over the limit"), std::string::npos);
}

TEST(JsonDocumentTest, TrustedTextThatIsNotJsonIsDiscarded) {
  auto doc = JsonDocument::from_trusted_text("not json");
  EXPECT_TRUE(doc.value().is_discarded());
}

TEST(JsonDocumentTest, CopiesShareOneLazilyParsedTree) {
  auto doc = *JsonDocument::parse(R"({"n": 1})");
  std::vector<std::thread> threads;
  std::vector<const nlohmann::json*> seen(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i, copy = doc] { seen[i] = &copy.value(); });
  }
  for (auto& t : threads) t.join();
  for (auto* p : seen) EXPECT_EQ(p, &doc.value());
}

TEST(JsonDocumentTest, EqualityIsByText) {
  EXPECT_EQ(*JsonDocument::parse("[1]"), JsonDocument(nlohmann::json::array({1})));
  EXPECT_FALSE(*JsonDocument::parse("[1]") == *JsonDocument::parse("[ 1 ]"));
}

}  // namespace
}  // namespace aicache
