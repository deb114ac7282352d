#include "server/connections.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "aicache/log.h"

namespace aicache::server {
namespace {

using SteadyClock = std::chrono::steady_clock;

// --- One connection's byte stream -----------------------------------------------------

// httplib::Stream over a connected socket, with deadlines. Reads are buffered
// (httplib reads a request head one byte at a time); writes are gathered so
// that a response's head and body leave in one send, and flushed before any
// read (a "100 Continue" must reach the client before its body is awaited)
// and after each request.
//
// Not thread-safe: one worker thread serves the connection.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int fd, int interrupt_fd, const std::atomic<bool>& interrupted,
                   const ConnectionLimits& limits)
      : fd_(fd), interrupt_fd_(interrupt_fd), interrupted_(interrupted), limits_(limits) {}

  // Waits up to the keep-alive timeout for the next request's first byte and
  // starts its deadline. False: the client left or stayed silent, or the
  // server is shutting down.
  bool await_request() {
    if (interrupted_.load(std::memory_order_acquire)) return false;
    // Silence here is an idle keep-alive connection ending, not a timeout.
    if (in_begin_ == in_end_ &&
        wait(POLLIN, SteadyClock::now() + limits_.keep_alive_timeout) != Wait::kReady) {
      return false;
    }
    read_deadline_ = SteadyClock::now() + limits_.request_timeout;
    writing_ = false;
    return true;
  }

  // Sends what write() gathered. False if the client did not take it in time.
  bool flush() {
    if (out_.empty()) return true;
    const bool sent = send_all(out_.data(), out_.size());
    out_.clear();
    return sent;
  }

  // Whether a deadline or the no-progress timeout ended the connection.
  bool timed_out() const { return timed_out_; }

  // Whether a read or write failed (timeout, error, interrupt). httplib may
  // still answer such a request (400 for a head cut short), but the bytes
  // that follow on the connection are not a request: it must close.
  bool broken() const { return broken_; }

  bool is_readable() const override {
    return in_begin_ < in_end_ || wait_for_progress(POLLIN, read_deadline_) == Wait::kReady;
  }

