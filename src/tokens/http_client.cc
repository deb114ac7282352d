#include "tokens/http_client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <mutex>
#include <utility>

namespace aicache::tokens {
namespace {

constexpr std::size_t kMaxIdleHandles = 4;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// What the write callback knows about the body it is collecting.
struct BodySink {
  std::string* body = nullptr;
  std::size_t limit = 0;
  bool overflow = false;
};

extern "C" std::size_t write_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* sink = static_cast<BodySink*>(user);
  const std::size_t n = size * count;
  if (sink->body->size() + n > sink->limit) {
    sink->overflow = true;
    return 0;  // anything other than n aborts the transfer: CURLE_WRITE_ERROR
  }
  sink->body->append(data, n);
  return n;
}

// curl's error text may quote the URL; keep only what precedes a query.
std::string without_query(std::string_view text) {
  const auto q = text.find('?');
  if (q == std::string_view::npos) return std::string(text);
  return std::string(text.substr(0, q)) + "?<query omitted>";
}

// The one place where libcurl's error space becomes FetchError.
FetchError curl_failure(CURLcode code, const char* errbuf, bool overflow,
                        const HttpRequest& request, const HttpOptions& options) {
  FetchError e;
  e.kind = FetchFailure::kRetryable;
  const std::string detail = without_query(errbuf != nullptr && errbuf[0] != '\0'
                                               ? std::string_view(errbuf)
                                               : std::string_view(curl_easy_strerror(code)));
  switch (code) {
    case CURLE_WRITE_ERROR:
      if (overflow) {
        e.message = fmt::format("{}: response body larger than the limit of {} bytes",
                                request.label, options.max_response_bytes);
        return e;
      }
      break;
    case CURLE_OPERATION_TIMEDOUT:
      e.message = fmt::format("{}: timed out (connect timeout {} ms, total timeout {} ms): {}",
                              request.label, options.connect_timeout.count(),
                              options.total_timeout.count(), detail);
      return e;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      e.kind = FetchFailure::kConfiguration;
      e.message = fmt::format("{}: unusable base URL: {}", request.label, detail);
      return e;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      e.kind = FetchFailure::kConfiguration;
      e.message = fmt::format("{}: TLS verification failed: {}", request.label, detail);
      return e;
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
      e.message = fmt::format("{}: connection closed by the server: {}", request.label, detail);
      return e;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      e.message = fmt::format("{}: cannot connect: {}", request.label, detail);
      return e;
    default:
      break;
  }
  e.message = fmt::format("{}: HTTP request failed ({}): {}", request.label,
                          curl_easy_strerror(code), detail);
  return e;
}

}  // namespace

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

std::expected<HttpResponse, FetchError> HttpClient::perform(const HttpRequest& request) {
  HandlePtr h = acquire();
  if (!h) {
    FetchError e;
    e.kind = FetchFailure::kRetryable;
    e.message = fmt::format("{}: cannot create a libcurl handle", request.label);
    return std::unexpected(std::move(e));
  }
  CURL* c = h->curl;
  // Reset options but keep the connection cache, so the connection is reused.
  curl_easy_reset(c);
  h->errbuf[0] = '\0';

  HttpResponse response;
  BodySink sink{&response.body, options_.max_response_bytes, false};

  struct SlistDeleter {
    void operator()(curl_slist* list) const noexcept { curl_slist_free_all(list); }
  };
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  auto add_header = [&headers](const char* line) {
    curl_slist* grown = curl_slist_append(headers.get(), line);
    if (grown != nullptr) {
      (void)headers.release();
      headers.reset(grown);
    }
  };
  add_header("Accept: application/json");

  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.total_timeout.count()));
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "aicache");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &write_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  if (request.method == HttpRequest::Method::kPost) {
    add_header("Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  } else {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  const CURLcode rc = curl_easy_perform(c);
  // The handle must not point at this frame's header list once we return.
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
  if (rc != CURLE_OK) {
    FetchError e = curl_failure(rc, h->errbuf, sink.overflow, request, options_);
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

std::string url_encode(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size() * 3);
  for (const char ch : value) {
    const auto u = static_cast<unsigned char>(ch);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '-' ||
        u == '.' || u == '_' || u == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0x0F]);
    }
  }
  return out;
}

}  // namespace aicache::tokens
