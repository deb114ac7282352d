#include "redis/redis_connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>

#include "core/try.h"
#include "redis/redis_tls.h"
#include "redis/resolver.h"

namespace aicache::redis {
namespace {

using Clock = std::chrono::steady_clock;
using Kind = RedisFailure::Kind;

// Bytes read from the socket at a time (a TLS record's maximum plaintext).
constexpr std::size_t kReadChunk = 16 * 1024;

// A send buffer that grew for a large value is not kept for the life of a
// pooled connection.
constexpr std::size_t kKeptBufferBytes = 64 * 1024;

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

// The poll() timeout left until `deadline`; -1 (none) without one.
int poll_timeout(std::optional<Clock::time_point> deadline) {
  if (!deadline) return -1;
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

// Waits for `events` on fd until `deadline`: false on a timeout (errno
// ETIMEDOUT) or a poll() failure (errno set).
bool wait_for(int fd, short events, std::optional<Clock::time_point> deadline) {
  pollfd p{};
  p.fd = fd;
  p.events = events;
  for (;;) {
    const int n = ::poll(&p, 1, poll_timeout(deadline));
    if (n > 0) return true;
    if (n == 0) {
      errno = ETIMEDOUT;
      return false;
    }
    if (errno != EINTR) return false;
  }
}

class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

// Starts a non-blocking connect to `addr` and waits for it until `deadline`.
RedisResult<Fd> connect_to(const sockaddr* addr, socklen_t len, int family,
                           std::optional<Clock::time_point> deadline) {
  Fd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return std::unexpected(io_failure(Kind::kConnect, errno));
  if (::connect(fd.get(), addr, len) == 0) return fd;
  if (errno != EINPROGRESS) return std::unexpected(io_failure(Kind::kConnect, errno));
  if (!wait_for(fd.get(), POLLOUT, deadline)) {
    return std::unexpected(io_failure(Kind::kConnect, errno));
  }
  int error = 0;
  socklen_t error_len = sizeof error;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &error_len) != 0) error = errno;
  if (error != 0) return std::unexpected(io_failure(Kind::kConnect, error));
  return fd;
}

// A connected socket to the endpoint: the unix socket, or each address the
// host resolves to (IPv4 and IPv6) in turn until one accepts, all within the
// deadline, the name lookup included (`timeout` made it; for the message).
RedisResult<Fd> connect_socket(const RedisEndpoint& ep, std::optional<Clock::time_point> deadline,
                               std::chrono::milliseconds timeout) {
  if (!ep.unix_socket.empty()) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (ep.unix_socket.size() >= sizeof addr.sun_path) {
      return std::unexpected(io_failure(Kind::kConnect, ENAMETOOLONG));
    }
    std::memcpy(addr.sun_path, ep.unix_socket.data(), ep.unix_socket.size());
    return connect_to(reinterpret_cast<const sockaddr*>(&addr), sizeof addr, AF_UNIX, deadline);
  }
  AICACHE_ASSIGN_OR_RETURN(const AddrInfoPtr addresses,
                           resolve(ep.host, ep.port, deadline, timeout));
  RedisFailure last = io_failure(Kind::kConnect, EADDRNOTAVAIL);
  for (const addrinfo* a = addresses.get(); a != nullptr; a = a->ai_next) {
    auto fd = connect_to(a->ai_addr, a->ai_addrlen, a->ai_family, deadline);
    if (fd) {
      const int one = 1;
      ::setsockopt(fd->get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    last = std::move(fd.error());
    if (deadline && Clock::now() >= *deadline) break;
  }
  return std::unexpected(std::move(last));
}

// Writes all of `data` with send(2) and MSG_NOSIGNAL: a peer that went away
// is EPIPE, never a SIGPIPE (whose default action kills the process, and a
// library must not change the process's signal disposition). A blocking
// socket with SO_SNDTIMEO: EAGAIN is the socket timeout.
RedisResult<void> send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(io_failure(Kind::kIo, errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

// Reads what the socket has, waiting (SO_RCVTIMEO) unless `nowait`: the byte
// count; 0 only for nowait with nothing there.
RedisResult<std::size_t> recv_some(int fd, char* buf, std::size_t cap, bool nowait) {
  for (;;) {
    const ssize_t n = ::recv(fd, buf, cap, nowait ? MSG_DONTWAIT : 0);
    if (n > 0) return static_cast<std::size_t>(n);
    if (n == 0) return std::unexpected(eof_failure(Kind::kIo));
    if (errno == EINTR) continue;
    if (nowait && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return std::unexpected(io_failure(Kind::kIo, errno));
  }
}

// OpenSSL reads the thread's error queue to classify a failed call, so it
// must be empty before each call. ERR_clear_error() walks every slot of the
// queue (OpenSSL 3.0), which showed as the client's costliest OpenSSL
// function per GET; peeking first is cheap, and the queue is nearly always
// empty already.
void clear_openssl_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

bool is_ip_address(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

// The byte stream under the RESP reader: plain, or TLS.
class Transport {
 public:
  explicit Transport(Fd fd) : fd_(std::move(fd)) {}
  virtual ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  int fd() const noexcept { return fd_.get(); }
  // Writes all of `data`, waiting up to the socket timeout.
  virtual RedisResult<void> write(std::string_view data) = 0;
  // Reads some of the stream (at least one byte), waiting up to the socket
  // timeout.
  virtual RedisResult<std::size_t> read(char* buf, std::size_t cap) = 0;
  // Reads what has arrived without waiting: 0 when nothing of the stream
  // has (over TLS: only part of a record, or records that carry no data).
  virtual RedisResult<std::size_t> read_nowait(char* buf, std::size_t cap) = 0;
  // True when bytes are already in this process (poll() cannot see them).
  virtual bool has_buffered() const noexcept = 0;
  virtual bool tls() const noexcept = 0;

 protected:
  Fd fd_;
};

namespace {

class PlainTransport final : public Transport {
 public:
  using Transport::Transport;
  RedisResult<void> write(std::string_view data) override { return send_all(fd(), data); }
  RedisResult<std::size_t> read(char* buf, std::size_t cap) override {
    return recv_some(fd(), buf, cap, false);
  }
  RedisResult<std::size_t> read_nowait(char* buf, std::size_t cap) override {
    return recv_some(fd(), buf, cap, true);
  }
  bool has_buffered() const noexcept override { return false; }
  bool tls() const noexcept override { return false; }
};

struct SslDeleter {
  void operator()(SSL* s) const noexcept { SSL_free(s); }
};

// OpenSSL over two memory BIOs: SSL_write encrypts into wbio_, which is sent
// with send_all(); received bytes go into rbio_ for SSL_read. OpenSSL never
// touches the socket, so the socket's rules stay ours (MSG_NOSIGNAL, the
// timeouts, MSG_DONTWAIT for the non-blocking reads).
class TlsTransport final : public Transport {
 public:
  TlsTransport(Fd fd, std::unique_ptr<SSL, SslDeleter> ssl, BIO* rbio, BIO* wbio)
      : Transport(std::move(fd)), ssl_(std::move(ssl)), rbio_(rbio), wbio_(wbio) {}

  // The client's side of the handshake, within the deadline.
  RedisResult<void> handshake(std::optional<Clock::time_point> deadline) {
    for (;;) {
      clear_openssl_errors();
      const int rc = SSL_do_handshake(ssl_.get());
      // Sent even when the handshake failed: the alert tells the server why.
      auto flushed = flush();
      if (rc == 1) return flushed;
      if (SSL_get_error(ssl_.get(), rc) != SSL_ERROR_WANT_READ) {
        return std::unexpected(tls_failure(Kind::kConnect, ssl_.get(), rc));
      }
      if (!flushed) return std::unexpected(in_handshake(std::move(flushed.error())));
      if (!wait_for(fd(), POLLIN, deadline)) {
        return std::unexpected(in_handshake(io_failure(Kind::kConnect, errno)));
      }
      if (auto filled = fill(true); !filled) {
        return std::unexpected(in_handshake(std::move(filled.error())));
      }
    }
  }

  RedisResult<void> write(std::string_view data) override {
    if (!data.empty()) {
      clear_openssl_errors();
      std::size_t written = 0;
      // Memory BIOs grow: the whole write is encrypted at once.
      const int rc = SSL_write_ex(ssl_.get(), data.data(), data.size(), &written);
      if (rc != 1) return std::unexpected(tls_failure(Kind::kIo, ssl_.get(), rc));
    }
    return flush();
  }

  RedisResult<std::size_t> read(char* buf, std::size_t cap) override {
    return read_tls(buf, cap, false);
  }
  RedisResult<std::size_t> read_nowait(char* buf, std::size_t cap) override {
    return read_tls(buf, cap, true);
  }
  bool tls() const noexcept override { return true; }
  bool has_buffered() const noexcept override {
    return SSL_pending(ssl_.get()) > 0 || BIO_ctrl_pending(rbio_) > 0;
  }

 private:
  RedisResult<std::size_t> read_tls(char* buf, std::size_t cap, bool nowait) {
    // Nothing at hand (the usual case: the reply is not in yet): to the
    // socket at once, rather than through a failing SSL_read first.
    if (!has_buffered()) {
      AICACHE_ASSIGN_OR_RETURN(const std::size_t got, fill(nowait));
      if (got == 0) return 0;
    }
    for (;;) {
      clear_openssl_errors();
      std::size_t n = 0;
      const int rc = SSL_read_ex(ssl_.get(), buf, cap, &n);
      if (rc == 1) return n;
      if (SSL_get_error(ssl_.get(), rc) != SSL_ERROR_WANT_READ) {
        return std::unexpected(tls_failure(Kind::kIo, ssl_.get(), rc));
      }
      // A record OpenSSL answers (a key update) may be waiting to go out.
      AICACHE_TRY(flush());
      AICACHE_ASSIGN_OR_RETURN(const std::size_t got, fill(nowait));
      if (got == 0) return 0;
    }
  }

  static RedisFailure in_handshake(RedisFailure f) {
    f.kind = Kind::kConnect;
    f.stage = RedisFailure::Stage::kTlsHandshake;
    return f;
  }

  // Moves what the socket has into rbio_ (waiting unless `nowait`).
  RedisResult<std::size_t> fill(bool nowait) {
    char chunk[kReadChunk];
    AICACHE_ASSIGN_OR_RETURN(const std::size_t n, recv_some(fd(), chunk, sizeof chunk, nowait));
    if (n > 0 && BIO_write(rbio_, chunk, static_cast<int>(n)) != static_cast<int>(n)) {
      return std::unexpected(io_failure(Kind::kIo, ENOMEM));
    }
    return n;
  }

  // Sends what OpenSSL wrote into wbio_.
  RedisResult<void> flush() {
    const std::size_t pending = BIO_ctrl_pending(wbio_);
    if (pending == 0) return {};
    out_.resize(pending);
    const int n = BIO_read(wbio_, out_.data(), static_cast<int>(pending));
    auto sent = send_all(fd(), std::string_view(out_.data(), n > 0 ? static_cast<std::size_t>(n) : 0));
    out_.clear();
    if (out_.capacity() > kKeptBufferBytes) std::string().swap(out_);
    return sent;
  }

  std::unique_ptr<SSL, SslDeleter> ssl_;
  BIO* rbio_;  // owned by ssl_
  BIO* wbio_;  // owned by ssl_
  std::string out_;
};

// The TLS session over a connected socket, its handshake done; the
// certificate checked as the context says, against `host` (or the context's
// server name), with SNI for a name (not for an IP address).
RedisResult<std::unique_ptr<Transport>> start_tls(Fd fd, const TlsContext& ctx,
                                                  const std::string& host,
                                                  std::optional<Clock::time_point> deadline) {
  ERR_clear_error();
  std::unique_ptr<SSL, SslDeleter> ssl(SSL_new(ctx.get()));
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  if (!ssl || rbio == nullptr || wbio == nullptr) {
    BIO_free(rbio);
    BIO_free(wbio);
    return std::unexpected(io_failure(Kind::kConnect, ENOMEM));
  }
  // An empty read BIO means "more to come", not EOF: EOF is the socket's.
  BIO_set_mem_eof_return(rbio, -1);
  SSL_set_bio(ssl.get(), rbio, wbio);
  SSL_set_connect_state(ssl.get());
  const std::string& name = ctx.server_name().empty() ? host : ctx.server_name();
  const bool ip = is_ip_address(name);
  bool ok = true;
  if (ctx.verify()) {
    ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), name.c_str()) == 1
            : SSL_set1_host(ssl.get(), name.c_str()) == 1;
  }
  if (ok && !ip && !name.empty()) {
    // SSL_set_tlsext_host_name(), without the macro's C cast.
    ok = SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                  const_cast<char*>(name.c_str())) == 1;
  }
  if (!ok) return std::unexpected(tls_failure(Kind::kConnect, ssl.get(), -1));
  auto transport = std::make_unique<TlsTransport>(std::move(fd), std::move(ssl), rbio, wbio);
  AICACHE_TRY(transport->handshake(deadline));
  return std::unique_ptr<Transport>(std::move(transport));
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

}  // namespace

void ReaderDeleter::operator()(redisReader* r) const noexcept { redisReaderFree(r); }
void ReplyDeleter::operator()(redisReply* r) const noexcept { freeReplyObject(r); }

std::optional<RedisFailure> reply_failure(const redisReply& reply) {
  if (reply.type != REDIS_REPLY_ERROR) return std::nullopt;
  RedisFailure f;
  f.kind = RedisFailure::Kind::kReply;
  f.text.assign(reply.str, reply.len);
  return f;
}

RedisConnection::RedisConnection(std::unique_ptr<Transport> transport, ReaderPtr reader)
    : transport_(std::move(transport)), reader_(std::move(reader)) {}
RedisConnection::~RedisConnection() = default;

RedisFailure RedisConnection::broken(RedisFailure failure) noexcept {
  broken_ = true;
  if (!replied_ && failure.stage == RedisFailure::Stage::kEstablished) {
    failure.stage = transport_->tls() ? RedisFailure::Stage::kFirstReplyTls
                                      : RedisFailure::Stage::kFirstReplyPlain;
  }
  return failure;
}

bool RedisConnection::closed_by_peer() noexcept {
  if (broken_) return true;
  char buf[kReadChunk];
  // Over TLS, received bytes (a record after the handshake's) may already
  // be in the process, where poll() cannot see them.
  if (transport_->has_buffered()) {
    auto got = transport_->read_nowait(buf, sizeof buf);
    if (!got || *got > 0) return broken_ = true;  // stray data, an alert
  }
  pollfd p{};
  p.fd = transport_->fd();
  p.events = POLLIN | POLLRDHUP;
  if (::poll(&p, 1, 0) == 0) return false;
  if ((p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0) return broken_ = true;
  // Readable: EOF, a reset or stray data (all unusable) on a plain
  // connection; over TLS possibly only session tickets, which read_nowait()
  // consumes and reports as no data.
  auto got = transport_->read_nowait(buf, sizeof buf);
  if (!got || *got > 0) broken_ = true;
  return broken_;
}

RedisResult<std::unique_ptr<RedisConnection>> RedisConnection::open(
    const ConnectionOptions& options) {
  const RedisEndpoint& ep = options.endpoint;
  std::optional<Clock::time_point> deadline;
  if (options.connect_timeout.count() > 0) deadline = Clock::now() + options.connect_timeout;
  AICACHE_ASSIGN_OR_RETURN(Fd fd, connect_socket(ep, deadline, options.connect_timeout));
  // Blocking from here, each read and write bounded by the socket timeout;
  // the TLS handshake waits with poll() against the connect deadline.
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) < 0) {
    return std::unexpected(io_failure(Kind::kConnect, errno));
  }
  if (options.socket_timeout.count() > 0) {
    const timeval tv = to_timeval(options.socket_timeout);
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
      return std::unexpected(io_failure(Kind::kConnect, errno));
    }
  }
  std::unique_ptr<Transport> transport;
  // A TLS context makes every connection TLS, whatever the endpoint says: a
  // topology's discovered nodes (endpoints made from a server's answer) are
  // never reached in clear by a TLS store.
  if (ep.unix_socket.empty() && (ep.tls || options.tls)) {
    if (!options.tls) {
      RedisFailure f;
      f.kind = Kind::kConnect;
      f.hiredis_err = REDIS_ERR_OTHER;
      f.text = "rediss:// without a TLS context";
      return std::unexpected(std::move(f));
    }
    AICACHE_ASSIGN_OR_RETURN(transport, start_tls(std::move(fd), *options.tls, ep.host, deadline));
  } else {
    transport = std::make_unique<PlainTransport>(std::move(fd));
  }
  ReaderPtr reader(redisReaderCreate());
  if (!reader) return std::unexpected(io_failure(Kind::kConnect, ENOMEM));
  std::unique_ptr<RedisConnection> conn(new RedisConnection(std::move(transport), std::move(reader)));

  // A transport failure during the handshake is a failure to connect.
  auto handshake = [&](std::span<const std::string_view> args) -> RedisResult<void> {
    auto reply = conn->command(args);
    if (reply) return {};
    RedisFailure f = std::move(reply.error());
    if (f.kind == Kind::kIo) f.kind = Kind::kConnect;
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
  if (options.read_only) {
    constexpr std::string_view kReadOnly[] = {"READONLY"};
    AICACHE_TRY(handshake(kReadOnly));
  }
  return conn;
}

RedisFailure RedisConnection::broken_failure() {
  RedisFailure f;
  f.kind = Kind::kIo;
  f.hiredis_err = REDIS_ERR_EOF;
  f.text = "connection already broken";
  return f;
}

RedisResult<void> RedisConnection::send_pending() {
  auto sent = transport_->write(out_);
  out_.clear();
  if (out_.capacity() > kKeptBufferBytes) std::string().swap(out_);
  if (!sent) return std::unexpected(broken(std::move(sent.error())));
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

RedisResult<ReplyPtr> RedisConnection::buffered_reply() {
  void* raw = nullptr;
  if (redisReaderGetReply(reader_.get(), &raw) != REDIS_OK) {
    return std::unexpected(broken(protocol_failure(reader_->errstr)));
  }
  if (raw != nullptr) replied_ = true;
  return ReplyPtr(static_cast<redisReply*>(raw));
}

RedisResult<ReplyPtr> RedisConnection::next_message(std::chrono::milliseconds wait, int wake_fd) {
  if (broken_) return std::unexpected(broken_failure());
  // A message read from the socket along with an earlier one.
  AICACHE_ASSIGN_OR_RETURN(ReplyPtr buffered, buffered_reply());
  if (buffered) return buffered;
  char buf[kReadChunk];
  // Reads what has arrived (without waiting) into the reader; false when
  // nothing did.
  auto take = [&]() -> RedisResult<bool> {
    auto got = transport_->read_nowait(buf, sizeof buf);
    if (!got) return std::unexpected(broken(std::move(got.error())));
    if (*got == 0) return false;
    if (redisReaderFeed(reader_.get(), buf, *got) != REDIS_OK) {
      return std::unexpected(broken(protocol_failure(reader_->errstr)));
    }
    return true;
  };
  // Over TLS, bytes already received are invisible to poll(): whole records
  // among them are read first; a partial one waits for the socket.
  if (transport_->has_buffered()) {
    AICACHE_ASSIGN_OR_RETURN(const bool took, take());
    if (took) return buffered_reply();  // null: a partial message so far
  }
  pollfd fds[2]{};
  fds[0].fd = transport_->fd();
  fds[0].events = POLLIN;
  fds[1].fd = wake_fd;
  fds[1].events = POLLIN;
  const int nfds = wake_fd >= 0 ? 2 : 1;
  int n = 0;
  do {
    n = ::poll(fds, static_cast<nfds_t>(nfds), static_cast<int>(wait.count()));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return std::unexpected(broken(io_failure(Kind::kIo, errno)));
  if (n == 0 || fds[0].revents == 0) return ReplyPtr();
  // Readable: what is there, without waiting, then parse.
  AICACHE_TRY(take());
  return buffered_reply();  // null: a partial message (or record) so far
}

void RedisConnection::listen(std::chrono::milliseconds ping_interval, int wake_fd,
                             const std::atomic<bool>& stop,
                             const std::function<void(const redisReply&)>& on_message) {
  bool ping_sent = false;
  while (!stop.load()) {
    auto message = next_message(ping_interval, wake_fd);
    if (!message) return;  // EOF, reset: the peer is gone
    if (*message) {
      ping_sent = false;
      on_message(**message);
      continue;
    }
    if (stop.load()) return;
    // Nothing arrived within ping_interval (or only part of a message).
    if (ping_sent) return;  // no answer to the PING either: presumed dead
    constexpr std::string_view kPing[] = {"PING"};
    if (!send(kPing)) return;
    ping_sent = true;
  }
}

RedisResult<ReplyPtr> RedisConnection::read_reply() {
  char buf[kReadChunk];
  for (;;) {
    AICACHE_ASSIGN_OR_RETURN(ReplyPtr reply, buffered_reply());
    if (reply) return reply;
    auto got = transport_->read(buf, sizeof buf);
    if (!got) return std::unexpected(broken(std::move(got.error())));
    if (redisReaderFeed(reader_.get(), buf, *got) != REDIS_OK) {
      return std::unexpected(broken(protocol_failure(reader_->errstr)));
    }
  }
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
