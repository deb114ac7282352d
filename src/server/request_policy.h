// Who may ask, decided from the request head alone, before any body byte is
// read (an unauthenticated client cannot make the server read a body):
//
//   414 a path over kMaxPathBytes; 404 no such route; 405 a method the route
//   does not allow (with Allow);
//   the browser policy, without an API token: the service trusts local
//   processes, not web pages. 403 for a Host other than localhost,
//   127.0.0.1, [::1] or a name in `allowed_hosts` (DNS rebinding: a page
//   whose own name resolves to 127.0.0.1 could read the answers), for an
//   Origin other than the service's own, and for Sec-Fetch-Site: cross-site
//   (CSRF: a page forcing token refreshes burns the platform's daily quota);
//   the API token, when one is set: every /v1 route needs
//   "Authorization: Bearer <token>", compared in constant time; 401 with
//   WWW-Authenticate otherwise. With a token there is no browser policy: a
//   page cannot send the bearer header across origins without a CORS
//   preflight, which the service never grants.
//
// Thread safety: check_head() is const and may run on any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/http_message.h"

namespace aicache::server {

class RequestPolicy {
 public:
  // `api_token` empty: no token, and the browser policy applies.
  // `allowed_hosts`: further Host names ("name" or "name:port"; any case).
  RequestPolicy(std::string api_token, const std::vector<std::string>& allowed_hosts);

  // A refusal, or nullopt if the request may proceed. `head.body` is not
  // looked at.
  std::optional<HttpResponse> check_head(const HttpRequest& head) const;

 private:
  std::optional<HttpResponse> check_browser(const HttpRequest& head) const;
  std::optional<HttpResponse> check_api_token(const HttpRequest& head) const;

  const std::string api_token_;
  std::vector<std::string> allowed_hosts_;  // host names, lower case, no port
};

// The host part of a Host header or an origin's authority, lower case:
// "[::1]:8080" → "[::1]", "Example.org:80" → "example.org".
std::string host_name(std::string_view authority);

// Equal, in time that depends only on the lengths, never on where the first
// difference is.
bool constant_time_equals(std::string_view a, std::string_view b) noexcept;

}  // namespace aicache::server
