#include "tokens/platform_responses.h"

#include <fmt/format.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "core/token_codec.h"

namespace aicache::tokens {
namespace {

using nlohmann::json;

std::unexpected<FetchError> fail(FetchFailure kind, int http_status, std::string message) {
  FetchError e;
  e.kind = kind;
  e.http_status = http_status;
  e.message = std::move(message);
  return std::unexpected(std::move(e));
}

std::unexpected<FetchError> malformed(int http_status, std::string_view what) {
  return fail(FetchFailure::kRetryable, http_status,
              fmt::format("malformed response (HTTP {}): {}", http_status, what));
}

// The body as a JSON object, or an error saying why not.
std::expected<json, FetchError> parse_object(int http_status, std::string_view body) {
  if (body.empty()) return malformed(http_status, "empty body");
  json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return malformed(http_status,
                     fmt::format("body is not JSON or is truncated ({} bytes)", body.size()));
  }
  if (!doc.is_object()) return malformed(http_status, "body is not a JSON object");
  return doc;
}

// An integer field: nullopt when absent; an error when of another type.
std::expected<std::optional<long long>, std::string> int_field(const json& doc,
                                                               const char* name) {
  const auto it = doc.find(name);
  if (it == doc.end() || it->is_null()) return std::optional<long long>();
  if (it->is_number_integer()) return std::optional<long long>(it->get<long long>());
  if (it->is_number_unsigned()) {
    const auto v = it->get<unsigned long long>();
    if (v > static_cast<unsigned long long>(std::numeric_limits<long long>::max())) {
      return std::unexpected(fmt::format("\"{}\" is out of range", name));
    }
    return std::optional<long long>(static_cast<long long>(v));
  }
  return std::unexpected(fmt::format("\"{}\" is not an integer", name));
}

std::string string_field(const json& doc, const char* name) {
  const auto it = doc.find(name);
  if (it != doc.end() && it->is_string()) return it->get<std::string>();
  return {};
}

int clamp_code(long long v) {
  if (v > std::numeric_limits<int>::max()) return std::numeric_limits<int>::max();
  if (v < std::numeric_limits<int>::min()) return std::numeric_limits<int>::min();
  return static_cast<int>(v);
}

// The token fields named `token_key` and `expires_key` of a success answer.
ParseResult token_from(int http_status, const json& doc, const char* token_key,
                       const char* expires_key) {
  const auto tok = doc.find(token_key);
  if (tok == doc.end()) return malformed(http_status, fmt::format("no \"{}\"", token_key));
  if (!tok->is_string()) {
    return malformed(http_status, fmt::format("\"{}\" is not a string", token_key));
  }
  std::string token = tok->get<std::string>();
  // The one rule for what a token is (core/token_codec.h): what the store
  // would refuse later is refused here, naming the field, never the token.
  if (auto ok = internal::validate_token(token); !ok) {
    return malformed(http_status, fmt::format("\"{}\": {}", token_key, ok.error().message));
  }
  const auto expires = int_field(doc, expires_key);
  if (!expires) return malformed(http_status, expires.error());
  if (!expires->has_value()) return malformed(http_status, fmt::format("no \"{}\"", expires_key));
  if (**expires <= 0) {
    return malformed(http_status, fmt::format("\"{}\" is {}, not positive", expires_key, **expires));
  }
  return FetchedToken{std::move(token), std::chrono::seconds(**expires)};
}

std::unexpected<FetchError> platform_error(int http_status, int code, std::string error_code,
                                           std::string platform_message, const CodeClass& cls) {
  FetchError e;
  e.kind = cls.kind;
  e.http_status = http_status;
  e.platform_code = code;
  e.platform_error_code = std::move(error_code);
  e.platform_message = std::move(platform_message);
  const std::string code_text =
      e.platform_error_code.empty() ? fmt::format("{}", code) : e.platform_error_code;
  e.message = fmt::format("platform error {} ({}): {} [{}]", code_text,
                          e.platform_message.empty() ? "no message" : e.platform_message,
                          cls.hint, to_string(cls.kind));
  return std::unexpected(std::move(e));
}

// A non-200 status that carries no platform error of its own.
std::unexpected<FetchError> http_error(int http_status) {
  if (http_status >= 500 || http_status == 429 || http_status == 408) {
    return fail(FetchFailure::kRetryable, http_status,
                fmt::format("HTTP {} from the platform [retryable]", http_status));
  }
  return fail(FetchFailure::kRetryable, http_status,
              fmt::format("unexpected HTTP {} from the platform [retryable]", http_status));
}

// WeChat, WeCom and DingTalk legacy: errcode/errmsg plus snake_case token.
ParseResult parse_errcode_style(int http_status, std::string_view body, bool dingtalk) {
  if (http_status >= 500) return http_error(http_status);
  auto doc = parse_object(http_status, body);
  if (!doc) {
    if (http_status != 200) return http_error(http_status);
    return std::unexpected(std::move(doc.error()));
  }
  if (dingtalk) {
    const auto status = int_field(*doc, "status");
    if (status && status->has_value() && **status == 1111) {
      return platform_error(http_status, 1111, "", string_field(*doc, "punish"),
                            classify_dingtalk(http_status, 1111, ""));
    }
  }
  const auto errcode = int_field(*doc, "errcode");
  if (!errcode) return malformed(http_status, errcode.error());
  if (errcode->has_value() && **errcode != 0) {
    const int code = clamp_code(**errcode);
    return platform_error(http_status, code, "", string_field(*doc, "errmsg"),
                          dingtalk ? classify_dingtalk(http_status, code, "")
                                   : classify_tencent_code(code));
  }
  if (http_status != 200) return http_error(http_status);
  return token_from(http_status, *doc, "access_token", "expires_in");
}

}  // namespace

