#include "server/worker_pool.h"

#include <pthread.h>

#include <exception>

#include "aicache/log.h"

namespace aicache::server {

WorkerPool::WorkerPool(std::string name, std::size_t threads, std::size_t max_queued)
    : max_queued_(max_queued == 0 ? 1 : max_queued) {
  if (threads == 0) threads = 1;
  if (name.size() > 15) name.resize(15);  // the kernel's limit for thread names
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { work(); });
    (void)pthread_setname_np(threads_.back().native_handle(), name.c_str());
  }
}

WorkerPool::~WorkerPool() { shutdown(); }

bool WorkerPool::try_submit(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || tasks_.size() >= max_queued_) return false;
    tasks_.push_back(std::move(task));
    queued_.store(tasks_.size(), std::memory_order_relaxed);
  }
  wake_.notify_one();
  return true;
}

void WorkerPool::shutdown() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void WorkerPool::work() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping, and nothing left to run
      task = std::move(tasks_.front());
      tasks_.pop_front();
      queued_.store(tasks_.size(), std::memory_order_relaxed);
    }
    busy_.fetch_add(1, std::memory_order_relaxed);
    // A task that throws must not take the thread (and the process) with it;
    // the tasks the service submits answer their request themselves.
    try {
      task();
    } catch (const std::exception& e) {
      log_message(LogLevel::kError, std::string("worker task failed: ") + e.what());
    } catch (...) {
      log_message(LogLevel::kError, "worker task failed with an unknown exception");
    }
    busy_.fetch_sub(1, std::memory_order_relaxed);
  }
}

}  // namespace aicache::server
