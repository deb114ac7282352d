// The service's API token: what makes a bearer token good enough.
//
// In core, not in the configuration or the service, because both check it:
// load_config() for AICACHE_API_TOKEN, Server::create() for a token set in
// code; neither should need the other.
#pragma once

#include <cstddef>
#include <string_view>

#include "aicache/status.h"

namespace aicache {

inline constexpr std::size_t kMinApiTokenBytes = 32;

// OK, or kConfig saying why `token` is no API token (shorter than
// kMinApiTokenBytes, or a character outside [A-Za-z0-9._~+/=-]) and how to
// make one (`openssl rand -hex 32`); never quotes the token.
Status validate_api_token(std::string_view token);

}  // namespace aicache