CodeClass classify_tencent_code(int errcode) noexcept {
  switch (errcode) {
    case -1: return {FetchFailure::kRetryable, "system busy"};
    case 45011: return {FetchFailure::kRetryable, "API called too often"};
    case 45033: return {FetchFailure::kRetryable, "too many concurrent calls"};
    case 40001: return {FetchFailure::kConfiguration, "wrong app secret"};
    case 40125:
    case 40091: return {FetchFailure::kConfiguration, "invalid app secret"};
    case 40002: return {FetchFailure::kConfiguration, "invalid grant type"};
    case 40013: return {FetchFailure::kConfiguration, "invalid app id (WeCom: corp id)"};
    case 40164:
    case 60020: return {FetchFailure::kConfiguration, "caller IP is not on the whitelist"};
    case 45009: return {FetchFailure::kQuotaExceeded, "daily quota exceeded"};
    default: return {FetchFailure::kRetryable, "unknown error code"};
  }
}

CodeClass classify_dingtalk(int http_status, int errcode, std::string_view code) noexcept {
  if (errcode == 1111) return {FetchFailure::kQuotaExceeded, "caller IP banned for too many calls"};
  if (!code.empty() || (http_status != 200 && errcode == 0)) {
    // The OAuth2 API: HTTP status and a string code.
    if (http_status >= 500 || http_status == 429 || code.starts_with("Throttling") ||
        code == "ServiceUnavailable" || code == "SystemBusy") {
      return {FetchFailure::kRetryable, "platform busy or rate limited"};
    }
    if (code.find("IpNotInWhiteList") != std::string_view::npos ||
        code.find("IpWhiteList") != std::string_view::npos) {
      return {FetchFailure::kConfiguration, "caller IP is not on the whitelist"};
    }
    if (http_status >= 400 && http_status < 500) {
      return {FetchFailure::kConfiguration, "request refused: check the app key and secret"};
    }
    return {FetchFailure::kRetryable, "unknown error code"};
  }
  switch (errcode) {
    case -1: return {FetchFailure::kRetryable, "system busy"};
    case 40001:
    case 40089: return {FetchFailure::kConfiguration, "invalid app key or app secret"};
    case 40013: return {FetchFailure::kConfiguration, "invalid app key"};
    case 60020:
    case 40164: return {FetchFailure::kConfiguration, "caller IP is not on the whitelist"};
    case 45009: return {FetchFailure::kQuotaExceeded, "daily quota exceeded"};
    case 90018:
    case 45011: return {FetchFailure::kRetryable, "API called too often"};
    default: return {FetchFailure::kRetryable, "unknown error code"};
  }
}

ParseResult parse_wechat_token_response(int http_status, std::string_view body) {
  return parse_errcode_style(http_status, body, /*dingtalk=*/false);
}

ParseResult parse_wecom_token_response(int http_status, std::string_view body) {
  return parse_errcode_style(http_status, body, /*dingtalk=*/false);
}

ParseResult parse_dingtalk_legacy_token_response(int http_status, std::string_view body) {
  return parse_errcode_style(http_status, body, /*dingtalk=*/true);
}

ParseResult parse_dingtalk_oauth2_token_response(int http_status, std::string_view body) {
  auto doc = parse_object(http_status, body);
  if (!doc) {
    if (http_status != 200) {
      const CodeClass cls = classify_dingtalk(http_status, 0, "");
      return fail(cls.kind, http_status,
                  fmt::format("HTTP {} from the platform without a JSON error: {} [{}]",
                              http_status, cls.hint, to_string(cls.kind)));
    }
    return std::unexpected(std::move(doc.error()));
  }
  const auto status = int_field(*doc, "status");
  if (status && status->has_value() && **status == 1111) {
    return platform_error(http_status, 1111, "", string_field(*doc, "punish"),
                          classify_dingtalk(http_status, 1111, ""));
  }
  if (http_status != 200) {
    const std::string code = string_field(*doc, "code");
    return platform_error(http_status, 0, code, string_field(*doc, "message"),
                          classify_dingtalk(http_status, 0, code));
  }
  if (doc->contains("code") && !doc->contains("accessToken")) {
    // An error object with HTTP 200 (not documented, but seen from proxies).
    const std::string code = string_field(*doc, "code");
    return platform_error(http_status, 0, code, string_field(*doc, "message"),
                          classify_dingtalk(http_status, 0, code));
  }
  return token_from(http_status, *doc, "accessToken", "expireIn");
}

}  // namespace aicache::tokens

namespace aicache {

bool is_invalid_token_error(Channel channel, int http_status, int platform_code,
                            std::string_view platform_error_code) noexcept {
  switch (channel) {
    case Channel::kWeChat:
      return platform_code == 40001 || platform_code == 40014 || platform_code == 42001;
    case Channel::kWeCom:
      return platform_code == 40014 || platform_code == 42001;
    case Channel::kDingTalk:
      return platform_code == 40014 ||
             (http_status == 400 && platform_error_code == "InvalidAuthentication");
  }
  return false;
}

}  // namespace aicache
