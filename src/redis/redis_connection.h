// One blocking connection to Redis: a socket of its own (TCP, TCP + TLS, or
// a unix socket), owned through RAII handles.
//
// A RedisConnection is used by one thread at a time (the pool hands it out).
// Once a transport error happened it is broken() and must be discarded: the
// protocol stream may be out of step (a late reply after a timeout).
//
// Commands are formatted here and sent with send(2) and MSG_NOSIGNAL, so a
// peer that went away is an EPIPE error, never a SIGPIPE; hiredis only
// parses the replies (its reader API: no redisContext). TLS goes through
// OpenSSL with memory BIOs: OpenSSL encrypts and decrypts, the socket I/O is
// still ours (MSG_NOSIGNAL, the timeouts, non-blocking peeks), since
// OpenSSL's socket BIO writes with write(2), which raises SIGPIPE.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/redis_store.h"
#include "redis/redis_errors.h"

struct redisReader;
struct redisReply;

namespace aicache::redis {

class TlsContext;
class Transport;

struct ReaderDeleter {
  void operator()(redisReader* r) const noexcept;
};
struct ReplyDeleter {
  void operator()(redisReply* r) const noexcept;
};
using ReaderPtr = std::unique_ptr<redisReader, ReaderDeleter>;
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

template <class T>
using RedisResult = std::expected<T, RedisFailure>;

// One command: its arguments, binary-safe.
using Command = std::vector<std::string_view>;

struct ConnectionOptions {
  RedisEndpoint endpoint;
  // Bounds the name lookup, the TCP connect and the TLS handshake together
  // (resolver.h: a lookup still running at the deadline is abandoned).
  std::chrono::milliseconds connect_timeout{1000};  // <= 0: none
  std::chrono::milliseconds socket_timeout{1000};   // <= 0: none
  // Required when endpoint.tls (tls_contexts_for() makes it). When set, the
  // connection is TLS even if endpoint.tls is not (a topology's discovered
  // nodes); never for a unix socket. Shared by every connection of a store.
  std::shared_ptr<const TlsContext> tls;
  // Sends READONLY after AUTH and SELECT: a Cluster replica then serves
  // reads of its master's slots instead of redirecting them (MOVED).
  bool read_only = false;
};

class RedisConnection {
 public:
  // Connects (every address the host resolves to, in turn, within the
  // connect timeout), completes the TLS handshake for a TLS endpoint
  // (certificate and host checked unless the context says not to), sets the
  // socket timeout, then AUTH, SELECT and READONLY as configured.
  static RedisResult<std::unique_ptr<RedisConnection>> open(const ConnectionOptions& options);

  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;
  ~RedisConnection();

  // Sends one command and reads its reply. An error reply is returned as a
  // RedisFailure of kind kReply (the connection stays usable).
  RedisResult<ReplyPtr> command(std::span<const std::string_view> args);

  // Sends all commands at once, reads one reply per command, then checks
  // every reply: the first error reply fails the call as a RedisFailure of
  // kind kReply, as command() does (every reply has been read, so the
  // connection stays usable). On success the replies are in command order.
  RedisResult<std::vector<ReplyPtr>> pipeline(std::span<const Command> commands);

  // pipeline() without judging the replies: error replies are returned as
  // replies (reply_failure() reads them); only a transport failure fails.
  RedisResult<std::vector<ReplyPtr>> pipeline_replies(std::span<const Command> commands);

  // pipeline_replies() in two halves, so that the pipelines of several
  // connections (a Cluster's masters) can be in flight at once:
  // send_pipeline() sends every command, read_pipeline() then reads `count`
  // replies (error replies returned as replies).
  RedisResult<void> send_pipeline(std::span<const Command> commands);
  RedisResult<std::vector<ReplyPtr>> read_pipeline(std::size_t count);

  // Sends one command without reading its reply (a subscribed connection's
  // PING: its answer comes back among the messages).
  RedisResult<void> send(std::span<const std::string_view> args);

  // The next reply or pushed message on a subscribed connection: one already
  // buffered, else waits up to `wait` for the socket (and for `wake_fd`, if
  // >= 0, to become readable). A null ReplyPtr when nothing came within
  // `wait` or wake_fd woke it. A transport failure (EOF, reset) breaks the
  // connection.
  RedisResult<ReplyPtr> next_message(std::chrono::milliseconds wait, int wake_fd = -1);

  // A subscribed connection's loop: hands every message (the PING's answer
  // included) to `on_message` until `stop` holds (checked after each wait;
  // wake_fd, if >= 0, cuts a wait short) or the connection is presumed
  // gone: a transport failure, or `ping_interval` of silence, a PING, and
  // as long again without any message. Returns then; the caller decides
  // whether to subscribe again.
  void listen(std::chrono::milliseconds ping_interval, int wake_fd, const std::atomic<bool>& stop,
              const std::function<void(const redisReply&)>& on_message);

  bool broken() const noexcept { return broken_; }

  // The near cache's bookkeeping: the tracking state (NearCache::state())
  // for which CLIENT TRACKING was last enabled on this connection; 0: never.
  // Only the thread holding the connection touches it.
  std::uint64_t tracking_state = 0;

  // Redis Cluster: while set, command() and the pipelines send ASKING before
  // each command (ASKING lets only the one command after it into a slot
  // being imported), and fail if the node refuses it. The holder sets it
  // for an ASK redirect and clears it before giving the connection back.
  bool asking = false;

  // True if the server closed its end while the connection sat idle (a
  // restart, an idle timeout): the connection is then marked broken. A
  // zero-timeout poll(), and over TLS, when something arrived, a
  // non-blocking read of it: TLS 1.3 servers send session tickets after the
  // handshake, which are no reason to drop the connection; anything else
  // (application data, an alert, EOF) is. Nothing can have been sent on the
  // connection yet, so even a non-idempotent command can safely go to
  // another connection.
  bool closed_by_peer() noexcept;

 private:
  RedisConnection(std::unique_ptr<Transport> transport, ReaderPtr reader);
  static RedisFailure broken_failure();
  // Marks the connection broken and passes the failure on, marked as before
  // the first reply if none came yet (for the message's hint).
  RedisFailure broken(RedisFailure failure) noexcept;
  // Sends out_ through the transport, then empties it.
  RedisResult<void> send_pending();
  // Reads one reply (of a command sent before); a transport failure breaks
  // the connection.
  RedisResult<ReplyPtr> read_reply();
  // A reply the reader already holds; null if none is complete yet.
  RedisResult<ReplyPtr> buffered_reply();
  // Appends `args` to out_, after ASKING when `asking` is set.
  void append_command(std::span<const std::string_view> args);
  // Reads the reply of a command sent by append_command().
  RedisResult<ReplyPtr> read_command_reply();

  std::unique_ptr<Transport> transport_;
  ReaderPtr reader_;
  std::string out_;  // commands in RESP, formatted here rather than by hiredis
  bool broken_ = false;
  bool replied_ = false;  // a reply came: failures are no longer "first reply" ones
};

// The failure an error reply stands for; nullopt if `reply` is not an error.
std::optional<RedisFailure> reply_failure(const redisReply& reply);

}  // namespace aicache::redis
