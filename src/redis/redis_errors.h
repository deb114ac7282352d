// The one place where hiredis's error space becomes aicache's.
//
// Failures are first captured as a RedisFailure (what hiredis or Redis said,
// before any interpretation), then turned into an aicache Error by
// to_error(). Retry and connection-discard decisions look at the same
// RedisFailure through the predicates below.
#pragma once

#include <string>
#include <string_view>

#include "aicache/status.h"

namespace aicache::redis {

struct RedisFailure {
  enum class Kind {
    kConnect,     // opening the connection failed (hiredis context error)
    kIo,          // a command's transport failed; the connection is broken
    kReply,       // Redis answered with an error reply; the connection is fine
    kUnexpected,  // Redis answered with a reply of an unexpected type
  };
  Kind kind = Kind::kIo;
  int hiredis_err = 0;  // redisContext::err for kConnect / kIo
  int sys_errno = 0;    // errno right after the failing hiredis call
  std::string text;     // redisContext::errstr, or the error reply
};

// The aicache error for a failure. `endpoint` is the redacted URL and `what`
// the operation ("GET", "connect"), both for the message; passwords are never
// part of either, and authentication errors do not quote the server's reply.
Error to_error(const RedisFailure& failure, std::string_view endpoint, std::string_view what);

// True when the connection cannot be used again (transport failure).
bool breaks_connection(const RedisFailure& failure) noexcept;
// True for a read/write or connect timeout.
bool is_timeout(const RedisFailure& failure) noexcept;
// True when the peer closed or reset the connection (a Redis restart): the
// other idle connections of the pool are then presumed dead as well.
bool is_disconnect(const RedisFailure& failure) noexcept;
// True for "NOSCRIPT": EVALSHA must fall back to EVAL.
bool is_noscript(const RedisFailure& failure) noexcept;
// True for "READONLY": the server is a replica (a demoted master after a
// failover); the write was not applied.
bool is_readonly(const RedisFailure& failure) noexcept;

}  // namespace aicache::redis
