// Fuzz target: the HTTP request handling of `aicache serve`, end to end.
//
// One Server (memory store, loopback, an API token, a TokenManager with two
// in-process apps: one that always gets a token, one whose platform refuses
// the secret) is started once; each input becomes one request sent over a
// real loopback TCP connection, and the whole answer is read back.
//
// Byte 0 picks the mode (its two low bits):
//  - 0 or 2: the rest is sent as it is (request line, headers, framing and
//    all; libFuzzer's mutations of the seed requests);
//  - 1: the rest is split into method, route, path, query, headers and
//    body, and assembled into a well-formed HTTP/1.1 request (correct
//    Content-Length or chunked framing), so most inputs reach the routes;
//  - 3: framing mode. One request that breaks HTTP/1.1 framing on purpose,
//    with a smuggled request (DELETE /v1/kv/fuzz-victim or
//    PUT /v1/kv/fuzz-marker, authenticated, keep-alive) in the bytes after
//    its head, placed where a parser that got the framing wrong would take
//    it for the next request. The rest of the input is read a byte at a
//    time (0 once it runs out), so seeds can be written by hand:
//      byte 1  the kind of trouble: 0 a body on any method (GET, HEAD,
//              OPTIONS, DELETE, PUT, POST, PATCH, unknown ones), 1 two
//              Content-Lengths (equal or not, as two fields or a list,
//              with or without Transfer-Encoding), 2 Content-Length with
//              Transfer-Encoding (either order), 3 a Content-Length that
//              is signed, percent-encoded, hex, overlong, a list... or
//              padded with spaces and tabs, 4 Transfer-Encoding other than
//              "chunked", two of them, case variants, 5 obsolete folding
//              (of any field, of the framing fields, of the request line),
//              6 malformed chunk sizes, extensions and trailers, 7
//              Content-Encoding, 8 a missing or repeated Host, 9 a head
//              over 16 KiB, 10 and 11 a Content-Length or Transfer-Encoding
//              value taken from the end of the input;
//      byte 2  the variant within the kind;
//      byte 3  the method; byte 4 flags (1 HTTP/1.0, 2 Expect:
//              100-continue, 4 and 8 Connection: close or keep-alive, 16
//              smuggle the PUT rather than the DELETE, 32 no JSON before
//              the smuggled request, 64 framing fields in reverse order,
//              128 target /healthz rather than /v1/kv/fuzz-first);
//      byte 5  more choices: bits 0-1 the case of the field name, bit 2
//              Expect's case, bit 6 send in two parts (byte 6 says where),
//              bit 7 after a GET /healthz on the same connection;
//      byte 6  where to split: after the (n % lines)-th line end, one byte
//              earlier (between CR and LF) with bit 7;
//      then    kinds 10 and 11: the field value (at most 40 bytes).
//    The generator knows what a strict parser (the policy written in
//    src/server/http_transport.h, not its code) makes of the bytes: refused
//    from the head, refused in the body, accepted with the smuggled request
//    inside the body, or accepted with it after the body behind
//    "Connection: close".
//
// Properties, beyond "no crash, no leak, no undefined behaviour, no hang":
//  - every answer starts with a well-formed status line "HTTP/1.1 NNN ";
//    a well-formed request always gets one;
//  - no request makes the service answer 500;
//  - the service keeps answering GET /healthz (checked every 64 inputs);
//  - framing mode: the answers split cleanly by their Content-Length and
//    there is at most one final (non-1xx) answer on the connection; a
//    request the policy refuses gets exactly one, 400/413/415/431 (any 4xx
//    when only its body breaks framing: the route's own checks of the head
//    may answer first), with "Connection: close", no "100 Continue" before
//    a refused head, and does not run (fuzz-first keeps its value); an
//    accepted complete request gets exactly one answer; and the smuggled
//    request never runs (fuzz-victim still exists, fuzz-marker does not),
//    read through the in-process AssistantCache after the connection ends.
//    A round trip that took longer than the server's shortest deadline
//    (1 s: the harness stalled on a loaded machine) may miss its answer,
//    in every mode; it may never have an extra one.
//
// The service keeps state between inputs, so libFuzzer's per-input leak
// check cannot apply: scripts/run-fuzzers.sh runs this target with
// -detect_leaks=0 (LeakSanitizer still checks the process at exit).
#include <arpa/inet.h>
#include <fuzzer/FuzzedDataProvider.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/json.h"
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

