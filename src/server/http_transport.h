// The service's HTTP/1.1 transport: Boost.Beast's parser over Boost.Asio,
// event-driven, with the strict framing a service behind a reverse proxy
// needs. Beast types stay in http_transport.cc.
//
// Threads. A fixed number of I/O threads (default: one per core), each
// running its own event loop; every connection lives on one of them from
// accept to close. The number of threads never grows with connections: an
// idle keep-alive connection costs a socket, a timer and a small buffer.
// Handlers run on the I/O thread and must not block; the service hands
// anything that can block (a Redis call, a platform fetch) to a WorkerPool
// and answers from there (Responder may be called from any thread).
//
// Framing. The head is read first, within `max_head_bytes` (431 and close
// beyond), and its framing checked before any body byte is read; any doubt
// is a 400 and the connection is closed, because after a framing
// disagreement nothing that follows on the connection can be trusted to be
// the next request (request smuggling). Refused:
//   * Content-Length together with Transfer-Encoding;
//   * more than one Content-Length, or one that is not plain digits;
//   * a Transfer-Encoding other than exactly "chunked" (one field), or any
//     Transfer-Encoding on HTTP/1.0;
//   * a body (Content-Length > 0 or chunked) on GET, HEAD or OPTIONS;
//   * obsolete line folding; a missing or repeated Host on HTTP/1.1;
//   * a target that is not "/path[?query]" or has a malformed %-escape;
//   * anything Beast's parser refuses (malformed chunk sizes among them).
// A request with Content-Encoding is answered 415 and the connection closed
// (bodies are never decompressed). Header values are never decoded. The
// body limit counts the bytes on the wire after the head, chunked framing
// included: beyond it, 413 and close without reading the rest (a declared
// Content-Length over the limit is refused before any of it is read).
// "Expect: 100-continue" gets its interim answer once the head is accepted.
//
// Deadlines, on timers: the next request's first byte must come within
// `keep_alive_timeout`; the whole request within `request_timeout` of its
// first byte; a read that brings nothing for `io_timeout` ends the
// connection; the client must take the response within `request_timeout`.
// One timer per connection, re-armed only when a deadline passes, not per
// read. A request still incomplete a second after its first byte, arriving
// in small reads (a trickling client), is read every 250 ms by its I/O
// thread instead of byte by byte as it arrives (see kTrickleAfter in the
// .cc); its deadlines are the same.
//
// Capacity. At most `max_connections` are open; one more is answered 503
// and closed at once, never queued. Accept errors that pass (out of
// descriptors or memory, an aborted handshake) back off and accept again;
// any other ends serving, and wait() reports it so the process can exit
// and be restarted.
//
// Shutdown. stop() stops accepting, closes every connection that waits on
// its client (for a request, or inside one), lets the requests being
// handled finish and be answered (with "Connection: close"), then returns.
//
// Thread safety: start(), stop(), wait(), port() and stats() may be called
// from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "aicache/status.h"
#include "server/http_message.h"

namespace aicache::server {

struct TransportOptions {
  std::string host = "127.0.0.1";  // a name is resolved; the first address is bound
  std::uint16_t port = 0;          // 0: a free one
  // Refuse to serve unless the address actually bound is a loopback one
  // (so "localhost" pointing elsewhere cannot expose a token-less service).
  bool require_loopback = false;
  std::size_t io_threads = 0;  // 0: one per core
  std::size_t max_connections = 10'000;
  std::size_t max_head_bytes = 16 * 1024;  // request line and header fields
  std::size_t max_body_bytes = 1u << 20;   // on the wire
  std::chrono::milliseconds keep_alive_timeout{5'000};
  std::chrono::milliseconds io_timeout{5'000};
  std::chrono::milliseconds request_timeout{10'000};
};

struct TransportStats {
  std::atomic<std::uint64_t> accepted{0};    // connections accepted
  std::atomic<std::int64_t> open{0};         // connections open now
  std::atomic<std::uint64_t> over_capacity{0};  // answered 503 at max_connections
  std::atomic<std::uint64_t> timed_out{0};   // cut off at a deadline mid-request or response
  std::atomic<std::uint64_t> refused{0};     // requests refused for framing or limits
};

// Sends the answer to one request. Copies share the request: the first
// call answers it, later ones do nothing. Callable from any thread.
class Responder {
 public:
  class Sink {
   public:
    virtual void send(std::uint64_t request, HttpResponse response) = 0;

   protected:
    ~Sink() = default;
  };
  Responder(std::shared_ptr<Sink> sink, std::uint64_t request)
      : sink_(std::move(sink)), request_(request) {}
  void operator()(HttpResponse response) const { sink_->send(request_, std::move(response)); }

 private:
  std::shared_ptr<Sink> sink_;
  std::uint64_t request_;  // which request of the connection this answers
};

// What a request came to, for metrics and the access log. Views valid
// during the call only; method and path are empty when the request was
// refused before its head could be read.
struct AnsweredRequest {
  std::string_view method;
  std::string_view path;
  std::string_view remote;
  bool checked = false;  // check_head() saw it (every request it saw is answered once)
  int status = 0;
  double seconds = 0;  // from the complete head to the answer
};

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // Once the head is in and its framing is valid, before any body byte is
  // read: a response refuses the request (an unauthenticated client cannot
  // make the server read a body). `head.body` is empty. I/O thread; must
  // not block.
  virtual std::optional<HttpResponse> check_head(const HttpRequest& head) = 0;
  // The whole request. I/O thread; must not block: hand blocking work to a
  // worker and call `respond` from there.
  virtual void handle(HttpRequest request, Responder respond) = 0;
  // The response for a request the transport refuses itself (400, 413,
  // 415, 431, 503 at capacity).
  virtual HttpResponse refusal(int status, std::string_view code, std::string_view message) = 0;
  // After every answer, the transport's own refusals included. Any thread.
  virtual void answered(const AnsweredRequest& request) = 0;
};

// The limits set_limits() may change while serving (a configuration
// reload): each request uses the values current when it began.
struct ReloadableLimits {
  std::size_t max_body_bytes = 1u << 20;
  std::chrono::milliseconds request_timeout{10'000};
};

class HttpTransport {
 public:
  // `handler` must outlive the transport.
  static Result<std::unique_ptr<HttpTransport>> create(TransportOptions options,
                                                       RequestHandler& handler);
  virtual ~HttpTransport() = default;

  // Binds (SO_REUSEADDR only, backlog SOMAXCONN) and starts the I/O
  // threads. kUnavailable if the address cannot be bound; kConfig if
  // require_loopback and the bound address is not a loopback one.
  virtual Status start() = 0;
  virtual std::uint16_t port() const = 0;
  // The graceful stop described above. Idempotent.
  virtual void stop() = 0;
  // Blocks until stop() has run, or serving failed on its own (the error).
  virtual Status wait() = 0;
  virtual const TransportStats& stats() const = 0;
  virtual std::size_t io_threads() const = 0;
  // Replaces TransportOptions::max_body_bytes and request_timeout for the
  // requests that begin from now on (connections stay open). Any thread.
  // REQUIRES: both positive (as create() checks them).
  virtual void set_limits(ReloadableLimits limits) = 0;
};

}  // namespace aicache::server
