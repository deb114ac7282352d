// AssistantCache: the typed cache of an AI-assistant backend.
//
// What the Django system's AIAssistantCache did, over any Store:
//   access tokens per (channel, app id)   ai_assistant:access_token:{channel}:{app_id}   2 h
//   conversations (JSON)                  ai_assistant:conversation:{id}                 1 h
//   per-user AI configuration (JSON)      ai_assistant:ai_config:{user_id}               5 min
//   generic values (JSON)                 {key}, never ai_assistant:...                  store default (300 s)
//   statistics
// Stored keys are "{prefix}:{version}:{key}" (see keys.h); values are JSON
// text, integers as their decimal digits (what django-redis's JSONSerializer
// writes), so a Django app configured alike shares the entries.
//
// Errors: invalid input (a bad key part) is always an error value and nothing
// is stored. A failed write is an error value. A failed read is a miss by
// default; see AssistantCacheOptions::store_errors.
//
// Thread safety: safe to share between threads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "aicache/clock.h"
#include "aicache/json.h"
#include "aicache/keys.h"
#include "aicache/status.h"
#include "aicache/store.h"
#include "aicache/ttl.h"

namespace aicache {

namespace internal {
class BurstLog;
}  // namespace internal

struct AssistantCacheOptions {
  std::string key_prefix;            // Django KEY_PREFIX. Default: empty.
  std::int64_t key_version = 1;      // Django VERSION. Default: 1.

  Ttl token_ttl = std::chrono::hours(2);          // default for set_access_token
  Ttl conversation_ttl = std::chrono::hours(1);   // default for set_conversation
  Ttl ai_config_ttl = std::chrono::minutes(5);    // default for set_ai_config

  // What a read does when the store fails (unavailable, timeout, pool
  // exhausted). kTreatAsMiss (the default) answers a miss, as the Django
  // system did (django-redis IGNORE_EXCEPTIONS): an assistant keeps answering
  // from its database while Redis is down. kReturnError hands the error to
  // the caller. Either way the failure is counted in CacheStats::store_errors
  // and logged once per burst. Writes always report their errors, and invalid
  // input is always an error.
  enum class StoreErrors : std::uint8_t { kReturnError, kTreatAsMiss };
  StoreErrors store_errors = StoreErrors::kTreatAsMiss;

  // Store failures are logged (log.h) once per burst: the first at once, the
  // rest counted and reported with the next failure after this interval.
  std::chrono::seconds error_log_interval{10};

  // Time for the error log's bursts. Default: the real clock.
  std::shared_ptr<const Clock> clock = Clock::real();
};

// AssistantCache's own counters next to the store's figures.
struct CacheStats {
  StoreStats store;
  std::uint64_t store_errors = 0;  // store failures seen by this AssistantCache
};

class AssistantCache {
 public:
  // Refuses an invalid key prefix or version (kInvalidArgument).
  static Result<std::unique_ptr<AssistantCache>> create(std::shared_ptr<Store> store,
                                                        AssistantCacheOptions options = {});

  ~AssistantCache();
  AssistantCache(const AssistantCache&) = delete;
  AssistantCache& operator=(const AssistantCache&) = delete;

  // For the typed setters below, Ttl::use_default() means the typed default
  // of AssistantCacheOptions (2 h, 1 h, 5 min), not the store's 300 s.

  // --- Access tokens ------------------------------------------------------
  // The stored value is the token as a JSON string. Tokens are opaque
  // printable ASCII (no spaces), 1 to 4096 bytes; anything else is refused.
  // A stored value that is not a JSON string is reported as
  // kFailedPrecondition, never handed out as a token.
  Result<std::optional<std::string>> get_access_token(std::string_view channel,
                                                      std::string_view app_id);
  Status set_access_token(std::string_view channel, std::string_view app_id,
                          std::string_view token, Ttl ttl = Ttl::use_default());
  Result<bool> remove_access_token(std::string_view channel, std::string_view app_id);

  // --- Conversations --------------------------------------------------------
  Result<std::optional<JsonDocument>> get_conversation(std::string_view conversation_id);
  Status set_conversation(std::string_view conversation_id, const JsonDocument& conversation,
                          Ttl ttl = Ttl::use_default());
  Result<bool> remove_conversation(std::string_view conversation_id);

  // --- Per-user AI configuration -------------------------------------------
  Result<std::optional<JsonDocument>> get_ai_config(std::string_view user_id);
  Status set_ai_config(std::string_view user_id, const JsonDocument& config,
                       Ttl ttl = Ttl::use_default());
  Result<bool> remove_ai_config(std::string_view user_id);

  // --- Generic values (Django's cache.get / set / delete / incr) ------------
  // `key` is a logical key; see keys.h for what is valid. Keys starting with
  // "ai_assistant:" are reserved for the typed entries above and the token
  // manager (keys.h, "Reserved keys"): set, remove and incr refuse them
  // (kInvalidArgument, naming the typed calls that own them); get and ttl
  // read them.
  Result<std::optional<JsonDocument>> get(std::string_view key);
  // Django's get(key, default): the value, or `fallback` on a miss.
  Result<JsonDocument> get(std::string_view key, JsonDocument fallback);
  Status set(std::string_view key, const JsonDocument& value, Ttl ttl = Ttl::use_default());
  Result<bool> remove(std::string_view key);
  Result<std::int64_t> incr(std::string_view key, std::int64_t delta = 1);
  Result<KeyTtl> ttl(std::string_view key);

  // Deletes every entry of this cache's prefix and version, and nothing else.
  Result<std::uint64_t> clear();

  // --- Statistics --------------------------------------------------------
  Result<CacheStats> stats();

  const KeyMaker& keys() const noexcept { return keys_; }
  Store& store() const noexcept { return *store_; }

 private:
  AssistantCache(std::shared_ptr<Store> store, AssistantCacheOptions options, KeyMaker keys);

  // Passes a store error on; an outage (unavailable, timeout, exhausted) is
  // also counted and logged once per burst.
  std::unexpected<Error> store_failed(Error error);
  bool treat_as_miss(const Error& error) const noexcept;
  template <class T>
  Result<std::optional<T>> failed_read(Error error);
  Result<std::string> generic_write_key(std::string_view key) const;
  Result<std::optional<JsonDocument>> get_document(const Result<std::string>& key);
  Status set_document(const Result<std::string>& key, const JsonDocument& value, Ttl ttl);
  Result<bool> remove_key(const Result<std::string>& key);

  std::shared_ptr<Store> store_;
  AssistantCacheOptions options_;
  KeyMaker keys_;
  std::atomic<std::uint64_t> store_errors_{0};
  // Logs store failures once per burst (src/core/burst_log.h).
  std::unique_ptr<internal::BurstLog> error_log_;
};

}  // namespace aicache
