// Error propagation for Result<T> and Status inside aicache's sources.
//
//   AICACHE_TRY(store_->set(key, value, ttl));          // a Status or Result
//   AICACHE_ASSIGN_OR_RETURN(auto reply, conn.call(cmd)); // declares `reply`
//
// On an error both return it from the enclosing function, which must return
// a Result<U> or Status (the error converts through std::unexpected<Error>).
// Where a value is transformed rather than passed on, prefer std::expected's
// own and_then / transform / or_else once the toolchain has them (GCC 12's
// libstdc++, Debian 12's, has not: __cpp_lib_expected 202202); these two
// macros replace the hand-written
// `if (!x) return std::unexpected(std::move(x.error()));`.
//
// Both test has_value(), which std::expected has and Lookup<T> (lookup.h)
// deliberately lacks: a Lookup's `!x` is true on a miss too, so using one
// here is a compile error rather than a miss turned into an error.
//
// Internal: not installed, not part of the public API.
#pragma once

#include <expected>
#include <utility>

#define AICACHE_TRY_CONCAT_INNER(a, b) a##b
#define AICACHE_TRY_CONCAT(a, b) AICACHE_TRY_CONCAT_INNER(a, b)

#define AICACHE_TRY(expr)                                            \
  do {                                                               \
    if (auto aicache_try_result_ = (expr); !aicache_try_result_.has_value()) \
      return std::unexpected(std::move(aicache_try_result_).error()); \
  } while (false)

#define AICACHE_ASSIGN_OR_RETURN(lhs, expr) \
  AICACHE_ASSIGN_OR_RETURN_IMPL(AICACHE_TRY_CONCAT(aicache_try_result_, __LINE__), lhs, expr)

#define AICACHE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)              \
  auto tmp = (expr);                                               \
  if (!tmp.has_value()) return std::unexpected(std::move(tmp).error()); \
  lhs = std::move(*tmp)
