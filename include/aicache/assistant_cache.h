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
// Reads answer a Lookup<T> (lookup.h): a hit, a miss or an error, so the
// common case is one line:
//   if (auto token = cache->get_access_token("wechat", "wx123")) use(*token);
//
// Errors: invalid input (a bad key part) is always an error value and nothing
// is stored. A failed write is an error value. A failed read is a miss by
// default; see AssistantCacheOptions::store_errors.
//
// The store is reached only through the typed operations below (no store()
// accessor): the token manager uses TokenSlot, the service the TTL and raw
// reads, so every key the cache owns is built in one place.
//
// Thread safety: safe to share between threads.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/clock.h"
#include "aicache/json.h"
#include "aicache/keys.h"
#include "aicache/lookup.h"
#include "aicache/status.h"
#include "aicache/store.h"
#include "aicache/ttl.h"

namespace aicache {

namespace internal {
class BurstLog;
class HotKeys;
class TtlSignals;
}  // namespace internal

class AssistantCache;

struct AssistantCacheOptions {
  std::string key_prefix;            // Django KEY_PREFIX. Default: empty.
  std::int64_t key_version = 1;      // Django VERSION. Default: 1.

  Ttl token_ttl = std::chrono::hours(2);          // default for set_access_token
  Ttl conversation_ttl = std::chrono::hours(1);   // default for set_conversation
  Ttl ai_config_ttl = std::chrono::minutes(5);    // default for set_ai_config
  // Default for set() and incr() (generic values). Ttl::use_default() (the
  // default) leaves it to the store's own default, which this cache does not
  // know, so the kv family's TTL signals (FamilyStats) then stay at zero.
  Ttl kv_ttl = Ttl::use_default();

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

  // Hot keys (hot_keys()): one hit in this many, drawn at random per
  // thread, is counted, per family, over two windows of `hot_keys_window`.
  // 0 turns the counting off. Default: 16, 60 s.
  std::uint32_t hot_keys_sample_every = 16;
  std::chrono::milliseconds hot_keys_window{60'000};

  // The TTL signals' table of written keys (FamilyStats::
  // expired_recently_misses): this many slots of 8 bytes, rounded up to a
  // power of two; a key's slot holds a 24-bit tag of its hash and its expiry
  // deadline, and a later write of another key to the slot overwrites it.
  // Default: 65,536 (512 KiB). 0 turns the table off.
  std::size_t written_keys_slots = 65'536;

  // Time for the error log's bursts, the hot keys' windows and the written
  // keys' deadlines (TTL signals). Default: the real clock.
  std::shared_ptr<const Clock> clock = Clock::real();
};

// A stored access token with the store's remaining TTL (TokenSlot::read).
struct StoredToken {
  std::string token;
  KeyTtl ttl;
};

// The records of one app's access token, for TokenManager, whose header
// explains the protocol they carry: the token itself, the cross-process
// lease on its refresh, and the two limits on refreshes asked for from
// outside. Made by AssistantCache::token_slot(), which builds and checks the
// keys once, so the hot path (read()) builds none.
//
//   token      ai_assistant:access_token:{channel}:{app}   the token, JSON string
//   lease      ai_assistant:token_lease:{channel}:{app}    who fetches; or a failure marker
//   refreshed  ai_assistant:token_refreshed:{channel}:{app} refresh()'s interval
//   forced     ai_assistant:token_forced:{channel}:{app}   forced refreshes today
//
// Unlike AssistantCache's reads, a store failure is always an error here,
// never a miss: a coordinator must not take an outage for an absent lease.
// Counted in CacheStats::store_errors all the same.
//
// Thread safety: safe to share between threads; copies share the cache.
class TokenSlot {
 public:
  // The token with its remaining TTL. A value that is not a token (a JSON
  // string) is kFailedPrecondition.
  Lookup<StoredToken> read() const;
  // read() as of now (Store::get_latest): never a lagging copy. For the look
  // after taking the lease, which decides whether to fetch upstream.
  Lookup<StoredToken> read_latest() const;
  Status write(std::string_view token, Ttl ttl) const;
  // Compare-and-delete: removes the token only if it is still `token`.
  Result<bool> remove_if(std::string_view token) const;

  // The lease: add-if-absent with a TTL (true: taken), its value (as of
  // now, Store::get_latest: never a lagging copy), and its release by
  // compare-and-delete (true: it was still `owner`'s).
  Result<bool> try_lease(std::string_view owner, Ttl ttl) const;
  Lookup<std::string> lease() const;
  Result<bool> release_lease(std::string_view owner) const;

