#include "server/handler_support.h"

#include <nlohmann/json.hpp>

#include "core/try.h"

namespace aicache::server {

HttpResponse json_response(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.content_type = std::string(kJsonContentType);
  r.body = std::move(body);
  return r;
}

HttpResponse error_response(const HttpError& error) {
  HttpResponse r = json_response(error.status, error_body(error));
  if (error.retry_after) r.headers.emplace_back("Retry-After", std::to_string(*error.retry_after));
  return r;
}

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace aicache::server
