// ShardMutex: the lock of one memory-store shard. Spins briefly, then sleeps
// in the kernel (a futex, through std::atomic::wait).
//
// Why not std::mutex: critical sections here are a few hundred nanoseconds at
// most, far shorter than a sleep and wake-up, so a short spin keeps a thread
// that meets a busy shard from paying for a context switch; and the state is
// one 32-bit word, so a shard's lock shares its cache line with its data.
//
// Meets BasicLockable (use it with std::lock_guard). Not recursive, not fair.
#pragma once

#include <atomic>
#include <cstdint>

namespace aicache::memory {

class ShardMutex {
 public:
  ShardMutex() = default;
  ShardMutex(const ShardMutex&) = delete;
  ShardMutex& operator=(const ShardMutex&) = delete;

  void lock() noexcept {
    std::uint32_t seen = kUnlocked;
    if (state_.compare_exchange_strong(seen, kLocked, std::memory_order_acquire)) return;
    for (int i = 0; i < kSpins; ++i) {
      cpu_relax();
      seen = state_.load(std::memory_order_relaxed);
      if (seen == kUnlocked &&
          state_.compare_exchange_weak(seen, kLocked, std::memory_order_acquire)) {
        return;
      }
    }
    // Announce a sleeper; whoever unlocks kContended wakes one.
    while (state_.exchange(kContended, std::memory_order_acquire) != kUnlocked) {
      state_.wait(kContended, std::memory_order_relaxed);
    }
  }

  void unlock() noexcept {
    if (state_.exchange(kUnlocked, std::memory_order_release) == kContended) state_.notify_one();
  }

 private:
  static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  static constexpr std::uint32_t kUnlocked = 0;
  static constexpr std::uint32_t kLocked = 1;     // no thread sleeping
  static constexpr std::uint32_t kContended = 2;  // a thread may be sleeping
  static constexpr int kSpins = 64;               // ~1-2 us of pause, then sleep
  std::atomic<std::uint32_t> state_{kUnlocked};
};

}  // namespace aicache::memory
