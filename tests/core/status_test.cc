#include "aicache/status.h"

#include <gtest/gtest.h>

#include "aicache/store.h"
#include "aicache/ttl.h"

namespace aicache {
namespace {

TEST(StatusTest, ErrorCodesHaveStableNames) {
  EXPECT_EQ(to_string(ErrorCode::kInvalidArgument), "invalid_argument");
  EXPECT_EQ(to_string(ErrorCode::kUnavailable), "unavailable");
  EXPECT_EQ(to_string(ErrorCode::kResourceExhausted), "resource_exhausted");
  EXPECT_EQ((Error{ErrorCode::kConfig, "bad port"}.to_string()), "config: bad port");
}

TEST(StatusTest, MakeErrorBuildsAnUnexpectedValue) {
  Result<int> r = make_error(ErrorCode::kTimeout, "too slow");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kTimeout);
  EXPECT_EQ(r.error().message, "too slow");
}

TEST(StatusTest, FormatsBytesAsRedisDoes) {
  EXPECT_EQ(format_bytes_human(0), "0B");
  EXPECT_EQ(format_bytes_human(1023), "1023B");
  EXPECT_EQ(format_bytes_human(1024), "1.00K");
  EXPECT_EQ(format_bytes_human(1536), "1.50K");
  EXPECT_EQ(format_bytes_human(1289748), "1.23M");
  EXPECT_EQ(format_bytes_human(3ull << 30), "3.00G");
}

}  // namespace
}  // namespace aicache
