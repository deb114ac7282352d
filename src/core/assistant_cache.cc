#include "aicache/assistant_cache.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>

#include "core/burst_log.h"
#include "core/hot_keys.h"
#include "core/token_codec.h"
#include "core/ttl_signals.h"
#include "core/try.h"

namespace aicache {
namespace {

using internal::decode_token;
using internal::encode_token;
using internal::validate_token;

bool is_store_failure(ErrorCode code) {
  return code == ErrorCode::kUnavailable || code == ErrorCode::kTimeout ||
         code == ErrorCode::kResourceExhausted;
}

}  // namespace

std::string_view to_string(CacheFamily family) noexcept {
  switch (family) {
    case CacheFamily::kToken: return "token";
    case CacheFamily::kConversation: return "conversation";
    case CacheFamily::kAiConfig: return "ai_config";
    case CacheFamily::kKv: return "kv";
  }
  return "unknown";
}

std::optional<CacheFamily> parse_cache_family(std::string_view name) noexcept {
  for (CacheFamily family : kCacheFamilies) {
    if (to_string(family) == name) return family;
  }
  return std::nullopt;
}

Result<std::shared_ptr<AssistantCache>> AssistantCache::create(std::shared_ptr<Store> store,
                                                               AssistantCacheOptions options) {
  if (!store) return make_error(ErrorCode::kInvalidArgument, "AssistantCache needs a store");
  AICACHE_ASSIGN_OR_RETURN(KeyMaker keys, KeyMaker::create(options.key_prefix, options.key_version));
  return std::shared_ptr<AssistantCache>(
      new AssistantCache(std::move(store), std::move(options), std::move(keys)));
}

AssistantCache::AssistantCache(std::shared_ptr<Store> store, AssistantCacheOptions options,
                               KeyMaker keys)
    : store_(std::move(store)),
      options_(std::move(options)),
      keys_(std::move(keys)),
      process_local_(store_->process_local()),
      error_log_(std::make_unique<internal::BurstLog>(
          "store error", options_.error_log_interval,
          options_.clock ? options_.clock : Clock::real())),
      hot_keys_(std::make_unique<internal::HotKeys>(options_.hot_keys_sample_every,
                                                    options_.hot_keys_window, options_.clock)),
      ttl_signals_(std::make_unique<internal::TtlSignals>(options_.written_keys_slots,
                                                          options_.clock)) {
  set_default_ttls({options_.conversation_ttl, options_.ai_config_ttl, options_.kv_ttl});
}

namespace {

// A Ttl in one word: a duration in milliseconds, or one of two values no
// duration takes (durations are clamped above them).
constexpr std::int64_t kTtlDefault = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kTtlNever = kTtlDefault + 1;

std::int64_t encode_ttl(Ttl ttl) noexcept {
  if (ttl.is_default()) return kTtlDefault;
  if (ttl.is_never()) return kTtlNever;
  return std::max(ttl.duration().count(), kTtlNever + 1);
}

Ttl decode_ttl(std::int64_t word) noexcept {
  if (word == kTtlDefault) return Ttl::use_default();
  if (word == kTtlNever) return Ttl::never();
  return std::chrono::milliseconds(word);
}

Ttl load_ttl(const std::atomic<std::int64_t>& word) noexcept {
  return decode_ttl(word.load(std::memory_order_relaxed));
}

}  // namespace

void AssistantCache::set_default_ttls(const DefaultTtls& ttls) noexcept {
  conversation_ttl_.store(encode_ttl(ttls.conversation), std::memory_order_relaxed);
  ai_config_ttl_.store(encode_ttl(ttls.ai_config), std::memory_order_relaxed);
  kv_ttl_.store(encode_ttl(ttls.kv), std::memory_order_relaxed);
}

AssistantCache::DefaultTtls AssistantCache::default_ttls() const noexcept {
  return {load_ttl(conversation_ttl_), load_ttl(ai_config_ttl_), load_ttl(kv_ttl_)};
}

AssistantCache::~AssistantCache() = default;

std::unexpected<Error> AssistantCache::store_failed(Error error) {
  if (is_store_failure(error.code)) {
    store_errors_.fetch_add(1, std::memory_order_relaxed);
    error_log_->report(error);
  }
  return std::unexpected(std::move(error));
}

template <class T>
Lookup<T> AssistantCache::failed_read(Error error) {
  const bool miss = treat_as_miss(error);
  auto failure = store_failed(std::move(error));
  if (miss) return std::nullopt;
  return failure;
}

bool AssistantCache::treat_as_miss(const Error& error) const noexcept {
  return options_.store_errors == AssistantCacheOptions::StoreErrors::kTreatAsMiss &&
         is_store_failure(error.code);
}

// --- Access tokens ---------------------------------------------------------

Lookup<std::string> AssistantCache::get_access_token(std::string_view channel,
                                                     std::string_view app_id) {
  auto key = keys_.access_token(channel, app_id);
  if (!key) return std::unexpected(std::move(key).error());
  auto value = store_->get(*key);
  if (!value) {
    auto failed = failed_read<std::string>(std::move(value).error());
    if (!failed.failed()) count_read(CacheFamily::kToken, false);
    return failed;
  }
  if (!*value) {
    count_read(CacheFamily::kToken, false);
    return std::nullopt;
  }
  AICACHE_ASSIGN_OR_RETURN(std::string token, decode_token(std::move(**value), *key));
  count_read(CacheFamily::kToken, true);
  count_hit(CacheFamily::kToken, *key);
  return token;
}

Status AssistantCache::set_access_token(std::string_view channel, std::string_view app_id,
                                        std::string_view token, Ttl ttl) {
  AICACHE_ASSIGN_OR_RETURN(const std::string key, keys_.access_token(channel, app_id));
  AICACHE_TRY(validate_token(token));
  auto stored = store_->set(key, encode_token(token), ttl.or_default(options_.token_ttl));
  if (!stored) return store_failed(std::move(stored).error());
  return {};
}

Result<bool> AssistantCache::remove_access_token(std::string_view channel,
                                                 std::string_view app_id) {
  return remove_key(keys_.access_token(channel, app_id));
}

Result<TokenSlot> AssistantCache::token_slot(std::string_view channel,
                                             std::string_view app_key) {
  AICACHE_ASSIGN_OR_RETURN(std::string token_key, keys_.access_token(channel, app_key));
  // The token manager's records share the token's reserved namespace
  // (keys.h, KeyFamily::kTokenState); channel and app key were checked above.
  auto state_key = [&](std::string_view what) {
    return keys_.make(fmt::format("ai_assistant:token_{}:{}:{}", what, channel, app_key));
  };
  AICACHE_ASSIGN_OR_RETURN(std::string lease_key, state_key("lease"));
  AICACHE_ASSIGN_OR_RETURN(std::string refreshed_key, state_key("refreshed"));
  AICACHE_ASSIGN_OR_RETURN(std::string forced_key, state_key("forced"));
  return TokenSlot(shared_from_this(), std::move(token_key), std::move(lease_key),
                   std::move(refreshed_key), std::move(forced_key));
}

// --- Token slots ----------------------------------------------------------------

TokenSlot::TokenSlot(std::shared_ptr<AssistantCache> cache, std::string token_key,
                     std::string lease_key, std::string refreshed_key, std::string forced_key)
    : cache_(std::move(cache)),
      token_key_(std::move(token_key)),
      lease_key_(std::move(lease_key)),
      refreshed_key_(std::move(refreshed_key)),
      forced_key_(std::move(forced_key)) {}

// Every store failure is passed on (and counted and logged as the cache's).
template <class T>
Result<T> TokenSlot::checked(Result<T> result) const {
  if (!result) return cache_->store_failed(std::move(result).error());
  return result;
}

Lookup<StoredToken> TokenSlot::read() const {
  return decoded(checked(cache_->store_->get_with_ttl(token_key_)));
}

Lookup<StoredToken> TokenSlot::read_latest() const {
  return decoded(checked(cache_->store_->get_latest(token_key_)));
}

Lookup<StoredToken> TokenSlot::decoded(Result<std::optional<ValueWithTtl>> stored) const {
  AICACHE_TRY(stored);
  if (!*stored) return std::nullopt;
  AICACHE_ASSIGN_OR_RETURN(std::string token, decode_token(std::move((*stored)->value), token_key_));
  return StoredToken{std::move(token), (*stored)->ttl};
}

Status TokenSlot::write(std::string_view token, Ttl ttl) const {
  AICACHE_TRY(validate_token(token));
  return checked(cache_->store_->set(token_key_, encode_token(token), ttl));
}

Result<bool> TokenSlot::remove_if(std::string_view token) const {
  AICACHE_TRY(validate_token(token));
  return checked(cache_->store_->remove_if_equals(token_key_, encode_token(token)));
}

Result<bool> TokenSlot::try_lease(std::string_view owner, Ttl ttl) const {
  return checked(cache_->store_->add(lease_key_, owner, ttl));
}

// As of now (Store::get_latest): a lagging copy (a replica, a near entry
// whose invalidation is in flight) could show a failure marker already
// cleared, or hide one reconfigure() should clear. Read only by waiters and
// reconfigure(), never on the hot path.
Lookup<std::string> TokenSlot::lease() const {
  AICACHE_ASSIGN_OR_RETURN(std::optional<ValueWithTtl> stored,
                           checked(cache_->store_->get_latest(lease_key_)));
  if (!stored) return std::nullopt;
  return std::move(stored->value);
}

Result<bool> TokenSlot::release_lease(std::string_view owner) const {
  return checked(cache_->store_->remove_if_equals(lease_key_, owner));
}

Result<bool> TokenSlot::try_mark_refreshed(std::string_view holder, Ttl ttl) const {
  return checked(cache_->store_->add(refreshed_key_, holder, ttl));
}

Result<KeyTtl> TokenSlot::refreshed_ttl() const {
  return checked(cache_->store_->ttl(refreshed_key_));
}

Result<bool> TokenSlot::unmark_refreshed(std::string_view holder) const {
  return checked(cache_->store_->remove_if_equals(refreshed_key_, holder));
}

Result<std::int64_t> TokenSlot::count_forced(Ttl reset) const {
  return checked(cache_->store_->incr(forced_key_, 1, reset));
}

void TokenSlot::count_read(bool hit) const noexcept {
  cache_->count_read(CacheFamily::kToken, hit);
  if (hit) cache_->count_hit(CacheFamily::kToken, token_key_);
}

// --- Conversations and AI configuration -----------------------------------

Lookup<JsonDocument> AssistantCache::get_conversation(
    std::string_view conversation_id) {
  return get_document(CacheFamily::kConversation, keys_.conversation(conversation_id));
}

Status AssistantCache::set_conversation(std::string_view conversation_id,
                                        const JsonDocument& conversation, Ttl ttl) {
  return set_document(keys_.conversation(conversation_id), conversation,
                      ttl.or_default(load_ttl(conversation_ttl_)));
}

Result<bool> AssistantCache::remove_conversation(std::string_view conversation_id) {
  return remove_key(keys_.conversation(conversation_id));
}

Result<KeyTtl> AssistantCache::conversation_ttl(std::string_view conversation_id) {
  return key_ttl(keys_.conversation(conversation_id));
}

Lookup<JsonDocument> AssistantCache::get_ai_config(std::string_view user_id) {
  return get_document(CacheFamily::kAiConfig, keys_.ai_config(user_id));
}

Status AssistantCache::set_ai_config(std::string_view user_id, const JsonDocument& config,
                                     Ttl ttl) {
  return set_document(keys_.ai_config(user_id), config,
                      ttl.or_default(load_ttl(ai_config_ttl_)));
}

Result<bool> AssistantCache::remove_ai_config(std::string_view user_id) {
  return remove_key(keys_.ai_config(user_id));
}

Result<KeyTtl> AssistantCache::ai_config_ttl(std::string_view user_id) {
  return key_ttl(keys_.ai_config(user_id));
}

// --- Generic values ----------------------------------------------------------

Lookup<JsonDocument> AssistantCache::get(std::string_view key) {
  return get_document(CacheFamily::kKv, keys_.make(key));
}

Result<JsonDocument> AssistantCache::get(std::string_view key, JsonDocument fallback) {
  auto value = get(key);
  if (value.failed()) return std::unexpected(std::move(value).error());
  if (!value) return fallback;
  return std::move(*value);
}

Lookup<std::string> AssistantCache::get_text(std::string_view key) {
  AICACHE_ASSIGN_OR_RETURN(const std::string stored_key, keys_.make(key));
  auto value = read_document(CacheFamily::kKv, stored_key);
  if (!value) return std::unexpected(std::move(value).error());
  if (!*value) return std::nullopt;
  count_document_hit(CacheFamily::kKv, stored_key, (*value)->ttl);
  return std::move((*value)->value);
}

// The stored key for a generic write: valid, and not a reserved one (keys.h).
Result<std::string> AssistantCache::generic_write_key(std::string_view key) const {
  auto stored = keys_.make(key);
  if (!stored) return stored;
  AICACHE_TRY(check_generic_write(key));
  return stored;
}

Status AssistantCache::set(std::string_view key, const JsonDocument& value, Ttl ttl) {
  return set_document(generic_write_key(key), value,
                      ttl.or_default(load_ttl(kv_ttl_)));
}

Result<bool> AssistantCache::remove(std::string_view key) {
  return remove_key(generic_write_key(key));
}

Result<std::int64_t> AssistantCache::incr(std::string_view key, std::int64_t delta) {
  AICACHE_ASSIGN_OR_RETURN(const std::string stored_key, generic_write_key(key));
  auto value = store_->incr(stored_key, delta, load_ttl(kv_ttl_));
  if (!value) return store_failed(std::move(value.error()));
  return value;
}

Result<KeyTtl> AssistantCache::ttl(std::string_view key) { return key_ttl(keys_.make(key)); }

Result<KeyTtl> AssistantCache::key_ttl(const Result<std::string>& key) {
  if (!key) return std::unexpected(key.error());
  auto remaining = store_->ttl(*key);
  if (!remaining) {
    const bool miss = treat_as_miss(remaining.error());
    auto error = store_failed(std::move(remaining.error()));
    if (miss) return KeyTtl{};
    return error;
  }
  return remaining;
}

Result<ExportPage> AssistantCache::export_page(CacheFamily family, std::string_view cursor,
                                               std::size_t count) {
  std::string_view family_prefix;
  switch (family) {
    case CacheFamily::kToken:
      return make_error(ErrorCode::kInvalidArgument, "tokens are never exported");
    case CacheFamily::kConversation: family_prefix = "ai_assistant:conversation:"; break;
    case CacheFamily::kAiConfig: family_prefix = "ai_assistant:ai_config:"; break;
    case CacheFamily::kKv: break;
  }
  const std::string prefix = keys_.namespace_prefix() + std::string(family_prefix);
  auto scanned = store_->scan(prefix, cursor, count);
  if (!scanned) return store_failed(std::move(scanned).error());
  ExportPage page;
  page.cursor = std::move(scanned->cursor);
  page.entries.reserve(scanned->keys.size());
  for (std::string& key : scanned->keys) {
    std::string_view logical = std::string_view(key).substr(keys_.namespace_prefix().size());
    if (family == CacheFamily::kKv && is_reserved_key(logical)) continue;
    auto stored = store_->get_with_ttl(key);
    if (!stored) return store_failed(std::move(stored).error());
    if (!*stored) continue;  // gone since the scan
    Result<JsonDocument> document = checked_document(key, **stored);
    if (!document) {
      ++page.skipped;
      continue;
    }
    logical.remove_prefix(family_prefix.size());
    page.entries.push_back(
        ExportedEntry{std::string(logical), std::move(*document), (*stored)->ttl});
  }
  return page;
}

Result<std::uint64_t> AssistantCache::clear() {
  auto removed = store_->clear(keys_.namespace_prefix());
  if (!removed) return store_failed(std::move(removed.error()));
  ttl_signals_->removed_all();
  return removed;
}

Result<CacheStats> AssistantCache::stats() {
  auto store_stats = store_->stats();
  if (!store_stats) return store_failed(std::move(store_stats.error()));
  CacheStats stats;
  stats.store = std::move(*store_stats);
  stats.store_errors = store_errors_.load(std::memory_order_relaxed);
  stats.families = family_stats();
  stats.hot_keys = hot_keys(20);
  return stats;
}

std::vector<HotKey> AssistantCache::hot_keys(std::size_t n) const { return hot_keys_->top(n); }

// A hit for the hot keys, by the id the family knows the entry by.
void AssistantCache::count_hit(CacheFamily family, std::string_view stored_key) {
  std::string_view id = stored_key.substr(keys_.namespace_prefix().size());
  constexpr std::string_view kTokenPrefix = "ai_assistant:access_token:";
  constexpr std::string_view kConversationPrefix = "ai_assistant:conversation:";
  constexpr std::string_view kAiConfigPrefix = "ai_assistant:ai_config:";
  switch (family) {
    case CacheFamily::kToken: id.remove_prefix(std::min(id.size(), kTokenPrefix.size())); break;
    case CacheFamily::kConversation:
      id.remove_prefix(std::min(id.size(), kConversationPrefix.size()));
      break;
    case CacheFamily::kAiConfig:
      id.remove_prefix(std::min(id.size(), kAiConfigPrefix.size()));
      break;
    case CacheFamily::kKv: break;
  }
  hot_keys_->record(family, id);
}

std::array<FamilyStats, kCacheFamilies.size()> AssistantCache::family_stats() const noexcept {
  std::array<FamilyStats, kCacheFamilies.size()> out{};
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i].hits = family_counters_[i].hits.load(std::memory_order_relaxed);
    out[i].misses = family_counters_[i].misses.load(std::memory_order_relaxed);
  }
  ttl_signals_->add_to(out);
  return out;
}

