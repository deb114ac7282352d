// Per-call latencies in a Google Benchmark run, reported as p50 / p99
// counters ("p50_<suffix>", "p99_<suffix>") in `Unit`s when the object goes
// out of scope. Keeps at most 2^20 samples. Not thread-safe: one per thread.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace aicache::bench {

template <class Unit>
class Latencies {
 public:
  using Clock = std::chrono::steady_clock;

  Latencies(benchmark::State& state, std::string suffix)
      : state_(state), suffix_(std::move(suffix)) {
    samples_.reserve(1 << 20);
  }
  ~Latencies() {
    if (samples_.empty()) return;
    std::sort(samples_.begin(), samples_.end());
    auto at = [&](double q) {
      return samples_[std::min(samples_.size() - 1, static_cast<std::size_t>(q * samples_.size()))];
    };
    state_.counters["p50_" + suffix_] = at(0.50);
    state_.counters["p99_" + suffix_] = at(0.99);
  }
  Latencies(const Latencies&) = delete;
  Latencies& operator=(const Latencies&) = delete;

  void add(Clock::duration took) {
    if (samples_.size() < samples_.capacity()) {
      samples_.push_back(std::chrono::duration<double, Unit>(took).count());
    }
  }
  template <class Fn>
  void time(Fn&& fn) {
    const auto start = Clock::now();
    fn();
    add(Clock::now() - start);
  }

 private:
  benchmark::State& state_;
  std::string suffix_;
  std::vector<double> samples_;
};

}  // namespace aicache::bench
