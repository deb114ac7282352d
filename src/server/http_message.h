// Requests and responses as the service sees them, whatever parses and
// writes them (src/server/http_transport.cc, on Boost.Beast). Nothing here
// names the HTTP library, so the routes, the policy and their tests and
// fuzzers depend on none.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace aicache::server {

using HttpFields = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // as sent: "GET", "PUT", ...
  std::string target;  // the raw request-target, never decoded
  std::string path;    // the target's path, percent-decoded once
  HttpFields query;    // the target's query, split on '&' and '=', decoded ('+' is a space)
  HttpFields headers;  // as received (names in their case); values never decoded
  std::string body;    // empty until the body is read
  std::string remote;  // "address:port" of the peer

  // The value of the first header named `name` (case-insensitive).
  std::optional<std::string_view> header(std::string_view name) const;
  // How many values of query parameter `name` the target has, and the first.
  std::size_t query_count(std::string_view name) const;
  std::optional<std::string_view> query_value(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type;  // empty: no Content-Type
  std::string body;
  // A body of static storage duration (the dashboard) sent without a copy;
  // when non-empty it is sent instead of `body`.
  std::string_view static_body;
  // Further header fields. Names and values the service makes itself: the
  // transport refuses to send CR, LF or NUL in them (500 instead).
  HttpFields headers;
  // Close the connection once this response is written.
  bool close = false;

  std::string_view payload() const { return static_body.empty() ? body : static_body; }
};

// The request-target of an origin-form request ("/path?query"), split and
// decoded. False for anything else: an absolute or authority form, a path
// not starting with '/', a '%' not followed by two hex digits, or a
// fragment.
bool parse_target(std::string_view target, std::string& path, HttpFields& query);

// Case-insensitive ASCII comparison of header names and tokens.
bool iequals(std::string_view a, std::string_view b) noexcept;

}  // namespace aicache::server
