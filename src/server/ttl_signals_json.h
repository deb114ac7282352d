// The TTL signals (FamilyStats: hit_age_buckets, hit_age_sum_ms,
// expired_recently_misses) as JSON, one shape for /v1/stats ("cache" ->
// "ttl_signals"), `aicache stats --json`, and RemoteBackend, which reads
// them back:
//
//   {"hit_age_bounds_seconds": [1, 5, ..., 7200],
//    "families": {"conversation": {"hit_age_buckets": [12 counts, the last
//                                   above 7200 s; not cumulative],
//                                  "hit_age_count": n, "hit_age_sum_ms": n,
//                                  "expired_recently_misses": n},
//                 "ai_config": {...}, "kv": {...}}}
//
// Tokens have none (their TTL is the platform's; assistant_cache.h).
#pragma once

#include <array>

#include <nlohmann/json.hpp>

#include "aicache/assistant_cache.h"

namespace aicache::server {

nlohmann::ordered_json ttl_signals_json(
    const std::array<FamilyStats, kCacheFamilies.size()>& families);

// Fills the TTL signals of `families` from what ttl_signals_json wrote;
// anything missing or mistyped (the JSON came over the network) reads as zero.
void read_ttl_signals_json(const nlohmann::json& json,
                           std::array<FamilyStats, kCacheFamilies.size()>& families);

}  // namespace aicache::server