  // refresh()'s interval: add-if-absent (true: taken), its remaining TTL, and
  // its release by compare-and-delete.
  Result<bool> try_mark_refreshed(std::string_view holder, Ttl ttl) const;
  Result<KeyTtl> refreshed_ttl() const;
  Result<bool> unmark_refreshed(std::string_view holder) const;

  // Counts one forced refresh; a new count expires after `reset`. The count.
  Result<std::int64_t> count_forced(Ttl reset) const;

  // Counts one token read in the cache's CacheFamily::kToken figures: read()
  // itself counts nothing, since the token manager reads the slot again
  // inside a refresh and for its statistics. TokenManager calls this once per
  // get() or get_if_fresh(): a hit when the stored token was served as it was.
  void count_read(bool hit) const noexcept;

 private:
  friend class AssistantCache;
  TokenSlot(std::shared_ptr<AssistantCache> cache, std::string token_key, std::string lease_key,
            std::string refreshed_key, std::string forced_key);
  template <class T>
  Result<T> checked(Result<T> result) const;
  // The token in what the store answered.
  Lookup<StoredToken> decoded(Result<std::optional<ValueWithTtl>> stored) const;

  std::shared_ptr<AssistantCache> cache_;
  std::string token_key_, lease_key_, refreshed_key_, forced_key_;
};

// The families of entries whose reads are counted (CacheStats::families):
// access tokens (read by TokenManager::get and get_if_fresh, and
// get_access_token), conversations, per-user AI configuration and generic
// values ("kv").
enum class CacheFamily : std::uint8_t { kToken, kConversation, kAiConfig, kKv };
inline constexpr std::array<CacheFamily, 4> kCacheFamilies = {
    CacheFamily::kToken, CacheFamily::kConversation, CacheFamily::kAiConfig, CacheFamily::kKv};
// "token", "conversation", "ai_config", "kv": the names in /v1/stats, the
// `family` label of /metrics and the JSON Lines of `aicache warm`/`export`.
std::string_view to_string(CacheFamily family) noexcept;
// The family a name above denotes; nullopt for anything else.
std::optional<CacheFamily> parse_cache_family(std::string_view name) noexcept;

// The families whose TTL is this cache's to set, hence with TTL signals
// (FamilyStats): all but tokens.
inline constexpr std::array<CacheFamily, 3> kTtlFamilies = {
    CacheFamily::kConversation, CacheFamily::kAiConfig, CacheFamily::kKv};

// The upper bounds, in seconds, of FamilyStats::hit_age_buckets; a last
// bucket holds the older ages.
inline constexpr std::array<std::uint32_t, 11> kHitAgeBoundsSeconds = {
    1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200};

// Reads of one family by this AssistantCache: a hit found a value, a miss
// did not (a store failure turned into a miss counts as a miss). Invalid
// input and values that are not what the family holds count as neither.
//
// The TTL signals (docs/operations.md, "Tuning TTLs"), for conversation,
// ai_config and kv when the family's TTL is a duration (for kv, see
// AssistantCacheOptions::kv_ttl); always zero for tokens, whose TTL is the
// platform's expires_in and which the token manager refreshes ahead of it:
//   hit_age_buckets  hits by the entry's age (how long ago it was written):
//                    the family TTL minus the TTL the store reports left, so
//                    it holds for entries written with the family's TTL by
//                    any process. A hit with more left than the family TTL
//                    (written with a longer explicit TTL), or that never
//                    expires, is not counted here; one written with a
//                    shorter explicit TTL looks older than it is.
//   expired_recently_misses  misses of keys this AssistantCache wrote whose
//                    deadline passed within the last family TTL: reads a TTL
//                    twice as long would have answered. Keys written by
//                    other processes, or pushed out of the table of written
//                    keys (AssistantCacheOptions::written_keys_slots), are
//                    not seen, so this is a lower bound.
struct FamilyStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  // Not cumulative: [i] counts ages <= kHitAgeBoundsSeconds[i] (and above
  // the bound before); the last, ages above 7200 s.
  std::array<std::uint64_t, kHitAgeBoundsSeconds.size() + 1> hit_age_buckets{};
  std::uint64_t hit_age_sum_ms = 0;  // the counted ages summed, milliseconds
  std::uint64_t expired_recently_misses = 0;

  // The hits counted in hit_age_buckets.
  std::uint64_t hit_age_count() const noexcept {
    std::uint64_t n = 0;
    for (std::uint64_t b : hit_age_buckets) n += b;
    return n;
  }
};

// A key read often lately (AssistantCache::hot_keys): its family, its id
// (conversation id, user id, kv key, or "channel:app" for a token) and its
// estimated reads in the window (sampled, so a multiple of the sampling
// rate; an over-estimate for keys near the bottom of the list).
struct HotKey {
  CacheFamily family = CacheFamily::kKv;
  std::string id;
  std::uint64_t reads = 0;
};

// AssistantCache's own counters next to the store's figures.
struct CacheStats {
  StoreStats store;
  std::uint64_t store_errors = 0;  // store failures seen by this AssistantCache
  // Indexed by CacheFamily; see family().
  std::array<FamilyStats, kCacheFamilies.size()> families{};

