// Fuzz target: the HTTP request handling of `aicache serve`, end to end.
//
// One Server (memory store, loopback, an API token, a TokenManager with two
// in-process apps: one that always gets a token, one whose platform refuses
// the secret) is started once; each input becomes one request sent over a
// real loopback TCP connection, and the whole answer is read back.
//
// Byte 0 picks the mode:
//  - even: the rest is sent as it is (request line, headers, framing and
//    all; libFuzzer's mutations of the seed requests);
//  - odd: the rest is split into method, route, path, query, headers and
//    body, and assembled into a well-formed HTTP/1.1 request (correct
//    Content-Length or chunked framing), so most inputs reach the routes.
//
// Properties, beyond "no crash, no leak, no undefined behaviour, no hang":
//  - every answer starts with a well-formed status line "HTTP/1.1 NNN ";
//    a well-formed request always gets one;
//  - no request makes the service answer 500;
//  - the service keeps answering GET /healthz (checked every 64 inputs).
//
// The service keeps state between inputs, so libFuzzer's per-input leak
// check cannot apply: scripts/run-fuzzers.sh runs this target with
// -detect_leaks=0 (LeakSanitizer still checks the process at exit).
#include <arpa/inet.h>
#include <fuzzer/FuzzedDataProvider.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <expected>
#include <memory>
#include <string>
#include <string_view>

#include "aicache/assistant_cache.h"
#include "aicache/log.h"
#include "aicache/memory_store.h"
#include "aicache/server.h"
#include "aicache/token_manager.h"
#include "aicache/token_provider.h"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_http: property violated: %s (last errno: %s)\n", what,
                 std::strerror(errno));
    std::abort();
  }
}

constexpr std::string_view kApiToken = "fuzz-api-token-0123456789abcdef0123";

// A platform in-process: a fixed token, or always the same refusal.
class FakeProvider final : public aicache::TokenProvider {
 public:
  FakeProvider(aicache::Channel channel, std::string app_id, bool refuses) : refuses_(refuses) {
    app_.channel = channel;
    app_.app_id = std::move(app_id);
    app_.secret = "fuzz-app-secret";
  }
  std::expected<aicache::FetchedToken, aicache::FetchError> fetch(bool) override {
    if (!refuses_) return aicache::FetchedToken{"fuzz-access-token", std::chrono::seconds(7200)};
    aicache::FetchError error;
    error.kind = aicache::FetchFailure::kConfiguration;
    error.platform_code = 40001;
    error.platform_message = "invalid credential";
    error.http_status = 200;
    error.message = "platform error 40001 (invalid credential): wrong app secret [configuration]";
    return std::unexpected(std::move(error));
  }
  const aicache::AppCredentials& app() const override { return app_; }

 private:
  aicache::AppCredentials app_;
  bool refuses_;
};

// The service under test; kept for the whole process (reachable, so not a
// leak when libFuzzer exits).
struct Service {
  std::shared_ptr<aicache::AssistantCache> cache;
  std::shared_ptr<aicache::TokenManager> tokens;
  std::unique_ptr<aicache::Server> server;
  std::uint16_t port = 0;
};
Service* g_service = nullptr;

void start_service() {
  aicache::set_log_handler({});  // the service logs refused fetches; keep the output readable
  auto* service = new Service;
  auto cache = aicache::AssistantCache::create(
      aicache::make_memory_store({.max_bytes = 16u << 20, .shards = 1}));
  check(cache.has_value(), "the cache starts");
  service->cache = std::move(*cache);
  auto tokens = aicache::TokenManager::create(service->cache);
  check(tokens.has_value(), "the token manager starts");
  service->tokens = std::move(*tokens);
  check(service->tokens
            ->add_app(std::make_unique<FakeProvider>(aicache::Channel::kWeChat, "wxfuzz", false))
            .has_value(),
        "app wxfuzz is added");
  check(service->tokens
            ->add_app(std::make_unique<FakeProvider>(aicache::Channel::kDingTalk, "dingfuzz", true))
            .has_value(),
        "app dingfuzz is added");
  auto server = aicache::Server::create(service->cache, service->tokens,
                                        {.listen = "127.0.0.1:0",
                                         .api_token = std::string(kApiToken),
                                         .max_body_bytes = 64u << 10,
                                         .threads = 4,
                                         .keep_alive_timeout = std::chrono::seconds(1),
                                         .io_timeout = std::chrono::seconds(2),
                                         .access_log = false});
  check(server.has_value(), "the server is created");
  service->server = std::move(*server);
  check(service->server->start().has_value(), "the server starts");
  service->port = service->server->port();
  g_service = service;
}

