#include "remote.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <charconv>
#include <chrono>

namespace aicache::cli {
namespace {

using namespace std::chrono_literals;

// A refused or unrouted connection fails at once; a host that drops packets
// is given up on after this.
constexpr auto kConnectTimeout = 5s;
// A token call may wait for a platform fetch with retries.
constexpr auto kReadTimeout = 30s;
constexpr auto kWriteTimeout = 10s;

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

// At most 120 bytes of what the user wrote, control characters replaced.
std::string shown(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 120)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  if (text.size() > 120) out += "...";
  return out;
}

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

std::string describe(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection:
      return "cannot connect (connection refused, or nothing listens there)";
    case httplib::Error::ConnectionTimeout:
      return "the connection timed out";
    case httplib::Error::Read:
      return "no answer (the connection broke or the read timed out)";
    case httplib::Error::Write:
      return "the request could not be sent";
    case httplib::Error::SSLConnection:
      return "the TLS handshake failed";
    case httplib::Error::SSLServerVerification:
      return "the server's TLS certificate did not verify";
    case httplib::Error::SSLLoadingCerts:
      return "the CA certificates could not be loaded";
    default:
      return httplib::to_string(error);
  }
}

}  // namespace

std::optional<std::string> HttpReply::header(std::string_view name) const {
  const std::string wanted = lower(name);
  for (const auto& [key, value] : headers) {
    if (key == wanted) return value;
  }
  return std::nullopt;
}

namespace {

// An https client needs httplib's scheme form; http takes the host and port
// directly (which also admits every IPv6 literal).
std::unique_ptr<httplib::Client> make_client(const ParsedUrl& url) {
  if (!url.https) return std::make_unique<httplib::Client>(url.host, url.port);
  if (url.host.find(':') != std::string::npos) {
    return std::make_unique<httplib::Client>(fmt::format("https://[{}]:{}", url.host, url.port));
  }
  return std::make_unique<httplib::Client>(fmt::format("https://{}:{}", url.host, url.port));
}

}  // namespace

struct RemoteClient::Impl {
  Impl(std::string url_in, const ParsedUrl& parsed)
      : url(std::move(url_in)), base(parsed.base), client(make_client(parsed)) {}

  Result<HttpReply> finish(httplib::Result result) const {
    if (!result) {
      const httplib::Error error = result.error();
      return make_error(error == httplib::Error::ConnectionTimeout ? ErrorCode::kTimeout
                                                                   : ErrorCode::kUnavailable,
                        fmt::format("cannot reach the service at {}: {}", url, describe(error)));
    }
    HttpReply reply;
    reply.status = result->status;
    reply.body = std::move(result->body);
    for (const auto& [name, value] : result->headers)
      reply.headers.emplace_back(lower(name), value);
    return reply;
  }

  std::string url;
  std::string base;
  std::unique_ptr<httplib::Client> client;
};

RemoteClient::RemoteClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RemoteClient::~RemoteClient() = default;

Result<std::unique_ptr<RemoteClient>> RemoteClient::create(std::string_view url,
                                                           std::string api_token) {
  auto parsed = parse_url(url);
  if (!parsed) return std::unexpected(std::move(parsed.error()));
  for (char c : api_token) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u == 0x7f) {
      return make_error(ErrorCode::kConfig,
                        "AICACHE_API_TOKEN holds a space or a control character");
    }
  }
  std::string shown_url(url);
  while (shown_url.ends_with('/')) shown_url.pop_back();
  auto impl = std::make_unique<Impl>(std::move(shown_url), *parsed);
  if (!impl->client->is_valid()) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("--server / AICACHE_SERVER: cannot use \"{}\"", impl->url));
  }
  httplib::Client& client = *impl->client;
  client.set_connection_timeout(kConnectTimeout);
  client.set_read_timeout(kReadTimeout);
  client.set_write_timeout(kWriteTimeout);
  client.set_keep_alive(false);
  client.set_follow_location(false);
  // Paths are percent-encoded by the caller; encoding again would turn a
  // key's '%' into "%25".
  client.set_url_encode(false);
  if (!api_token.empty()) client.set_bearer_token_auth(api_token);
  return std::unique_ptr<RemoteClient>(new RemoteClient(std::move(impl)));
}

Result<HttpReply> RemoteClient::get(const std::string& path) {
  return impl_->finish(impl_->client->Get(impl_->base + path));
}

Result<HttpReply> RemoteClient::head(const std::string& path) {
  return impl_->finish(impl_->client->Head(impl_->base + path));
}

Result<HttpReply> RemoteClient::put(const std::string& path, const std::string& json_body) {
  return impl_->finish(impl_->client->Put(impl_->base + path, json_body, "application/json"));
}

Result<HttpReply> RemoteClient::post(const std::string& path, const std::string& json_body) {
  return impl_->finish(impl_->client->Post(impl_->base + path, json_body, "application/json"));
}

Result<HttpReply> RemoteClient::del(const std::string& path) {
  return impl_->finish(impl_->client->Delete(impl_->base + path));
}

const std::string& RemoteClient::url() const noexcept { return impl_->url; }

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

}  // namespace aicache::cli
