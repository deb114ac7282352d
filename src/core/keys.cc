#include "aicache/keys.h"

#include <fmt/format.h>

#include <array>
#include <initializer_list>
#include <cstdint>

#include "core/utf8.h"
#include "core/try.h"

namespace aicache {
namespace {

using internal::decode_utf8;

constexpr std::string_view kTokenKey = "ai_assistant:access_token:";
constexpr std::string_view kConversationKey = "ai_assistant:conversation:";
constexpr std::string_view kAiConfigKey = "ai_assistant:ai_config:";

// Not in a key prefix: the separator, and what a Redis glob pattern (the
// pattern of clear()) would read as more than itself.
constexpr std::string_view kPrefixForbidden = ":*?[]\\";

// Printable, and safe in a stored key, a Redis glob pattern and a URL path.
constexpr std::string_view kPartPunctuation = "-_.@+=/~!$&,;%^|#";

// Control characters (C0, DEL, C1) and every Unicode space: never in a key.
bool is_control_or_space(char32_t c) {
  if (c <= 0x20 || (c >= 0x7F && c <= 0xA0)) return true;
  switch (c) {
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000: case 0xFEFF:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

std::string describe_byte(unsigned char c) {
  if (c == ' ') return "a space";
  if (c < 0x20 || c >= 0x7F) return fmt::format("byte 0x{:02x}", c);
  return fmt::format("'{}'", static_cast<char>(c));
}

// Checks the rules every stored key obeys: well-formed UTF-8, no control
// characters, no spaces.
Status check_key_text(std::string_view text, std::string_view what) {
  for (std::size_t i = 0; i < text.size();) {
    char32_t c;
    const std::size_t length = decode_utf8(text, i, c);
    if (length == 0) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{} is not valid UTF-8 at byte {}", what, i));
    }
    if (is_control_or_space(c)) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{} contains {} at byte {} (control characters and spaces "
                                    "are not allowed)",
                                    what, length == 1 ? describe_byte(text[i]) : "a Unicode space", i));
    }
    i += length;
  }
  return {};
}

}  // namespace

KeyFamily key_family(std::string_view key) noexcept {
  if (!key.starts_with(kReservedKeyPrefix)) return KeyFamily::kGeneric;
  if (key.starts_with(kTokenKey)) return KeyFamily::kAccessToken;
  if (key.starts_with(kConversationKey)) return KeyFamily::kConversation;
  if (key.starts_with(kAiConfigKey)) return KeyFamily::kAiConfig;
  key.remove_prefix(kReservedKeyPrefix.size());
  if (key.starts_with("token_")) return KeyFamily::kTokenState;
  return KeyFamily::kReserved;
}

Status check_generic_write(std::string_view key) {
  std::string_view owner;
  switch (key_family(key)) {
    case KeyFamily::kGeneric: return {};
    case KeyFamily::kAccessToken:
      owner = "access tokens: set_access_token(), remove_access_token() or TokenManager";
      break;
    case KeyFamily::kTokenState:
      owner = "the token manager's own state (leases, refresh limits): TokenManager";
      break;
    case KeyFamily::kConversation:
      owner = "conversations: set_conversation(), remove_conversation()";
      break;
    case KeyFamily::kAiConfig:
      owner = "AI configurations: set_ai_config(), remove_ai_config()";
      break;
    case KeyFamily::kReserved:
      owner = "the library's typed entries";
      break;
  }
  return make_error(ErrorCode::kInvalidArgument,
                    fmt::format("keys starting with \"{}\" are reserved; generic writes may not "
                                "change them. This one belongs to {}",
                                kReservedKeyPrefix, owner));
}

