#include "memory/expiry_heap.h"

namespace aicache::memory {

void ExpiryHeap::erase_slot(std::size_t i) noexcept {
  Entry* last = slots_.back();
  slots_.pop_back();
  if (i == slots_.size()) return;  // it was the last slot
  place(i, last);
  fix(i);
}

void ExpiryHeap::fix(std::size_t i) noexcept {
  if (i > 0 && slots_[i]->deadline < slots_[(i - 1) / 2]->deadline) {
    sift_up(i);
  } else {
    sift_down(i);
  }
}

// Both sifts carry the moving entry in hand and write each displaced entry
// once, rather than swapping at every level.
void ExpiryHeap::sift_up(std::size_t i) noexcept {
  Entry* e = slots_[i];
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (slots_[parent]->deadline <= e->deadline) break;
    place(i, slots_[parent]);
    i = parent;
  }
  place(i, e);
}

void ExpiryHeap::sift_down(std::size_t i) noexcept {
  Entry* e = slots_[i];
  const std::size_t n = slots_.size();
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && slots_[child + 1]->deadline < slots_[child]->deadline) ++child;
    if (e->deadline <= slots_[child]->deadline) break;
    place(i, slots_[child]);
    i = child;
  }
  place(i, e);
}

}  // namespace aicache::memory
