// Fuzz target: key building and validation (aicache/keys.h), and the
// AssistantCache operations that take key parts, on a memory store.
//
// The input is split (FuzzedDataProvider) into a key prefix, a version, two
// pairs of key parts and a generic key. Properties, beyond "no crash":
//  - an accepted key part is 1..128 bytes and holds no separator ':', no
//    space or control byte, no glob character "*?[]\" and no brace;
//  - every stored key a KeyMaker builds starts with its namespace, is at most
//    250 bytes and holds no space or control byte; logical() gives back the
//    generic key;
//  - distinct accepted parts give distinct keys (access tokens from two
//    different (channel, app id) pairs, conversations from two ids), and the
//    typed families never meet;
//  - through AssistantCache: what is accepted is stored and read back
//    unchanged; what is refused is kInvalidArgument and stores nothing.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "aicache/assistant_cache.h"
#include "aicache/json.h"
#include "aicache/keys.h"
#include "aicache/memory_store.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

bool clean_stored_key(std::string_view key) {
  for (char c : key) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return false;
  }
  return key.size() <= aicache::kMaxStoredKeyBytes;
}

bool valid_part(std::string_view part) {
  const bool ok = aicache::validate_key_part(part, "part").has_value();
  if (ok) {
    check(!part.empty() && part.size() <= aicache::kMaxKeyPartBytes);
    check(part.find_first_of(":*?[]\\{}") == std::string_view::npos);
    check(clean_stored_key(part));
  }
  return ok;
}

aicache::AssistantCache& cache() {
  static const std::shared_ptr<aicache::AssistantCache> instance = [] {
    auto created = aicache::AssistantCache::create(aicache::make_memory_store({.shards = 1}));
    check(created.has_value());
    return std::move(*created);
  }();
  return *instance;
}

std::uint64_t entries() {
  auto stats = cache().stats();
  check(stats.has_value());
  return stats->store.entries;
}

// The typed operations of AssistantCache on one (channel, app id) pair and
// one id, each cleaned up again.
void check_cache(std::string_view channel, std::string_view app, std::string_view id,
                 std::string_view token) {
  check(entries() == 0);
  const bool valid_pair = valid_part(channel) && valid_part(app);
  auto set_token = cache().set_access_token(channel, app, token);
  if (!valid_pair) {
    check(!set_token && set_token.error().code == aicache::ErrorCode::kInvalidArgument);
    check(entries() == 0);
  } else if (set_token) {
    auto got = cache().get_access_token(channel, app);
    check(got == token);
    check(cache().remove_access_token(channel, app).value_or(false));
  }

  const auto doc = aicache::JsonDocument::string(token);
  auto set_conversation = cache().set_conversation(id, doc);
  check(set_conversation.has_value() == valid_part(id));
  if (set_conversation) {
    auto got = cache().get_conversation(id);
    check(got.hit() && *got == doc);
    check(cache().remove_conversation(id).value_or(false));
  } else {
    check(set_conversation.error().code == aicache::ErrorCode::kInvalidArgument);
  }
  check(entries() == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const std::string prefix = in.ConsumeRandomLengthString(300);
  const auto version = in.ConsumeIntegralInRange<std::int64_t>(-2, 1'000'000);
  const std::string channel_a = in.ConsumeRandomLengthString(200);
  const std::string app_a = in.ConsumeRandomLengthString(200);
  const std::string channel_b = in.ConsumeRandomLengthString(200);
  const std::string app_b = in.ConsumeRandomLengthString(200);
  const std::string key = in.ConsumeRemainingBytesAsString();

  // Typed keys, through the default namespace (":1:") and the input's.
  check_cache(channel_a, app_a, app_b, channel_b);

  auto maker = aicache::KeyMaker::create(prefix, version);
  if (!maker) {
    check(maker.error().code == aicache::ErrorCode::kInvalidArgument);
    return 0;
  }
  const std::string& ns = maker->namespace_prefix();
  check(ns == prefix + ":" + std::to_string(version) + ":");
  check(ns.size() < aicache::kMaxStoredKeyBytes && clean_stored_key(ns));

  auto stored = [&](const aicache::Result<std::string>& made) {
    check(!made || (made->starts_with(ns) && clean_stored_key(*made)));
    return made;
  };

  if (auto made = stored(maker->make(key))) {
    check(maker->logical(*made) == std::string_view(key));
  }
  auto token_a = stored(maker->access_token(channel_a, app_a));
  auto token_b = stored(maker->access_token(channel_b, app_b));
  check(!token_a || (valid_part(channel_a) && valid_part(app_a)));
  if (token_a && token_b) {
    check((*token_a == *token_b) == (channel_a == channel_b && app_a == app_b));
  }
  auto conversation_a = stored(maker->conversation(app_a));
  auto conversation_b = stored(maker->conversation(app_b));
  if (conversation_a && conversation_b) {
    check((*conversation_a == *conversation_b) == (app_a == app_b));
  }
  auto config_a = stored(maker->ai_config(app_a));
  if (config_a && conversation_a) check(*config_a != *conversation_a);
  if (config_a && token_a) check(*config_a != *token_a);
  if (conversation_a && token_a) check(*conversation_a != *token_a);
  return 0;
}