Status validate_key_part(std::string_view part, std::string_view what) {
  if (part.empty()) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("{} is empty", what));
  }
  if (part.size() > kMaxKeyPartBytes) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{} is {} bytes long; at most {} are allowed", what,
                                  part.size(), kMaxKeyPartBytes));
  }
  static constexpr auto kAllowedAscii = [] {
    std::array<bool, 128> table{};
    for (char c = '0'; c <= '9'; ++c) table[static_cast<unsigned char>(c)] = true;
    for (char c = 'a'; c <= 'z'; ++c) table[static_cast<unsigned char>(c)] = true;
    for (char c = 'A'; c <= 'Z'; ++c) table[static_cast<unsigned char>(c)] = true;
    for (char c : kPartPunctuation) table[static_cast<unsigned char>(c)] = true;
    return table;
  }();
  for (std::size_t i = 0; i < part.size();) {
    const auto c = static_cast<unsigned char>(part[i]);
    if (c < 0x80) {
      if (!kAllowedAscii[c]) {
        return make_error(ErrorCode::kInvalidArgument,
                          fmt::format("{} contains {} at byte {}; allowed are letters, digits "
                                      "and \"{}\"",
                                      what, describe_byte(c), i, kPartPunctuation));
      }
      ++i;
      continue;
    }
    char32_t code_point;
    const std::size_t length = decode_utf8(part, i, code_point);
    if (length == 0) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{} is not valid UTF-8 at byte {}", what, i));
    }
    if (is_control_or_space(code_point)) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{} contains a control or space character at byte {}", what, i));
    }
    i += length;
  }
  return {};
}

KeyMaker::KeyMaker(std::string prefix, std::int64_t version)
    : prefix_(std::move(prefix)),
      version_(version),
      namespace_(fmt::format("{}:{}:", prefix_, version_)) {}

Result<KeyMaker> KeyMaker::create(std::string_view prefix, std::int64_t version) {
  if (version < 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("key version must be 0 or more, not {}", version));
  }
  AICACHE_TRY(check_key_text(prefix, "key prefix"));
  // clear() removes "{prefix}:{version}:*". A ':' in the prefix lets one
  // namespace contain another (prefix "a" version 1 holds every key of prefix
  // "a:1"), and a glob character would widen the pattern itself.
  if (const std::size_t bad = prefix.find_first_of(kPrefixForbidden);
      bad != std::string_view::npos) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("key prefix contains {} at byte {}; ':' (the separator) and the "
                                  "glob characters *?[]\\ are not allowed in a prefix",
                                  describe_byte(static_cast<unsigned char>(prefix[bad])), bad));
  }
  KeyMaker maker{std::string(prefix), version};
  if (maker.namespace_.size() >= kMaxStoredKeyBytes) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("key prefix is {} bytes long; it leaves no room for keys",
                                  prefix.size()));
  }
  return maker;
}

Result<std::string> KeyMaker::make(std::string_view key) const {
  if (key.empty()) return make_error(ErrorCode::kInvalidArgument, "key is empty");
  AICACHE_TRY(check_key_text(key, "key"));
  return join({key});
}

std::optional<std::string_view> KeyMaker::logical(std::string_view stored_key) const noexcept {
  if (!stored_key.starts_with(namespace_)) return std::nullopt;
  return stored_key.substr(namespace_.size());
}

// Typed keys are built in one allocation: their fixed parts are known to be
// valid and their external parts were just validated, so only the length is
// left to check.
Result<std::string> KeyMaker::join(std::initializer_list<std::string_view> parts) const {
  std::size_t size = namespace_.size();
  for (auto part : parts) size += part.size();
  if (size > kMaxStoredKeyBytes) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("key is {} bytes long with its prefix \"{}\"; at most {} "
                                  "are allowed",
                                  size, namespace_, kMaxStoredKeyBytes));
  }
  std::string stored;
  stored.reserve(size);
  stored.append(namespace_);
  for (auto part : parts) stored.append(part);
  return stored;
}

Result<std::string> KeyMaker::access_token(std::string_view channel,
                                           std::string_view app_id) const {
  AICACHE_TRY(validate_key_part(channel, "channel"));
  AICACHE_TRY(validate_key_part(app_id, "app id"));
  return join({kTokenKey, channel, ":", app_id});
}

Result<std::string> KeyMaker::conversation(std::string_view conversation_id) const {
  AICACHE_TRY(validate_key_part(conversation_id, "conversation id"));
  return join({kConversationKey, conversation_id});
}

Result<std::string> KeyMaker::ai_config(std::string_view user_id) const {
  AICACHE_TRY(validate_key_part(user_id, "user id"));
  return join({kAiConfigKey, user_id});
}

}  // namespace aicache
