#include "aicache/clock.h"

namespace aicache {
namespace {

class RealClock final : public Clock {
 public:
  TimePoint now() const noexcept override { return std::chrono::steady_clock::now(); }
  WallTimePoint wall_now() const noexcept override { return std::chrono::system_clock::now(); }
};

}  // namespace

std::shared_ptr<const Clock> Clock::real() {
  static const auto clock = std::make_shared<const RealClock>();
  return clock;
}

}  // namespace aicache
