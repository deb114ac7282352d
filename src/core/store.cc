#include "aicache/store.h"

#include <fmt/format.h>

#include "core/try.h"

namespace aicache {

std::string format_bytes_human(std::uint64_t bytes) {
  // Redis's bytesToHuman(): whole bytes below 1 KiB, then two decimals.
  constexpr const char* kUnits[] = {"K", "M", "G", "T", "P"};
  if (bytes < 1024) return fmt::format("{}B", bytes);
  double value = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.2f}{}", value, kUnits[unit]);
}

Result<ScanPage> Store::scan(std::string_view, std::string_view, std::size_t) {
  return make_error(ErrorCode::kInternal,
                    "this store cannot list its keys (scan is not implemented for it)");
}

std::optional<ValueWithTtl> Store::peek_local(std::string_view) { return std::nullopt; }

Result<std::optional<ValueWithTtl>> Store::get_latest(std::string_view key) {
  return get_with_ttl(key);
}

void Store::vouch_local(std::string_view, std::string_view) {}

Result<std::optional<ValueWithTtl>> Store::get_with_ttl(std::string_view key) {
  AICACHE_ASSIGN_OR_RETURN(auto value, get(key));
  if (!value) return std::nullopt;
  AICACHE_ASSIGN_OR_RETURN(auto remaining, ttl(key));
  if (remaining.state == KeyTtl::State::kMissing) return std::nullopt;
  return ValueWithTtl{std::move(*value), remaining};
}

}  // namespace aicache
