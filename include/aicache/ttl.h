// How long an entry lives, with Django's semantics.
//
//   Ttl::use_default()   the store's configured default (300 s unless set)
//   Ttl::never()         no expiry
//   Ttl(duration)        that long; zero or negative REMOVES the entry on set
//
// Durations are kept in milliseconds (Redis PX precision); finer durations are
// rounded up so that a positive duration never becomes zero.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace aicache {

class Ttl {
 public:
  enum class Kind : std::uint8_t { kDefault, kNever, kDuration };

  static constexpr Ttl use_default() noexcept { return Ttl(Kind::kDefault, {}); }
  static constexpr Ttl never() noexcept { return Ttl(Kind::kNever, {}); }

  // Implicit on purpose: set(key, value, std::chrono::minutes(5)) reads well.
  template <class Rep, class Period>
  constexpr Ttl(std::chrono::duration<Rep, Period> d) noexcept  // NOLINT
      : kind_(Kind::kDuration), ms_(round_up_ms(d)) {}

  constexpr Kind kind() const noexcept { return kind_; }
  constexpr bool is_default() const noexcept { return kind_ == Kind::kDefault; }
  constexpr bool is_never() const noexcept { return kind_ == Kind::kNever; }
  // True for a zero or negative duration: setting with it deletes the entry.
  constexpr bool removes() const noexcept {
    return kind_ == Kind::kDuration && ms_.count() <= 0;
  }
  // Only meaningful for Kind::kDuration.
  constexpr std::chrono::milliseconds duration() const noexcept { return ms_; }

  // Replaces kDefault with `fallback`; other kinds are returned unchanged.
  constexpr Ttl or_default(Ttl fallback) const noexcept {
    return is_default() ? fallback : *this;
  }

  // "default", "never", "300s", "1500ms".
  std::string to_string() const;

  friend constexpr bool operator==(Ttl, Ttl) noexcept = default;

 private:
  constexpr Ttl(Kind k, std::chrono::milliseconds ms) noexcept : kind_(k), ms_(ms) {}

  template <class Rep, class Period>
  static constexpr std::chrono::milliseconds round_up_ms(
      std::chrono::duration<Rep, Period> d) noexcept {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d);
    if (ms < d) ++ms;  // 1 ns must not become "remove"
    return ms;
  }

  Kind kind_;
  std::chrono::milliseconds ms_;
};

}  // namespace aicache