void AssistantCache::count_read(CacheFamily family, bool hit) noexcept {
  auto& counters = family_counters_[static_cast<std::size_t>(family)];
  (hit ? counters.hits : counters.misses).fetch_add(1, std::memory_order_relaxed);
}

// --- Shared paths --------------------------------------------------------------

// With its TTL, for the age at hit: one round trip on Redis (GET and PTTL
// pipelined), none more on the memory store (one lookup), and the near
// cache keeps the deadline.
Result<std::optional<ValueWithTtl>> AssistantCache::read_document(CacheFamily family,
                                                                   const std::string& key) {
  auto value = store_->get_with_ttl(key);
  if (!value) {
    auto failed = failed_read<ValueWithTtl>(std::move(value).error());
    if (!failed.failed()) count_read(family, false);
    return std::move(failed).result();
  } else if (!*value) {
    count_read(family, false);
    ttl_signals_->miss(family, key, family_ttl(family));
  }
  return value;
}

void AssistantCache::count_document_hit(CacheFamily family, std::string_view stored_key,
                                        const KeyTtl& left) {
  count_read(family, true);
  count_hit(family, stored_key);
  ttl_signals_->hit(family, left, family_ttl(family));
}

Ttl AssistantCache::family_ttl(CacheFamily family) const noexcept {
  switch (family) {
    case CacheFamily::kToken: break;  // the platform's expires_in, per token
    // The reloadable defaults (set_default_ttls), so the signals follow a
    // reload.
    case CacheFamily::kConversation: return load_ttl(conversation_ttl_);
    case CacheFamily::kAiConfig: return load_ttl(ai_config_ttl_);
    case CacheFamily::kKv: return load_ttl(kv_ttl_);
  }
  return Ttl::use_default();
}

