// The memory store's entry: one heap block holding a header, the key bytes
// and the value bytes, and the intrusive links by which a shard's three
// structures (EntryTable, LruList, ExpiryHeap) hold it. No structure
// allocates per entry: linking an entry only writes its own fields.
//
// Each field of the header belongs to exactly one structure, which alone
// writes it while the entry is linked there:
//   next_in_bucket   EntryTable (hash chain); after unlinking, Graveyard
//   lru_prev/next    LruList
//   deadline         ExpiryHeap (set_deadline) once the entry is linked
//   heap_index       ExpiryHeap
//   hash             fixed at creation
//   key/value sizes  fixed at creation (a value is only ever rewritten in
//                    place with the same size)
//
// Internal to the library and its tests. Not thread-safe: every structure
// holding an entry is guarded by its shard's lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <string_view>

namespace aicache::memory {

// Deadlines are Clock nanoseconds since the clock's epoch; this one means
// "never expires" (and keeps the entry out of the expiry heap).
inline constexpr std::int64_t kNoDeadline = std::numeric_limits<std::int64_t>::max();

struct Entry {
  Entry* next_in_bucket;  // hash chain; once unlinked, the Graveyard list
  Entry* lru_prev;
  Entry* lru_next;
  std::int64_t deadline;     // kNoDeadline: never expires (and not in the heap)
  std::uint32_t hash;        // low 32 bits of the key's hash: bucket index
  std::uint32_t heap_index;  // slot in the ExpiryHeap when deadline != kNoDeadline
  std::uint32_t key_size;
  std::uint32_t value_size;

  char* data() noexcept { return reinterpret_cast<char*>(this + 1); }
  const char* data() const noexcept { return reinterpret_cast<const char*>(this + 1); }
  std::string_view key() const noexcept { return {data(), key_size}; }
  std::string_view value() const noexcept { return {data() + key_size, value_size}; }
  bool expired(std::int64_t now) const noexcept { return deadline <= now; }

  // Rewrites the value in place; `value.size()` must equal value_size.
  void overwrite_value(std::string_view value) noexcept {
    if (!value.empty()) std::memcpy(data() + key_size, value.data(), value.size());
  }

  // A new, unlinked entry in one block. Key and value sizes must fit in 32
  // bits (the store checks before it calls). Throws std::bad_alloc.
  static Entry* create(std::string_view key, std::uint32_t hash, std::string_view value,
                       std::int64_t deadline) {
    void* block = ::operator new(sizeof(Entry) + key.size() + value.size());
    auto* e = new (block) Entry{nullptr,
                                nullptr,
                                nullptr,
                                deadline,
                                hash,
                                0,
                                static_cast<std::uint32_t>(key.size()),
                                static_cast<std::uint32_t>(value.size())};
    std::memcpy(e->data(), key.data(), key.size());
    e->overwrite_value(value);
    return e;
  }
  // Frees a block from create(); it must be linked nowhere.
  static void destroy(Entry* e) noexcept { ::operator delete(static_cast<void*>(e)); }
};
static_assert(sizeof(Entry) == 48, "keep the header small: it is paid per entry");

// The accounted size of an entry is key + value + kEntryOverhead: an
// estimate of the header, the allocator's own header and 16-byte rounding,
// one bucket slot (at load factor ~1) and one heap slot (bench/memory_overhead
// measures the real figure). Reported in stats() as entry_overhead_bytes.
inline constexpr std::size_t kEntryOverhead = sizeof(Entry) + 16 + 8 + 8;

constexpr std::size_t charge_of(std::size_t key_size, std::size_t value_size) noexcept {
  return key_size + value_size + kEntryOverhead;
}
inline std::size_t charge_of(const Entry* e) noexcept {
  return charge_of(e->key_size, e->value_size);
}

// Entries unlinked under a shard lock, freed when the Graveyard goes out of
// scope, so that the lock is never held across operator delete. Declare it
// BEFORE the lock guard, so that it is destroyed after the unlock.
class Graveyard {
 public:
  Graveyard() = default;
  Graveyard(const Graveyard&) = delete;
  Graveyard& operator=(const Graveyard&) = delete;
  ~Graveyard() {
    while (head_ != nullptr) {
      Entry* next = head_->next_in_bucket;
      Entry::destroy(head_);
      head_ = next;
    }
  }
  // Takes ownership of `e`, which must be linked nowhere.
  void bury(Entry* e) noexcept {
    e->next_in_bucket = head_;
    head_ = e;
  }

 private:
  Entry* head_ = nullptr;
};

}  // namespace aicache::memory