// connect(), finished with poll() if a signal interrupts it (libFuzzer's
// SIGALRM, which checks for hangs, does; an interrupted connect goes on in
// the background and cannot simply be called again).
bool connect_to(int fd, const sockaddr_in& address) {
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) return true;
  if (errno != EINTR && errno != EINPROGRESS) return false;
  pollfd p{fd, POLLOUT, 0};
  int ready;
  do {
    ready = ::poll(&p, 1, 5000);
  } while (ready < 0 && errno == EINTR);
  int error = 0;
  socklen_t length = sizeof error;
  if (ready != 1 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return false;
  errno = error;
  return error == 0;
}

// Sends `request` on a new connection, half-closes it (so the server sees
// the end of the input instead of waiting for its read timeout) and reads
// until the server closes. Calls interrupted by a signal are resumed.
std::string exchange(std::string_view request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  check(fd >= 0, "socket()");
  // Longer than the server's io_timeout: a read that times out is a hang.
  const timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  // A source address of its own among 127.0.0.0/8 for every connection:
  // each ends in TIME_WAIT on this side (it sends the first FIN), and
  // hundreds of connections a second would otherwise exhaust the ephemeral
  // ports of one address within a minute.
  // The port is still chosen by connect() (IP_BIND_ADDRESS_NO_PORT): a
  // bind() to port 0 would search the ports itself, slowly.
  static std::uint32_t next_source = 0;
  const int yes = 1;
  ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &yes, sizeof yes);
  sockaddr_in source{};
  source.sin_family = AF_INET;
  source.sin_addr.s_addr = htonl(0x7f000000u | (0x10000u + next_source++ % 0xfe0000u));
  check(::bind(fd, reinterpret_cast<const sockaddr*>(&source), sizeof source) == 0,
        "bind() to a loopback source address");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(g_service->port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  check(connect_to(fd, address), "connect() to the service");
  std::size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server may answer (413) and close before reading it all
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string response;
  char buffer[16384];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      response.append(buffer, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    check(n == 0 || errno != EAGAIN, "the service answers within 5 s");
    break;  // closed, or reset after an early answer
  }
  ::close(fd);
  return response;
}

