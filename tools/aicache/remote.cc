#include "remote.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>

#include "aicache/log.h"
#include "core/try.h"
#include "tokens/http_client.h"

namespace aicache::cli {
namespace {

using namespace std::chrono_literals;

// A refused or unrouted connection fails at once; a host that drops packets
// is given up on after this.
constexpr auto kConnectTimeout = 5s;
// The whole exchange: a token call may wait for a platform fetch with
// retries, and a value may be up to the service's 1 MiB limit.
constexpr auto kTotalTimeout = 45s;
// Far above any answer of the service (a value is at most 1 MiB); only a
// runaway peer reaches it.
constexpr std::size_t kMaxReplyBytes = 64u << 20;

struct ParsedUrl {
  bool https = false;
  std::string host;  // without brackets
  int port = 0;
  std::string base;  // "" or "/prefix", no trailing slash
};

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// At most 120 bytes of what the user wrote, made printable.
std::string shown(std::string_view text) { return aicache::printable(text, 120); }

Result<ParsedUrl> parse_url(std::string_view url) {
  auto invalid = [&](std::string_view why) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("--server / AICACHE_SERVER: \"{}\" {} (expected a URL like "
                                  "http://127.0.0.1:8080)",
                                  shown(url), why));
  };
  ParsedUrl out;
  std::string_view rest = url;
  if (const auto scheme_end = rest.find("://"); scheme_end != std::string_view::npos) {
    const std::string scheme = lower(rest.substr(0, scheme_end));
    if (scheme == "https") {
      out.https = true;
    } else if (scheme != "http") {
      return invalid("is not an http:// or https:// URL");
    }
    rest.remove_prefix(scheme_end + 3);
  }
  const auto path_start = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, path_start);
  std::string_view path =
      path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
  if (authority.find('@') != std::string_view::npos) {
    return invalid("holds credentials; put the API token in AICACHE_API_TOKEN instead");
  }
  if (path.find_first_of("?#") != std::string_view::npos) {
    return invalid("has a query or fragment");
  }
  while (path.ends_with('/')) path.remove_suffix(1);
  out.base = std::string(path);

  std::string_view port;
  bool has_port = false;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return invalid("has an unclosed [IPv6 address]");
    out.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) return invalid("is not [HOST]:PORT");
    has_port = !after.empty();
    if (has_port) port = after.substr(1);
    if (out.host.empty() ||
        out.host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos) {
      return invalid("has an invalid IPv6 address");
    }
  } else {
    const auto colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    has_port = colon != std::string_view::npos;
    if (has_port) port = authority.substr(colon + 1);
    if (out.host.empty()) return invalid("has no host");
    for (char c : out.host) {
      if (!is_alnum(c) && c != '.' && c != '-' && c != '_') {
        return invalid("has an invalid host name");
      }
    }
  }
  out.port = out.https ? 443 : 80;
  if (has_port) {
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), out.port);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || out.port < 1 ||
        out.port > 65535) {
      return invalid("needs a port from 1 to 65535");
    }
  }
  return out;
}

// The URL of a parsed server URL, for curl: scheme, host (IPv6 in
// brackets), port and base path.
std::string origin_of(const ParsedUrl& url) {
  const bool ipv6 = url.host.find(':') != std::string::npos;
  return fmt::format("{}://{}{}{}:{}{}", url.https ? "https" : "http", ipv6 ? "[" : "", url.host,
                     ipv6 ? "]" : "", url.port, url.base);
}

}  // namespace

std::optional<std::string> HttpReply::header(std::string_view name) const {
  return tokens::find_header(headers, name);
}

struct RemoteClient::Impl {
  Impl(std::string url_in, const ParsedUrl& parsed, std::string api_token)
      : url(std::move(url_in)),
        prefix(origin_of(parsed)),
        client(HttpOptions{.connect_timeout = kConnectTimeout,
                           .total_timeout = kTotalTimeout,
                           .max_response_bytes = kMaxReplyBytes}) {
    if (!api_token.empty()) authorization = "Bearer " + api_token;
  }

  Result<HttpReply> send(tokens::HttpRequest::Method method, const std::string& path,
                         const std::string* json_body) {
    tokens::HttpRequest request;
    request.method = method;
    request.url = prefix + path;
    // Messages name the service as the user gave it (no credentials or
    // query: parse_url() refuses those).
    request.label = url;
    // Paths are percent-encoded by the caller; a key such as ".." must stay
    // one segment, not be resolved away.
    request.path_as_is = true;
    if (!authorization.empty()) request.headers.emplace_back("Authorization", authorization);
    if (json_body != nullptr) {
      request.headers.emplace_back("Content-Type", "application/json");
      request.body = *json_body;
    }
    auto response = client.perform(request);
    if (!response) {
      const tokens::HttpError& e = response.error();
      return make_error(
          e.kind == tokens::HttpFailure::kTimeout ? ErrorCode::kTimeout : ErrorCode::kUnavailable,
          "cannot reach the service at " + e.message);
    }
    return HttpReply{response->status, std::move(response->body), std::move(response->headers)};
  }

  std::string url;     // as given, for messages
  std::string prefix;  // scheme://host:port/base, what paths are appended to
  std::string authorization;
  tokens::HttpClient client;
};

RemoteClient::RemoteClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RemoteClient::~RemoteClient() = default;

Result<std::unique_ptr<RemoteClient>> RemoteClient::create(std::string_view url,
                                                           std::string api_token) {
  AICACHE_ASSIGN_OR_RETURN(const ParsedUrl parsed, parse_url(url));
  for (char c : api_token) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u == 0x7f) {
      return make_error(ErrorCode::kConfig,
                        "AICACHE_API_TOKEN holds a space or a control character");
    }
  }
  std::string shown_url(url);
  while (shown_url.ends_with('/')) shown_url.pop_back();
  return std::unique_ptr<RemoteClient>(new RemoteClient(
      std::make_unique<Impl>(std::move(shown_url), parsed, std::move(api_token))));
}

using Method = tokens::HttpRequest::Method;

Result<HttpReply> RemoteClient::get(const std::string& path) {
  return impl_->send(Method::kGet, path, nullptr);
}

Result<HttpReply> RemoteClient::head(const std::string& path) {
  return impl_->send(Method::kHead, path, nullptr);
}

Result<HttpReply> RemoteClient::put(const std::string& path, const std::string& json_body) {
  return impl_->send(Method::kPut, path, &json_body);
}

Result<HttpReply> RemoteClient::post(const std::string& path, const std::string& json_body) {
  return impl_->send(Method::kPost, path, &json_body);
}

Result<HttpReply> RemoteClient::del(const std::string& path) {
  return impl_->send(Method::kDelete, path, nullptr);
}

const std::string& RemoteClient::url() const noexcept { return impl_->url; }

}  // namespace aicache::cli
