// Store: the byte-level key/value contract every backend implements.
//
// A Store maps keys (already fully built, e.g. "blbs_erp:1:ai_assistant:...")
// to opaque byte strings with a per-key TTL. It knows nothing about JSON,
// channels or tokens; AssistantCache builds keys and encodes values above it.
//
// Thread safety: every Store is safe to share between threads.
//
// Errors: a miss is a value (an empty optional, `false`, a count of zero).
// An error value means the backend failed (Redis unreachable, timeout) or the
// input was invalid; in that case nothing was changed unless the operation's
// contract says otherwise (set_many and remove_many are not transactional
// across keys on every backend).
//
// TTLs follow ttl.h: Ttl::use_default() is the store's configured default,
// Ttl::never() never expires, a zero or negative duration removes the entry.
// An expired entry is never returned by any operation.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aicache/status.h"
#include "aicache/ttl.h"

namespace aicache {

// What ttl() reports about one key.
struct KeyTtl {
  enum class State : std::uint8_t {
    kMissing,     // no such key (or it has expired)
    kPersistent,  // exists, never expires
    kExpiring,    // exists, expires after `remaining`
  };
  State state = State::kMissing;
  std::chrono::milliseconds remaining{0};  // only for kExpiring; always > 0

  friend bool operator==(const KeyTtl&, const KeyTtl&) = default;
};

// A value with its TTL, as get_with_ttl() returns them.
struct ValueWithTtl {
  std::string value;
  KeyTtl ttl;  // kPersistent or kExpiring
  // A copy held in process memory that a reader vouched for since it was
  // stored there (Store::vouch_local): these exact bytes passed that reader's
  // check. Always false from a backend that keeps no local copies.
  bool vouched = false;
};

// Figures a store reports. Counters are since the store was created (memory)
// or since the server started (Redis, from INFO).
struct StoreStats {
  std::string backend;                // "memory" or "redis"
  std::uint64_t used_memory_bytes = 0;
  std::string used_memory_human;      // as Redis prints it: "1.23M"
  std::uint64_t max_memory_bytes = 0; // 0 = unbounded
  std::uint64_t entries = 0;
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t evictions = 0;
  std::uint64_t expirations = 0;
  std::uint64_t commands_processed = 0;
  // Backend-specific figures, e.g. "connected_clients" for Redis, by name.
  std::map<std::string, std::string> details;
};

// Formats a byte count the way Redis's INFO does for used_memory_human:
// "512B", "1.50K", "1.23M", "2.00G".
std::string format_bytes_human(std::uint64_t bytes);

// One page of Store::scan.
struct ScanPage {
  std::vector<std::string> keys;  // stored keys
  std::string cursor;             // for the next call; empty: the scan is complete
};

class Store {
 public:
  Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  virtual ~Store() = default;

  // The value of `key`, or nullopt on a miss.
  virtual Result<std::optional<std::string>> get(std::string_view key) = 0;

  // The value of `key` with its remaining TTL; nullopt on a miss. Backends
  // answer it in one round trip where they can; the default calls get() then
  // ttl() (if the key vanishes in between, that is a miss).
  virtual Result<std::optional<ValueWithTtl>> get_with_ttl(std::string_view key);

  // get_with_ttl() as of now: reflects every write acknowledged, to any
  // client of the store, before the call. Skips whatever a backend serves
  // reads from that may lag (RedisStore: the near cache, whose invalidations
  // are in flight for a moment, and replicas with read_from_replicas); it
  // costs a round trip there. For the few reads whose decision must not rest
  // on a lagging copy: TokenManager's look after taking a refresh lease,
  // which decides whether to fetch a token upstream, and its reads of the
  // lease (TokenSlot::lease: a failure marker). The default calls
  // get_with_ttl() (a store without copies is always current).
  virtual Result<std::optional<ValueWithTtl>> get_latest(std::string_view key);
  // The value of `key` (with its remaining TTL, as get_with_ttl) if this
  // store holds it in process memory and can
  // tell without blocking (RedisStore: a near cache hit); nullopt when it
  // cannot tell without I/O: then call get(). Never a miss, never an error.
  // For callers on threads that must not block (the service's I/O threads),
  // which try this first and hand the rest to threads that may. The default
  // answers nullopt.
  virtual std::optional<ValueWithTtl> peek_local(std::string_view key);

