// The HTTP client of `aicache --server URL`: the commands act through a
// running `aicache serve` instead of opening a store (so the memory store is
// usable from the command line too); remote_backend.cc speaks the service's
// API over it. The transport is the project's libcurl
// client (src/tokens/http_client.h), which keeps curl's types to itself.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aicache/status.h"

namespace aicache::cli {

// One answer of the service, whatever its status.
struct HttpReply {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased

  // The value of header `name` (case-insensitive), if present.
  std::optional<std::string> header(std::string_view name) const;
};

class RemoteClient {
 public:
  // `url`: http://HOST[:PORT][/BASE] or https://...; "HOST:PORT" alone means
  // http. IPv6 hosts in brackets. kInvalidArgument for anything else, and for
  // credentials in the URL (the API token goes in `api_token`, sent as
  // "Authorization: Bearer <api_token>" when non-empty).
  static Result<std::unique_ptr<RemoteClient>> create(std::string_view url, std::string api_token);
  ~RemoteClient();
  RemoteClient(const RemoteClient&) = delete;
  RemoteClient& operator=(const RemoteClient&) = delete;

  // `path` starts with '/' and is already percent-encoded; the URL's BASE is
  // put in front of it. Any HTTP status is a reply; only a transport failure
  // (refused, unreachable, timed out, TLS) is an error: kUnavailable or
  // kTimeout, its message naming the URL.
  Result<HttpReply> get(const std::string& path);
  Result<HttpReply> head(const std::string& path);
  Result<HttpReply> put(const std::string& path, const std::string& json_body);
  Result<HttpReply> post(const std::string& path, const std::string& json_body);
  Result<HttpReply> del(const std::string& path);

  // The URL as given (without a trailing slash), for messages.
  const std::string& url() const noexcept;

 private:
  struct Impl;
  explicit RemoteClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace aicache::cli
