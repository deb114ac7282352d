// Memory overhead per entry, measured from the allocator.
//
// Inserts 1,000,000 entries (keys of 16..24 bytes, 8-byte values, TTL 300 s)
// into a MemoryStore with bounds far above that, then into BaselineMap, and
// prints what the allocator handed out beyond the key and value bytes.
//
//   memory_overhead [entries]
#include <malloc.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "aicache/memory_store.h"
#include "aicache/store.h"
#include "baseline_map.h"

namespace {

// Bytes in use from malloc: small chunks plus mmap()ed blocks (big arrays).
std::int64_t Allocated() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<std::int64_t>(mi.uordblks + mi.hblkhd);
}

// Key i: "conv:" then digits, 16..24 bytes in all. Built in a reused buffer
// so that the keys themselves are not counted.
void MakeKey(std::size_t i, std::string* key) {
  key->clear();
  fmt::format_to(std::back_inserter(*key), "conv:{:0{}}", i, 11 + i % 9);
}

constexpr std::string_view kValue = "12345678";

void Report(const char* name, std::size_t n, std::uint64_t payload, std::int64_t before,
            std::int64_t after) {
  if (after <= before) {
    fmt::print("{:<12} the allocator reports nothing (a sanitizer build replaces malloc)\n", name);
    return;
  }
  const auto allocated = static_cast<double>(after - before);
  fmt::print("{:<12} entries {:>9}  key+value {:>10} B  allocated {:>11.0f} B  "
             "overhead {:6.1f} B/entry  ({:.1f} B/entry in all)\n",
             name, n, payload, allocated,
             (allocated - static_cast<double>(payload)) / static_cast<double>(n),
             allocated / static_cast<double>(n));
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  std::string key;
  key.reserve(64);
  std::uint64_t payload = 0;
  for (std::size_t i = 0; i < n; ++i) {
    MakeKey(i, &key);
    payload += key.size() + kValue.size();
  }

  {
    aicache::MemoryStoreOptions options;
    options.max_bytes = std::size_t{4} << 30;
    options.max_entries = 4 * n + 1024;
    const std::int64_t before = Allocated();
    auto store = aicache::make_memory_store(options);
    for (std::size_t i = 0; i < n; ++i) {
      MakeKey(i, &key);
      if (!store->set(key, kValue, std::chrono::seconds(300))) return 1;
    }
    const std::int64_t after = Allocated();
    const aicache::StoreStats s = store->stats().value();
    Report("MemoryStore", n, payload, before, after);
    fmt::print("{:<12} entries {:>9}  accounted {:>10} B ({}), shards {}, evictions {}; "
               "accounted overhead {:.1f} B/entry\n",
               "", s.entries, s.used_memory_bytes, s.used_memory_human, s.details.at("shards"),
               s.evictions,
               static_cast<double>(s.used_memory_bytes - payload) / static_cast<double>(n));
  }
  {
    const std::int64_t before = Allocated();
    auto map = std::make_unique<aicache::bench::BaselineMap>();
    for (std::size_t i = 0; i < n; ++i) {
      MakeKey(i, &key);
      map->set(key, kValue, std::chrono::seconds(300));
    }
    const std::int64_t after = Allocated();
    Report("BaselineMap", n, payload, before, after);
  }
  return 0;
}
