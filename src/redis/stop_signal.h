// StopSignal: how the Redis store's background threads (the near cache's
// tracker, the Sentinel watcher) are told to stop. stop() sets the flag and
// wakes, through an eventfd, a thread sleeping in pause() or waiting in
// RedisConnection::listen() (which takes fd() and flag()).
//
// Thread safety: stop(), stopped() and pause() may be called from any
// thread. The owner joins its thread before the signal is destroyed.
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace aicache::redis {

class StopSignal {
 public:
  StopSignal() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~StopSignal() {
    if (fd_ >= 0) ::close(fd_);
  }
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  void stop() noexcept {
    flag_.store(true);
    if (fd_ >= 0) {
      const std::uint64_t one = 1;
      [[maybe_unused]] const ssize_t n = ::write(fd_, &one, sizeof one);
    }
  }
  bool stopped() const noexcept { return flag_.load(); }

  // Sleeps up to `d` unless stopped; false if stopped.
  bool pause(std::chrono::milliseconds d) const {
    if (stopped()) return false;
    pollfd p{};
    p.fd = fd_;
    p.events = POLLIN;
    ::poll(&p, 1, static_cast<int>(d.count()));
    return !stopped();
  }

  int fd() const noexcept { return fd_; }
  const std::atomic<bool>& flag() const noexcept { return flag_; }

 private:
  const int fd_;  // -1 if no eventfd could be made: waits then run to their timeout
  std::atomic<bool> flag_{false};
};

}  // namespace aicache::redis