Lookup<JsonDocument> AssistantCache::get_document(CacheFamily family,
                                                  const Result<std::string>& key) {
  if (!key) return std::unexpected(key.error());
  auto read = read_document(family, *key);
  if (!read) return std::unexpected(std::move(read).error());
  if (!*read) return std::nullopt;
  return found_document(family, *key, std::move(**read));
}

Lookup<JsonDocument> AssistantCache::found_document(CacheFamily family, const std::string& key,
                                                    ValueWithTtl value) {
  auto document = checked_document(key, value);
  if (!document) {
    return make_error(ErrorCode::kFailedPrecondition,
                      fmt::format("the value stored at {} is not JSON: {}", key,
                                  document.error().message));
  }
  count_document_hit(family, key, value.ttl);
  return std::move(*document);
}

Result<JsonDocument> AssistantCache::checked_document(const std::string& key,
                                                      ValueWithTtl& value) {
  // Only this process writes to a process-local store, and every write path
  // above stores valid JSON, so there is nothing to re-check. A shared store
  // may hold anything another program wrote: checked once per local copy
  // (the store keeps the vouch with its near-cache entry), else every read.
  if (process_local_ || value.vouched) {
    return JsonDocument::from_trusted_text(std::move(value.value));
  }
  auto document = JsonDocument::parse(value.value);
  if (document) store_->vouch_local(key, value.value);
  return document;
}

