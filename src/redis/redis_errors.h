// The one place where hiredis's error space becomes aicache's.
//
// Failures are first captured as a RedisFailure (what hiredis or Redis said,
// before any interpretation), then turned into an aicache Error by
// to_error(). Retry and connection-discard decisions look at the same
// RedisFailure through the predicates below.
#pragma once

#include <cstdint>
#include <optional>
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

// A Redis Cluster redirect reply: "MOVED <slot> <host>:<port>" (the slot
// lives there now) or "ASK <slot> <host>:<port>" (this one key is being
// imported there: send ASKING, then the command, once).
struct Redirect {
  enum class Kind { kMoved, kAsk };
  Kind kind = Kind::kMoved;
  std::uint16_t slot = 0;  // 0..16383
  std::string host;        // empty: the answering node's own host
  std::uint16_t port = 0;
};

// The redirect a failure stands for; nullopt for any other failure, and for
// a redirect reply that does not parse (a slot out of range, a bad port).
std::optional<Redirect> parse_redirect(const RedisFailure& failure);

// True for CLUSTERDOWN and TRYAGAIN: the cluster is reconfiguring (a
// failover, a slot half-migrated); the command failed, the slot map should
// be read again.
bool is_cluster_unsettled(const RedisFailure& failure) noexcept;

}  // namespace aicache::redis
