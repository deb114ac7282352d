// A Lua script run with EVALSHA, falling back to EVAL on NOSCRIPT (which
// also caches it on the server, e.g. after a restart or SCRIPT FLUSH).
#pragma once

#include <string>
#include <string_view>

namespace aicache::redis {

// The SHA-1 of `data` in lower-case hex, as Redis names scripts.
std::string sha1_hex(std::string_view data);

struct RedisScript {
  explicit RedisScript(std::string_view source_text)
      : source(source_text), sha(sha1_hex(source_text)) {}
  std::string source;
  std::string sha;  // computed once
};

}  // namespace aicache::redis
