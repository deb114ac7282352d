// Error values for every aicache operation.
//
// aicache never lets an exception cross its public API for an I/O or input
// failure. An operation that can fail returns `Result<T>` (a `std::expected`)
// or `Status` (a `Result<void>`). A cache miss is not a failure: it is an empty
// `std::optional` inside a successful result.
//
// Every foreign error space (hiredis, libcurl, platform errcodes) is mapped to
// an `ErrorCode` in exactly one place inside src/; callers only ever see these.
#pragma once

#include <chrono>
#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace aicache {

enum class ErrorCode {
  kInvalidArgument,     // bad key, TTL, JSON or other input; nothing was stored
  kConfig,              // bad configuration (file, environment, URL, app secret)
  kUnavailable,         // the store or upstream cannot be reached right now
  kTimeout,             // an operation ran past its deadline
  kResourceExhausted,   // pool exhausted, quota used up, value over a limit
  kFailedPrecondition,  // the entry exists but is of the wrong kind (e.g. incr
                        // on a value that is not an integer)
  kOutOfRange,          // arithmetic overflow
  kNotFound,            // a named thing that must exist does not (an unknown
                        // app); never used for a cache miss
  kPermissionDenied,    // authentication refused
  kUpstream,            // a token platform answered with an error
  kRateLimited,         // refused by a limit of aicache's own before any work was
                        // done (TokenManager::refresh); Error::retry_after says
                        // when trying again can succeed
  kInternal,            // a bug in aicache
};

// Stable lower-case name of a code, e.g. "invalid_argument".
std::string_view to_string(ErrorCode code) noexcept;

// An error: a code to branch on and a message for humans. Messages never
// contain secrets (passwords, app secrets, API tokens, access tokens).
struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  // kRateLimited: how long until the limit lets the call through (at least
  // 1 s); zero for every other code.
  std::chrono::seconds retry_after{0};

  // "invalid_argument: key is empty"
  std::string to_string() const;
  friend bool operator==(const Error&, const Error&) = default;
};

template <class T>
using Result = std::expected<T, Error>;

// The result of an operation that returns nothing but can fail.
using Status = Result<void>;

inline std::unexpected<Error> make_error(ErrorCode code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace aicache
