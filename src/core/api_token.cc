#include "aicache/api_token.h"

#include <fmt/format.h>

#include <algorithm>
#include <string>

namespace aicache {

// An API token is the only thing between the network and every key and
// token of the service: it must not be guessable (a one-character token used
// to be accepted), and it travels in an HTTP header, so it is limited to
// characters that need no quoting anywhere.
Status validate_api_token(std::string_view token) {
  const bool charset_ok = std::all_of(token.begin(), token.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           std::string_view("._~+/=-").find(c) != std::string_view::npos;
  });
  if (token.size() >= kMinApiTokenBytes && charset_ok) return {};
  const std::string why =
      token.size() < kMinApiTokenBytes
          ? fmt::format("is {} characters long; at least {} are needed", token.size(),
                        kMinApiTokenBytes)
          : std::string("holds a character outside A-Z a-z 0-9 . _ ~ + / = -");
  return make_error(ErrorCode::kConfig,
                    fmt::format("the API token {}; make one with: openssl rand -hex 32", why));
}

}  // namespace aicache