// The status of a well-formed status line, or -1.
int status_of(std::string_view response) {
  constexpr std::string_view kVersion = "HTTP/1.1 ";
  if (!response.starts_with(kVersion) || response.size() < kVersion.size() + 4) return -1;
  const std::string_view code = response.substr(kVersion.size(), 3);
  for (char c : code) {
    if (c < '0' || c > '9') return -1;
  }
  if (response[kVersion.size() + 3] != ' ') return -1;
  return (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
}

// Every byte but the unreserved ones and '/' as %XX: the path stays one
// request-target token whatever bytes the key holds.
std::string percent_encoded(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
    if (plain) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

// A header value or query: no CR, LF or NUL, which would end or break the line.
std::string one_line(std::string s) {
  for (char& c : s) {
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  }
  return s;
}

std::string structured_request(FuzzedDataProvider& in) {
  static constexpr const char* kMethods[] = {"GET",    "GET",  "HEAD",  "PUT",    "PUT",
                                             "DELETE", "POST", "PATCH", "OPTIONS"};
  static constexpr const char* kRoutes[] = {"/",
                                            "/healthz",
                                            "/readyz",
                                            "/metrics",
                                            "/v1/stats",
                                            "/v1/kv/",
                                            "/v1/kv/",
                                            "/v1/conversations/",
                                            "/v1/ai-configs/",
                                            "/v1/tokens/wechat/wxfuzz",
                                            "/v1/tokens/dingtalk/dingfuzz",
                                            "/v1/tokens/",
                                            "/v1/",
                                            ""};
  static constexpr const char* kSuffixes[] = {"", "", "/invalidate", "/refresh"};
  static constexpr const char* kHeaders[] = {"Content-Type", "Accept",     "Expect",
                                             "Range",        "Connection", "Accept-Encoding",
                                             "Host",         "Cookie",     "X-Forwarded-For"};

  std::string method = in.ConsumeIntegralInRange(0, 15) == 0
                           ? one_line(in.ConsumeRandomLengthString(12))
                           : in.PickValueInArray(kMethods);
  for (char& c : method) {
    if (c == ' ') c = '_';
  }
  std::string path = in.PickValueInArray(kRoutes);
  const std::string key = in.ConsumeRandomLengthString(300);
  path += in.ConsumeBool() ? percent_encoded(key) : one_line(key);
  path += in.PickValueInArray(kSuffixes);
  for (char& c : path) {
    if (c == ' ') c = '+';
  }

  std::string query;
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0:
      break;
    case 1:
      query = "ttl=" + std::to_string(in.ConsumeIntegral<std::int64_t>());
      break;
    case 2:
      query = "ttl=" + std::to_string(in.ConsumeIntegralInRange(0, 100));
      break;
    default:
      query = one_line(in.ConsumeRandomLengthString(64));
      break;
  }
  for (char& c : query) {
    if (c == ' ' || c == '#') c = '&';
  }

  std::string request = method + " " + path + (query.empty() ? "" : "?" + query) + " HTTP/1.1\r\n";
  request += "Host: 127.0.0.1\r\nConnection: close\r\n";
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0:
      break;
    case 1:
      request += "Authorization: Bearer fuzz-wrong-token\r\n";
      break;
    case 2:
      request += "Authorization: " + one_line(in.ConsumeRandomLengthString(40)) + "\r\n";
      break;
    default:
      request += "Authorization: Bearer " + std::string(kApiToken) + "\r\n";
      break;
  }
  const int headers = in.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < headers; ++i) {
    request += std::string(in.PickValueInArray(kHeaders)) + ": " +
               one_line(in.ConsumeRandomLengthString(64)) + "\r\n";
  }

  const bool chunked = in.ConsumeIntegralInRange(0, 7) == 0;
  const std::string body = in.ConsumeRemainingBytesAsString();
  if (chunked) {
    request += "Transfer-Encoding: chunked\r\n\r\n";
    // Two chunks when there is enough: framing across chunks is read too.
    const std::size_t half = body.size() / 2;
    for (std::string_view chunk :
         {std::string_view(body).substr(0, half), std::string_view(body).substr(half)}) {
      if (chunk.empty()) continue;
      char size_line[32];
      std::snprintf(size_line, sizeof size_line, "%zx\r\n", chunk.size());
      request += size_line;
      request += chunk;
      request += "\r\n";
    }
    request += "0\r\n\r\n";
  } else {
    if (!body.empty() || method == "PUT" || method == "POST") {
      request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    request += "\r\n";
    request += body;
  }
  return request;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  start_service();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static std::uint64_t runs = 0;
  const bool structured = (data[0] & 1) != 0;
  std::string request;
  if (structured) {
    FuzzedDataProvider in(data + 1, size - 1);
    request = structured_request(in);
  } else {
    request.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  }

  const std::string response = exchange(request);
  if (structured || !response.empty()) {
    const int status = status_of(response);
    check(status >= 100, "the answer starts with a well-formed status line");
    check(status != 500, "no request makes the service fail with 500");
  }

  if (++runs % 64 == 0) {
    const std::string health =
        exchange("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    check(status_of(health) == 200, "GET /healthz still answers 200");
  }
  return 0;
}
