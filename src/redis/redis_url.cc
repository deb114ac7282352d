// parse_redis_url() and RedisEndpoint::redacted_url().
//
// Error messages name the part of the URL that is wrong and never echo the
// user-info section, which may hold a password.
#include <fmt/format.h>

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "aicache/log.h"
#include "aicache/redis_store.h"
#include "core/text.h"
#include "core/try.h"

namespace aicache {
namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != prefix[i]) return false;
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX escapes; nullopt on a malformed escape.
std::optional<std::string> percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return std::nullopt;
    int hi = hex_value(in[i + 1]);
    int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

// At most this much of a URL's wrong part is quoted in an error message.
constexpr std::size_t kQuotedBytes = 64;

std::optional<std::int64_t> parse_db(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

Status parse_user_info(std::string_view info, RedisEndpoint& ep) {
  std::string_view user = info;
  std::optional<std::string_view> password;
  if (auto colon = info.find(':'); colon != std::string_view::npos) {
    user = info.substr(0, colon);
    password = info.substr(colon + 1);
  }
  auto u = percent_decode(user);
  if (!u)
    return make_error(ErrorCode::kConfig, "redis URL: invalid percent-encoding in the user name");
  ep.user = std::move(*u);
  if (password) {
    auto p = percent_decode(*password);
    if (!p)
      return make_error(ErrorCode::kConfig, "redis URL: invalid percent-encoding in the password");
    ep.password = std::move(*p);
  }
  return {};
}

// "db=N" (the only parameter understood); applies it to `ep`.
Status parse_query(std::string_view query, RedisEndpoint& ep) {
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    auto eq = param.find('=');
    std::string_view name = param.substr(0, eq);
    std::string_view value =
        eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
    if (name != "db") {
      return make_error(ErrorCode::kConfig,
                        fmt::format("redis URL: unsupported parameter '{}' (only db=N)",
                                    printable(name, kQuotedBytes)));
    }
    auto db = parse_db(value);
    if (!db) {
      return make_error(ErrorCode::kConfig, "redis URL: the db parameter is not a database number");
    }
    ep.db = *db;
  }
  return {};
}

// "host", "host:port", "[v6]" or "[v6]:port"; `what` starts error messages
// ("redis URL", "sentinel address").
Result<RedisHostPort> parse_host_port(std::string_view rest, std::string_view what,
                                      std::uint16_t default_port) {
  std::string_view host;
  std::string_view port;
  bool has_port = false;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) {
      return make_error(ErrorCode::kConfig,
                        fmt::format("{}: IPv6 address without a closing ']'", what));
    }
    host = rest.substr(1, close - 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: unexpected text after the IPv6 address", what));
      }
      port = after.substr(1);
      has_port = true;
    }
  } else {
    auto colon = rest.find(':');
    host = rest.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = rest.substr(colon + 1);
      has_port = true;
    }
  }
  if (host.empty()) return make_error(ErrorCode::kConfig, fmt::format("{}: missing host", what));
  RedisHostPort out{std::string(host), default_port};
  if (has_port) {
    unsigned value = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || p != port.data() + port.size() || value == 0 ||
        value > 65535) {
      return make_error(ErrorCode::kConfig, fmt::format("{}: invalid port '{}'", what,
                                                        printable(port, kQuotedBytes)));
    }
    out.port = static_cast<std::uint16_t>(value);
  }
  return out;
}

// Cuts "?query" off `rest` and returns the query (empty if none).
std::string_view take_query(std::string_view& rest) {
  const auto q = rest.find('?');
  if (q == std::string_view::npos) return {};
  const std::string_view query = rest.substr(q + 1);
  rest = rest.substr(0, q);
  return query;
}

