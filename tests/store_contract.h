// The Store contract, written once and run against every Store.
//
// A backend joins by instantiating the suite with a StoreUnderTest:
//
//   INSTANTIATE_TEST_SUITE_P(Memory, StoreContract,
//                            ::testing::Values(MemoryStoreUnderTest()),
//                            StoreUnderTestName);
//
// Tests that need time to pass run only where the store's TTLs follow the
// injected ManualClock (clock_driven); for the others (Redis keeps its own
// time) they check what can be checked without waiting: the TTL reported.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "aicache/clock.h"
#include "aicache/store.h"
#include "aicache/testing/manual_clock.h"

namespace aicache::testing {

struct StoreUnderTest {
  std::string name;
  // A fresh store whose default TTL is 300 s. Keys the tests use all start
  // with `key_prefix`; the store must hold none of them when made.
  std::function<std::shared_ptr<Store>(std::shared_ptr<const Clock> clock)> make;
  bool clock_driven = false;
  std::string key_prefix = "contract:";
};

// Names the backend in test output instead of dumping the struct's bytes.
inline void PrintTo(const StoreUnderTest& store, std::ostream* os) { *os << store.name; }

inline std::string StoreUnderTestName(const ::testing::TestParamInfo<StoreUnderTest>& info) {
  return info.param.name;
}

class StoreContract : public ::testing::TestWithParam<StoreUnderTest> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // `name` under the store's test prefix.
  std::string key(const std::string& name) const { return GetParam().key_prefix + name; }
  // Moves time forward; only for clock_driven stores.
  void advance(std::chrono::milliseconds d) { clock_->advance(d); }
  bool clock_driven() const { return GetParam().clock_driven; }

  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<Store> store_;
};

}  // namespace aicache::testing
