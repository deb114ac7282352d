#include "aicache/testing/manual_clock.h"
#include "aicache/ttl.h"

#include <gtest/gtest.h>

#include "aicache/clock.h"

namespace aicache {
namespace {

using namespace std::chrono_literals;

TEST(TtlTest, KindsAreDistinct) {
  EXPECT_TRUE(Ttl::use_default().is_default());
  EXPECT_TRUE(Ttl::never().is_never());
  EXPECT_EQ(Ttl(5s).kind(), Ttl::Kind::kDuration);
  EXPECT_EQ(Ttl(5s).duration(), 5000ms);
}

TEST(TtlTest, ZeroAndNegativeDurationsRemove) {
  EXPECT_TRUE(Ttl(0s).removes());
  EXPECT_TRUE(Ttl(-3s).removes());
  EXPECT_FALSE(Ttl(1ms).removes());
  EXPECT_FALSE(Ttl::never().removes());
  EXPECT_FALSE(Ttl::use_default().removes());
}

TEST(TtlTest, SubMillisecondDurationsRoundUpNeverToZero) {
  EXPECT_EQ(Ttl(1ns).duration(), 1ms);
  EXPECT_EQ(Ttl(1500us).duration(), 2ms);
  EXPECT_FALSE(Ttl(1ns).removes());
}

TEST(TtlTest, OrDefaultReplacesOnlyDefault) {
  EXPECT_EQ(Ttl::use_default().or_default(7s), Ttl(7s));
  EXPECT_EQ(Ttl::never().or_default(7s), Ttl::never());
  EXPECT_EQ(Ttl(3s).or_default(7s), Ttl(3s));
}

TEST(TtlTest, PrintsReadably) {
  EXPECT_EQ(Ttl::use_default().to_string(), "default");
  EXPECT_EQ(Ttl::never().to_string(), "never");
  EXPECT_EQ(Ttl(300s).to_string(), "300s");
  EXPECT_EQ(Ttl(1500ms).to_string(), "1500ms");
}

TEST(ManualClockTest, MovesOnlyWhenAdvancedAndNeverBack) {
  ManualClock clock;
  const auto start = clock.now();
  EXPECT_EQ(clock.now(), start);
  clock.advance(5s);
  EXPECT_EQ(clock.now() - start, 5s);
  clock.advance(-10s);
  EXPECT_EQ(clock.now() - start, 5s);
}

}  // namespace
}  // namespace aicache
