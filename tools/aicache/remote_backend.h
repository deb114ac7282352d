// The commands' Backend through a running `aicache serve` (--server URL /
// AICACHE_SERVER), over its HTTP API (include/aicache/server.h) with the
// client of remote.h. The service's key prefix and apps apply; nothing local
// is opened.
//
// Statuses become errors as a local store's failures would (the exit code
// follows the error code, see backend.h): 200 is the answer; 404 is a miss
// for a key, kInvalidArgument for an unknown token app; 400, 413 →
// kInvalidArgument with the service's message; 401 → kConfig
// (AICACHE_API_TOKEN missing or wrong); 502 with the platform's
// configuration error → kConfig (as locally); 429 (a refresh beyond the
// refresh limits), 502, 503, 504 and anything else → kUnavailable naming the
// status; no connection at all → kUnavailable or kTimeout naming the URL.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "backend.h"
#include "remote.h"

namespace aicache::cli {

class RemoteBackend final : public Backend {
 public:
  // `api_token_sent`: whether `client` carries an API token (for the message
  // of a 401).
  RemoteBackend(std::unique_ptr<RemoteClient> client, bool api_token_sent);

  Status check_key(std::string_view key) override;
  Status check_token_app(Channel channel, std::string_view app_key) override;
  Status open() override;
  Status open_tokens() override;

  Result<std::optional<JsonDocument>> get(std::string_view key) override;
  Result<std::optional<std::string>> get_raw(std::string_view key) override;
  Status set(std::string_view key, const JsonDocument& value, Ttl ttl) override;
  Result<bool> remove(std::string_view key) override;
  Result<KeyTtl> ttl(std::string_view key) override;
  Result<CacheStats> stats() override;
  Status put_entry(CacheFamily family, std::string_view id, const JsonDocument& value,
                   Ttl ttl) override;
  Result<ExportPage> export_page(CacheFamily family, std::string_view cursor) override;

  Result<Token> token(std::string_view channel, std::string_view app_key,
                      bool force_refresh) override;
  Result<bool> invalidate_token(std::string_view channel, std::string_view app_key,
                                std::string_view access_token) override;

 private:
  // The service's value for `key` (200), nullopt for a miss (404).
  Result<std::optional<std::string>> get_body(std::string_view key);
  // A reply that is not the answer, as an error.
  Error failure(const HttpReply& reply) const;

  std::unique_ptr<RemoteClient> client_;
  bool api_token_sent_;
};

}  // namespace aicache::cli
