// The commands' Backend over this process's own store: an AssistantCache
// over the configured store (Redis, or a memory store that lives as long as
// the command) and a TokenManager with the configured apps. Every call of
// the command line into AssistantCache and TokenManager is in
// local_backend.cc, and so is the opening of the service's (serve.cc).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "aicache/config.h"
#include "aicache/keys.h"
#include "backend.h"

namespace aicache::cli {

class LocalBackend final : public Backend {
 public:
  // Checks the configured key prefix and version ("key prefix: ..."); opens
  // nothing. `config` must outlive the backend.
  static Result<std::unique_ptr<LocalBackend>> create(const Config& config);

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
  LocalBackend(const Config& config, KeyMaker keys);

  const Config& config_;
  KeyMaker keys_;
  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> tokens_;  // after cache_: it uses the cache
};

// What `aicache serve` serves: the configured store and apps, with failed
// store reads turned into misses (the library's default: an assistant keeps
// answering from its database while Redis is down). The refresher is not
// started. Errors name what failed ("cannot open the store: ...").
struct LocalService {
  std::shared_ptr<AssistantCache> cache;
  std::shared_ptr<TokenManager> tokens;
};
Result<LocalService> open_service(const Config& config);

}  // namespace aicache::cli
