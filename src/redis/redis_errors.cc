#include "redis/redis_errors.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <system_error>
#include <vector>

#include "aicache/log.h"
#include "redis/cluster_slot.h"

namespace aicache::redis {
namespace {

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.starts_with(prefix); }

// What the server or hiredis said is quoted through printable(): an error
// reply may echo a command's arguments (keys from clients), and hiredis's
// protocol errors quote the byte the server sent.
constexpr std::size_t kQuotedBytes = 512;

}  // namespace

RedisFailure io_failure(RedisFailure::Kind kind, int saved_errno) {
  RedisFailure f;
  f.kind = kind;
  f.hiredis_err = REDIS_ERR_IO;
  f.sys_errno = saved_errno;
  f.text = std::error_code(saved_errno, std::generic_category()).message();
  return f;
}

RedisFailure eof_failure(RedisFailure::Kind kind) {
  RedisFailure f;
  f.kind = kind;
  f.hiredis_err = REDIS_ERR_EOF;
  f.text = "Server closed the connection";
  return f;
}

RedisFailure resolve_failure(std::string_view host, int gai_error) {
  RedisFailure f;
  f.kind = RedisFailure::Kind::kConnect;
  f.hiredis_err = REDIS_ERR_OTHER;
  f.text = fmt::format("cannot resolve {}: {}", printable(host, kQuotedBytes),
                       ::gai_strerror(gai_error));
  return f;
}

RedisFailure resolve_timeout_failure(std::string_view host, std::chrono::milliseconds timeout) {
  RedisFailure f;
  f.kind = RedisFailure::Kind::kConnect;
  f.hiredis_err = REDIS_ERR_IO;
  f.sys_errno = ETIMEDOUT;
  f.stage = RedisFailure::Stage::kResolve;
  f.text = fmt::format("resolution of {} timed out after {} ms", printable(host, kQuotedBytes),
                       timeout.count());
  return f;
}

RedisFailure resolve_backlog_failure(std::string_view host, int pending) {
  RedisFailure f;
  f.kind = RedisFailure::Kind::kConnect;
  f.hiredis_err = REDIS_ERR_OTHER;
  f.stage = RedisFailure::Stage::kResolve;
  f.text = fmt::format(
      "resolution of {} not attempted: {} earlier lookups are still unanswered (is the DNS "
      "server responding?)",
      printable(host, kQuotedBytes), pending);
  return f;
}

RedisFailure protocol_failure(std::string_view reader_error) {
  RedisFailure f;
  f.kind = RedisFailure::Kind::kIo;
  f.hiredis_err = REDIS_ERR_PROTOCOL;
  f.text = std::string(reader_error);
  return f;
}

std::string take_openssl_errors() {
  std::string out;
  std::vector<std::string> seen;
  while (const unsigned long e = ERR_get_error()) {
    std::string reason;
    if (ERR_SYSTEM_ERROR(e)) {
      reason = std::error_code(static_cast<int>(ERR_GET_REASON(e)), std::generic_category())
                   .message();
    } else if (const char* r = ERR_reason_error_string(e); r != nullptr) {
      reason = r;
    } else {
      reason = fmt::format("OpenSSL error {:#x}", e);
    }
    if (std::find(seen.begin(), seen.end(), reason) != seen.end()) continue;
    if (!out.empty()) out += "; ";
    out += reason;
    seen.push_back(std::move(reason));
  }
  if (out.empty()) return "unknown error";
  if (contains(out, "bad decrypt")) out += " (an encrypted key? it must be unencrypted PEM)";
  return out;
}

