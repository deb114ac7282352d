#include "support/http_test_client.h"

#include <fmt/format.h>

#include <utility>

namespace aicache::testing {

using Method = tokens::HttpRequest::Method;

HttpTestClient::HttpTestClient(std::uint16_t port, HttpTestClientOptions options)
    : HttpTestClient("127.0.0.1", port, options) {}

HttpTestClient::HttpTestClient(std::string host, std::uint16_t port, HttpTestClientOptions options)
    : origin_(host.find(':') == std::string::npos ? fmt::format("http://{}:{}", host, port)
                                                  : fmt::format("http://[{}]:{}", host, port)),
      client_(HttpOptions{.connect_timeout = options.connect_timeout,
                          .total_timeout = options.total_timeout,
                          .max_response_bytes = options.max_response_bytes}) {}

HttpTestResult HttpTestClient::send(Method method, std::string_view path, std::string body,
                                    HttpTestHeaders headers, std::string_view content_type) {
  tokens::HttpRequest request;
  request.method = method;
  request.url = origin_ + std::string(path);
  request.label = tokens::url_label(request.url);
  request.path_as_is = true;
  request.headers = std::move(headers);
  if (!content_type.empty()) request.headers.emplace_back("Content-Type", content_type);
  request.body = std::move(body);
  auto response = client_.perform(request);
  if (!response) return std::unexpected(std::move(response.error().message));
  return std::move(*response);
}

HttpTestResult HttpTestClient::get(std::string_view path, const HttpTestHeaders& headers) {
  return send(Method::kGet, path, {}, headers);
}

HttpTestResult HttpTestClient::head(std::string_view path, const HttpTestHeaders& headers) {
  return send(Method::kHead, path, {}, headers);
}

HttpTestResult HttpTestClient::del(std::string_view path, const HttpTestHeaders& headers) {
  return send(Method::kDelete, path, {}, headers);
}

HttpTestResult HttpTestClient::put(std::string_view path, std::string body,
                                   const HttpTestHeaders& headers, std::string_view content_type) {
  return send(Method::kPut, path, std::move(body), headers, content_type);
}

HttpTestResult HttpTestClient::post(std::string_view path, std::string body,
                                    const HttpTestHeaders& headers, std::string_view content_type) {
  return send(Method::kPost, path, std::move(body), headers, content_type);
}

HttpTestResult HttpTestClient::patch(std::string_view path, std::string body,
                                     const HttpTestHeaders& headers,
                                     std::string_view content_type) {
  return send(Method::kPatch, path, std::move(body), headers, content_type);
}

}  // namespace aicache::testing
