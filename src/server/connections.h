// How the service holds its connections. cpp-httplib parses requests and
// writes responses; the connection lifecycle is ours, because httplib 0.11's
// own (a fixed pool of worker threads, one per connection, and only a
// per-read timeout) lets a few dozen clients that trickle their request one
// byte at a time hold every worker, so nobody else is answered (measured:
// with 200 such clients /healthz got no answer within 30 s).
//
//   * ConnectionWorkers gives every open connection its own thread, started
//     on demand up to a cap; a few are kept ready and idle ones exit. Beyond
//     the cap, or when no thread can be started (a pids limit, no address
//     space), connections wait in arrival order for a running thread.
//   * Listener serves each connection's keep-alive loop with a deadline per
//     request: the request (line, headers and body) must arrive within
//     `request_timeout` of its first byte, and the client must take the
//     response within `request_timeout` too. A client that trickles bytes
//     is cut off at the deadline, so no client holds a thread for longer
//     than keep_alive_timeout + 2 x request_timeout plus the handler's own time.
//   * Listener::interrupt() wakes every connection waiting on a client at
//     once, so shutting down never waits for slow clients; requests being
//     handled finish and are answered.
//
// Memory is bounded: a connection costs a thread (its stack is reserved,
// only touched pages are resident), a 4 KiB read buffer and the request
// itself, whose head httplib caps at 8 KiB and whose body the server caps
// at max_body_bytes.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <httplib.h>

namespace aicache::server {

struct ConnectionLimits {
  std::size_t ready_threads = 16;     // kept running while idle
  std::size_t max_connections = 1024;  // served at once; more wait for a thread
  std::chrono::milliseconds idle_thread_exit{60'000};
  std::chrono::milliseconds keep_alive_timeout{5'000};  // between requests
  std::chrono::milliseconds io_timeout{5'000};          // no progress on a read or write
  std::chrono::milliseconds request_timeout{10'000};    // a whole request, a whole response
  std::size_t max_requests_per_connection = 1000;
};

// Figures of the connections, shared by the workers, the listener and the
// statistics routes (which outlive neither).
struct ConnectionStats {
  std::atomic<std::uint64_t> accepted{0};   // connections handed to a worker
  std::atomic<std::int64_t> open{0};        // connections being served
  std::atomic<std::int64_t> waiting{0};     // accepted, waiting for a thread
  std::atomic<std::int64_t> threads{0};     // worker threads running
  std::atomic<std::uint64_t> timed_out{0};  // cut off at a deadline or for no progress
};

// A task queue for httplib: a thread per task (a task serves one connection
// to its end), started on demand up to `max_threads`.
class ConnectionWorkers final : public httplib::TaskQueue {
 public:
  ConnectionWorkers(const ConnectionLimits& limits, ConnectionStats& stats);
  ~ConnectionWorkers() override;

  void enqueue(std::function<void()> task) override;
  // Runs every queued task, then joins every thread.
  void shutdown() override;

 private:
  void work();
  void start_thread_locked();
  void join_exited();

  const std::size_t ready_threads_;
  const std::size_t max_threads_;
  const std::chrono::milliseconds idle_exit_;
  ConnectionStats& stats_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;                     // guarded by mutex_
  std::unordered_map<std::thread::id, std::thread> running_;  // guarded by mutex_
  std::vector<std::thread> exited_;                             // guarded by mutex_
  std::size_t idle_ = 0;                                        // guarded by mutex_
  bool shutting_down_ = false;                                  // guarded by mutex_
  bool thread_start_failed_ = false;                            // guarded by mutex_
};

// httplib::Server with the connection loop above. Set new_task_queue to
// make ConnectionWorkers with the same limits and stats.
class Listener final : public httplib::Server {
 public:
  Listener(const ConnectionLimits& limits, ConnectionStats& stats);
  ~Listener() override;

  // Closes every connection that waits on its client (for a request, or
  // inside one) and every one that would wait later. Call before stop().
  void interrupt();

 private:
  // Called by httplib on a worker thread for each accepted socket.
  bool process_and_close_socket(socket_t sock) override;

  const ConnectionLimits limits_;
  ConnectionStats& stats_;
  // An eventfd that becomes readable, for good, when interrupted; every
  // wait on a client polls it too.
  int interrupt_fd_ = -1;
  std::atomic<bool> interrupted_{false};  // the same, for checks between requests
};

}  // namespace aicache::server
