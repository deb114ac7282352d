#include "redis/redis_errors.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <cerrno>
#include <charconv>

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

bool is_cluster_unsettled(const RedisFailure& f) noexcept {
  return f.kind == RedisFailure::Kind::kReply &&
         (starts_with(f.text, "CLUSTERDOWN") || starts_with(f.text, "TRYAGAIN"));
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
      if (is_timeout(f)) return err(ErrorCode::kTimeout, fmt::format("timed out ({})", quoted));
      if (f.hiredis_err == REDIS_ERR_OOM)
        return err(ErrorCode::kResourceExhausted, "out of memory");
      if (f.hiredis_err == REDIS_ERR_PROTOCOL) {
        return err(ErrorCode::kUnavailable, fmt::format("protocol error ({})", quoted));
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