  // Says that `value`, as just read from `key`, passed the caller's check
  // (AssistantCache: valid JSON within its limits), so later reads of the
  // same local copy come back `vouched` and need not check it again. Binds to
  // the bytes: if the local copy is gone or holds anything else by now,
  // nothing is vouched. Every store-wide reader shares one meaning for the
  // vouch, so it is for AssistantCache's JSON check only. Never blocks. The
  // default does nothing (no local copies to vouch for).
  virtual void vouch_local(std::string_view key, std::string_view value);

  // Stores `value` under `key`, replacing any previous value and TTL.
  // A removing TTL (zero or negative) deletes the key instead.
  virtual Status set(std::string_view key, std::string_view value,
                     Ttl ttl = Ttl::use_default()) = 0;

  // Stores only if `key` is absent (or expired). True if this call stored it.
  // Atomic: of many concurrent add() calls for one key, exactly one wins.
  // A removing TTL stores nothing and returns false.
  virtual Result<bool> add(std::string_view key, std::string_view value,
                           Ttl ttl = Ttl::use_default()) = 0;

  // Deletes `key`. True if it existed.
  virtual Result<bool> remove(std::string_view key) = 0;

  // Deletes `key` only if its current value equals `expected`, atomically.
  // True if this call deleted it. The basis of lease release and of
  // "invalidate this token only if it is still the stored one".
  virtual Result<bool> remove_if_equals(std::string_view key,
                                        std::string_view expected) = 0;

  // Gives an existing key a new TTL (a removing TTL deletes it). True if the
  // key existed.
  virtual Result<bool> touch(std::string_view key, Ttl ttl) = 0;

  // Whether `key` exists and how long it has left.
  virtual Result<KeyTtl> ttl(std::string_view key) = 0;

  // Values of many keys in one call, in the order of `keys`; nullopt for each
  // miss.
  virtual Result<std::vector<std::optional<std::string>>> get_many(
      std::span<const std::string> keys) = 0;

  // Stores many entries with one TTL.
  virtual Status set_many(
      std::span<const std::pair<std::string, std::string>> entries,
      Ttl ttl = Ttl::use_default()) = 0;

  // Deletes many keys; returns how many existed.
  virtual Result<std::uint64_t> remove_many(std::span<const std::string> keys) = 0;

  // Adds `delta` to the integer stored at `key` (canonical decimal as Redis
  // reads it: optional leading '-', no '+', spaces or leading zeros) and
  // returns the new value, atomically. A missing key starts
  // from 0 and is created with `ttl_if_created`; an existing key keeps its TTL.
  // Errors: kFailedPrecondition if the value is not an integer, kOutOfRange on
  // signed 64-bit overflow (the value is then left unchanged).
  virtual Result<std::int64_t> incr(std::string_view key, std::int64_t delta = 1,
                                    Ttl ttl_if_created = Ttl::use_default()) = 0;

  // Deletes every key that starts with `prefix` and nothing else; returns how
  // many were deleted. An empty prefix is refused (kInvalidArgument): a store
  // may be shared with other applications, and clearing it all is never what
  // a cache client should do.
  virtual Result<std::uint64_t> clear(std::string_view prefix) = 0;

  // Current figures.
  virtual Result<StoreStats> stats() = 0;

  // The keys that start with `prefix`, a page of about `count` at a time:
  // start with an empty cursor and pass each page's cursor to the next call
  // until it comes back empty. Every key live for the whole scan is returned
  // at least once (some may come twice); keys written or removed meanwhile
  // may or may not be. A cursor is valid only for the store that made it;
  // one it did not make is kInvalidArgument. The default is kInternal
  // ("cannot list its keys"): a backend that can list keys overrides it (the
  // memory store does; `aicache export` needs it).
  virtual Result<ScanPage> scan(std::string_view prefix, std::string_view cursor,
                                std::size_t count);

  // True if no other process can write to this store (the memory store).
  // AssistantCache then trusts values it wrote itself through validating
  // paths and skips re-validating JSON on every read; values from a shared
  // store (Redis, where Django or anyone else may write) are validated.
  virtual bool process_local() const noexcept { return false; }
};

}  // namespace aicache