Result<RedisEndpoint> parse_tcp(std::string_view rest) {
  RedisEndpoint ep;
  // The user info ends at the last '@': host, port and db never hold one,
  // while a password with an unescaped '@' or '/' still parses.
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    AICACHE_TRY(parse_user_info(rest.substr(0, at), ep));
    rest = rest.substr(at + 1);
  }
  const std::string_view query = take_query(rest);
  std::string_view path;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  AICACHE_ASSIGN_OR_RETURN(RedisHostPort hp, parse_host_port(rest, "redis URL", ep.port));
  ep.host = std::move(hp.host);
  ep.port = hp.port;
  if (!path.empty()) {
    auto db = parse_db(path);
    if (!db) {
      return make_error(ErrorCode::kConfig,
                        "redis URL: the path must be a database number, as in redis://host:6379/0");
    }
    ep.db = *db;
  }
  AICACHE_TRY(parse_query(query, ep));
  return ep;
}

Result<RedisEndpoint> parse_unix(std::string_view rest) {
  RedisEndpoint ep;
  ep.host.clear();
  ep.port = 0;
  // unix://[[user]:password@]/path: the user info ends at the first "@/".
  if (!rest.empty() && rest.front() != '/') {
    auto at = rest.find("@/");
    if (at == std::string_view::npos) {
      return make_error(ErrorCode::kConfig,
                        "redis URL: a unix socket URL needs an absolute path, as in "
                        "unix:///run/redis/redis.sock");
    }
    AICACHE_TRY(parse_user_info(rest.substr(0, at), ep));
    rest = rest.substr(at + 1);
  }
  const std::string_view query = take_query(rest);
  if (rest.size() < 2) return make_error(ErrorCode::kConfig, "redis URL: missing unix socket path");
  auto path = percent_decode(rest);
  if (!path)
    return make_error(ErrorCode::kConfig, "redis URL: invalid percent-encoding in the path");
  ep.unix_socket = std::move(*path);
  AICACHE_TRY(parse_query(query, ep));
  return ep;
}

}  // namespace

Result<RedisEndpoint> parse_redis_url(std::string_view url) {
  if (starts_with_ci(url, "rediss://")) {
    AICACHE_ASSIGN_OR_RETURN(RedisEndpoint ep, parse_tcp(url.substr(9)));
    ep.tls = true;
    return ep;
  }
  if (starts_with_ci(url, "redis://")) return parse_tcp(url.substr(8));
  if (starts_with_ci(url, "unix://")) return parse_unix(url.substr(7));
  if (url.empty()) return make_error(ErrorCode::kConfig, "redis URL is empty");
  return make_error(ErrorCode::kConfig,
                    "redis URL: unsupported scheme (expected redis://, rediss:// or unix://)");
}

Result<RedisHostPort> parse_redis_host_port(std::string_view text, std::uint16_t default_port) {
  // A host name or address: no spaces, controls, user info or path.
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '/' || c == '@' || c == '?' || c == '#' || c == ',') {
      return make_error(ErrorCode::kConfig,
                        fmt::format("address '{}' is not host:port", printable(text, kQuotedBytes)));
    }
  }
  // An IPv6 address without brackets is ambiguous with a port.
  if (!text.starts_with('[') && text.find(':') != text.rfind(':')) {
    return make_error(ErrorCode::kConfig,
                      fmt::format("address '{}': write an IPv6 address in brackets, as [::1]:26379",
                                  printable(text, kQuotedBytes)));
  }
  return parse_host_port(text, fmt::format("address '{}'", printable(text, kQuotedBytes)),
                         default_port);
}

std::string RedisEndpoint::redacted_url() const {
  std::string info;
  if (!user.empty() || !password.empty()) {
    info = internal::percent_encode(user);
    if (!password.empty()) info += ":***";
    info += '@';
  }
  // Host and path as printable() shows them: the URL may come from anywhere
  // (an environment variable, a file) and ends up in messages and logs.
  if (!unix_socket.empty()) {
    return fmt::format("unix://{}{}?db={}", info, printable(unix_socket, std::string_view::npos),
                       db);
  }
  const std::string shown = printable(host, std::string_view::npos);
  std::string h = shown.find(':') != std::string::npos ? fmt::format("[{}]", shown) : shown;
  return fmt::format("{}://{}{}:{}/{}", tls ? "rediss" : "redis", info, h, port, db);
}

}  // namespace aicache
