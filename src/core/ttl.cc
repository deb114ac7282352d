#include "aicache/ttl.h"

#include <fmt/format.h>

namespace aicache {

std::string Ttl::to_string() const {
  switch (kind_) {
    case Kind::kDefault: return "default";
    case Kind::kNever: return "never";
    case Kind::kDuration: break;
  }
  if (ms_.count() % 1000 == 0) return fmt::format("{}s", ms_.count() / 1000);
  return fmt::format("{}ms", ms_.count());
}

}  // namespace aicache