  const FamilyStats& family(CacheFamily f) const noexcept {
    return families[static_cast<std::size_t>(f)];
  }
  // The 20 hottest keys, hottest first (AssistantCache::hot_keys).
  std::vector<HotKey> hot_keys;
};

// One entry of a family as AssistantCache::export_page reads it.
struct ExportedEntry {
  std::string id;  // the conversation id, the user id or the kv key
  JsonDocument value;
  KeyTtl ttl;      // kExpiring with what is left, or kPersistent
};

// A page of AssistantCache::export_page.
struct ExportPage {
  std::vector<ExportedEntry> entries;
  std::string cursor;         // for the next call; empty: the family is done
  std::uint64_t skipped = 0;  // values that are not JSON (another program wrote them)
};

class AssistantCache : public std::enable_shared_from_this<AssistantCache> {
 public:
  // Refuses an invalid key prefix or version (kInvalidArgument), or a null
  // store. Shared: the token manager and the service hold it too.
  static Result<std::shared_ptr<AssistantCache>> create(std::shared_ptr<Store> store,
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
  Lookup<std::string> get_access_token(std::string_view channel, std::string_view app_id);
  Status set_access_token(std::string_view channel, std::string_view app_id,
                          std::string_view token, Ttl ttl = Ttl::use_default());
  Result<bool> remove_access_token(std::string_view channel, std::string_view app_id);

  // The records TokenManager keeps for the app (see TokenSlot). `app_key` is
  // TokenManager::app_key(). kInvalidArgument for an invalid channel or key.
  Result<TokenSlot> token_slot(std::string_view channel, std::string_view app_key);

  // --- Conversations --------------------------------------------------------
  Lookup<JsonDocument> get_conversation(std::string_view conversation_id);
  Status set_conversation(std::string_view conversation_id, const JsonDocument& conversation,
                          Ttl ttl = Ttl::use_default());
  Result<bool> remove_conversation(std::string_view conversation_id);
  // The entry's remaining time (KeyTtl::State::kMissing when absent).
  Result<KeyTtl> conversation_ttl(std::string_view conversation_id);

  // --- Per-user AI configuration -------------------------------------------
  Lookup<JsonDocument> get_ai_config(std::string_view user_id);
  Status set_ai_config(std::string_view user_id, const JsonDocument& config,
                       Ttl ttl = Ttl::use_default());
  Result<bool> remove_ai_config(std::string_view user_id);
  Result<KeyTtl> ai_config_ttl(std::string_view user_id);

  // --- Generic values (Django's cache.get / set / delete / incr) ------------
  // `key` is a logical key; see keys.h for what is valid. Keys starting with
  // "ai_assistant:" are reserved for the typed entries above and the token
  // manager (keys.h, "Reserved keys"): set, remove and incr refuse them
  // (kInvalidArgument, naming the typed calls that own them); get and ttl
  // read them.
  Lookup<JsonDocument> get(std::string_view key);
  // Django's get(key, default): the value, or `fallback` on a miss.
  Result<JsonDocument> get(std::string_view key, JsonDocument fallback);
  // The stored text as it is, JSON or not (another program may have written
  // anything into a shared store): for tools that show what is there.
  Lookup<std::string> get_text(std::string_view key);
  Status set(std::string_view key, const JsonDocument& value, Ttl ttl = Ttl::use_default());
  Result<bool> remove(std::string_view key);
  Result<std::int64_t> incr(std::string_view key, std::int64_t delta = 1);
  Result<KeyTtl> ttl(std::string_view key);

  // --- Export (`aicache export`) -------------------------------------------------
  // A page of about `count` entries of `family` (conversation, ai_config or
  // kv; kv leaves out the reserved "ai_assistant:" keys) with their
  // remaining TTLs, through Store::scan: start with an empty cursor, pass
  // each page's cursor on until it comes back empty. Every entry live for the
  // whole export comes at least once. kInvalidArgument for kToken (tokens
  // are never exported) or a bad cursor; the store's error if it cannot list
  // its keys.
  Result<ExportPage> export_page(CacheFamily family, std::string_view cursor,
                                 std::size_t count = 500);

  // Deletes every entry of this cache's prefix and version, and nothing else.
  Result<std::uint64_t> clear();

  // --- Statistics --------------------------------------------------------
  // The store's figures and this cache's counters. On a store failure, the
  // error: family_stats() still answers.
  Result<CacheStats> stats();
  // This cache's read counters alone, without asking the store.
  std::array<FamilyStats, kCacheFamilies.size()> family_stats() const noexcept;
  // The `n` keys of every family read most over the last one to two
  // windows, hottest first (AssistantCacheOptions::hot_keys_sample_every).
  std::vector<HotKey> hot_keys(std::size_t n = 20) const;

  // The default TTLs of the typed setters and of set()/incr(), as in
  // AssistantCacheOptions. set_default_ttls() changes them while the cache
  // is in use (`aicache serve` reloading its configuration on SIGHUP): a
  // write that starts after it returns uses the new ones. Entries already
  // stored keep their expiry. The token TTL is not among them: a token lives
  // as long as its platform said.
  struct DefaultTtls {
    Ttl conversation = std::chrono::hours(1);
    Ttl ai_config = std::chrono::minutes(5);
    Ttl kv = Ttl::use_default();
  };
  void set_default_ttls(const DefaultTtls& ttls) noexcept;
  DefaultTtls default_ttls() const noexcept;

  const KeyMaker& keys() const noexcept { return keys_; }
  // True when the store lives in this process (Store::process_local()): a
  // read costs no I/O, so a caller may answer it on a thread that must not
  // block.
  bool process_local() const noexcept { return process_local_; }

  // The entry `id` of `family` (conversation, ai_config or kv) if it can be
  // read without blocking: any read on a process-local store, a near cache
  // hit on Redis (Store::peek_local). nullopt when it cannot (then call the
  // typed get, on a thread that may block); a present Lookup is the typed
  // get's answer and is counted as it would be. kToken: always nullopt.
  std::optional<Lookup<JsonDocument>> get_if_local(CacheFamily family, std::string_view id);

 private:
  AssistantCache(std::shared_ptr<Store> store, AssistantCacheOptions options, KeyMaker keys);

  // Passes a store error on; an outage (unavailable, timeout, exhausted) is
  // also counted and logged once per burst.
  friend class TokenSlot;
  std::unexpected<Error> store_failed(Error error);
  bool treat_as_miss(const Error& error) const noexcept;
  template <class T>
  Lookup<T> failed_read(Error error);
  Result<KeyTtl> key_ttl(const Result<std::string>& key);
  Result<std::string> generic_write_key(std::string_view key) const;
  void count_read(CacheFamily family, bool hit) noexcept;
  void count_hit(CacheFamily family, std::string_view stored_key);
  // A hit's stored text as the family's JSON document (checked_document),
  // the hit counted; a value that is not JSON is a kFailedPrecondition.
  Lookup<JsonDocument> found_document(CacheFamily family, const std::string& key,
                                      ValueWithTtl value);
  // The text read from `key` as a JSON document: trusted on a process-local
  // store (only this process wrote it) or when a reader vouched for this
  // local copy; checked otherwise, and vouched for when it passes.
  Result<JsonDocument> checked_document(const std::string& key, ValueWithTtl& value);
  Lookup<JsonDocument> get_document(CacheFamily family, const Result<std::string>& key);
  // A document read of `family`, its misses counted; the caller counts the
  // hit (count_document_hit) once the value is what the family holds.
  Result<std::optional<ValueWithTtl>> read_document(CacheFamily family, const std::string& key);
  void count_document_hit(CacheFamily family, std::string_view stored_key, const KeyTtl& left);
  // The TTL a family's entries are written with when a write gives none.
  Ttl family_ttl(CacheFamily family) const noexcept;
  // `ttl` is the family default already applied (kDefault only for kv
  // without kv_ttl).
  Status set_document(const Result<std::string>& key, const JsonDocument& value, Ttl ttl);
  Result<bool> remove_key(const Result<std::string>& key);

  std::shared_ptr<Store> store_;
  AssistantCacheOptions options_;
  KeyMaker keys_;
  bool process_local_;
  std::atomic<std::uint64_t> store_errors_{0};
  // DefaultTtls, each encoded in one word (assistant_cache.cc) so that a
  // write reads it without a lock while a reload replaces it.
  std::atomic<std::int64_t> conversation_ttl_, ai_config_ttl_, kv_ttl_;
  struct FamilyCounters {
    std::atomic<std::uint64_t> hits{0}, misses{0};
  };
  std::array<FamilyCounters, kCacheFamilies.size()> family_counters_;
  // Logs store failures once per burst (src/core/burst_log.h).
  std::unique_ptr<internal::BurstLog> error_log_;
  std::unique_ptr<internal::HotKeys> hot_keys_;
  // Ages at hit and expired-recently misses (src/core/ttl_signals.h).
  std::unique_ptr<internal::TtlSignals> ttl_signals_;
};

}  // namespace aicache
