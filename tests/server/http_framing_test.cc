// Strict HTTP/1.1 framing and the browser policy of `aicache serve`
// (src/server/http_transport.h, include/aicache/server.h), over real
// sockets to a real Server.
//
// Every framing case carries a smuggled request in what the server must
// not take for a body: if the server and a proxy in front of it disagreed
// on where the first request ends, the second would run. Each case checks
// the status, that the connection is closed (nothing after a refused head
// is trusted), and that the smuggled DELETE never ran: the victim survives.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/memory_store.h"
#include "aicache/server.h"
#include "support/raw_connection.h"
#include "support/server_fixture.h"

namespace aicache {
namespace {

using namespace std::chrono_literals;
using testing::RawConnection;

constexpr std::string_view kSmuggled = "DELETE /v1/kv/victim HTTP/1.1\r\nHost: localhost\r\n\r\n";
constexpr std::string_view kApiToken = "0123456789abcdef0123456789abcdef";

class HttpFramingTest : public ::testing::Test {
 protected:
  void Start(ServerOptions options = {}) {
    cache_ = testing::make_memory_cache();
    ASSERT_TRUE(cache_);
    ASSERT_TRUE(cache_->set("victim", JsonDocument::parse("\"alive\"").value()));
    options.access_log = false;
    ASSERT_NO_FATAL_FAILURE(server_.start(cache_, nullptr, std::move(options)));
  }

  bool VictimAlive() {
    auto got = cache_->get("victim");
    return got && got.hit();
  }

  // Waits (bounded) for the server to close `c`.
  static bool ClosedByServer(RawConnection& c) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!c.closed_by_server()) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(2ms);  // polling a condition
    }
    return true;
  }

  // Sends `bytes`, reads one answer; expects `status`, a closed connection,
  // the victim alive, and the server still answering.
  void ExpectRefused(std::string_view bytes, int status, std::string_view what) {
    SCOPED_TRACE(what);
    RawConnection c(server_->port());
    ASSERT_TRUE(c.send(bytes));
    std::string body;
    EXPECT_EQ(c.read_response(&body), status) << body;
    EXPECT_TRUE(ClosedByServer(c)) << "the connection stayed open";
    EXPECT_TRUE(VictimAlive()) << "the smuggled request ran";
    RawConnection after(server_->port());
    ASSERT_TRUE(after.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    EXPECT_EQ(after.read_response(), 200);
  }

  std::shared_ptr<AssistantCache> cache_;
  testing::ServerFixture server_;
};

std::string WithSmuggled(std::string head) { return head + std::string(kSmuggled); }