std::optional<Lookup<JsonDocument>> AssistantCache::get_if_local(CacheFamily family,
                                                                std::string_view id) {
  if (family == CacheFamily::kToken) return std::nullopt;
  Result<std::string> key = family == CacheFamily::kConversation ? keys_.conversation(id)
                            : family == CacheFamily::kAiConfig   ? keys_.ai_config(id)
                                                                 : keys_.make(id);
  if (process_local_) return get_document(family, key);
  if (!key) return Lookup<JsonDocument>(std::unexpected(std::move(key).error()));
  std::optional<ValueWithTtl> value = store_->peek_local(*key);
  if (!value) return std::nullopt;
  return found_document(family, *key, std::move(*value));
}

Status AssistantCache::set_document(const Result<std::string>& key, const JsonDocument& value,
                                    Ttl ttl) {
  if (!key) return std::unexpected(key.error());
  auto stored = store_->set(*key, value.text(), ttl);
  if (!stored) return store_failed(std::move(stored.error()));
  ttl_signals_->written(*key, ttl);
  return {};
}

Result<bool> AssistantCache::remove_key(const Result<std::string>& key) {
  if (!key) return std::unexpected(key.error());
  auto removed = store_->remove(*key);
  if (!removed) return store_failed(std::move(removed.error()));
  ttl_signals_->removed(*key);
  return removed;
}

}  // namespace aicache
