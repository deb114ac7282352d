// LruList: a shard's entries in order of last use, oldest first: the order in
// which eviction takes them.
//
// A circular doubly-linked list through Entry::lru_prev / lru_next around a
// sentinel entry owned by the list, so that no operation has a special case
// for the ends and every one is O(1) with no allocation.
//
// Invariants (between calls):
//   - following lru_next from the sentinel visits every linked entry once and
//     returns to the sentinel; for every node n (sentinel included),
//     n->lru_next->lru_prev == n;
//   - the empty list is the sentinel linked to itself.
// The list does not own its entries: unlinking does not free, and the
// destructor leaves linked entries alone (the shard frees them).
//
// Internal to the library and its tests. Not thread-safe (the shard's lock
// guards it). Not copyable or movable: the entries point at the sentinel.
#pragma once

#include "memory/entry.h"

namespace aicache::memory {

class LruList {
 public:
  LruList() noexcept = default;
  LruList(const LruList&) = delete;
  LruList& operator=(const LruList&) = delete;

  bool empty() const noexcept { return head_.lru_next == &head_; }

  // The least recently used entry (the next victim), or nullptr if empty.
  Entry* oldest() noexcept { return at(head_.lru_next); }
  // The most recently used entry, or nullptr if empty.
  Entry* newest() noexcept { return at(head_.lru_prev); }
  // The entry used just after `e` (which must be linked), or nullptr if `e`
  // is the newest. Walks oldest to newest; `e` may be unlinked once its
  // successor has been read.
  Entry* newer(const Entry* e) noexcept { return at(e->lru_next); }
  // The entry used just before `e` (which must be linked), or nullptr if `e`
  // is the oldest.
  Entry* older(const Entry* e) noexcept { return at(e->lru_prev); }

  // Links `e`, which must be in no list, as the newest.
  void push_newest(Entry* e) noexcept {
    e->lru_next = &head_;
    e->lru_prev = head_.lru_prev;
    e->lru_prev->lru_next = e;
    head_.lru_prev = e;
  }

  // Makes the linked entry `e` the newest (it was just used).
  void move_to_newest(Entry* e) noexcept {
    if (head_.lru_prev == e) return;  // already newest: the common case of a hot key
    unlink(e);
    push_newest(e);
  }

  // Takes the linked entry `e` out of the list, wherever it is. Its links
  // are left dangling; it does not become free.
  void unlink(Entry* e) noexcept {
    e->lru_prev->lru_next = e->lru_next;
    e->lru_next->lru_prev = e->lru_prev;
  }

 private:
  Entry* at(Entry* node) noexcept { return node == &head_ ? nullptr : node; }

  // The sentinel: lru_next is the oldest entry, lru_prev the newest. Only its
  // links are used.
  Entry head_{nullptr, &head_, &head_, kNoDeadline, 0, 0, 0, 0};
};

}  // namespace aicache::memory
