// Entries for the tests of the memory store's structures: made with
// Entry::create like the store's, and all freed when the pool goes, whatever
// the structure under test did with them (the structures never own entries).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "memory/entry.h"

namespace aicache::memory {

class EntryPool {
 public:
  EntryPool() = default;
  EntryPool(const EntryPool&) = delete;
  EntryPool& operator=(const EntryPool&) = delete;
  ~EntryPool() {
    for (Entry* e : entries_) Entry::destroy(e);
  }

  Entry* make(std::string_view key, std::int64_t deadline = kNoDeadline, std::uint32_t hash = 0,
              std::string_view value = "v") {
    entries_.push_back(Entry::create(key, hash, value, deadline));
    return entries_.back();
  }

 private:
  std::vector<Entry*> entries_;
};

}  // namespace aicache::memory
