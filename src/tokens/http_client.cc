#include "tokens/http_client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <utility>

#include "core/try.h"

namespace aicache::tokens {
namespace {

constexpr std::size_t kMaxIdleHandles = 4;
// The response head (status line and headers) may take this much, whatever
// the body limit: enough for any real service, and a hostile one cannot make
// the client buffer without end (curl only caps each header line).
constexpr std::size_t kMaxHeadBytes = 256 * 1024;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// What the write and header callbacks know about the answer they collect.
struct ResponseSink {
  HttpResponse* response = nullptr;
  std::size_t body_limit = 0;
  std::size_t head_bytes = 0;
  bool body_overflow = false;
  bool head_overflow = false;
};

extern "C" std::size_t write_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* sink = static_cast<ResponseSink*>(user);
  const std::size_t n = size * count;
  if (sink->response->body.size() + n > sink->body_limit) {
    sink->body_overflow = true;
    return 0;  // anything other than n aborts the transfer: CURLE_WRITE_ERROR
  }
  sink->response->body.append(data, n);
  return n;
}

// curl passes each line of the head, CRLF included: the status line of every
// response (a 100 Continue comes before the final one), each header, and the
// blank line that ends the head.
extern "C" std::size_t write_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* sink = static_cast<ResponseSink*>(user);
  const std::size_t n = size * count;
  sink->head_bytes += n;
  if (sink->head_bytes > kMaxHeadBytes) {
    sink->head_overflow = true;
    return 0;
  }
  std::string_view line(data, n);
  while (line.ends_with('\n') || line.ends_with('\r')) line.remove_suffix(1);
  if (line.starts_with("HTTP/")) {
    sink->response->headers.clear();  // only the final response's headers count
    return n;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return n;  // blank line or junk
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  sink->response->headers.emplace_back(lower(line.substr(0, colon)), std::string(value));
  return n;
}

// curl's error text may quote the URL; keep only what precedes a query.
std::string without_query(std::string_view text) {
  const auto q = text.find('?');
  if (q == std::string_view::npos) return std::string(text);
  return std::string(text.substr(0, q)) + "?<query omitted>";
}

// The one place where libcurl's error space becomes HttpError.
HttpError curl_failure(CURLcode code, const char* errbuf, const ResponseSink& sink,
                       const HttpRequest& request, const HttpOptions& options) {
  HttpError e;
  e.kind = HttpFailure::kOther;
  const std::string detail = without_query(errbuf != nullptr && errbuf[0] != '\0'
                                               ? std::string_view(errbuf)
                                               : std::string_view(curl_easy_strerror(code)));
  switch (code) {
    case CURLE_WRITE_ERROR:
      if (sink.body_overflow) {
        e.kind = HttpFailure::kTooLarge;
        e.message = fmt::format("{}: response body larger than the limit of {} bytes",
                                request.label, options.max_response_bytes);
        return e;
      }
      if (sink.head_overflow) {
        e.kind = HttpFailure::kTooLarge;
        e.message = fmt::format("{}: response headers larger than the limit of {} bytes",
                                request.label, kMaxHeadBytes);
        return e;
      }
      break;
    case CURLE_OPERATION_TIMEDOUT:
      e.kind = HttpFailure::kTimeout;
      e.message = fmt::format("{}: timed out (connect timeout {} ms, total timeout {} ms): {}",
                              request.label, options.connect_timeout.count(),
                              options.total_timeout.count(), detail);
      return e;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      e.kind = HttpFailure::kUnusable;
      e.message = fmt::format("{}: unusable base URL: {}", request.label, detail);
      return e;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      e.kind = HttpFailure::kTls;
      e.message = fmt::format("{}: TLS verification failed: {}", request.label, detail);
      return e;
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
      e.kind = HttpFailure::kClosed;
      e.message = fmt::format("{}: connection closed by the server: {}", request.label, detail);
      return e;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      e.kind = HttpFailure::kConnect;
      e.message = fmt::format("{}: cannot connect: {}", request.label, detail);
      return e;
    default:
      break;
  }
  e.message = fmt::format("{}: HTTP request failed ({}): {}", request.label,
                          curl_easy_strerror(code), detail);
  return e;
}

HttpError unusable(const HttpRequest& request, std::string_view why) {
  return {HttpFailure::kUnusable, fmt::format("{}: {}", request.label, why)};
}

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

// A header name is an RFC 9110 token; a value may hold tabs but no other
// control character (a CR or LF would start a header of the caller's choice).
bool valid_header(std::string_view name, std::string_view value) {
  if (name.empty()) return false;
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (is_control(u) || u == ' ' || u == ':' || u >= 0x80) return false;
  }
  return std::none_of(value.begin(), value.end(), [](char c) {
    return c != '\t' && is_control(static_cast<unsigned char>(c));
  });
}

bool has_header(const HttpHeaders& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(),
                     [&](const auto& header) { return lower(header.first) == name; });
}

