// An HTTP client for tests that drive the service: a thin wrapper over the
// project's libcurl client (src/tokens/http_client.h), so that tests and
// product share one transport.
//
//   HttpTestClient client(server->port());
//   auto r = client.get("/v1/kv/x", {{"Authorization", "Bearer t"}});
//   ASSERT_TRUE(r) << r.error();    // the error: a transport failure, as text
//   EXPECT_EQ(r->status, 200);
//   EXPECT_EQ(r->header("X-Aicache-Ttl"), "60");  // any case; std::nullopt if absent
//
// Any HTTP status is a response. Paths are sent byte for byte: nothing is
// percent-encoded and "." or ".." segments are kept, so tests can send
// hostile paths. Connections are kept alive and reused between requests.
//
// Thread safety: one client may be used from several threads at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

#include "tokens/http_client.h"

namespace aicache::testing {

using HttpTestHeaders = tokens::HttpHeaders;
// {status, body, headers (names lower-cased)} and header(name).
using HttpTestResponse = tokens::HttpResponse;
using HttpTestResult = std::expected<HttpTestResponse, std::string>;

struct HttpTestClientOptions {
  std::chrono::milliseconds connect_timeout{5000};
  // The whole request: sending, waiting and reading.
  std::chrono::milliseconds total_timeout{30'000};
  std::size_t max_response_bytes = 64u << 20;
};

class HttpTestClient {
 public:
  // `host`: a name or an IP address; an IPv6 one without brackets ("::1").
  explicit HttpTestClient(std::uint16_t port, HttpTestClientOptions options = {});
  HttpTestClient(std::string host, std::uint16_t port, HttpTestClientOptions options = {});

  HttpTestResult get(std::string_view path, const HttpTestHeaders& headers = {});
  HttpTestResult head(std::string_view path, const HttpTestHeaders& headers = {});
  HttpTestResult del(std::string_view path, const HttpTestHeaders& headers = {});
  // The body goes with a Content-Length and "Content-Type: <content_type>".
  HttpTestResult put(std::string_view path, std::string body, const HttpTestHeaders& headers = {},
                     std::string_view content_type = "application/json");
  HttpTestResult post(std::string_view path, std::string body, const HttpTestHeaders& headers = {},
                      std::string_view content_type = "application/json");
  HttpTestResult patch(std::string_view path, std::string body, const HttpTestHeaders& headers = {},
                       std::string_view content_type = "application/json");

  // Any request; `content_type` is sent when non-empty.
  HttpTestResult send(tokens::HttpRequest::Method method, std::string_view path, std::string body,
                      HttpTestHeaders headers, std::string_view content_type = {});

 private:
  std::string origin_;  // "http://host:port"
  tokens::HttpClient client_;
};

}  // namespace aicache::testing
