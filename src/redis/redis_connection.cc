#include "redis/redis_connection.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include <cerrno>
#include <string>

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

// hiredis writes with write(2), which raises SIGPIPE when the server has
// reset the connection; the default action kills the process. A library
// must not change the process's signal disposition, so SIGPIPE is blocked
// in the calling thread for the duration of the I/O, and one raised by it is
// consumed before the mask is restored (the recipe libpq uses).
class SigpipeGuard {
 public:
  SigpipeGuard() noexcept {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
  }
  ~SigpipeGuard() {
    if (!blocked_) return;
    const int saved_errno = errno;
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{};
        while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    errno = saved_errno;
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
  bool blocked_ = false;
};

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

  auto handshake = [&](std::span<const std::string_view> args) -> std::optional<RedisFailure> {
    auto reply = conn->command(args);
    if (!reply) {
      RedisFailure f = std::move(reply.error());
      if (f.kind == RedisFailure::Kind::kIo) f.kind = RedisFailure::Kind::kConnect;
      return f;
    }
    return std::nullopt;
  };
  if (!ep.user.empty() || !ep.password.empty()) {
    std::vector<std::string_view> auth{"AUTH"};
    if (!ep.user.empty()) auth.emplace_back(ep.user);
    auth.emplace_back(ep.password);
    if (auto f = handshake(auth)) return std::unexpected(std::move(*f));
  }
  if (ep.db != 0) {
    const std::string db = std::to_string(ep.db);
    const std::string_view select[] = {"SELECT", db};
    if (auto f = handshake(select)) return std::unexpected(std::move(*f));
  }
  return conn;
}

RedisResult<ReplyPtr> RedisConnection::command(std::span<const std::string_view> args) {
  if (broken_) {
    RedisFailure f;
    f.kind = RedisFailure::Kind::kIo;
    f.hiredis_err = REDIS_ERR_EOF;
    f.text = "connection already broken";
    return std::unexpected(std::move(f));
  }
  SigpipeGuard no_sigpipe;
  std::vector<const char*> argv;
  std::vector<std::size_t> argvlen;
  argv.reserve(args.size());
  argvlen.reserve(args.size());
  for (std::string_view a : args) {
    argv.push_back(a.data());
    argvlen.push_back(a.size());
  }
  errno = 0;
  void* raw =
      redisCommandArgv(context_.get(), static_cast<int>(argv.size()), argv.data(), argvlen.data());
  const int saved_errno = errno;
  ReplyPtr reply(static_cast<redisReply*>(raw));
  if (!reply) return std::unexpected(transport_failure(saved_errno));
  if (auto f = reply_failure(*reply)) return std::unexpected(std::move(*f));
  return reply;
}

RedisResult<std::vector<ReplyPtr>> RedisConnection::pipeline(std::span<const Command> commands) {
  std::vector<ReplyPtr> replies;
  if (commands.empty()) return replies;
  if (broken_) {
    RedisFailure f;
    f.kind = RedisFailure::Kind::kIo;
    f.hiredis_err = REDIS_ERR_EOF;
    f.text = "connection already broken";
    return std::unexpected(std::move(f));
  }
  std::vector<const char*> argv;
  std::vector<std::size_t> argvlen;
  for (const Command& cmd : commands) {
    argv.clear();
    argvlen.clear();
    for (std::string_view a : cmd) {
      argv.push_back(a.data());
      argvlen.push_back(a.size());
    }
    // Appending only formats into the output buffer; no I/O yet.
    if (redisAppendCommandArgv(context_.get(), static_cast<int>(argv.size()), argv.data(),
                               argvlen.data()) != REDIS_OK) {
      return std::unexpected(transport_failure(errno));
    }
  }
  SigpipeGuard no_sigpipe;
  replies.reserve(commands.size());
  for (std::size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    errno = 0;
    const int rc = redisGetReply(context_.get(), &raw);
    const int saved_errno = errno;
    ReplyPtr reply(static_cast<redisReply*>(raw));
    if (rc != REDIS_OK || !reply) return std::unexpected(transport_failure(saved_errno));
    replies.push_back(std::move(reply));
  }
  return replies;
}

}  // namespace aicache::redis
