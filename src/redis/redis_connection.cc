#include "redis/redis_connection.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <charconv>
#include <string>
#include <system_error>

#include "core/try.h"

namespace aicache::redis {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

RedisFailure context_failure(RedisFailure::Kind kind, const redisContext* c, int saved_errno) {
  RedisFailure f;
  f.kind = kind;
  if (c == nullptr) {
    f.hiredis_err = REDIS_ERR_OOM;
    f.text = "cannot allocate a hiredis context";
    return f;
  }
  f.hiredis_err = c->err;
  f.sys_errno = saved_errno;
  f.text = c->errstr;
  return f;
}

// Appends one command in the Redis protocol (RESP): "*<argc>\r\n", then
// "$<len>\r\n<bytes>\r\n" per argument. Binary-safe.
void append_resp(std::string& out, std::span<const std::string_view> args) {
  std::size_t bytes = 16;
  for (std::string_view a : args) bytes += a.size() + 16;
  out.reserve(out.size() + bytes);
  char digits[24];
  auto header = [&](char tag, std::size_t n) {
    out.push_back(tag);
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
    out.append(digits, end);
    out.append("\r\n", 2);
  };
  header('*', args.size());
  for (std::string_view a : args) {
    header('$', a.size());
    out.append(a.data(), a.size());
    out.append("\r\n", 2);
  }
}

// A send buffer that grew for a large value is not kept for the life of a
// pooled connection.
constexpr std::size_t kKeptBufferBytes = 64 * 1024;

}  // namespace

void ContextDeleter::operator()(redisContext* c) const noexcept { redisFree(c); }
void ReplyDeleter::operator()(redisReply* r) const noexcept { freeReplyObject(r); }

std::optional<RedisFailure> reply_failure(const redisReply& reply) {
  if (reply.type != REDIS_REPLY_ERROR) return std::nullopt;
  RedisFailure f;
  f.kind = RedisFailure::Kind::kReply;
  f.text.assign(reply.str, reply.len);
  return f;
}

RedisConnection::RedisConnection(ContextPtr context) : context_(std::move(context)) {}
RedisConnection::~RedisConnection() = default;

RedisFailure RedisConnection::transport_failure(int saved_errno) {
  broken_ = true;
  return context_failure(RedisFailure::Kind::kIo, context_.get(), saved_errno);
}

bool RedisConnection::closed_by_peer() noexcept {
  if (broken_) return true;
  pollfd p{};
  p.fd = context_->fd;
  p.events = POLLIN | POLLRDHUP;
  // An idle connection has nothing to read: readable means EOF or a reset
  // (or stray data, equally unusable).
  if (::poll(&p, 1, 0) != 0) broken_ = true;
  return broken_;
}

RedisResult<std::unique_ptr<RedisConnection>> RedisConnection::open(
    const ConnectionOptions& options) {
  const RedisEndpoint& ep = options.endpoint;
  const bool with_timeout = options.connect_timeout.count() > 0;
  const timeval ctv = to_timeval(options.connect_timeout);
  errno = 0;
  redisContext* raw = nullptr;
  if (!ep.unix_socket.empty()) {
    raw = with_timeout ? redisConnectUnixWithTimeout(ep.unix_socket.c_str(), ctv)
                       : redisConnectUnix(ep.unix_socket.c_str());
  } else {
    raw = with_timeout ? redisConnectWithTimeout(ep.host.c_str(), ep.port, ctv)
                       : redisConnect(ep.host.c_str(), ep.port);
  }
  const int saved_errno = errno;
  ContextPtr context(raw);
  if (!context || context->err != 0) {
    return std::unexpected(
        context_failure(RedisFailure::Kind::kConnect, context.get(), saved_errno));
  }
  if (options.socket_timeout.count() > 0 &&
      redisSetTimeout(context.get(), to_timeval(options.socket_timeout)) != REDIS_OK) {
    return std::unexpected(context_failure(RedisFailure::Kind::kConnect, context.get(), errno));
  }
  std::unique_ptr<RedisConnection> conn(new RedisConnection(std::move(context)));

  // A transport failure during the handshake is a failure to connect.
  auto handshake = [&](std::span<const std::string_view> args) -> RedisResult<void> {
    auto reply = conn->command(args);
    if (reply) return {};
    RedisFailure f = std::move(reply.error());
    if (f.kind == RedisFailure::Kind::kIo) f.kind = RedisFailure::Kind::kConnect;
    return std::unexpected(std::move(f));
  };
  if (!ep.user.empty() || !ep.password.empty()) {
    std::vector<std::string_view> auth{"AUTH"};
    if (!ep.user.empty()) auth.emplace_back(ep.user);
    auth.emplace_back(ep.password);
    AICACHE_TRY(handshake(auth));
  }
  if (ep.db != 0) {
    const std::string db = std::to_string(ep.db);
    const std::string_view select[] = {"SELECT", db};
    AICACHE_TRY(handshake(select));
  }
  return conn;
}

RedisFailure RedisConnection::broken_failure() {
  RedisFailure f;
  f.kind = RedisFailure::Kind::kIo;
  f.hiredis_err = REDIS_ERR_EOF;
  f.text = "connection already broken";
  return f;
}

