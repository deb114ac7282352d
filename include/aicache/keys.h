// KeyMaker: how logical keys become stored keys, and which keys are valid.
//
// The stored key is Django's default key function: "{prefix}:{version}:{key}"
// (prefix empty and version 1 by default, so "ai_assistant:x" is stored as
// ":1:ai_assistant:x"). A Django app with the same KEY_PREFIX and VERSION sees
// the same entries.
//
// Rules:
//  - A stored key is at most 250 bytes and holds no control characters
//    (bytes < 0x20 or 0x7f) and no spaces (memcached's rules, which Django
//    warns about). Longer or unsafe keys are refused, never truncated.
//  - Parts of typed keys that come from outside (channel, app id, conversation
//    id, user id) are identifiers: non-empty, at most 128 bytes, made of ASCII
//    letters, digits and "-_.@+=/~!$&,;%^|#" plus well-formed UTF-8 letters
//    beyond ASCII, never ':' (the separator), whitespace, control bytes,
//    glob characters "*?[]\" or braces "{}" (Redis hash tags). Because no part
//    can contain the separator, two different (channel, app id) pairs can
//    never build the same stored key.
//
// Reserved keys. Logical keys starting with "ai_assistant:" belong to the
// library's typed entries: access tokens, the token manager's state (leases,
// refresh limits), conversations and AI configurations. They are written only
// through the typed calls, which validate what they store (a token must be a
// token) and keep the token manager's invariants (a lease is only ever held by
// a fetch in progress). A generic write there could hand every caller a forged
// token, or, by setting the lease with a long TTL, stop every refresh.
//
// Where the rule lives: here (is_reserved_key()), and AssistantCache's
// generic writers (set, remove, incr) refuse reserved keys themselves, not
// only the service's /v1/kv route and the CLI's set and del. So every
// boundary built on the library, present and future, inherits it, and no
// library user can break the token manager by accident. Generic reads (get,
// ttl) of reserved keys stay allowed: they show what is stored and change
// nothing. The Django system is not affected: it writes its typed entries
// through its own typed methods (and its own Redis client), and its generic
// keys never start with "ai_assistant:".
//
// Thread safety: immutable after construction; safe to share.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "aicache/status.h"

namespace aicache {

inline constexpr std::size_t kMaxStoredKeyBytes = 250;
inline constexpr std::size_t kMaxKeyPartBytes = 128;

// The logical-key prefix of every typed entry; see "Reserved keys" above.
inline constexpr std::string_view kReservedKeyPrefix = "ai_assistant:";

// Which typed family a logical key belongs to, so that a refusal can name the
// typed call or route that owns it.
enum class KeyFamily : std::uint8_t {
  kGeneric,      // not reserved
  kAccessToken,  // ai_assistant:access_token:...
  kTokenState,   // ai_assistant:token_...: the token manager's leases and limits
  kConversation, // ai_assistant:conversation:...
  kAiConfig,     // ai_assistant:ai_config:...
  kReserved,     // any other ai_assistant:... (kept for future typed entries)
};
KeyFamily key_family(std::string_view logical_key) noexcept;

// True for a logical key generic writes must not touch.
inline bool is_reserved_key(std::string_view logical_key) noexcept {
  return key_family(logical_key) != KeyFamily::kGeneric;
}

// OK for a key generic writes may change; else kInvalidArgument saying which
// typed calls own it. The message names the family, not the key.
Status check_generic_write(std::string_view logical_key);

// Checks one externally supplied key part; `what` names it in the error
// ("app id"), so the message reads "app id contains ':' at byte 3".
Status validate_key_part(std::string_view part, std::string_view what);

class KeyMaker {
 public:
  // Refuses (kInvalidArgument) a prefix with control characters or spaces,
  // ':' or the glob characters *?[]\ (one namespace must never contain
  // another's keys, nor clear() match beyond its own), or a version < 0.
  static Result<KeyMaker> create(std::string_view prefix = "", std::int64_t version = 1);

  const std::string& prefix() const noexcept { return prefix_; }
  std::int64_t version() const noexcept { return version_; }

  // "{prefix}:{version}:" — every stored key of this cache starts with it.
  const std::string& namespace_prefix() const noexcept { return namespace_; }

  // The stored key for a logical key, checked against the rules above.
  Result<std::string> make(std::string_view key) const;

  // The logical key of a stored key, if it belongs to this namespace.
  std::optional<std::string_view> logical(std::string_view stored_key) const noexcept;

  // Typed keys; every external part is validated.
  //   ai_assistant:access_token:{channel}:{app_id}
  //   ai_assistant:conversation:{conversation_id}
  //   ai_assistant:ai_config:{user_id}
  // (The token manager's own keys are ai_assistant:token_{what}:{channel}:{app}.)
  Result<std::string> access_token(std::string_view channel, std::string_view app_id) const;
  Result<std::string> conversation(std::string_view conversation_id) const;
  Result<std::string> ai_config(std::string_view user_id) const;

 private:
  KeyMaker(std::string prefix, std::int64_t version);
  Result<std::string> join(std::initializer_list<std::string_view> parts) const;
  std::string prefix_;
  std::int64_t version_;
  std::string namespace_;
};

}  // namespace aicache
