#include "aicache/lookup.h"

#include <gtest/gtest.h>

#include <string>

#include "aicache/status.h"

namespace aicache {
namespace {

Lookup<std::string> Hit() { return std::string("v"); }
Lookup<std::string> Miss() { return std::nullopt; }
Lookup<std::string> Failure() { return make_error(ErrorCode::kUnavailable, "down"); }

TEST(LookupTest, AHitIsTrueAndHoldsItsValue) {
  auto l = Hit();
  ASSERT_TRUE(l);
  EXPECT_TRUE(l.hit());
  EXPECT_FALSE(l.miss());
  EXPECT_FALSE(l.failed());
  EXPECT_EQ(*l, "v");
  EXPECT_EQ(l->size(), 1u);
  EXPECT_EQ(l, "v");
  EXPECT_NE(l, std::nullopt);
  EXPECT_EQ(std::move(l).value_or("fallback"), "v");
}

TEST(LookupTest, AMissIsFalseButNotAnError) {
  auto l = Miss();
  EXPECT_FALSE(l);
  EXPECT_TRUE(l.miss());
  EXPECT_FALSE(l.failed());
  EXPECT_EQ(l, std::nullopt);
  EXPECT_NE(l, "v");
  EXPECT_EQ(l.value_or("fallback"), "fallback");
  EXPECT_TRUE(l.status());
  ASSERT_TRUE(l.result());
  EXPECT_FALSE(l.result()->has_value());
}

TEST(LookupTest, AnErrorIsNeitherHitNorMissAndCarriesTheError) {
  auto l = Failure();
  EXPECT_FALSE(l);
  EXPECT_FALSE(l.miss());
  EXPECT_TRUE(l.failed());
  EXPECT_NE(l, std::nullopt);
  EXPECT_EQ(l.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(l.value_or("fallback"), "fallback");
  ASSERT_FALSE(l.status());
  EXPECT_EQ(l.status().error().message, "down");
  EXPECT_EQ(std::move(l).error().message, "down");
}

// So `EXPECT_TRUE(x) << x.error().to_string()` is safe on a miss.
TEST(LookupTest, TheErrorOfALookupThatDidNotFailIsDefined) {
  EXPECT_EQ(Miss().error().code, ErrorCode::kInternal);
  EXPECT_FALSE(Hit().error().message.empty());
}

TEST(LookupTest, ConvertsFromTheStoreInterfacesResult) {
  Result<std::optional<std::string>> hit = std::optional<std::string>("x");
  Result<std::optional<std::string>> miss = std::optional<std::string>();
  Result<std::optional<std::string>> error = make_error(ErrorCode::kTimeout, "slow");
  EXPECT_EQ(Lookup<std::string>(hit), "x");
  EXPECT_TRUE(Lookup<std::string>(miss).miss());
  EXPECT_EQ(Lookup<std::string>(error).error().code, ErrorCode::kTimeout);
}

}  // namespace
}  // namespace aicache
