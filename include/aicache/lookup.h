// Lookup<T>: the answer of a cache read — a hit, a miss, or an error.
//
// A read has three outcomes, and the common one must read as one line:
//
//   if (auto token = cache.get_access_token("wechat", "wx123")) use(*token);
//
// `if (lookup)` is true only for a hit; `*lookup` is the value. The error is
// never hidden in the miss branch; a caller that cares asks for it:
//
//   auto config = cache.get_ai_config(user_id);
//   if (config.failed()) return log(config.error());   // bad input or store down
//   const JsonDocument& c = config ? *config : defaults;
//
// `value_or(fallback)` answers the fallback on a miss or an error (Django's
// cache.get(key, default)). `result()` gives the Result<std::optional<T>>
// the Store interface speaks, for std::expected's and_then / transform.
//
// Why not Result<std::optional<T>>: it makes a hit `t && *t` and its value
// `**t`, and `if (t)` is true on a miss, the one reading everybody gets wrong.
//
// Accessing the value of a lookup that is not a hit is a precondition
// violation (checked by assert in debug builds), as for std::optional.
//
// Thread safety: a value type; distinct objects may be used from different
// threads, one object as any std type.
#pragma once

#include <cassert>
#include <concepts>
#include <expected>
#include <optional>
#include <type_traits>
#include <utility>

#include "aicache/status.h"

namespace aicache {

template <class T>
class [[nodiscard]] Lookup {
 public:
  using value_type = T;

  // A miss.
  Lookup() noexcept = default;
  Lookup(std::nullopt_t) noexcept {}  // NOLINT: implicit, as std::optional
  // A hit.
  Lookup(T value) : state_(std::in_place, std::move(value)) {}  // NOLINT: implicit
  // An error.
  Lookup(std::unexpected<Error> error) : state_(std::move(error)) {}  // NOLINT: implicit
  // From the Store interface's form.
  Lookup(Result<std::optional<T>> result) : state_(std::move(result)) {}  // NOLINT: implicit

  bool hit() const noexcept { return state_.has_value() && state_->has_value(); }
  bool miss() const noexcept { return state_.has_value() && !state_->has_value(); }
  bool failed() const noexcept { return !state_.has_value(); }
  explicit operator bool() const noexcept { return hit(); }

  const T& operator*() const& noexcept { return (assert(hit()), **state_); }
  T& operator*() & noexcept { return (assert(hit()), **state_); }
  T&& operator*() && noexcept { return (assert(hit()), std::move(**state_)); }
  const T* operator->() const noexcept { return (assert(hit()), &**state_); }
  T* operator->() noexcept { return (assert(hit()), &**state_); }

  // The error of a failed lookup. Unlike std::expected, asking a lookup that
  // did not fail is not undefined: the answer is an Error saying so (code
  // kInternal), so `EXPECT_TRUE(x) << x.error().to_string()` is always safe.
  const Error& error() const& noexcept { return failed() ? state_.error() : no_error(); }
  Error error() && { return failed() ? std::move(state_).error() : no_error(); }

  // The value on a hit; `fallback` on a miss or an error.
  template <class U>
  T value_or(U&& fallback) const& {
    return hit() ? **state_ : static_cast<T>(std::forward<U>(fallback));
  }
  template <class U>
  T value_or(U&& fallback) && {
    return hit() ? std::move(**state_) : static_cast<T>(std::forward<U>(fallback));
  }

  // The Store interface's form: the value, nullopt on a miss, or the error.
  const Result<std::optional<T>>& result() const& noexcept { return state_; }
  Result<std::optional<T>>&& result() && noexcept { return std::move(state_); }

  // Like std::optional: equal to std::nullopt on a miss, to a value on a hit
  // holding an equal one. An error equals neither.
  friend bool operator==(const Lookup& lookup, std::nullopt_t) noexcept { return lookup.miss(); }
  template <class U>
    requires(!std::is_same_v<std::remove_cvref_t<U>, Lookup> &&
             !std::is_same_v<std::remove_cvref_t<U>, std::nullopt_t> &&
             std::equality_comparable_with<const T&, const U&>)
  friend bool operator==(const Lookup& lookup, const U& value) {
    return lookup.hit() && *lookup == value;
  }

  // Passes the error on, as a Status (for `return lookup.status();` and
  // AICACHE_TRY): OK on a hit or a miss.
  Status status() const {
    if (failed()) return std::unexpected(state_.error());
    return {};
  }

 private:
  static const Error& no_error() noexcept {
    static const Error error{ErrorCode::kInternal, "the lookup did not fail"};
    return error;
  }

  Result<std::optional<T>> state_{std::in_place};  // a miss
};

}  // namespace aicache