RedisFailure tls_failure(RedisFailure::Kind kind, ssl_st* ssl, int ret) {
  const int code = SSL_get_error(ssl, ret);
  if (code == SSL_ERROR_ZERO_RETURN || (code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
    ERR_clear_error();
    return eof_failure(kind);  // close_notify, or the stream ended mid-record
  }
  RedisFailure f;
  f.kind = kind;
  f.hiredis_err = REDIS_ERR_OTHER;
  f.tls = true;
  const long verify = SSL_get_verify_result(ssl);
  if (!SSL_is_init_finished(ssl) && verify != X509_V_OK) {
    ERR_clear_error();
    f.tls_verify = verify;
    f.text = X509_verify_cert_error_string(verify);
    return f;
  }
  f.text = take_openssl_errors();
  return f;
}

bool is_timeout(const RedisFailure& f) noexcept {
  if (f.kind != RedisFailure::Kind::kIo && f.kind != RedisFailure::Kind::kConnect) return false;
  if (f.hiredis_err != REDIS_ERR_IO) return false;
  // hiredis 0.14 reports a socket timeout as REDIS_ERR_IO with errno
  // EAGAIN/EWOULDBLOCK ("Resource temporarily unavailable"), and a connect
  // timeout with ETIMEDOUT ("Connection timed out").
  if (f.sys_errno == EAGAIN || f.sys_errno == EWOULDBLOCK || f.sys_errno == ETIMEDOUT) return true;
  return contains(f.text, "temporarily unavailable") || contains(f.text, "timed out");
}

bool breaks_connection(const RedisFailure& f) noexcept {
  return f.kind == RedisFailure::Kind::kIo || f.kind == RedisFailure::Kind::kConnect;
}

bool is_disconnect(const RedisFailure& f) noexcept {
  return f.kind == RedisFailure::Kind::kIo && !is_timeout(f);
}

bool is_noscript(const RedisFailure& f) noexcept {
  return f.kind == RedisFailure::Kind::kReply && starts_with(f.text, "NOSCRIPT");
}

bool is_readonly(const RedisFailure& f) noexcept {
  return f.kind == RedisFailure::Kind::kReply && starts_with(f.text, "READONLY");
}

std::optional<Redirect> parse_redirect(const RedisFailure& f) {
  if (f.kind != RedisFailure::Kind::kReply) return std::nullopt;
  std::string_view t = f.text;
  Redirect r;
  if (starts_with(t, "MOVED ")) {
    r.kind = Redirect::Kind::kMoved;
    t.remove_prefix(6);
  } else if (starts_with(t, "ASK ")) {
    r.kind = Redirect::Kind::kAsk;
    t.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const auto space = t.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  unsigned slot = 0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + space, slot);
  if (ec != std::errc() || end != t.data() + space || slot >= kClusterSlots) return std::nullopt;
  std::optional<HostPort> where = parse_host_port(t.substr(space + 1));
  if (!where) return std::nullopt;
  r.slot = static_cast<std::uint16_t>(slot);
  r.host = std::move(where->host);
  r.port = where->port;
  return r;
}

bool may_be_protocol_mismatch(const RedisFailure& f) noexcept {
  if (f.kind != RedisFailure::Kind::kConnect && f.kind != RedisFailure::Kind::kIo) return false;
  if (f.tls) return f.tls_verify == 0;
  return f.stage != RedisFailure::Stage::kEstablished || f.hiredis_err == REDIS_ERR_PROTOCOL;
}

bool is_cluster_unsettled(const RedisFailure& f) noexcept {
  return f.kind == RedisFailure::Kind::kReply &&
         (starts_with(f.text, "CLUSTERDOWN") || starts_with(f.text, "TRYAGAIN"));
}

bool is_not_serving(const RedisFailure& f) noexcept {
  return f.kind == RedisFailure::Kind::kReply &&
         (starts_with(f.text, "LOADING") || starts_with(f.text, "MASTERDOWN"));
}

Error to_error(const RedisFailure& f, std::string_view endpoint, std::string_view what) {
  using K = RedisFailure::Kind;
  auto err = [&](ErrorCode code, std::string_view detail) {
    return Error{code, fmt::format("redis {}: {}: {}", endpoint, what, detail)};
  };
  const std::string quoted = printable(f.text, kQuotedBytes);
  switch (f.kind) {
    case K::kConnect:
    case K::kIo: {
      if (f.tls_verify != 0) {
        return err(ErrorCode::kConfig,
                   fmt::format("TLS: the server's certificate was refused: {}", quoted));
      }
      if (f.tls) {
        // A TLS client on a plain port reads Redis's plain reply as a record
        // header: "wrong version number" (or a length too long).
        const bool plain_peer =
            contains(f.text, "wrong version number") || contains(f.text, "packet length too long");
        return err(ErrorCode::kUnavailable,
                   fmt::format("TLS failed: {}{}", quoted,
                               plain_peer ? " (is this port plain TCP? rediss:// needs the "
                                            "server's tls-port)"
                                          : ""));
      }
      if (is_timeout(f)) {
        if (f.stage == RedisFailure::Stage::kResolve) return err(ErrorCode::kTimeout, quoted);
        if (f.stage == RedisFailure::Stage::kTlsHandshake) {
          return err(ErrorCode::kTimeout,
                     "TLS handshake timed out: the server did not answer (is this port plain "
                     "TCP? rediss:// needs the server's tls-port)");
        }
        return err(ErrorCode::kTimeout, fmt::format("timed out ({})", quoted));
      }
      const bool dropped = f.hiredis_err == REDIS_ERR_EOF ||
                           (f.hiredis_err == REDIS_ERR_IO &&
                            (f.sys_errno == ECONNRESET || f.sys_errno == EPIPE));
      // Closed or reset early on: what the stage suggests is wrong.
      const char* hint = nullptr;
      switch (f.stage) {
        case RedisFailure::Stage::kTlsHandshake:
          hint = "during the TLS handshake (is this port plain TCP? rediss:// needs the "
                 "server's tls-port)";
          break;
        case RedisFailure::Stage::kFirstReplyTls:
          hint = "right after the TLS handshake (does the server require a client "
                 "certificate? tls_cert_file, tls_key_file)";
          break;
        case RedisFailure::Stage::kFirstReplyPlain:
          hint = "before its first reply (if this port is TLS, use rediss://)";
          break;
        case RedisFailure::Stage::kEstablished:
        case RedisFailure::Stage::kResolve:
          break;
      }
      if (dropped && hint != nullptr) {
        return err(ErrorCode::kUnavailable,
                   fmt::format("{} {}",
                               f.hiredis_err == REDIS_ERR_EOF ? "connection closed by the server"
                                                              : quoted,
                               hint));
      }
      if (f.hiredis_err == REDIS_ERR_OOM)
        return err(ErrorCode::kResourceExhausted, "out of memory");
      if (f.hiredis_err == REDIS_ERR_PROTOCOL) {
        // A TLS record (alert 0x15, handshake 0x16) where a reply should be:
        // a plain client on a TLS port.
        const bool tls_peer = contains(f.text, "\\x15") || contains(f.text, "\\x16");
        return err(ErrorCode::kUnavailable,
                   fmt::format("protocol error ({}){}", quoted,
                               tls_peer ? " (the server speaks TLS: use rediss://)" : ""));
      }
      if (f.hiredis_err == REDIS_ERR_EOF) {
        return err(ErrorCode::kUnavailable, "connection closed by the server");
      }
      // Refused, reset, unknown host (REDIS_ERR_OTHER with getaddrinfo's text).
      return err(ErrorCode::kUnavailable,
                 f.text.empty() ? std::string("connection failed") : quoted);
    }
    case K::kUnexpected:
      return err(ErrorCode::kInternal, fmt::format("unexpected reply ({})", quoted));
    case K::kReply:
      break;
  }
  const std::string_view t = f.text;
  // Authentication: never quote the reply, which may echo what was sent.
  if (starts_with(t, "WRONGPASS") || starts_with(t, "NOAUTH") || contains(t, "invalid password") ||
      contains(t, "invalid username-password") ||
      (starts_with(t, "ERR") && contains(t, "AUTH") && contains(t, "without any password"))) {
    return err(ErrorCode::kConfig, "authentication failed (check the user and password)");
  }
  if (starts_with(t, "NOPERM")) {
    return err(ErrorCode::kConfig, "the Redis user lacks a permission this command needs");
  }
  if (contains(t, "DB index is out of range") || contains(t, "invalid DB index")) {
    return err(ErrorCode::kConfig, "database index is out of range for this server");
  }
  if (starts_with(t, "OOM") || contains(t, "exceeds maximum allowed size") ||
      (contains(t, "max") && contains(t, "exceeded"))) {
    return err(ErrorCode::kResourceExhausted, quoted);
  }
  if (starts_with(t, "WRONGTYPE")) {
    return err(ErrorCode::kFailedPrecondition, "the key holds a value of another Redis type");
  }
  if (contains(t, "overflow")) {
    return err(ErrorCode::kOutOfRange, "integer overflow; the value is unchanged");
  }
  if (contains(t, "not an integer")) {
    return err(ErrorCode::kFailedPrecondition, "the value is not a 64-bit integer");
  }
  if (starts_with(t, "LOADING") || starts_with(t, "BUSY") || starts_with(t, "MASTERDOWN") ||
      starts_with(t, "TRYAGAIN") || starts_with(t, "CLUSTERDOWN") || starts_with(t, "READONLY")) {
    return err(ErrorCode::kUnavailable, quoted);
  }
  // A redirect still standing after the store's hops (a slot moving back
  // and forth while the call ran).
  if (starts_with(t, "MOVED ") || starts_with(t, "ASK ")) {
    return err(ErrorCode::kUnavailable, fmt::format("cluster redirect: {}", quoted));
  }
  return err(ErrorCode::kInternal, fmt::format("error reply: {}", quoted));
}

}  // namespace aicache::redis