// hiredis 0.14 sends with write(2), which raises SIGPIPE when the server has
// reset the connection, and the default action of SIGPIPE kills the process.
// A library must not change the process's signal disposition, and juggling
// the thread's signal mask around every command costs four system calls. So
// the command is written here with send(2) and MSG_NOSIGNAL, which reports
// EPIPE as an error and raises nothing; hiredis then only reads (read(2)
// never raises SIGPIPE). Its output buffer stays empty, so redisGetReply()
// writes nothing itself.
RedisResult<void> RedisConnection::send_pending() {
  const char* p = out_.data();
  std::size_t left = out_.size();
  while (left > 0) {
    const ssize_t n = ::send(context_->fd, p, left, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      // EAGAIN after SO_SNDTIMEO (the socket timeout), EPIPE, ECONNRESET:
      // as hiredis reports a failed write, REDIS_ERR_IO with errno.
      const int saved_errno = errno;
      broken_ = true;
      out_.clear();
      RedisFailure f;
      f.kind = RedisFailure::Kind::kIo;
      f.hiredis_err = REDIS_ERR_IO;
      f.sys_errno = saved_errno;
      f.text = std::error_code(saved_errno, std::generic_category()).message();
      return std::unexpected(std::move(f));
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  out_.clear();
  if (out_.capacity() > kKeptBufferBytes) std::string().swap(out_);
  return {};
}

void RedisConnection::append_command(std::span<const std::string_view> args) {
  if (asking) {
    constexpr std::string_view kAsking[] = {"ASKING"};
    append_resp(out_, kAsking);
  }
  append_resp(out_, args);
}

RedisResult<ReplyPtr> RedisConnection::read_command_reply() {
  if (asking) {
    // Read in any case, so that the stream stays in step; then judged.
    AICACHE_ASSIGN_OR_RETURN(ReplyPtr asked, read_reply());
    auto refused = reply_failure(*asked);
    AICACHE_ASSIGN_OR_RETURN(ReplyPtr reply, read_reply());
    if (refused) return std::unexpected(std::move(*refused));
    return reply;
  }
  return read_reply();
}

RedisResult<ReplyPtr> RedisConnection::command(std::span<const std::string_view> args) {
  if (broken_) return std::unexpected(broken_failure());
  append_command(args);
  AICACHE_TRY(send_pending());
  AICACHE_ASSIGN_OR_RETURN(ReplyPtr reply, read_command_reply());
  if (auto f = reply_failure(*reply)) return std::unexpected(std::move(*f));
  return reply;
}

RedisResult<void> RedisConnection::send(std::span<const std::string_view> args) {
  if (broken_) return std::unexpected(broken_failure());
  append_resp(out_, args);
  return send_pending();
}

RedisResult<ReplyPtr> RedisConnection::next_message(std::chrono::milliseconds wait, int wake_fd) {
  if (broken_) return std::unexpected(broken_failure());
  void* raw = nullptr;
  // A reply hiredis already read from the socket along with an earlier one.
  if (redisGetReplyFromReader(context_.get(), &raw) != REDIS_OK) {
    return std::unexpected(transport_failure(0));
  }
  if (raw != nullptr) return ReplyPtr(static_cast<redisReply*>(raw));
  pollfd fds[2]{};
  fds[0].fd = context_->fd;
  fds[0].events = POLLIN;
  fds[1].fd = wake_fd;
  fds[1].events = POLLIN;
  const int nfds = wake_fd >= 0 ? 2 : 1;
  int n = 0;
  do {
    n = ::poll(fds, static_cast<nfds_t>(nfds), static_cast<int>(wait.count()));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return std::unexpected(transport_failure(errno));
  if (n == 0 || (fds[0].revents == 0)) return ReplyPtr();
  errno = 0;
  // Readable: one read(2) of what is there (it does not block), then parse.
  if (redisBufferRead(context_.get()) != REDIS_OK) return std::unexpected(transport_failure(errno));
  if (redisGetReplyFromReader(context_.get(), &raw) != REDIS_OK) {
    return std::unexpected(transport_failure(0));
  }
  return ReplyPtr(static_cast<redisReply*>(raw));  // null: a partial message so far
}

RedisResult<ReplyPtr> RedisConnection::read_reply() {
  void* raw = nullptr;
  errno = 0;
  const int rc = redisGetReply(context_.get(), &raw);
  const int saved_errno = errno;
  ReplyPtr reply(static_cast<redisReply*>(raw));
  if (rc != REDIS_OK || !reply) return std::unexpected(transport_failure(saved_errno));
  return reply;
}

RedisResult<std::vector<ReplyPtr>> RedisConnection::pipeline(std::span<const Command> commands) {
  AICACHE_ASSIGN_OR_RETURN(std::vector<ReplyPtr> replies, pipeline_replies(commands));
  for (const ReplyPtr& reply : replies) {
    if (auto f = reply_failure(*reply)) return std::unexpected(std::move(*f));
  }
  return replies;
}

RedisResult<std::vector<ReplyPtr>> RedisConnection::pipeline_replies(
    std::span<const Command> commands) {
  if (commands.empty()) return std::vector<ReplyPtr>();
  AICACHE_TRY(send_pipeline(commands));
  return read_pipeline(commands.size());
}

RedisResult<void> RedisConnection::send_pipeline(std::span<const Command> commands) {
  if (broken_) return std::unexpected(broken_failure());
  for (const Command& cmd : commands) append_command(cmd);
  return send_pending();
}

RedisResult<std::vector<ReplyPtr>> RedisConnection::read_pipeline(std::size_t count) {
  std::vector<ReplyPtr> replies;
  replies.reserve(count);
  // Every reply is read before any is judged, so an error reply leaves the
  // connection in step.
  std::optional<RedisFailure> refused;
  for (std::size_t i = 0; i < count; ++i) {
    auto reply = read_command_reply();
    if (!reply) {
      if (reply.error().kind != RedisFailure::Kind::kReply) return std::unexpected(reply.error());
      if (!refused) refused = std::move(reply.error());  // ASKING refused
      continue;
    }
    replies.push_back(std::move(*reply));
  }
  if (refused) return std::unexpected(std::move(*refused));
  return replies;
}

}  // namespace aicache::redis
