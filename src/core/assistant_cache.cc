#include "aicache/assistant_cache.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/burst_log.h"
#include "core/token_codec.h"

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

Result<std::unique_ptr<AssistantCache>> AssistantCache::create(std::shared_ptr<Store> store,
                                                               AssistantCacheOptions options) {
  if (!store) return make_error(ErrorCode::kInvalidArgument, "AssistantCache needs a store");
  auto keys = KeyMaker::create(options.key_prefix, options.key_version);
  if (!keys) return std::unexpected(keys.error());
  return std::unique_ptr<AssistantCache>(
      new AssistantCache(std::move(store), std::move(options), std::move(*keys)));
}

AssistantCache::AssistantCache(std::shared_ptr<Store> store, AssistantCacheOptions options,
                               KeyMaker keys)
    : store_(std::move(store)),
      options_(std::move(options)),
      keys_(std::move(keys)),
      error_log_(std::make_unique<internal::BurstLog>(
          "store error", options_.error_log_interval,
          options_.clock ? options_.clock : Clock::real())) {}

AssistantCache::~AssistantCache() = default;

std::unexpected<Error> AssistantCache::store_failed(Error error) {
  if (is_store_failure(error.code)) {
    store_errors_.fetch_add(1, std::memory_order_relaxed);
    error_log_->report(error);
  }
  return std::unexpected(std::move(error));
}

template <class T>
Result<std::optional<T>> AssistantCache::failed_read(Error error) {
  const bool miss = treat_as_miss(error);
  auto failure = store_failed(std::move(error));
  if (miss) return std::optional<T>();
  return failure;
}

bool AssistantCache::treat_as_miss(const Error& error) const noexcept {
  return options_.store_errors == AssistantCacheOptions::StoreErrors::kTreatAsMiss &&
         is_store_failure(error.code);
}

// --- Access tokens ---------------------------------------------------------

Result<std::optional<std::string>> AssistantCache::get_access_token(std::string_view channel,
                                                                    std::string_view app_id) {
  auto key = keys_.access_token(channel, app_id);
  if (!key) return std::unexpected(key.error());
  auto value = store_->get(*key);
  if (!value) {
    return failed_read<std::string>(std::move(value.error()));
  }
  if (!*value) return std::nullopt;
  auto token = decode_token(std::move(**value), *key);
  if (!token) return std::unexpected(token.error());
  return std::optional<std::string>(std::move(*token));
}

Status AssistantCache::set_access_token(std::string_view channel, std::string_view app_id,
                                        std::string_view token, Ttl ttl) {
  auto key = keys_.access_token(channel, app_id);
  if (!key) return std::unexpected(key.error());
  if (auto ok = validate_token(token); !ok) return ok;
  auto stored = store_->set(*key, encode_token(token), ttl.or_default(options_.token_ttl));
  if (!stored) return store_failed(std::move(stored.error()));
  return {};
}

Result<bool> AssistantCache::remove_access_token(std::string_view channel,
                                                 std::string_view app_id) {
  return remove_key(keys_.access_token(channel, app_id));
}

// --- Conversations and AI configuration -----------------------------------

Result<std::optional<JsonDocument>> AssistantCache::get_conversation(
    std::string_view conversation_id) {
  return get_document(keys_.conversation(conversation_id));
}

Status AssistantCache::set_conversation(std::string_view conversation_id,
                                        const JsonDocument& conversation, Ttl ttl) {
  return set_document(keys_.conversation(conversation_id), conversation,
                      ttl.or_default(options_.conversation_ttl));
}

Result<bool> AssistantCache::remove_conversation(std::string_view conversation_id) {
  return remove_key(keys_.conversation(conversation_id));
}

Result<std::optional<JsonDocument>> AssistantCache::get_ai_config(std::string_view user_id) {
  return get_document(keys_.ai_config(user_id));
}

Status AssistantCache::set_ai_config(std::string_view user_id, const JsonDocument& config,
                                     Ttl ttl) {
  return set_document(keys_.ai_config(user_id), config, ttl.or_default(options_.ai_config_ttl));
}

