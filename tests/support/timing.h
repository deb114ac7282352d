// Wall-clock bounds in tests.
//
// A test that asserts how long something took (a call bounded by its
// timeouts, a recovery within a second) states the bound it means plus a
// slack for a busy machine. Sanitizers make the code several times slower,
// so the slack is multiplied by kTimingScale in sanitizer builds
// (AICACHE_SANITIZED, set by tests/CMakeLists.txt from AICACHE_SANITIZE).
// Configured timeouts are not scaled: they are what is being checked.
//
// Such tests are registered with the `timing` label and RUN_SERIAL
// (aicache_add_test's TIMING argument), so `ctest -j` never runs them beside
// tests that take every CPU.
#pragma once

#include <chrono>

namespace aicache::testing {

#if defined(AICACHE_SANITIZED)
inline constexpr int kTimingScale = 4;
#else
inline constexpr int kTimingScale = 1;
#endif

// `slack` as this build needs it.
template <class Rep, class Period>
constexpr std::chrono::duration<Rep, Period> scaled(std::chrono::duration<Rep, Period> slack) {
  return slack * kTimingScale;
}

}  // namespace aicache::testing
