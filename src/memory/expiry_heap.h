// ExpiryHeap: a shard's expiring entries by deadline, earliest first, so that
// expired entries can be reclaimed a few at a time on each write without
// scanning the table (active reclaim; see shard.h).
//
// A binary min-heap of Entry pointers on Entry::deadline, in a vector. Each
// entry records its slot in Entry::heap_index, so that an entry found
// through the table can be removed or rescheduled in O(log n) rather than
// searched for.
//
// Invariants (between calls):
//   - slots()[i]->heap_index == i for every slot i;
//   - slots()[(i - 1) / 2]->deadline <= slots()[i]->deadline for every i > 0,
//     so slots()[0] has the earliest deadline;
//   - the heap holds exactly the linked entries whose deadline is not
//     kNoDeadline: an entry that never expires costs no slot, and moves in
//     and out as set_deadline changes that.
// Entries with equal deadlines come out in no particular order. The heap
// does not own its entries. At most 2^32 - 1 entries (heap_index is 32 bits;
// a shard holds far fewer: each entry costs at least 80 accounted bytes).
//
// Internal to the library and its tests. Not thread-safe (the shard's lock
// guards it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "memory/entry.h"

namespace aicache::memory {

class ExpiryHeap {
 public:
  ExpiryHeap() = default;
  ExpiryHeap(const ExpiryHeap&) = delete;
  ExpiryHeap& operator=(const ExpiryHeap&) = delete;

  bool empty() const noexcept { return slots_.empty(); }
  std::size_t size() const noexcept { return slots_.size(); }

  // An entry with the earliest deadline, or nullptr if no linked entry
  // expires.
  Entry* earliest() const noexcept { return slots_.empty() ? nullptr : slots_[0]; }

  // Links `e`, which must not be linked: it takes a slot iff its deadline is
  // not kNoDeadline. May throw std::bad_alloc, having changed nothing.
  void link(Entry* e) {
    if (e->deadline == kNoDeadline) return;
    slots_.push_back(e);
    sift_up(slots_.size() - 1);
  }

  // Unlinks the linked entry `e`, wherever it is in the heap.
  void unlink(Entry* e) noexcept {
    if (e->deadline != kNoDeadline) erase_slot(e->heap_index);
  }

  // Gives the linked entry `e` a new deadline and restores the invariants:
  // it enters, leaves or moves within the heap. May throw std::bad_alloc
  // (only when a never-expiring entry gets a deadline), having changed
  // nothing.
  void set_deadline(Entry* e, std::int64_t deadline) {
    const bool was_in = e->deadline != kNoDeadline;
    const bool will_be_in = deadline != kNoDeadline;
    if (!was_in && !will_be_in) return;
    if (!was_in) {
      slots_.push_back(e);  // before the deadline changes: may throw
      e->deadline = deadline;
      sift_up(slots_.size() - 1);
    } else if (!will_be_in) {
      erase_slot(e->heap_index);
      e->deadline = deadline;
    } else {
      e->deadline = deadline;
      fix(e->heap_index);
    }
  }

  // The heap's array, for tests and diagnostics.
  std::span<Entry* const> slots() const noexcept { return slots_; }

 private:
  void place(std::size_t i, Entry* e) noexcept {
    slots_[i] = e;
    e->heap_index = static_cast<std::uint32_t>(i);
  }
  // Removes slot i: the last entry takes its place and moves up or down.
  void erase_slot(std::size_t i) noexcept;
  // Restores the order around slot i, whose deadline changed either way.
  void fix(std::size_t i) noexcept;
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;

  std::vector<Entry*> slots_;
};

}  // namespace aicache::memory