Result<bool> AssistantCache::remove_ai_config(std::string_view user_id) {
  return remove_key(keys_.ai_config(user_id));
}

// --- Generic values ----------------------------------------------------------

Result<std::optional<JsonDocument>> AssistantCache::get(std::string_view key) {
  return get_document(keys_.make(key));
}

Result<JsonDocument> AssistantCache::get(std::string_view key, JsonDocument fallback) {
  auto value = get(key);
  if (!value) return std::unexpected(value.error());
  if (!*value) return fallback;
  return std::move(**value);
}

// The stored key for a generic write: valid, and not a reserved one (keys.h).
Result<std::string> AssistantCache::generic_write_key(std::string_view key) const {
  auto stored = keys_.make(key);
  if (!stored) return stored;
  if (auto ok = check_generic_write(key); !ok) return std::unexpected(std::move(ok.error()));
  return stored;
}

Status AssistantCache::set(std::string_view key, const JsonDocument& value, Ttl ttl) {
  return set_document(generic_write_key(key), value, ttl);
}

Result<bool> AssistantCache::remove(std::string_view key) {
  return remove_key(generic_write_key(key));
}

Result<std::int64_t> AssistantCache::incr(std::string_view key, std::int64_t delta) {
  auto stored_key = generic_write_key(key);
  if (!stored_key) return std::unexpected(stored_key.error());
  auto value = store_->incr(*stored_key, delta, Ttl::use_default());
  if (!value) return store_failed(std::move(value.error()));
  return value;
}

Result<KeyTtl> AssistantCache::ttl(std::string_view key) {
  auto stored_key = keys_.make(key);
  if (!stored_key) return std::unexpected(stored_key.error());
  auto remaining = store_->ttl(*stored_key);
  if (!remaining) {
    const bool miss = treat_as_miss(remaining.error());
    auto error = store_failed(std::move(remaining.error()));
    if (miss) return KeyTtl{};
    return error;
  }
  return remaining;
}

Result<std::uint64_t> AssistantCache::clear() {
  auto removed = store_->clear(keys_.namespace_prefix());
  if (!removed) return store_failed(std::move(removed.error()));
  return removed;
}

Result<CacheStats> AssistantCache::stats() {
  auto store_stats = store_->stats();
  if (!store_stats) return store_failed(std::move(store_stats.error()));
  CacheStats stats;
  stats.store = std::move(*store_stats);
  stats.store_errors = store_errors_.load(std::memory_order_relaxed);
  return stats;
}

// --- Shared paths --------------------------------------------------------------

Result<std::optional<JsonDocument>> AssistantCache::get_document(const Result<std::string>& key) {
  if (!key) return std::unexpected(key.error());
  auto value = store_->get(*key);
  if (!value) {
    return failed_read<JsonDocument>(std::move(value.error()));
  }
  if (!*value) return std::nullopt;
  // Only this process writes to a process-local store, and every write path
  // above stores valid JSON, so there is nothing to re-check. A shared store
  // may hold anything another program wrote.
  if (store_->process_local()) return JsonDocument::from_trusted_text(std::move(**value));
  auto document = JsonDocument::parse(**value);
  if (!document) {
    return make_error(ErrorCode::kFailedPrecondition,
                      fmt::format("the value stored at {} is not JSON: {}", *key,
                                  document.error().message));
  }
  return std::optional<JsonDocument>(std::move(*document));
}

Status AssistantCache::set_document(const Result<std::string>& key, const JsonDocument& value,
                                    Ttl ttl) {
  if (!key) return std::unexpected(key.error());
  auto stored = store_->set(*key, value.text(), ttl);
  if (!stored) return store_failed(std::move(stored.error()));
  return {};
}

Result<bool> AssistantCache::remove_key(const Result<std::string>& key) {
  if (!key) return std::unexpected(key.error());
  auto removed = store_->remove(*key);
  if (!removed) return store_failed(std::move(removed.error()));
  return removed;
}

}  // namespace aicache
