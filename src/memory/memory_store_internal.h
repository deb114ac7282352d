// Internal to the library and its tests: how the memory store's entries are
// spread over shards and hash chains. Not part of the public API.
#pragma once

#include <cstddef>
#include <optional>

#include "aicache/store.h"

namespace aicache::internal {

struct MemoryStoreLayout {
  std::size_t shards = 0;
  std::size_t entries = 0;        // in the tables, live or expired
  std::size_t fullest_shard = 0;  // entries in the shard that holds the most
  std::size_t longest_chain = 0;  // entries in the longest hash chain of any shard
};

// The layout of `store` if it came from make_memory_store, else nullopt.
// Walks every bucket of every shard, each under its shard's lock: O(buckets +
// entries), for tests and diagnostics, never for a request path (which is
// why the chain length is not in stats().details, read by /v1/stats and
// /metrics on every scrape).
std::optional<MemoryStoreLayout> memory_store_layout(Store& store);

}  // namespace aicache::internal
