// Fuzz target: the parsers of the platforms' token answers and the two
// functions that sort their error codes (src/tokens/platform_responses.h).
//
// Input: byte 0 picks the parser (low 2 bits) and byte 1 the HTTP status
// (one of the statuses the platforms send, or a raw value); an error code
// for the sorting functions comes from the end; the rest is the body. Properties, beyond "no
// crash":
//  - a success carries a token of 1..4096 bytes without spaces or control
//    bytes, and expires_in > 0, and only ever comes with HTTP 200;
//  - a failure keeps the HTTP status, has a message, and a platform error
//    keeps its code (errcode or DingTalk's string code) in the message;
//  - classify_tencent_code and classify_dingtalk never return an empty hint,
//    whatever code they are given.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tokens/platform_responses.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr int kStatuses[] = {200, 200, 200, 200, 400, 401, 403, 404,
                             408, 429, 500, 502, 503, 504, 302, 0};

using Parser = aicache::tokens::ParseResult (*)(int, std::string_view);
constexpr Parser kParsers[] = {
    aicache::tokens::parse_wechat_token_response,
    aicache::tokens::parse_wecom_token_response,
    aicache::tokens::parse_dingtalk_legacy_token_response,
    aicache::tokens::parse_dingtalk_oauth2_token_response,
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const auto selector = in.ConsumeIntegral<std::uint8_t>();
  const auto status_byte = in.ConsumeIntegral<std::uint8_t>();
  // Mostly the statuses platforms send; sometimes any int, however absurd.
  const int http_status = status_byte < 0xf0 ? kStatuses[status_byte % std::size(kStatuses)]
                                             : in.ConsumeIntegral<int>();
  const Parser parse = kParsers[selector & 3];

  // The sorting functions get any code, not only those a parser passes on.
  const int code = in.ConsumeIntegral<int>();
  check(!aicache::tokens::classify_tencent_code(code).hint.empty());
  check(!aicache::tokens::classify_dingtalk(http_status, code, "").hint.empty());

  const std::string body = in.ConsumeRemainingBytesAsString();
  check(!aicache::tokens::classify_dingtalk(http_status, 0, body).hint.empty());

  const auto result = parse(http_status, body);
  if (result) {
    check(http_status == 200);
    const std::string& token = result->access_token;
    check(!token.empty() && token.size() <= 4096);
    for (char c : token) {
      const auto u = static_cast<unsigned char>(c);
      check(u > 0x20 && u != 0x7f);
    }
    check(result->expires_in.count() > 0);
    return 0;
  }
  const aicache::FetchError& error = result.error();
  check(error.http_status == http_status);
  check(!error.message.empty());
  if (error.platform_code != 0) {
    check(error.message.find(std::to_string(error.platform_code)) != std::string::npos ||
          !error.platform_error_code.empty());
  }
  if (!error.platform_error_code.empty()) {
    check(error.message.find(error.platform_error_code) != std::string::npos);
  }
  return 0;
}