struct SlistDeleter {
  void operator()(curl_slist* list) const noexcept { curl_slist_free_all(list); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

// Appends `line` to `list`; false when out of memory.
bool append(Slist& list, const std::string& line) {
  curl_slist* grown = curl_slist_append(list.get(), line.c_str());
  if (grown == nullptr) return false;
  (void)list.release();
  list.reset(grown);
  return true;
}

// The request's header lines in curl's syntax, or why they cannot be sent.
std::expected<Slist, HttpError> header_list(const HttpRequest& request, bool sends_body) {
  Slist list;
  for (const auto& [name, value] : request.headers) {
    if (!valid_header(name, value)) {
      return std::unexpected(
          unusable(request, "a request header name or value holds a control character"));
    }
    // "Name:" would remove a header of curl's; "Name;" sends it empty.
    const std::string line = value.empty() ? name + ";" : fmt::format("{}: {}", name, value);
    if (!append(list, line)) return std::unexpected(unusable(request, "out of memory"));
  }
  // curl would otherwise add a form Content-Type to a body, and an
  // "Expect: 100-continue" (a wait for the server's go-ahead) to a large one.
  bool ok = true;
  if (sends_body && !has_header(request.headers, "content-type")) {
    ok = append(list, "Content-Type:");
  }
  if (ok && !has_header(request.headers, "expect")) ok = append(list, "Expect:");
  if (!ok) return std::unexpected(unusable(request, "out of memory"));
  return list;
}

const char* method_name(HttpRequest::Method method) {
  switch (method) {
    case HttpRequest::Method::kGet:
      return "GET";
    case HttpRequest::Method::kHead:
      return "HEAD";
    case HttpRequest::Method::kPost:
      return "POST";
    case HttpRequest::Method::kPut:
      return "PUT";
    case HttpRequest::Method::kPatch:
      return "PATCH";
    case HttpRequest::Method::kDelete:
      return "DELETE";
  }
  return "GET";
}

// Whether the request carries a body (and so a Content-Length).
bool sends_body(const HttpRequest& request) {
  switch (request.method) {
    case HttpRequest::Method::kPost:
    case HttpRequest::Method::kPut:
    case HttpRequest::Method::kPatch:
      return true;
    case HttpRequest::Method::kGet:
    case HttpRequest::Method::kDelete:
      return !request.body.empty();
    case HttpRequest::Method::kHead:
      return false;
  }
  return false;
}

// Sets the method (and the body) on a freshly reset handle. A body goes
// through POSTFIELDS, which sends it with a Content-Length.
void set_method(CURL* c, const HttpRequest& request) {
  if (request.method == HttpRequest::Method::kHead) {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    return;
  }
  const bool body = sends_body(request);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  } else {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  }
  // curl says POST with a body and GET without; another name replaces it on
  // the request line.
  const std::string_view name = method_name(request.method);
  if (name != (body ? "POST" : "GET")) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, name.data());
}

}  // namespace

std::optional<std::string> find_header(const HttpHeaders& headers, std::string_view name) {
  const std::string wanted = lower(name);
  for (const auto& [key, value] : headers) {
    if (key == wanted) return value;
  }
  return std::nullopt;
}

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  return find_header(headers, name);
}

FetchError to_fetch_error(HttpError error) {
  FetchError e;
  e.kind = error.kind == HttpFailure::kUnusable || error.kind == HttpFailure::kTls
               ? FetchFailure::kConfiguration
               : FetchFailure::kRetryable;
  e.message = std::move(error.message);
  return e;
}

struct HttpClient::Handle {
  CURL* curl = nullptr;
  char errbuf[CURL_ERROR_SIZE] = {};
};

void HttpClient::HandleDeleter::operator()(Handle* handle) const noexcept {
  if (handle == nullptr) return;
  if (handle->curl != nullptr) curl_easy_cleanup(handle->curl);
  delete handle;
}

HttpClient::HttpClient(HttpOptions options) : options_(options) { global_init(); }

HttpClient::~HttpClient() = default;

HttpClient::HandlePtr HttpClient::acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      HandlePtr h = std::move(idle_.back());
      idle_.pop_back();
      return h;
    }
  }
  HandlePtr h(new Handle);
  h->curl = curl_easy_init();
  if (h->curl == nullptr) return nullptr;
  return h;
}

void HttpClient::release(HandlePtr handle) {
  std::lock_guard lock(mu_);
  if (idle_.size() < kMaxIdleHandles) idle_.push_back(std::move(handle));
  // else: the handle (and its connection) is closed as it goes out of scope.
}

std::expected<HttpResponse, HttpError> HttpClient::perform(const HttpRequest& request) {
  if (request.method == HttpRequest::Method::kHead && !request.body.empty()) {
    return std::unexpected(unusable(request, "a HEAD request cannot have a body"));
  }
  AICACHE_ASSIGN_OR_RETURN(auto headers, header_list(request, sends_body(request)));
  HandlePtr h = acquire();
  if (!h)
    return std::unexpected(HttpError{
        HttpFailure::kOther, fmt::format("{}: cannot create a libcurl handle", request.label)});
  CURL* c = h->curl;
  // Reset options but keep the connection cache, so the connection is reused.
  curl_easy_reset(c);
  h->errbuf[0] = '\0';

  HttpResponse response;
  ResponseSink sink{&response, options_.max_response_bytes};

  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.total_timeout.count()));
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_PATH_AS_IS, request.path_as_is ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "aicache");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &write_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &write_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &sink);
  set_method(c, request);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  const CURLcode rc = curl_easy_perform(c);
  // The handle must not point at this frame's header list once we return.
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
  if (rc != CURLE_OK) {
    HttpError e = curl_failure(rc, h->errbuf, sink, request, options_);
    release(std::move(h));
    return std::unexpected(std::move(e));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  response.status = static_cast<int>(status);
  release(std::move(h));
  return response;
}

std::string url_label(std::string_view url) {
  if (const auto s = url.find("://"); s != std::string_view::npos) url.remove_prefix(s + 3);
  if (const auto end = url.find_first_of("?#"); end != std::string_view::npos) {
    url = url.substr(0, end);
  }
  const auto slash = url.find('/');
  const auto at = url.substr(0, slash).rfind('@');
  if (at != std::string_view::npos) url.remove_prefix(at + 1);
  return std::string(url);
}

}  // namespace aicache::tokens
