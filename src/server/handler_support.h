// What every handler of the service shares: JSON answers and error answers,
// and the service's only uses of AssistantCache::store() (marked below).
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

// --- AssistantCache::store() ---------------------------------------------------------------
// The service's only uses of AssistantCache::store(), which issue 12
// removes: the three calls below, defined together in handler_support.cc,
// so that replacing the escape hatch is one edit. Add no others.

// Whether store calls never block (the memory store): the wiring then
// answers data routes and fresh tokens on the I/O thread.
bool store_is_process_local(const AssistantCache& cache);
// /readyz: whether the store answers (its StoreStats, read and dropped).
Status ping_store(const AssistantCache& cache);
// HEAD of a typed data route: the TTL of a stored key (keys().conversation()
// or keys().ai_config()), errors not counted as the cache's.
Result<KeyTtl> stored_key_ttl(const AssistantCache& cache, std::string_view stored_key);

}  // namespace aicache::server
