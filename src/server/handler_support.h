// What every handler of the service shares: JSON answers and error answers.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "aicache/assistant_cache.h"
#include "aicache/status.h"
#include "server/http_errors.h"
#include "server/http_message.h"

namespace aicache::server {

inline constexpr std::string_view kJsonContentType = "application/json";

// A JSON answer: `body` is JSON text already.
HttpResponse json_response(int status, std::string body);

// {"error": {...}} with the error's status, and Retry-After when it has one.
HttpResponse error_response(const HttpError& error);

// JSON text of `j`; invalid UTF-8 in strings is replaced, so this never
// throws, whatever a handler received.
std::string dump(const nlohmann::json& j);
std::string dump(const nlohmann::ordered_json& j);

}  // namespace aicache::server
