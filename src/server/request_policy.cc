#include "server/request_policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "server/handler_support.h"
#include "server/http_errors.h"
#include "server/routes.h"

namespace aicache::server {

std::string host_name(std::string_view authority) {
  std::string_view host = authority;
  if (host.starts_with('[')) {
    const auto close = host.find(']');
    host = close == std::string_view::npos ? host : host.substr(0, close + 1);
  } else if (const auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  std::string out(host);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool constant_time_equals(std::string_view a, std::string_view b) noexcept {
  const std::size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (std::size_t i = 0; i < n; ++i) {
    const auto ca = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto cb = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff |= static_cast<unsigned>(ca ^ cb);
  }
  return diff == 0;
}

RequestPolicy::RequestPolicy(std::string api_token, const std::vector<std::string>& allowed_hosts)
    : api_token_(std::move(api_token)) {
  for (const std::string& host : allowed_hosts) allowed_hosts_.push_back(host_name(host));
}

std::optional<HttpResponse> RequestPolicy::check_head(const HttpRequest& head) const {
  if (head.path.size() > kMaxPathBytes) {
    return error_response(http_error(414, "uri_too_long", "the path is too long"));
  }
  const Route route = match_route(head.path).route;
  if (route == Route::kUnknown) {
    return error_response(http_error(404, "not_found", "no such route"));
  }
  if (!method_allowed(route, head.method)) {
    HttpResponse r = error_response(http_error(
        405, "method_not_allowed",
        fmt::format("{} is not allowed here; allowed: {}", method_label(head.method),
                    allowed_methods(route))));
    r.headers.emplace_back("Allow", std::string(allowed_methods(route)));
    return r;
  }
  if (auto refused = check_browser(head)) return refused;
  if (needs_auth(route)) return check_api_token(head);
  return std::nullopt;
}

// Without an API token the service trusts local processes, and a web page
// is not one: a browser on this machine will send a page's requests to
// loopback. A foreign Host is a DNS-rebinding page that resolved its own
// name to 127.0.0.1 (and could read the answers); a foreign Origin or a
// cross-site fetch is a page posting across sites (CSRF: a forced token
// refresh burns the platform's daily quota). With an API token, a page
// cannot send the bearer header across origins without a CORS preflight,
// which the service never grants.
std::optional<HttpResponse> RequestPolicy::check_browser(const HttpRequest& head) const {
  if (!api_token_.empty()) return std::nullopt;
  const auto host = head.header("Host");
  if (!host) return std::nullopt;  // HTTP/1.0 without Host: not a browser
  const std::string name = host_name(*host);
  const bool allowed = name == "localhost" || name == "127.0.0.1" || name == "[::1]" ||
                       std::find(allowed_hosts_.begin(), allowed_hosts_.end(), name) !=
                           allowed_hosts_.end();
  if (!allowed) {
    return error_response(http_error(
        403, "forbidden_host",
        "this Host is not served: use localhost, 127.0.0.1 or [::1], or list the name in "
        "AICACHE_ALLOWED_HOSTS"));
  }
  if (const auto site = head.header("Sec-Fetch-Site"); site && iequals(*site, "cross-site")) {
    return error_response(http_error(403, "forbidden_origin", "cross-site requests are not served"));
  }
  if (const auto origin = head.header("Origin")) {
    constexpr std::string_view kScheme = "http://";
    const bool own = origin->size() == kScheme.size() + host->size() &&
                     iequals(origin->substr(0, kScheme.size()), kScheme) &&
                     iequals(origin->substr(kScheme.size()), *host);
    if (!own) {
      return error_response(
          http_error(403, "forbidden_origin", "requests from other origins are not served"));
    }
  }
  return std::nullopt;
}

std::optional<HttpResponse> RequestPolicy::check_api_token(const HttpRequest& head) const {
  if (api_token_.empty()) return std::nullopt;
  const std::string_view header = head.header("Authorization").value_or("");
  constexpr std::string_view kBearer = "bearer ";
  const bool ok = header.size() > kBearer.size() &&
                  iequals(header.substr(0, kBearer.size()), kBearer) &&
                  constant_time_equals(header.substr(kBearer.size()), api_token_);
  if (ok) return std::nullopt;
  HttpResponse r = error_response(http_error(
      401, "unauthorized", header.empty() ? "an API token is required" : "the API token is wrong"));
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"aicache\"");
  return r;
}

}  // namespace aicache::server