// The server's shortest deadline: a connection whose first byte takes longer
// is closed without an answer (io_timeout, inside a request, is 2 s). On a
// loaded machine the harness itself can stall that long between connect()
// and a send (a 600 s run once did, between the two parts of a split
// request): a round trip that took this long may miss its answer.
constexpr std::chrono::seconds kKeepAliveTimeout{1};

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
  std::shared_ptr<aicache::Server> server;
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
                                         .keep_alive_timeout = kKeepAliveTimeout,
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
// With `split` inside the request, the bytes before it go first and the
// rest a moment later, so that the server most likely reads them apart.
std::string round_trip(std::string_view request, std::size_t split = 0) {
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
  if (split > 0 && split < request.size()) {
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);  // each part its own segment
  } else {
    split = request.size();
  }
  std::size_t sent = 0;
  while (sent < request.size()) {
    const std::size_t until = sent < split ? split : request.size();
    const ssize_t n = ::send(fd, request.data() + sent, until - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server may answer (413) and close before reading it all
    sent += static_cast<std::size_t>(n);
    if (sent == split && split < request.size()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // let the server read the part
    }
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

// To see what an input sends and gets (reproducing a failure, writing a
// seed): AICACHE_FUZZ_HTTP_TRACE=1 build-fuzz/tests/fuzz/fuzz_http FILE...
void trace(std::string_view what, std::string_view sent, std::string_view got) {
  static const bool on = std::getenv("AICACHE_FUZZ_HTTP_TRACE") != nullptr;
  if (!on) return;
  std::fprintf(stderr, "--- %.*s sends:\n%.*s\n--- and gets:\n%.*s\n---\n",
               static_cast<int>(what.size()), what.data(), static_cast<int>(sent.size()),
               sent.data(), static_cast<int>(got.size()), got.data());
}

// Raw and structured modes: one request, one answer.
void run_request(const std::uint8_t* data, std::size_t size) {
  const bool structured = (data[0] & 1) != 0;
  std::string request;
  if (structured) {
    FuzzedDataProvider in(data + 1, size - 1);
    request = structured_request(in);
  } else {
    request.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  }

  const auto started = std::chrono::steady_clock::now();
  const std::string response = round_trip(request);
  const bool stalled = std::chrono::steady_clock::now() - started >= kKeepAliveTimeout;
  trace(structured ? "structured" : "raw", request, response);
  if (!response.empty() || (structured && !stalled)) {
    const int status = status_of(response);
    check(status >= 100, "the answer starts with a well-formed status line");
    check(status != 500, "no request makes the service fail with 500");
  }
}

// --- Framing mode -----------------------------------------------------------------
//
// One request that breaks HTTP/1.1 framing on purpose (or bends it in a way
// the policy of src/server/http_transport.h accepts), carrying a smuggled
// request with a visible effect in the bytes after its head. The generator
// knows, by construction, what a strict parser makes of the bytes: the
// smuggled request is either behind a head the policy refuses, or inside
// the first request's body, or behind "Connection: close". So the smuggled
// request must never run, and the connection never carries more than one
// answer.

constexpr std::string_view kVictim = "fuzz-victim";  // the smuggled DELETE's target
constexpr std::string_view kMarker = "fuzz-marker";  // the smuggled PUT's target
constexpr std::string_view kFirst = "fuzz-first";    // the framed request's own target
constexpr std::string_view kUntouched = "\"untouched\"";

// What a strict parser (the documented policy) makes of the first request.
enum class Verdict {
  kRefused,    // exactly one 4xx answer with "Connection: close", then the end
  kOneAnswer,  // framing accepted and the request complete: exactly one answer (any status)
  kAtMostOne,  // the declared length may not match the bytes sent: zero or one answer
};

struct FramedRequest {
  std::string bytes;
  Verdict verdict = Verdict::kOneAnswer;
  // Refused from the head alone, by the transport: the answer is 400, 413,
  // 415 or 431, and no "100 Continue" may come before it. Otherwise the body
  // breaks framing, and any 4xx may come first.
  bool refused_by_head = false;
  bool head_method = false;  // the answer to a HEAD comes without its body
  // A GET /healthz on the same connection before it: the framed request
  // is then the second, and parsing must start afresh for it.
  bool after_healthz = false;
  std::size_t split = 0;  // where round_trip() pauses; 0: one write
};

// The input read one byte at a time (0 once it runs out), so that seeds for
// this mode can be written by hand: see the comment at the top.
class ByteReader {
 public:
  ByteReader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t next() { return pos_ < size_ ? data_[pos_++] : 0; }
  template <typename T, std::size_t N>
  const T& pick(const T (&values)[N]) {
    return values[next() % N];
  }
  std::string rest(std::size_t limit) {
    const std::size_t n = std::min(limit, size_ - pos_);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

std::string hex(std::size_t n) {
  char text[32];
  std::snprintf(text, sizeof text, "%zx", n);
  return text;
}

// `data` as one chunk and the last chunk.
std::string chunked(std::string_view data) {
  std::string out;
  if (!data.empty()) out += hex(data.size()) + "\r\n" + std::string(data) + "\r\n";
  return out + "0\r\n\r\n";
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// The policy's reading of one Content-Length value, written from
// http_transport.h rather than from its code: plain digits, at most 18,
// once spaces and tabs around them are trimmed. Anything else is refused.
std::optional<std::uint64_t> strict_length(std::string_view value) {
  const std::string_view digits = trim_ows(value);
  if (digits.empty() || digits.size() > 18) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
}

std::string percent_digits(std::string_view digits) {
  std::string out;
  for (char c : digits) out += "%3" + std::string(1, c);
  return out;
}

constexpr std::size_t kMaxBody = 64u << 10;  // the fuzz server's max_body_bytes

FramedRequest framing_request(ByteReader& in) {
  // Kinds of framing trouble; the byte after picks a variant within one.
  enum Kind {
    kBodyOnMethod,     // a body (or an empty one) on every method
    kTwoLengths,       // duplicate Content-Length, equal or not, with or without TE
    kLengthAndCoding,  // Content-Length and Transfer-Encoding, in either order
    kOddLength,        // one Content-Length that is not plain digits, or padded
    kOddCoding,        // a Transfer-Encoding other than "chunked", two of them, case variants
    kFolding,          // obsolete line folding
    kBadChunk,         // malformed chunk sizes, extensions, trailers
    kContentCoding,    // Content-Encoding: 415
    kHost,             // missing or repeated Host
    kOverlongHead,     // 431
    kFreeLength,       // a Content-Length value from the input, judged by the policy
    kFreeCoding,       // a Transfer-Encoding value from the input, likewise
    kKinds
  };
  static constexpr const char* kMethods[] = {"GET",  "HEAD",  "OPTIONS", "DELETE",   "PUT",
                                             "POST", "PATCH", "PURGE",   "M-SEARCH", "get"};
  static constexpr const char* kJson[] = {"[1]", "{\"a\":1}", "\"x\"", "7"};

  const auto kind = static_cast<Kind>(in.next() % kKinds);
  const std::uint8_t variant = in.next();
  const std::string method = in.pick(kMethods);
  const std::uint8_t flags = in.next();
  const std::uint8_t extra = in.next();
  const std::uint8_t split_choice = in.next();
  const bool http10 = (flags & 1) != 0 && kind != kHost;  // Host is optional on 1.0
  const bool expect_continue = (flags & 2) != 0;
  const int connection = (flags >> 2) & 3;  // 0, 3: none; 1: close; 2: keep-alive
  const bool smuggle_put = (flags & 16) != 0;
  const bool empty_json = (flags & 32) != 0;
  const bool swap = (flags & 64) != 0;
  const bool healthz = (flags & 128) != 0;

  const std::string auth = "Authorization: Bearer " + std::string(kApiToken) + "\r\n";
  // Keep-alive, authenticated, with a visible effect if it ever runs.
  std::string smuggled;
  if (smuggle_put) {
    smuggled = "PUT /v1/kv/" + std::string(kMarker) + " HTTP/1.1\r\nHost: localhost\r\n" + auth +
               "Content-Length: 1\r\n\r\n1";
  } else {
    smuggled = "DELETE /v1/kv/" + std::string(kVictim) + " HTTP/1.1\r\nHost: localhost\r\n" + auth +
               "\r\n";
  }
  // What a lax parser would take for the body; empty, the smuggled request
  // follows the head directly (a parser that ignores a framing field runs it).
  const std::string json = empty_json ? "" : in.pick(kJson);
  const std::string whole = json + smuggled;  // the body when the framing covers both

  const bool bodiless = method == "GET" || method == "HEAD" || method == "OPTIONS";
  FramedRequest out;
  out.head_method = method == "HEAD";
  // The head's framing fields, in the order given (swap reverses them).
  std::vector<std::string> framing;
  std::string other_fields;  // fields that are not framing
  std::string body;
  bool force_close = false;  // the smuggled request is after the body: only close keeps it out
  bool host = true;
  std::string leading_fold;  // a field line that folds the request line
  const auto refused = [&](bool by_head = true) {
    out.verdict = Verdict::kRefused;
    out.refused_by_head = by_head;
  };
  // A body announced on GET, HEAD or OPTIONS is refused from the head.
  const auto announced = [&](bool any_body) {
    if (any_body && bodiless) refused();
  };

  switch (kind) {
    case kBodyOnMethod:
      if (variant % 3 == 0) {
        framing.push_back("Content-Length: " + std::to_string(whole.size()));
        body = whole;
        announced(true);
      } else if (variant % 3 == 1) {
        framing.push_back("Transfer-Encoding: chunked");
        body = chunked(whole);
        announced(true);
      } else {
        // An empty body: the smuggled request is a pipelined one.
        framing.push_back("Content-Length: 0");
        body = smuggled;
        force_close = true;
      }
      break;

    case kTwoLengths: {
      const std::size_t lengths[] = {json.size(), whole.size(), 0, json.size() + 1};
      const std::size_t a = lengths[variant % 4];
      const std::size_t b = lengths[(variant >> 2) % 4];
      if ((variant >> 4) % 2 == 0) {
        framing.push_back("Content-Length: " + std::to_string(a));
        framing.push_back("Content-Length: " + std::to_string(b));
      } else {
        // One field holding a list is no more a length than two fields.
        framing.push_back("Content-Length: " + std::to_string(a) + ", " + std::to_string(b));
      }
      if ((variant >> 5) % 2 == 1) {
        framing.insert(framing.begin() + 1, "Transfer-Encoding: chunked");
      }
      body = whole;
      refused();
      break;
    }

    case kLengthAndCoding: {
      static constexpr const char* kCodings[] = {"chunked",       "chunked, identity", "identity",
                                                 "gzip, chunked", "Chunked",           "CHUNKED"};
      const std::string chunks = chunked(json);
      // A parser that reads the length and one that reads the coding end
      // the body in different places; the smuggled request starts at one.
      const std::size_t length = (variant & 8) == 0 ? chunks.size() : (chunks + smuggled).size();
      framing.push_back("Content-Length: " + std::to_string(length));
      framing.push_back("Transfer-Encoding: " + std::string(kCodings[(variant & 7) % 6]));
      body = chunks + smuggled;
      refused();
      break;
    }

    case kOddLength: {
      // A lax parser reading a number out of these takes `json` for the body.
      const std::string n = std::to_string(json.size());
      const std::string forms[] = {"+" + n,
                                   "-" + n,
                                   percent_digits(n),
                                   n + " abc",
                                   "0x" + n,
                                   n + ".0",
                                   "",
                                   n + "," + n,
                                   n + ", " + n,
                                   "1e1",
                                   std::string(19, '0') + n,
                                   "99999999999999999999999",
                                   n + "\x0b",
                                   "\xef\xbc\x91",  // a full-width digit one
                                   "\"" + n + "\""};
      constexpr std::size_t kForms = sizeof forms / sizeof forms[0];
      if (variant % 2 == 0) {
        framing.push_back("Content-Length: " + forms[(variant >> 1) % kForms]);
        body = json + smuggled;
        refused();
      } else {
        // Forms the policy accepts, covering the smuggled request.
        const std::string w = std::to_string(whole.size());
        const std::string padded[] = {" " + w, w + " ", "\t" + w + "\t", "000" + w};
        framing.push_back("Content-Length:" + padded[(variant >> 1) % 4]);
        body = whole;
        announced(true);
      }
      break;
    }

    case kOddCoding: {
      static constexpr const char* kRefusedCodings[] = {
          "chunked, identity", "identity", "gzip, chunked", "chunked, chunked", "gzip",
          "chunked;q=1",       "chunked,", ",chunked",      "xchunked",         "identity, chunked",
          "deflate",           "",         "chunked\x0b",   "chun ked",         "\"chunked\""};
      static constexpr const char* kAcceptedCodings[] = {"Chunked", "CHUNKED", "cHuNkEd",
                                                         " chunked", "chunked\t"};
      static constexpr const char* kNames[] = {"Transfer-Encoding", "transfer-encoding",
                                               "TRANSFER-ENCODING"};
      const std::string name = kNames[(extra & 3) % 3];
      // Bits 0-1 pick the form, the others the value.
      if ((variant & 3) != 1 && (variant & 3) != 2) {
        framing.push_back(name + ": " + kRefusedCodings[(variant >> 2) % 15]);
        body = chunked(json) + smuggled;
        refused();
      } else if ((variant & 3) == 1) {
        // Two fields: chunked twice, or a coding and then chunked.
        framing.push_back(name + ": " + ((variant >> 2) % 2 == 0 ? "chunked" : "gzip"));
        framing.push_back("Transfer-Encoding: chunked");
        body = chunked(json) + smuggled;
        refused();
      } else {
        framing.push_back(name + ":" + kAcceptedCodings[(variant >> 2) % 5]);
        body = chunked(whole);
        announced(true);
      }
      break;
    }

    case kFolding: {
      const std::string fold = variant % 2 == 0 ? "\r\n " : "\r\n\t";
      const std::string n = std::to_string(json.size());
      switch ((variant >> 1) % 5) {
        case 0:
          other_fields += "X-Fuzz: a" + fold + "b\r\n";
          framing.push_back("Content-Length: " + n);
          break;
        case 1:  // read unfolded, "N 0" or "N0"
          framing.push_back("Content-Length: " + n + fold + "0");
          break;
        case 2:
          framing.push_back("Transfer-Encoding: gzip," + fold + "chunked");
          break;
        case 3:
          framing.push_back("Content-Length: " + n);
          host = false;
          other_fields += "Host: local" + fold + "host\r\n";
          break;
        default:
          // A field line starting with whitespace right after the request
          // line: folded into nothing, or a field named " X-Fuzz".
          leading_fold = fold.substr(2) + "X-Fuzz: a\r\n";
          framing.push_back("Content-Length: " + n);
          break;
      }
      body = (variant >> 1) % 5 == 2 ? chunked(json) + smuggled : json + smuggled;
      refused();
      break;
    }

    case kBadChunk: {
      framing.push_back("Transfer-Encoding: chunked");
      const std::string n = hex(whole.size());
      const std::string rejected[] = {
          "zz", "-" + n, "+" + n, "0x" + n, "", "fffffffffffffffffffff", n + "\x0b"};
      // Sizes and extensions a parser may accept or refuse; either way the
      // size it reads is `n` or none.
      const std::string unsure[] = {
          n,         "000" + n,  " " + n,    n + " ",
          n + "\t",  n + ";ext", n + ";e=v", n + ";e=\"q;\\\"\"",
          n + " ;e", n + ";",    n + ";;",   n + ";" + std::string(200, 'e')};
      announced(true);
      switch (variant % 4) {
        case 0:
          body = rejected[(variant >> 2) % 7] + "\r\n" + whole + "\r\n0\r\n\r\n";
          if (out.verdict != Verdict::kRefused) refused(false);
          break;
        case 1: {
          const std::string line = unsure[(variant >> 2) % 12];
          body = line + "\r\n" + whole + "\r\n0\r\n\r\n";
          break;
        }
        case 2: {
          // No CRLF after the chunk's data: the smuggled request follows it.
          const std::string data = json.empty() ? "[1]" : json;
          body = hex(data.size()) + "\r\n" + data + smuggled;
          if (out.verdict != Verdict::kRefused) refused(false);
          break;
        }
        default: {
          // Trailers, framing fields among them: never a second body.
          static constexpr const char* kTrailers[] = {"X-Trailer: 1\r\n", "Content-Length: 5\r\n",
                                                      "Transfer-Encoding: chunked\r\n", ""};
          body = n + "\r\n" + whole + "\r\n0\r\n" + kTrailers[(variant >> 2) % 4] + "\r\n";
          break;
        }
      }
      break;
    }

    case kContentCoding: {
      static constexpr const char* kCodings[] = {"gzip",    "br", "identity",
                                                 "deflate", "",   "gzip, identity"};
      other_fields += std::string("Content-Encoding: ") + kCodings[(variant & 7) % 6] + "\r\n";
      if ((variant & 8) == 0) {
        framing.push_back("Content-Length: " + std::to_string(whole.size()));
        body = whole;
      } else {
        framing.push_back("Transfer-Encoding: chunked");
        body = chunked(whole);
      }
      refused();
      break;
    }

    case kHost:
      framing.push_back("Content-Length: " + std::to_string(json.size()));
      body = json + smuggled;
      host = false;
      if (variant % 3 == 1) other_fields += "Host: localhost\r\nHost: localhost\r\n";
      if (variant % 3 == 2) other_fields += "Host: localhost\r\nhost: 127.0.0.1\r\n";
      refused();
      break;

    case kOverlongHead:
      // Over the 16 KiB head limit whatever else the head holds.
      other_fields += "X-Padding: " + std::string(16500 + variant * 16u, 'p') + "\r\n";
      framing.push_back("Content-Length: " + std::to_string(json.size()));
      body = json + smuggled;
      refused();
      break;

    case kFreeLength: {
      const std::string value = one_line(in.rest(40));
      framing.push_back("Content-Length:" + value);
      body = whole;
      const auto n = strict_length(value);
      if (!n || *n > kMaxBody || (*n > 0 && bodiless)) {
        refused();
      } else {
        // Accepted: the body may end early (then only close keeps the rest
        // out) or late (then the request never completes: no answer).
        out.verdict = Verdict::kAtMostOne;
        force_close = true;
      }
      break;
    }

    case kFreeCoding:
    default: {
      const std::string value = one_line(in.rest(40));
      framing.push_back("Transfer-Encoding:" + value);
      if (iequal(trim_ows(value), "chunked")) {
        body = chunked(whole);
        announced(true);
      } else {
        body = chunked(json) + smuggled;
        refused();
      }
      break;
    }
  }

  // Transfer-Encoding on HTTP/1.0 is refused whatever its value.
  bool has_coding = false;
  for (const std::string& field : framing) {
    has_coding = has_coding || iequal(field.substr(0, 18), "transfer-encoding:") ||
                 iequal(field.substr(0, 18), "transfer-encoding ");
  }
  if (http10 && has_coding && out.verdict != Verdict::kRefused) refused();

  std::string request = method + " " +
                        (healthz ? std::string("/healthz") : "/v1/kv/" + std::string(kFirst)) +
                        (http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n") + leading_fold;
  if (host) request += "Host: localhost\r\n";
  request += auth;
  if (force_close && out.verdict != Verdict::kRefused) {
    request += "Connection: close\r\n";
  } else if (connection == 1) {
    request += "Connection: close\r\n";
  } else if (connection == 2) {
    request += "Connection: keep-alive\r\n";
  }
  if (expect_continue) {
    request += (extra & 4) == 0 ? "Expect: 100-continue\r\n" : "Expect: 100-Continue\r\n";
  }
  request += other_fields;
  if (swap) std::reverse(framing.begin(), framing.end());
  for (const std::string& field : framing) request += field + "\r\n";
  request += "\r\n";
  out.bytes = request + body;

  // Split after a line end (or between its CR and LF): a fold, a field or
  // a chunk-size line then straddles two reads.
  if ((extra & 64) != 0) {
    std::vector<std::size_t> ends;
    for (std::size_t i = 0; i < out.bytes.size(); ++i) {
      if (out.bytes[i] == '\n') ends.push_back(i + 1);
    }
    if (!ends.empty()) {
      out.split = ends[(split_choice & 127) % ends.size()] - ((split_choice & 128) != 0 ? 1 : 0);
    }
  }
  if ((extra & 128) != 0) {
    constexpr std::string_view kHealthz = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    out.bytes.insert(0, kHealthz);
    if (out.split > 0) out.split += kHealthz.size();
    out.after_healthz = true;
  }
  return out;
}

struct Answer {
  int status = 0;
  bool closes = false;  // says "Connection: close"
};

struct Answers {
  bool well_formed = true;
  int interim = 0;             // 1xx answers
  std::vector<Answer> finals;  // the final answers, in order
};

// Splits the bytes the service sent into answers, by their Content-Length
// (the service always sends one). The answer to a HEAD never carries its
// body, refusals included: bytes after it that are not a status line make
// the stream malformed. `head_answer` is the index of the final answer to a
// HEAD, if any.
Answers split_answers(std::string_view stream, std::optional<std::size_t> head_answer) {
  Answers a;
  while (!stream.empty()) {
    const int status = status_of(stream);
    const std::size_t end = stream.find("\r\n\r\n");
    if (status < 100 || end == std::string_view::npos) {
      a.well_formed = false;
      return a;
    }
    const std::string_view head = stream.substr(0, end + 2);
    stream.remove_prefix(end + 4);
    std::size_t length = 0;
    bool close = false;
    std::size_t line = head.find("\r\n") + 2;
    while (line < head.size()) {
      const std::size_t stop = head.find("\r\n", line);
      const std::string_view field = head.substr(line, stop - line);
      line = stop + 2;
      const std::size_t colon = field.find(':');
      if (colon == std::string_view::npos) continue;
      const std::string_view name = field.substr(0, colon);
      const std::string_view value = trim_ows(field.substr(colon + 1));
      if (iequal(name, "content-length")) {
        const auto n = strict_length(value);
        if (!n) {
          a.well_formed = false;
          return a;
        }
        length = static_cast<std::size_t>(*n);
      } else if (iequal(name, "connection") && iequal(value, "close")) {
        close = true;
      }
    }
    if (status < 200) {
      ++a.interim;
      continue;
    }
    const bool bodiless = head_answer == a.finals.size();
    a.finals.push_back({status, close});
    if (bodiless) continue;
    if (stream.size() < length) {
      a.well_formed = false;
      return a;
    }
    stream.remove_prefix(length);
  }
  return a;
}

void set_entry(std::string_view key, std::string_view json) {
  check(g_service->cache->set(key, aicache::JsonDocument::parse(json).value()).has_value(),
        "the harness stores an entry");
}

// The entry's text, or "" when there is none.
std::string entry(std::string_view key) {
  auto got = g_service->cache->get(key);
  check(!got.failed(), "the harness reads an entry");
  return got ? std::string(got->text()) : std::string();
}

void run_framing(const std::uint8_t* data, std::size_t size) {
  ByteReader in(data, size);
  const FramedRequest framed = framing_request(in);
  // Inputs of other modes may have changed these: every input starts from
  // the same state.
  set_entry(kVictim, "\"alive\"");
  set_entry(kFirst, kUntouched);
  (void)g_service->cache->remove(kMarker);

  const auto started = std::chrono::steady_clock::now();
  const std::string response = round_trip(framed.bytes, framed.split);
  const bool stalled = std::chrono::steady_clock::now() - started >= kKeepAliveTimeout;
  if (framed.verdict != Verdict::kRefused) {
    trace(framed.verdict == Verdict::kOneAnswer ? "framing (one answer)" : "framing (at most one)",
          framed.bytes, response);
  } else {
    trace(framed.refused_by_head ? "framing (refused by the head)" : "framing (refused)",
          framed.bytes, response);
  }
  // The answer to the GET /healthz before it, if any, comes first.
  const std::size_t first = framed.after_healthz ? 1 : 0;
  const Answers answers = split_answers(
      response, framed.head_method ? std::optional<std::size_t>(first) : std::nullopt);
  check(answers.well_formed, "framing: the answers are well-formed HTTP/1.1 with their lengths");
  for (const Answer& a : answers.finals) check(a.status != 500, "framing: no answer is a 500");
  // A stall past the server's deadlines can cost answers, never add one.
  if (framed.after_healthz && !(stalled && answers.finals.empty())) {
    check(!answers.finals.empty() && answers.finals.front().status == 200 &&
              !answers.finals.front().closes,
          "framing: the GET /healthz before it is answered 200 and keeps the connection");
  }
  const std::size_t framed_answers =
      answers.finals.size() > first ? answers.finals.size() - first : 0;
  check(framed_answers <= 1, "framing: at most one answer to one request");
  const bool answered = framed_answers == 1;
  switch (framed.verdict) {
    case Verdict::kRefused: {
      check(answered || stalled, "framing: a refused request gets exactly one answer");
      if (answered) {
        const Answer& answer = answers.finals[first];
        // A body that breaks framing is found only after the head passed, so
        // the handler may refuse the head first (401, 404, 405, 414).
        check(framed.refused_by_head ? answer.status == 400 || answer.status == 413 ||
                                           answer.status == 415 || answer.status == 431
                                     : answer.status >= 400 && answer.status < 500,
              "framing: a refused request is answered 400, 413, 415 or 431 (any 4xx for a body)");
        check(answer.closes, "framing: a refusal closes the connection");
        check(!framed.refused_by_head || answers.interim == 0,
              "framing: no 100 Continue before refusing a head");
      }
      check(entry(kFirst) == kUntouched, "framing: a refused request never runs");
      break;
    }
    case Verdict::kOneAnswer:
      check(answered || stalled, "framing: an accepted, complete request gets one answer");
      break;
    case Verdict::kAtMostOne:
      break;
  }
  check(entry(kVictim) == "\"alive\"", "framing: the smuggled DELETE never runs");
  check(entry(kMarker).empty(), "framing: the smuggled PUT never runs");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  start_service();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static std::uint64_t runs = 0;
  if ((data[0] & 3) == 3) {
    run_framing(data + 1, size - 1);
  } else {
    run_request(data, size);
  }

  if (++runs % 64 == 0) {
    const std::string health =
        round_trip("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    check(status_of(health) == 200, "GET /healthz still answers 200");
  }
  return 0;
}
