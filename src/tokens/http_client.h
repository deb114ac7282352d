// A small blocking HTTP client over libcurl: the project's one HTTP client.
// The token providers fetch with it, the command line's --server mode talks
// to `aicache serve` with it (tools/aicache/remote.cc), and the tests drive
// the service with it (tests/support/http_test_client.h).
//
// One HttpClient keeps a few idle curl easy handles, so that successive
// requests reuse their connection (keep-alive, TLS session, DNS cache). A
// request borrows a handle for its duration; concurrent requests use
// different handles. No network I/O happens under the pool's lock.
//
// Every libcurl failure is turned into an HttpError in one place
// (curl_failure() in http_client.cc). Messages name the request by its
// `label` (e.g. host and path), never by the full URL, whose query may hold a
// secret; header values never appear in them.
//
// Thread safety: perform() may be called from many threads at once.
#pragma once

#include <cstddef>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aicache/token_provider.h"
#include "core/text.h"

namespace aicache::tokens {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

// The value of the first header `name` in `headers`, whose names are
// lower-cased; `name` may be in any case.
std::optional<std::string> find_header(const HttpHeaders& headers, std::string_view name);

struct HttpRequest {
  enum class Method { kGet, kHead, kPost, kPut, kPatch, kDelete };
  Method method = Method::kGet;
  std::string url;  // full URL, query included (may hold a secret)
  // Sent as given, after curl's own (Host, User-Agent "aicache", and
  // "Accept: */*" unless given here). A name or value with a control
  // character (CR, LF, NUL...) makes the request kUnusable. The client adds
  // no Content-Type: give one here when sending a body.
  HttpHeaders headers;
  // POST, PUT and PATCH always send it with a Content-Length (0 when empty);
  // GET and DELETE send it only when non-empty; HEAD never has one (a body
  // with HEAD is kUnusable).
  std::string body;
  std::string label;  // what messages call the request, e.g. "host/path"
  // Sends the URL's path byte for byte: "." and ".." segments are kept
  // rather than resolved (for a path built from a key, or a hostile test).
  bool path_as_is = false;
};

struct HttpResponse {
  int status = 0;
  std::string body;
  HttpHeaders headers;  // of the final response (not of a 100 Continue); names lower-cased

  // The value of the first header `name` (any case), if present.
  std::optional<std::string> header(std::string_view name) const;
};

enum class HttpFailure {
  kUnusable,  // cannot be sent as given: bad URL or scheme, bad header, body with HEAD
  kTls,       // the peer's certificate did not verify, or CA files are unusable
  kConnect,   // cannot resolve the host or connect to it
  kTimeout,   // the connect timeout or the total timeout ran out
  kClosed,    // the connection broke, or closed before a whole answer
  kTooLarge,  // the body (or the head) is over the limit
  kOther,
};

struct HttpError {
  HttpFailure kind = HttpFailure::kOther;
  std::string message;  // starts with the request's label
};

// What a token provider makes of a transport failure: kConfiguration for a
// request that can never work as configured (kUnusable, kTls), kRetryable
// for the rest. The message is kept.
FetchError to_fetch_error(HttpError error);

class HttpClient {
 public:
  // `options`: connect and total timeouts of every request, and the largest
  // response body accepted. The response head has its own fixed cap
  // (kMaxHeadBytes in http_client.cc).
  explicit HttpClient(HttpOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends the request and reads the whole answer. Any HTTP status is a
  // response; only transport failures (and an answer over the limits) are
  // errors. Redirects are not followed; only http and https are spoken, and
  // https verifies the peer and its host name.
  std::expected<HttpResponse, HttpError> perform(const HttpRequest& request);

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

}  // namespace aicache::tokens
