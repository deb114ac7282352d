// How an access token is stored: as a JSON string, which is what
// django-redis's JSONSerializer writes for a Python str. Shared by
// AssistantCache and TokenManager.
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "aicache/status.h"

namespace aicache::internal {

constexpr std::size_t kMaxTokenBytes = 4096;

inline Status validate_token(std::string_view token) {
  if (token.empty()) return make_error(ErrorCode::kInvalidArgument, "access token is empty");
  if (token.size() > kMaxTokenBytes) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("access token is {} bytes long; at most {} are allowed",
                                  token.size(), kMaxTokenBytes));
  }
  for (std::size_t i = 0; i < token.size(); ++i) {
    const auto c = static_cast<unsigned char>(token[i]);
    if (c <= 0x20 || c >= 0x7F) {
      // The token itself is a secret: name the position, never the content.
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("access token has a byte that is not printable ASCII at "
                                    "position {}",
                                    i));
    }
  }
  return {};
}

// A token as a JSON string; it is printable ASCII, so only '"' and '\' need
// escaping.
inline std::string encode_token(std::string_view token) {
  std::string out;
  out.reserve(token.size() + 2);
  out.push_back('"');
  for (char c : token) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// The token from its stored JSON string. The common case (no escapes) is a
// substring; escaped forms (as Python's json.dumps may write) take the full
// parser.
inline Result<std::string> decode_token(std::string value, std::string_view key) {
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"' &&
      value.find('\\') == std::string::npos) {
    value.pop_back();
    value.erase(0, 1);
    return value;
  }
  auto parsed = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_string()) return parsed.get<std::string>();
  return make_error(ErrorCode::kFailedPrecondition,
                    fmt::format("the value stored at {} is not an access token (a JSON string)",
                                key));
}

}  // namespace aicache::internal