  bool is_writable() const override {
    return wait_for_progress(POLLOUT, write_deadline_) == Wait::kReady;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (!flush()) return -1;
    if (in_begin_ == in_end_) {
      const ssize_t got = receive(in_.data(), in_.size());
      if (got <= 0) return got;
      in_begin_ = 0;
      in_end_ = static_cast<std::size_t>(got);
    }
    const std::size_t n = std::min(size, in_end_ - in_begin_);
    std::memcpy(ptr, in_.data() + in_begin_, n);
    in_begin_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!writing_) {
      writing_ = true;
      write_deadline_ = SteadyClock::now() + limits_.request_timeout;
    }
    if (out_.size() + size <= kGatherBytes) {
      out_.append(ptr, size);
      return static_cast<ssize_t>(size);
    }
    if (!flush() || !send_all(ptr, size)) return -1;
    return static_cast<ssize_t>(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      describe(address, ip, port);
    }
  }

  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      describe(address, ip, port);
    }
  }

  socket_t socket() const override { return fd_; }

 private:
  static constexpr std::size_t kGatherBytes = 64 * 1024;
  enum class Wait { kReady, kTimedOut, kInterrupted, kFailed };

  static void describe(const sockaddr_storage& address, std::string& ip, int& port) {
    char text[INET6_ADDRSTRLEN] = {};
    if (address.ss_family == AF_INET) {
      const auto& v4 = reinterpret_cast<const sockaddr_in&>(address);
      ::inet_ntop(AF_INET, &v4.sin_addr, text, sizeof(text));
      port = ntohs(v4.sin_port);
    } else if (address.ss_family == AF_INET6) {
      const auto& v6 = reinterpret_cast<const sockaddr_in6&>(address);
      ::inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof(text));
      port = ntohs(v6.sin6_port);
    }
    ip = text;
  }

  // Waits for `events` on the socket until `until`. Reads also end when
  // interrupted; writes are let finish (a response being sent is part of a
  // graceful stop).
  Wait wait(short events, SteadyClock::time_point until) const {
    for (;;) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - SteadyClock::now());
      if (left.count() <= 0) return Wait::kTimedOut;
      std::array<pollfd, 2> fds{pollfd{fd_, events, 0}, pollfd{interrupt_fd_, POLLIN, 0}};
      const nfds_t count = (events & POLLIN) != 0 ? 2 : 1;
      const int ready = ::poll(fds.data(), count, static_cast<int>(left.count()));
      if (ready < 0) {
        if (errno == EINTR) continue;
        return Wait::kFailed;
      }
      if (count == 2 && fds[1].revents != 0) return Wait::kInterrupted;
      if (fds[0].revents != 0) return Wait::kReady;  // errors and hang-ups show in the next call
    }
  }

  // Inside a request or response: until its deadline, and no longer than
  // the no-progress timeout from now. Running out ends the connection.
  Wait wait_for_progress(short events, SteadyClock::time_point deadline) const {
    const Wait result = wait(events, std::min(deadline, SteadyClock::now() + limits_.io_timeout));
    if (result == Wait::kTimedOut) timed_out_ = true;
    return result;
  }

  // recv() into `buffer`: bytes, 0 when the client closed, -1 on error,
  // timeout or interrupt.
  ssize_t receive(char* buffer, std::size_t size) {
    for (;;) {
      // Also when bytes keep coming: a deadline is a deadline.
      if (SteadyClock::now() >= read_deadline_) {
        timed_out_ = true;
        return fail();
      }
      const ssize_t got = ::recv(fd_, buffer, size, MSG_DONTWAIT);
      if (got > 0) return got;
      if (got == 0) return fail(0);
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return fail();
      if (wait_for_progress(POLLIN, read_deadline_) != Wait::kReady) return fail();
    }
  }

  ssize_t fail(ssize_t result = -1) {
    broken_ = true;
    return result;
  }

  bool send_all(const char* data, std::size_t size) {
    while (size > 0) {
      const ssize_t sent = ::send(fd_, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent >= 0) {
        data += sent;
        size -= static_cast<std::size_t>(sent);
        continue;
      }
      if (errno == EINTR) continue;
      if ((errno != EAGAIN && errno != EWOULDBLOCK) ||
          wait_for_progress(POLLOUT, write_deadline_) != Wait::kReady) {
        broken_ = true;
        return false;
      }
    }
    return true;
  }

  const int fd_;
  const int interrupt_fd_;
  const std::atomic<bool>& interrupted_;  // set with interrupt_fd_, read without a syscall
  const ConnectionLimits& limits_;
  std::array<char, 4096> in_{};
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
  std::string out_;
  bool writing_ = false;
  SteadyClock::time_point read_deadline_{};
  SteadyClock::time_point write_deadline_{};
  mutable bool timed_out_ = false;
  bool broken_ = false;
};

}  // namespace

// --- Workers ---------------------------------------------------------------------------

ConnectionWorkers::ConnectionWorkers(const ConnectionLimits& limits, ConnectionStats& stats)
    : ready_threads_(std::min(limits.ready_threads, limits.max_connections)),
      max_threads_(limits.max_connections),
      idle_exit_(limits.idle_thread_exit),
      stats_(stats) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < ready_threads_; ++i) start_thread_locked();
}

ConnectionWorkers::~ConnectionWorkers() { shutdown(); }

void ConnectionWorkers::enqueue(std::function<void()> task) {
  std::vector<std::thread> exited;  // joined outside the lock
  {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
    stats_.waiting.fetch_add(1, std::memory_order_relaxed);
    if (tasks_.size() > idle_ && running_.size() < max_threads_) start_thread_locked();
    exited.swap(exited_);
  }
  wake_.notify_one();
  for (std::thread& thread : exited) thread.join();
}