TEST_F(HttpFramingTest, ConflictingOrMalformedLengthsAreRefusedAndTheConnectionClosed) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const std::string n = std::to_string(kSmuggled.size());
  struct Case {
    std::string what;
    std::string bytes;
  };
  const std::vector<Case> cases = {
      {"GET with a Content-Length body",
       WithSmuggled("GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + n + "\r\n\r\n")},
      {"OPTIONS with a body",
       WithSmuggled("OPTIONS /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + n + "\r\n\r\n")},
      {"GET with a chunked body",
       "GET /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
           std::string(kSmuggled)},
      {"Content-Length with Transfer-Encoding",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")},
      {"Transfer-Encoding before Content-Length",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                    "Content-Length: 4\r\n\r\n0\r\n\r\n")},
      {"two equal Content-Lengths",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n"
                    "Content-Length: 3\r\n\r\n[1]")},
      {"two different Content-Lengths",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n"
                    "Content-Length: " + n + "\r\n\r\n[1]")},
      {"Content-Length 1abc",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1abc\r\n\r\n1")},
      {"percent-encoded Content-Length",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: %31%30\r\n\r\n")},
      {"signed Content-Length",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: +3\r\n\r\n[1]")},
      {"Transfer-Encoding chunked, identity with a Content-Length",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, "
                    "identity\r\nContent-Length: 3\r\n\r\n[1]")},
      {"Transfer-Encoding identity",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: identity\r\n\r\n")},
      {"Transfer-Encoding gzip, chunked",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, "
                    "chunked\r\n\r\n0\r\n\r\n")},
      {"two Transfer-Encoding fields",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")},
      {"Transfer-Encoding on HTTP/1.0",
       WithSmuggled("PUT /v1/kv/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")},
      {"malformed chunk size",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "zz\r\n")},
      {"chunk size with a sign",
       WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "-3\r\n[1]\r\n0\r\n\r\n")},
      {"obsolete line folding",
       WithSmuggled("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n b\r\n\r\n")},
      {"HTTP/1.1 without Host", WithSmuggled("GET /healthz HTTP/1.1\r\n\r\n")},
      {"two Hosts", WithSmuggled("GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: a\r\n\r\n")},
      {"absolute-form target",
       WithSmuggled("GET http://localhost/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")},
      {"malformed percent escape in the path",
       WithSmuggled("GET /v1/kv/%zz HTTP/1.1\r\nHost: localhost\r\n\r\n")},
  };
  for (const Case& c : cases) ExpectRefused(c.bytes, 400, c.what);

  // HEAD: the refusal has no body to read, but the rest holds.
  RawConnection head(server_->port());
  ASSERT_TRUE(head.send(WithSmuggled("HEAD /healthz HTTP/1.1\r\nHost: localhost\r\n"
                                     "Content-Length: " + n + "\r\n\r\n")));
  EXPECT_TRUE(ClosedByServer(head));
  EXPECT_TRUE(VictimAlive());
}

// RFC 9110 9.3.2: the answer to a HEAD has no body, refusals included,
// also when the HEAD is refused while its head is still being read
// (folding, a head over 16 KiB). Found by fuzz_http's framing mode: such
// refusals carried the JSON body, which a client trusting the HEAD rule
// reads as the start of another answer.
TEST_F(HttpFramingTest, AHeadRefusedWhileItsHeadIsReadGetsNoBody) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const std::vector<std::string> heads = {
      "HEAD /healthz HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n b\r\n\r\n",
      "HEAD /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + std::string(17000, 'x') +
          "\r\n\r\n"};
  for (const std::string& head : heads) {
    RawConnection c(server_->port());
    ASSERT_TRUE(c.send(WithSmuggled(head)));
    EXPECT_TRUE(ClosedByServer(c));
    EXPECT_TRUE(VictimAlive());
    // With a body the refusal reads whole; without one it stays short of
    // its Content-Length, and the connection is closed.
    std::string body;
    EXPECT_EQ(c.read_response(&body, 100ms), 0) << "the answer to a HEAD had a body: " << body;
  }
}

TEST_F(HttpFramingTest, ContentEncodingIsRefusedWith415AndNeverDecompressed) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ExpectRefused(WithSmuggled("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nContent-Encoding: "
                             "gzip\r\nContent-Length: 2\r\n\r\nab"),
                415, "gzip");
  ExpectRefused("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nContent-Encoding: br\r\n"
                "Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
                415, "br, chunked");
  EXPECT_TRUE(cache_->get("x").miss());
}

TEST_F(HttpFramingTest, AHeadOver16KiBIsRefusedWith431) {
  ASSERT_NO_FATAL_FAILURE(Start());
  std::string many = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n";
  for (int i = 0; i < 5000; ++i) many += "a:b\r\n";  // 25 KB of header lines
  ExpectRefused(many + "\r\n", 431, "5,000 header lines");
  ExpectRefused("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + std::string(17000, 'x') +
                    "\r\n\r\n",
                431, "one 17 KB header");
  // Just under the limit is fine.
  RawConnection c(server_->port());
  ASSERT_TRUE(c.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " +
                     std::string(15000, 'x') + "\r\n\r\n"));
  EXPECT_EQ(c.read_response(), 200);
}

