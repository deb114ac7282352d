// How aicache errors become HTTP answers: the one place that maps ErrorCode
// to an HTTP status, and the JSON error body
//   {"error": {"code": "...", "message": "...",
//              "platform_code": 40125 | "InvalidAuthentication",
//              "platform_message": "..."}}
// (the platform fields only for upstream failures that carry them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "aicache/status.h"

namespace aicache::server {

// Where an error came from: the same code means different things on a data
// route (the store) and on a token route (the store or the platform).
enum class ErrorOrigin { kData, kToken };

struct HttpError {
  int status = 500;
  std::string code;  // the JSON "code"
  std::string message;
  // Parsed from the message of an upstream failure, when it names them.
  std::optional<std::string> platform_code;  // JSON text: a number or a string
  std::optional<std::string> platform_message;
  // Seconds for a Retry-After header, when trying again later can succeed.
  std::optional<std::int64_t> retry_after;
};

// The mapping (see the table in docs and the report):
//   kInvalidArgument, kOutOfRange            400
//   kNotFound                                 404
//   kFailedPrecondition                       409 (a stored value of the wrong kind)
//   kUnavailable, kResourceExhausted          503
//   kTimeout        data: 503   token: 504 (a fetch or another's fetch took too long)
//   kConfig         data: 503 (the store's configuration, e.g. a Redis password)
//                   token: 502 "upstream_config" (the platform refused the app's setup)
//   kUpstream                                 502
//   kRateLimited                              429, with Retry-After (Error::retry_after)
//   kPermissionDenied                         403
//   kInternal                                 500
HttpError to_http_error(const Error& error, ErrorOrigin origin);

// An error the server makes itself (401, 404 route, 405, 413, ...).
HttpError http_error(int status, std::string code, std::string message);

// The JSON body of an error.
std::string error_body(const HttpError& error);

// The platform's code and message out of a token error message
// ("... platform error 40125 (invalid appsecret): ..."), if it has them.
void parse_platform_details(std::string_view message, HttpError& out);

}  // namespace aicache::server
