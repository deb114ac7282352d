// Host name resolution within the connect deadline.
//
// getaddrinfo() cannot be interrupted: with a slow or dead DNS server it
// holds its caller for the resolver's own timeouts (5 s per attempt and
// server by default, tens of seconds in all), far beyond a connect timeout
// of 1 s; and the store's pool, the Sentinel discovery and the Cluster
// refresh all connect on their callers' time. So a name is looked up on a
// thread of its own while the caller waits up to the deadline; if the
// deadline passes first, the caller gets a timeout and the lookup finishes
// unobserved, freeing its result itself.
//
// Why a thread of our own and not glibc's getaddrinfo_a() (in libc since
// 2.34): a request gai_cancel() cannot cancel (one already running) must
// keep its gaicb and buffers alive until glibc's helper thread is done with
// them, which the caller can learn only from a SIGEV_THREAD notification
// running on a thread glibc creates internally, out of ThreadSanitizer's
// sight; and the abandoned path could not be exercised without a DNS server
// that hangs. Here the ownership is one shared state under a mutex, and the
// lookup function is injectable (testing::set_lookup), so tests drive every
// path. A thread per lookup costs about 0.1 ms more than an inline lookup of
// "localhost" (70-200 us against 4-5 us, on a busy 2-core machine), paid
// only by a new connection to a host given by name: next to its connect,
// AUTH and any TLS handshake, and pooled connections live long.
//
// A numeric address (IPv4, IPv6) never pays for any of this: it is parsed
// on the caller's thread (AI_NUMERICHOST) before anything else.
//
// While a DNS server does not answer, lookups that timed out are still
// running; at most kMaxAbandonedLookups of them at a time, beyond which a
// lookup fails at once rather than start yet another thread that would
// hang as well.
#pragma once

#include <netdb.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>

#include "redis/redis_errors.h"

namespace aicache::redis {

struct AddrInfoDeleter {
  void operator()(addrinfo* a) const noexcept;
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoDeleter>;

inline constexpr int kMaxAbandonedLookups = 16;

// The TCP addresses of host:port (IPv4 and IPv6), resolved by `deadline`
// (none: waits for getaddrinfo, on the caller's thread). Failures are of
// kind kConnect: resolve_failure() for getaddrinfo's errors,
// resolve_timeout_failure() (naming `timeout`, the connect timeout the
// deadline was made from) when the deadline passed.
std::expected<AddrInfoPtr, RedisFailure> resolve(
    const std::string& host, std::uint16_t port,
    std::optional<std::chrono::steady_clock::time_point> deadline,
    std::chrono::milliseconds timeout);

namespace testing {

// getaddrinfo()'s signature: what resolve() calls for names (numeric
// addresses never reach it). The result must be freeable with
// freeaddrinfo().
using LookupFn = int (*)(const char* host, const char* service, const addrinfo* hints,
                         addrinfo** result);
// Makes resolve() look names up with `fn` (nullptr: getaddrinfo); returns
// the previous one. For tests only; a lookup already started keeps the
// function it started with.
LookupFn set_lookup(LookupFn fn) noexcept;
// Lookups whose caller timed out and that are still running.
int abandoned_lookups() noexcept;

}  // namespace testing
}  // namespace aicache::redis
