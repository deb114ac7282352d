#include "server/ttl_signals_json.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace aicache::server {
namespace {

std::uint64_t number(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

}  // namespace

nlohmann::ordered_json ttl_signals_json(
    const std::array<FamilyStats, kCacheFamilies.size()>& families) {
  nlohmann::ordered_json out;
  out["hit_age_bounds_seconds"] = kHitAgeBoundsSeconds;
  nlohmann::ordered_json by_family = nlohmann::ordered_json::object();
  for (CacheFamily family : kTtlFamilies) {
    const FamilyStats& f = families[static_cast<std::size_t>(family)];
    by_family[std::string(to_string(family))] = {
        {"hit_age_buckets", f.hit_age_buckets},
        {"hit_age_count", f.hit_age_count()},
        {"hit_age_sum_ms", f.hit_age_sum_ms},
        {"expired_recently_misses", f.expired_recently_misses}};
  }
  out["families"] = std::move(by_family);
  return out;
}

void read_ttl_signals_json(const nlohmann::json& json,
                           std::array<FamilyStats, kCacheFamilies.size()>& families) {
  if (!json.is_object()) return;
  auto by_family = json.find("families");
  if (by_family == json.end() || !by_family->is_object()) return;
  for (CacheFamily family : kTtlFamilies) {
    auto it = by_family->find(std::string(to_string(family)));
    if (it == by_family->end() || !it->is_object()) continue;
    FamilyStats& f = families[static_cast<std::size_t>(family)];
    f.hit_age_sum_ms = number(*it, "hit_age_sum_ms");
    f.expired_recently_misses = number(*it, "expired_recently_misses");
    auto buckets = it->find("hit_age_buckets");
    if (buckets == it->end() || !buckets->is_array()) continue;
    for (std::size_t i = 0; i < f.hit_age_buckets.size() && i < buckets->size(); ++i) {
      const nlohmann::json& b = (*buckets)[i];
      f.hit_age_buckets[i] = b.is_number_unsigned() ? b.get<std::uint64_t>() : 0;
    }
  }
}

}  // namespace aicache::server
