#include "server/http_errors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

namespace aicache::server {

HttpError to_http_error(const Error& error, ErrorOrigin origin) {
  const bool token = origin == ErrorOrigin::kToken;
  HttpError out;
  out.code = std::string(to_string(error.code));
  out.message = error.message;
  switch (error.code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kOutOfRange: out.status = 400; break;
    case ErrorCode::kNotFound: out.status = 404; break;
    case ErrorCode::kFailedPrecondition: out.status = 409; break;
    case ErrorCode::kUnavailable:
    case ErrorCode::kResourceExhausted: out.status = 503; break;
    case ErrorCode::kTimeout: out.status = token ? 504 : 503; break;
    case ErrorCode::kConfig:
      if (token) {
        out.status = 502;
        out.code = "upstream_config";
      } else {
        out.status = 503;
      }
      break;
    case ErrorCode::kUpstream: out.status = 502; break;
    case ErrorCode::kRateLimited:
      out.status = 429;
      out.retry_after = std::max<std::int64_t>(error.retry_after.count(), 1);
      break;
    case ErrorCode::kPermissionDenied: out.status = 403; break;
    case ErrorCode::kInternal: out.status = 500; break;
  }
  if (token && out.status == 502) parse_platform_details(error.message, out);
  return out;
}

HttpError http_error(int status, std::string code, std::string message) {
  HttpError out;
  out.status = status;
  out.code = std::move(code);
  out.message = std::move(message);
  return out;
}

std::string error_body(const HttpError& error) {
  nlohmann::json inner = {{"code", error.code}, {"message", error.message}};
  if (error.platform_code) {
    // Numeric errcodes stay numbers; DingTalk's OAuth2 codes are strings.
    const std::string& code = *error.platform_code;
    const bool numeric =
        !code.empty() && code.size() < 10 &&
        std::all_of(code.begin() + (code[0] == '-' ? 1 : 0), code.end(),
                    [](unsigned char c) { return std::isdigit(c) != 0; }) &&
        code != "-";
    if (numeric) {
      inner["platform_code"] = std::stoll(code);
    } else {
      inner["platform_code"] = code;
    }
  }
  if (error.platform_message) inner["platform_message"] = *error.platform_message;
  nlohmann::json body = {{"error", std::move(inner)}};
  // Messages may quote bytes from the request (an invalid key); never let
  // invalid UTF-8 turn into an exception.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void parse_platform_details(std::string_view message, HttpError& out) {
  // Written by src/tokens/platform_responses.cc:
  //   "platform error {code} ({message or 'no message'}): {hint} [{kind}]"
  constexpr std::string_view kMarker = "platform error ";
  const auto at = message.find(kMarker);
  if (at == std::string_view::npos) return;
  std::string_view rest = message.substr(at + kMarker.size());
  const auto space = rest.find(' ');
  if (space == std::string_view::npos || space == 0) return;
  out.platform_code = std::string(rest.substr(0, space));
  rest.remove_prefix(space + 1);
  if (!rest.starts_with('(')) return;
  rest.remove_prefix(1);
  const auto close = rest.find("): ");
  if (close == std::string_view::npos) return;
  const std::string_view platform_message = rest.substr(0, close);
  if (platform_message != "no message") out.platform_message = std::string(platform_message);
}

}  // namespace aicache::server
