// A fixed number of threads for the service's calls that can block (a
// Redis round trip, a platform token fetch), so that they never run on an
// I/O thread: however long they take, the I/O threads keep accepting,
// reading and answering everything else.
//
// The queue is bounded: when it is full, try_submit() refuses at once and
// the caller answers 503, rather than holding requests (and their bodies)
// in memory without limit while the store is down.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace aicache::server {

class WorkerPool {
 public:
  // Starts `threads` threads (at least one). `name` names them (for tools
  // such as top -H; at most 15 characters are kept).
  WorkerPool(std::string name, std::size_t threads, std::size_t max_queued);
  ~WorkerPool();  // shutdown()
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`; false (and `task` is dropped) if max_queued tasks are
  // waiting already, or after shutdown().
  bool try_submit(std::function<void()> task);

  // Refuses new tasks, runs those queued, joins the threads. Idempotent.
  void shutdown();

  std::size_t threads() const noexcept { return threads_.size(); }
  std::size_t queued() const noexcept { return queued_.load(std::memory_order_relaxed); }
  std::size_t busy() const noexcept { return busy_.load(std::memory_order_relaxed); }

 private:
  void work();

  const std::size_t max_queued_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;  // guarded by mutex_
  bool stopping_ = false;                    // guarded by mutex_
  std::atomic<std::size_t> queued_{0};
  std::atomic<std::size_t> busy_{0};
  std::vector<std::thread> threads_;
};

}  // namespace aicache::server
