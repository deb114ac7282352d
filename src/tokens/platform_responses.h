// Parsers of the token endpoints' answers: pure functions of (HTTP status,
// body), testable without a network.
//
// Each parser returns the token, or a FetchError whose kind says what to do
// (see FetchFailure in aicache/token_provider.h), with the platform's code
// and message kept. A body that is not the JSON expected (not JSON at all,
// truncated, fields of the wrong type, no token, expires_in <= 0) is
// kRetryable. Messages here do not name the endpoint: the provider prefixes
// "host/path: ". They never quote the body beyond the platform's own
// errmsg/message fields.
//
// The platforms' error codes are sorted in exactly two functions, one per
// platform family: classify_tencent_code() (WeChat and WeCom share their
// code space) and classify_dingtalk() (both DingTalk APIs).
#pragma once

#include <expected>
#include <string_view>

#include "aicache/token_provider.h"

namespace aicache::tokens {

using ParseResult = std::expected<FetchedToken, FetchError>;

// WeChat, both the plain (GET /cgi-bin/token) and the stable
// (POST /cgi-bin/stable_token) API: {"access_token","expires_in"} or
// {"errcode","errmsg"}.
ParseResult parse_wechat_token_response(int http_status, std::string_view body);

// WeCom GET /cgi-bin/gettoken: {"errcode":0,"errmsg":"ok","access_token","expires_in"}.
ParseResult parse_wecom_token_response(int http_status, std::string_view body);

// DingTalk legacy GET /gettoken: {"errcode":0,"access_token","expires_in"}.
ParseResult parse_dingtalk_legacy_token_response(int http_status, std::string_view body);

// DingTalk POST /v1.0/oauth2/accessToken: {"accessToken","expireIn"}, or an
// HTTP 4xx/5xx {"code","message"}; the IP ban {"status":1111,"wait":..,"punish":"deny"}.
ParseResult parse_dingtalk_oauth2_token_response(int http_status, std::string_view body);

// What an error code means for a token fetch, and a hint for humans.
struct CodeClass {
  FetchFailure kind;
  std::string_view hint;  // e.g. "invalid app secret"; never empty
};

// WeChat and WeCom errcodes returned by a token endpoint (not 0).
CodeClass classify_tencent_code(int errcode) noexcept;

// DingTalk: a legacy errcode (not 0, `code` empty, http_status 200), an
// OAuth2 HTTP error with its string `code`, or the ban (errcode 1111).
CodeClass classify_dingtalk(int http_status, int errcode, std::string_view code) noexcept;

}  // namespace aicache::tokens