void ConnectionWorkers::shutdown() {
  {
    std::lock_guard lock(mutex_);
    shutting_down_ = true;
  }
  wake_.notify_all();
  for (;;) {
    std::unordered_map<std::thread::id, std::thread> running;
    {
      std::lock_guard lock(mutex_);
      running.swap(running_);
    }
    if (running.empty()) break;
    for (auto& [id, thread] : running) thread.join();
  }
  join_exited();
}

void ConnectionWorkers::start_thread_locked() {
  std::thread thread;
  try {
    thread = std::thread([this] { work(); });
  } catch (const std::system_error& e) {
    // Out of threads (a pids limit, no memory for a stack): this runs on
    // httplib's accept loop, which must not die of it. The task waits for a
    // running thread instead; the first failure is said once.
    if (!thread_start_failed_) {
      thread_start_failed_ = true;
      log_message(LogLevel::kWarning,
                  fmt::format("cannot start a connection thread ({}); connections wait for "
                              "the {} running ones",
                              e.what(), running_.size()));
    }
    return;
  }
  const auto id = thread.get_id();
  running_.emplace(id, std::move(thread));
  stats_.threads.fetch_add(1, std::memory_order_relaxed);
}

void ConnectionWorkers::join_exited() {
  std::vector<std::thread> exited;
  {
    std::lock_guard lock(mutex_);
    exited.swap(exited_);
  }
  for (std::thread& thread : exited) thread.join();
}

void ConnectionWorkers::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    const bool woken = wake_.wait_for(lock, idle_exit_,
                                      [this] { return !tasks_.empty() || shutting_down_; });
    --idle_;
    if (tasks_.empty()) {
      // Shutting down, or idle for long while more than the ready threads run.
      if (shutting_down_ || (!woken && running_.size() > ready_threads_)) break;
      continue;
    }
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    stats_.waiting.fetch_sub(1, std::memory_order_relaxed);
    lock.unlock();
    task();
    lock.lock();
  }
  // Hand this thread's handle to whoever joins next; shutdown() may have
  // taken it already.
  stats_.threads.fetch_sub(1, std::memory_order_relaxed);
  if (auto self = running_.find(std::this_thread::get_id()); self != running_.end()) {
    exited_.push_back(std::move(self->second));
    running_.erase(self);
  }
}

// --- Listener --------------------------------------------------------------------------

Listener::Listener(const ConnectionLimits& limits, ConnectionStats& stats)
    : limits_(limits), stats_(stats), interrupt_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

Listener::~Listener() {
  if (interrupt_fd_ >= 0) ::close(interrupt_fd_);
}

void Listener::interrupt() {
  interrupted_.store(true, std::memory_order_release);
  const std::uint64_t one = 1;
  // Never read: the eventfd stays readable.
  [[maybe_unused]] const auto written = ::write(interrupt_fd_, &one, sizeof(one));
}

bool Listener::process_and_close_socket(socket_t sock) {
  stats_.accepted.fetch_add(1, std::memory_order_relaxed);
  stats_.open.fetch_add(1, std::memory_order_relaxed);
  ConnectionStream stream(sock, interrupt_fd_, interrupted_, limits_);
  bool served = true;
  for (std::size_t n = 1; n <= limits_.max_requests_per_connection; ++n) {
    if (!stream.await_request()) break;
    bool closed_by_client = false;
    served = process_request(stream, n == limits_.max_requests_per_connection, closed_by_client,
                             nullptr);
    if (!stream.flush() || !served || closed_by_client || stream.broken()) break;
  }
  if (stream.timed_out()) stats_.timed_out.fetch_add(1, std::memory_order_relaxed);
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  stats_.open.fetch_sub(1, std::memory_order_relaxed);
  return served;
}

}  // namespace aicache::server
