// A small blocking HTTP client over libcurl, for the token providers.
//
// One HttpClient per provider keeps a few idle curl easy handles, so that
// successive requests reuse their connection (keep-alive, TLS session, DNS
// cache). A request borrows a handle for its duration; concurrent requests
// use different handles. No network I/O happens under the pool's lock.
//
// Every libcurl failure is turned into a FetchError in one place
// (curl_failure() in http_client.cc): all transport failures are kRetryable
// except a URL the client cannot use at all (kConfiguration). Messages name
// the request by its `label` (host and path), never by the full URL, whose
// query may hold a secret.
//
// Thread safety: perform() may be called from many threads at once.
#pragma once

#include <cstddef>
#include <expected>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "aicache/token_provider.h"

namespace aicache::tokens {

struct HttpRequest {
  enum class Method { kGet, kPost };
  Method method = Method::kGet;
  std::string url;    // full URL, query included (may hold the secret)
  std::string body;   // POST only: a JSON document
  std::string label;  // "host/path" for messages
};

struct HttpResponse {
  int status = 0;
  std::string body;
};

class HttpClient {
 public:
  explicit HttpClient(HttpOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends the request and reads the whole answer. Any HTTP status is a
  // response; only transport failures (and a body over max_response_bytes)
  // are errors.
  std::expected<HttpResponse, FetchError> perform(const HttpRequest& request);

  const HttpOptions& options() const noexcept { return options_; }

 private:
  struct Handle;
  struct HandleDeleter {
    void operator()(Handle* handle) const noexcept;
  };
  using HandlePtr = std::unique_ptr<Handle, HandleDeleter>;

  HandlePtr acquire();
  void release(HandlePtr handle);

  const HttpOptions options_;
  std::mutex mu_;
  std::vector<HandlePtr> idle_;  // guarded by mu_
};

// "host[:port]/path" of `url`: no scheme, user info, query or fragment.
std::string url_label(std::string_view url);

// Percent-encodes `value` for a query string (RFC 3986 unreserved kept).
std::string url_encode(std::string_view value);

}  // namespace aicache::tokens