TEST_F(HttpFramingTest, TheBodyLimitCountsWireBytesForEveryFraming) {
  ServerOptions options;
  options.max_body_bytes = 1024;
  ASSERT_NO_FATAL_FAILURE(Start(options));
  // Declared over the limit: refused from the head alone, before any of it.
  ExpectRefused("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\n",
                413, "declared length");
  // 400 bytes of JSON in one-byte chunks: 2.4 KB on the wire.
  std::string chunked = "PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string value = "\"" + std::string(398, 'a') + "\"";
  for (char ch : value) chunked += std::string("1\r\n") + ch + "\r\n";
  chunked += "0\r\n\r\n";
  ExpectRefused(chunked, 413, "small chunks");
  // Chunk extensions count too.
  ExpectRefused("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                "1;" + std::string(2000, 'e') + "\r\n1\r\n0\r\n\r\n",
                413, "a long chunk extension");
  EXPECT_TRUE(cache_->get("x").miss());
  // A chunked body within the limit is stored.
  RawConnection c(server_->port());
  ASSERT_TRUE(c.send("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\n[1]\r\n0\r\n\r\n"));
  EXPECT_EQ(c.read_response(), 200);
  EXPECT_TRUE(cache_->get("x").hit());
}

TEST_F(HttpFramingTest, RangeIsIgnoredAndTheWholeAnswerSent) {
  ASSERT_NO_FATAL_FAILURE(Start());
  std::string ranges = "bytes=0-1";
  for (int i = 0; i < 4000; ++i) ranges += ",-";
  RawConnection whole(server_->port());
  std::string full;
  ASSERT_TRUE(whole.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  ASSERT_EQ(whole.read_response(&full), 200);
  RawConnection ranged(server_->port());
  std::string body;
  ASSERT_TRUE(ranged.send("GET / HTTP/1.1\r\nHost: localhost\r\nRange: " + ranges + "\r\n\r\n"));
  EXPECT_EQ(ranged.read_response(&body), 200);
  EXPECT_EQ(body.size(), full.size());
}

TEST_F(HttpFramingTest, HeaderValuesAreNeverPercentDecoded) {
  ServerOptions options;
  options.api_token = std::string(kApiToken);
  ASSERT_NO_FATAL_FAILURE(Start(options));
  // "%30" is "0": decoded, this would be the right token.
  std::string encoded = "Bearer %30" + std::string(kApiToken.substr(1));
  RawConnection c(server_->port());
  ASSERT_TRUE(c.send("GET /v1/kv/victim HTTP/1.1\r\nHost: localhost\r\nAuthorization: " + encoded +
                     "\r\n\r\n"));
  EXPECT_EQ(c.read_response(), 401);
  ASSERT_TRUE(c.send("GET /v1/kv/victim HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " +
                     std::string(kApiToken) + "\r\n\r\n"));
  EXPECT_EQ(c.read_response(), 200);
}

TEST_F(HttpFramingTest, UnauthenticatedBodiesAreNotRead) {
  ServerOptions options;
  options.api_token = std::string(kApiToken);
  ASSERT_NO_FATAL_FAILURE(Start(options));
  // The 401 comes from the head alone; the body is never waited for.
  RawConnection c(server_->port());
  ASSERT_TRUE(c.send("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 500000\r\n\r\n"));
  EXPECT_EQ(c.read_response(nullptr, 10s), 401);
  EXPECT_TRUE(ClosedByServer(c));
}

// --- Browsers on loopback ------------------------------------------------------------

class BrowserPolicyTest : public HttpFramingTest {
 protected:
  int StatusOf(std::string_view request) {
    RawConnection c(server_->port());
    if (!c.send(request)) return 0;
    return c.read_response();
  }
  static std::string Request(std::string_view method, std::string_view path,
                             std::string_view fields, bool with_token = false) {
    std::string r = std::string(method) + " " + std::string(path) + " HTTP/1.1\r\n" +
                     std::string(fields);
    if (with_token) r += "Authorization: Bearer " + std::string(kApiToken) + "\r\n";
    if (method == "POST" || method == "PUT") r += "Content-Length: 2\r\n\r\n{}";
    else r += "\r\n";
    return r;
  }
};

TEST_F(BrowserPolicyTest, WithoutAnApiTokenForeignHostsAndOriginsAreRefused) {
  ServerOptions options;
  options.allowed_hosts = {"aicache.internal"};
  ASSERT_NO_FATAL_FAILURE(Start(options));
  const std::string port = std::to_string(server_->port());
  // Names of this machine, with or without the port, and listed ones.
  EXPECT_EQ(StatusOf(Request("GET", "/healthz", "Host: localhost\r\n")), 200);
  EXPECT_EQ(StatusOf(Request("GET", "/healthz", "Host: 127.0.0.1:" + port + "\r\n")), 200);
  EXPECT_EQ(StatusOf(Request("GET", "/healthz", "Host: [::1]:" + port + "\r\n")), 200);
  EXPECT_EQ(StatusOf(Request("GET", "/healthz", "Host: LocalHost\r\n")), 200);
  EXPECT_EQ(StatusOf(Request("GET", "/healthz", "Host: aicache.internal:" + port + "\r\n")), 200);
  // DNS rebinding: a page's own name resolved to 127.0.0.1.
  EXPECT_EQ(StatusOf(Request("GET", "/v1/kv/victim", "Host: evil.example\r\n")), 403);
  EXPECT_EQ(StatusOf(Request("GET", "/v1/kv/victim", "Host: evil.example:" + port + "\r\n")), 403);
  EXPECT_EQ(StatusOf(Request("GET", "/", "Host: localhost.evil.example\r\n")), 403);
  // CSRF: another origin's page posting here, as a form or a fetch.
  const std::string refresh = "/v1/tokens/wechat/wx1/refresh?force_refresh=true";
  EXPECT_EQ(StatusOf(Request("POST", refresh,
                           "Host: 127.0.0.1:" + port + "\r\nOrigin: http://evil.example\r\n")),
            403);
  EXPECT_EQ(StatusOf(Request("DELETE", "/v1/kv/victim",
                           "Host: localhost\r\nOrigin: null\r\n")),
            403);
  EXPECT_EQ(StatusOf(Request("DELETE", "/v1/kv/victim",
                           "Host: localhost\r\nSec-Fetch-Site: cross-site\r\n")),
            403);
  EXPECT_EQ(StatusOf(Request("DELETE", "/v1/kv/victim",
                           "Host: localhost\r\nOrigin: http://localhost:1\r\n")),
            403);
  EXPECT_TRUE(VictimAlive());
  // The dashboard's own origin works.
  const std::string own = "Host: 127.0.0.1:" + port + "\r\nOrigin: http://127.0.0.1:" + port +
                          "\r\nSec-Fetch-Site: same-origin\r\n";
  EXPECT_EQ(StatusOf(Request("GET", "/v1/kv/victim", own)), 200);
  EXPECT_EQ(StatusOf(Request("PUT", "/v1/kv/mine", own)), 200);
}

TEST_F(BrowserPolicyTest, WithAnApiTokenTheTokenIsTheGate) {
  ServerOptions options;
  options.api_token = std::string(kApiToken);
  ASSERT_NO_FATAL_FAILURE(Start(options));
  // Any name and origin, with the token (a page cannot send it across
  // origins: that needs a CORS preflight the service never grants).
  EXPECT_EQ(StatusOf(Request("GET", "/v1/kv/victim", "Host: aicache.example\r\n", true)), 200);
  EXPECT_EQ(StatusOf(Request("GET", "/v1/kv/victim",
                           "Host: aicache.example\r\nOrigin: http://other.example\r\n", true)),
            200);
  // Without it, nothing under /v1.
  EXPECT_EQ(StatusOf(Request("GET", "/v1/kv/victim", "Host: aicache.example\r\n")), 401);
  EXPECT_EQ(StatusOf(Request("DELETE", "/v1/kv/victim",
                           "Host: localhost\r\nOrigin: http://evil.example\r\n")),
            401);
  EXPECT_TRUE(VictimAlive());
}

}  // namespace
}  // namespace aicache
