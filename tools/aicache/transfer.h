// `aicache warm FILE`: loads cache entries from JSON Lines into the
// configured store or through a running service (docs/operations.md).
//
// One object per line:
//   {"family": "conversation" | "ai_config" | "kv", "id": "...", "value": <JSON>,
//    "ttl": <seconds, optional>}
// `id` is the conversation id, the user id or the kv key. The file is read
// a line at a time (memory is bounded by the longest line, at most
// kMaxWarmLineBytes), so a file of any length loads.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "aicache/assistant_cache.h"
#include "aicache/json.h"
#include "aicache/status.h"
#include "aicache/ttl.h"
#include "options.h"
#include "session.h"

namespace aicache::cli {

// A line longer than this is refused (and skipped) without being held whole.
inline constexpr std::size_t kMaxWarmLineBytes = 64u << 20;

struct WarmEntry {
  CacheFamily family = CacheFamily::kKv;
  std::string id;
  JsonDocument value;
  Ttl ttl = Ttl::use_default();
};

// One line parsed and checked: an object with exactly the fields above,
// a known family other than "token", a non-empty id, a value, and a ttl
// that is a whole number of seconds from 1 to 100 years. kInvalidArgument
// saying why.
Result<WarmEntry> parse_warm_line(std::string_view line);

// warm FILE ("-": standard input). Exit codes: 0 every line loaded; 1 some
// lines were refused (each reported on stderr with its line number and
// reason; the others loaded); 2 usage (no such file); 3 the store or the
// service failed, which stops the load (the line is named).
int run_warm(Session& session, const Request& request);

// export --family F: the family's entries on stdout, one JSON Lines object
// each ("ttl": the whole seconds left, rounded up; absent for an entry that
// never expires), a page at a time (memory bounded by a page). Exit codes:
// 0 done; 2 usage (an unknown family, "token"); 3 the store or service
// failed, or the store cannot list its keys.
int run_export(Session& session, const Request& request);

}  // namespace aicache::cli
