// usable_cpus(): the affinity mask, not the machine (src/core/cpus.h).
#include "core/cpus.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <thread>

namespace aicache::internal {
namespace {

TEST(UsableCpus, FollowsTheAffinityMaskNotTheMachine) {
  EXPECT_GE(usable_cpus(), 1u);
  // Affinity is per thread and inherited: a thread pinned to one CPU is what
  // `taskset -c 0 aicache serve` makes of every thread.
  std::size_t pinned = 0;
  bool pinned_ok = false;
  std::thread([&] {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    pinned_ok = sched_setaffinity(0, sizeof(set), &set) == 0;
    pinned = usable_cpus();
  }).join();
  ASSERT_TRUE(pinned_ok);
  EXPECT_EQ(pinned, 1u);
}

}  // namespace
}  // namespace aicache::internal
