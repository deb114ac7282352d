// What the commands of `aicache` act on: the local store (local_backend.h)
// or a running `aicache serve` (remote_backend.h, for --server /
// AICACHE_SERVER). The commands (commands.cc) are written once against this
// interface; what they print and the exit codes are theirs alone.
//
// Errors carry the code the exit code is chosen by (kInvalidArgument and
// kConfig: usage, exit 2; anything else: exit 3) and a message the command
// prints after its own context ("get: ..."). A miss is a value, as in the
// library: nullopt, false, KeyTtl::State::kMissing.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "aicache/assistant_cache.h"
#include "aicache/json.h"
#include "aicache/status.h"
#include "aicache/store.h"
#include "aicache/token_manager.h"
#include "aicache/token_provider.h"
#include "aicache/ttl.h"

namespace aicache::cli {

class Backend {
 public:
  Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  virtual ~Backend() = default;

  // --- Checks and setup, before anything is read or written. Their errors
  // name what failed in the message itself (the command adds no context),
  // except check_key's and check_token_app's (see there).

  // The key rules of the local configuration (prefix, length, characters);
  // the command prints "invalid key: {message}". A service checks keys with
  // its own prefix, so the remote backend accepts every key here.
  virtual Status check_key(std::string_view key) = 0;
  // Whether APP_KEY of `channel` is an app this backend can fetch tokens
  // for; the command prints "token: {message}". Locally the configured
  // [[apps]] (no store needed); a service knows its own apps and says so
  // when asked (404), so the remote backend accepts every app here.
  virtual Status check_token_app(Channel channel, std::string_view app_key) = 0;
  // Readies the data commands: locally, opens the store. Store failures are
  // reported, never turned into misses (an operator must see an outage).
  virtual Status open() = 0;
  // Readies the token commands: locally, opens the store and the token
  // manager with every configured app.
  virtual Status open_tokens() = 0;

  // --- The data commands (generic keys, under the backend's key prefix).

  // The value as JSON.
  virtual Result<std::optional<JsonDocument>> get(std::string_view key) = 0;
  // The bytes as stored (locally, even if they are not JSON: written by
  // another program into a shared Redis); through a service, the JSON text
  // it answered.
  virtual Result<std::optional<std::string>> get_raw(std::string_view key) = 0;
  virtual Status set(std::string_view key, const JsonDocument& value, Ttl ttl) = 0;
  // False if there was no such key.
  virtual Result<bool> remove(std::string_view key) = 0;
  virtual Result<KeyTtl> ttl(std::string_view key) = 0;
  // The store's figures and the cache's count of store errors.
  virtual Result<CacheStats> stats() = 0;

  // Stores one entry of a family with its typed write (`aicache warm`):
  // conversation and ai_config by their id, kv by its key (reserved keys
  // refused). CacheFamily::kToken is refused (kInvalidArgument): tokens are
  // never imported, the token manager fetches them.
  virtual Status put_entry(CacheFamily family, std::string_view id, const JsonDocument& value,
                           Ttl ttl) = 0;
  // A page of a family's entries with their remaining TTLs (`aicache
  // export`; AssistantCache::export_page): start with an empty cursor, pass
  // each page's on until it comes back empty.
  virtual Result<ExportPage> export_page(CacheFamily family, std::string_view cursor) = 0;

  // --- The token commands. REQUIRES: open_tokens() succeeded.

  // The current token, fetched if need be; with `force_refresh`, a new one
  // from the platform, which revokes the old one where the platform does.
  virtual Result<Token> token(std::string_view channel, std::string_view app_key,
                              bool force_refresh) = 0;
  // Removes `access_token` if it is the current token; false if it is not.
  virtual Result<bool> invalidate_token(std::string_view channel, std::string_view app_key,
                                        std::string_view access_token) = 0;
};

// Text from the command line or a service in a message is shown through
// aicache::printable (one line, no escape sequences), at most this long.
inline constexpr std::size_t kShownBytes = 64;

// `error` with "{context}: " in front of its message.
inline Error in_context(std::string_view context, Error error) {
  error.message = std::string(context) + ": " + error.message;
  return error;
}

}  // namespace aicache::cli
