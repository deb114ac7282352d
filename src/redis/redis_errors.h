// The one place where hiredis's, the sockets' (errno, getaddrinfo) and
// OpenSSL's error spaces become aicache's.
//
// Failures are first captured as a RedisFailure (what hiredis or Redis said,
// before any interpretation), then turned into an aicache Error by
// to_error(). Retry and connection-discard decisions look at the same
// RedisFailure through the predicates below.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "aicache/status.h"

struct ssl_st;

namespace aicache::redis {

struct RedisFailure {
  enum class Kind {
    kConnect,     // opening the connection failed (connect, TLS handshake, AUTH, SELECT)
    kIo,          // a command's transport failed; the connection is broken
    kReply,       // Redis answered with an error reply; the connection is fine
    kUnexpected,  // Redis answered with a reply of an unexpected type
  };
  Kind kind = Kind::kIo;
  // For kConnect / kIo, in hiredis's terms (REDIS_ERR_IO with sys_errno,
  // REDIS_ERR_EOF, REDIS_ERR_PROTOCOL from its reader, REDIS_ERR_OTHER).
  int hiredis_err = 0;
  int sys_errno = 0;    // errno of the failing socket call
  std::string text;     // what failed, in words, or the error reply
  // TLS (OpenSSL) failures: `text` is OpenSSL's reason ("wrong version
  // number"); tls_verify is the X509_V_ERR_* code when the server's
  // certificate was refused (0 otherwise).
  bool tls = false;
  long tls_verify = 0;
  // Where the connection was when it failed, for the hint in the message:
  // a timeout during the TLS handshake (a plain port does not answer a
  // ClientHello), or a close or reset before the first reply (a TLS 1.3
  // server refuses a missing client certificate only after the handshake; a
  // TLS port drops a plain client); kResolve: the host name lookup did not
  // finish within the connect timeout (no socket was opened).
  enum class Stage { kEstablished, kResolve, kTlsHandshake, kFirstReplyTls, kFirstReplyPlain };
  Stage stage = Stage::kEstablished;
};

// Failures of the connection's own socket I/O, shaped as hiredis reports
// them (hiredis_err and errno), so that the predicates below read them alike.
RedisFailure io_failure(RedisFailure::Kind kind, int saved_errno);
// The server closed the connection (EOF, or TLS close_notify).
RedisFailure eof_failure(RedisFailure::Kind kind);
// getaddrinfo() failed for `host` with `gai_error`.
RedisFailure resolve_failure(std::string_view host, int gai_error);
// The lookup of `host` did not finish within `timeout` (the connect
// timeout): a connect timeout (is_timeout()), "resolution of <host> timed
// out after <timeout> ms".
RedisFailure resolve_timeout_failure(std::string_view host, std::chrono::milliseconds timeout);
// The lookup of `host` was not started: `pending` earlier lookups are still
// unanswered (the DNS server does not respond). Unavailable, not a timeout:
// nothing was waited for.
RedisFailure resolve_backlog_failure(std::string_view host, int pending);
// hiredis's reader refused the bytes (reader errstr).
RedisFailure protocol_failure(std::string_view reader_error);
// An OpenSSL call on `ssl` (SSL_connect, SSL_read, SSL_write...) returned
// `ret`, and it is not a "want more data": the certificate's verification
// result, else the thread's OpenSSL error queue (drained here), else EOF.
RedisFailure tls_failure(RedisFailure::Kind kind, ssl_st* ssl, int ret);
// The thread's OpenSSL error queue as one line (drained), for messages about
// TLS files; "unknown error" when empty.
std::string take_openssl_errors();

// The aicache error for a failure. `endpoint` is the redacted URL and `what`
// the operation ("GET", "connect"), both for the message; passwords are never
// part of either, and authentication errors do not quote the server's reply.
Error to_error(const RedisFailure& failure, std::string_view endpoint, std::string_view what);

// True when a connection was made but failed in a way a peer speaking the
// other protocol causes (TLS against a plain port or the reverse): a TLS
// failure other than a refused certificate, a close or an unparsable reply
// before the first reply. Not a refused connection or a plain timeout.
bool may_be_protocol_mismatch(const RedisFailure& failure) noexcept;
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

// True for LOADING (the server is loading its data set: a replica's full
// resynchronisation) and MASTERDOWN (a replica cut off from its master that
// is configured not to serve stale data): the server cannot answer reads
// now; its master can.
bool is_not_serving(const RedisFailure& failure) noexcept;

}  // namespace aicache::redis
