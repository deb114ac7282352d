// Name resolution within the connect deadline (src/redis/resolver.h).
//
// A test cannot make the system's DNS hang (that takes /etc/resolv.conf), so
// the slow paths run with a lookup function injected in place of
// getaddrinfo: one that blocks until the test lets it go. The deadline then
// passes with the lookup still running, whatever the machine's speed, and
// the abandoned lookup is let go afterwards to check that it cleans up after
// itself (ASan's leak check, TSan's race check).
#include "redis/resolver.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "aicache/redis_store.h"
#include "redis/redis_connection.h"
#include "support/redis_server.h"

namespace aicache {
namespace {

using namespace std::chrono_literals;
using redis::RedisFailure;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// The injected lookup: counts its calls, then answers every name with
// 127.0.0.1 once the gate is open (at once if it is).
struct Gate {
  std::mutex mutex;
  std::condition_variable opened_cv;
  bool open = true;
  std::atomic<int> calls{0};

  void close() {
    std::lock_guard lock(mutex);
    open = false;
  }
  void release() {
    {
      std::lock_guard lock(mutex);
      open = true;
    }
    opened_cv.notify_all();
  }
};
Gate g_gate;

int gated_lookup(const char*, const char* service, const addrinfo* hints, addrinfo** result) {
  g_gate.calls.fetch_add(1);
  {
    std::unique_lock lock(g_gate.mutex);
    g_gate.opened_cv.wait(lock, [] { return g_gate.open; });
  }
  return ::getaddrinfo("127.0.0.1", service, hints, result);
}

class ResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_gate.release();
    g_gate.calls = 0;
  }
  void TearDown() override {
    g_gate.release();
    // The abandoned lookups finish and free what they found: before the
    // next test counts them, and before the leak check at exit.
    while (redis::testing::abandoned_lookups() > 0) std::this_thread::yield();
    redis::testing::set_lookup(nullptr);
  }
  static Clock::time_point In(std::chrono::milliseconds ms) { return Clock::now() + ms; }
};

std::string first_address(const addrinfo* a) {
  char text[INET6_ADDRSTRLEN] = {};
  const void* where =
      a->ai_family == AF_INET
          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
          : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
  return ::inet_ntop(a->ai_family, where, text, sizeof text) != nullptr ? text : "";
}

TEST_F(ResolverTest, NumericAddressesNeverReachTheLookup) {
  redis::testing::set_lookup(&gated_lookup);
  g_gate.close();  // a lookup would block: only a parse can answer
  for (const char* host : {"127.0.0.1", "::1"}) {
    auto found = redis::resolve(host, 6379, In(1000ms), 1000ms);
    ASSERT_TRUE(found) << found.error().text;
    EXPECT_EQ(first_address(found->get()), host);
    EXPECT_EQ(ntohs(reinterpret_cast<sockaddr_in*>((*found)->ai_addr)->sin_port), 6379);
  }
  EXPECT_EQ(g_gate.calls.load(), 0);
  EXPECT_EQ(redis::testing::abandoned_lookups(), 0);
}

TEST_F(ResolverTest, NamesAnsweredInTimeAreUsed) {
  redis::testing::set_lookup(&gated_lookup);
  auto found = redis::resolve("redis.example", 6380, In(60s), 60s);
  ASSERT_TRUE(found) << found.error().text;
  EXPECT_EQ(first_address(found->get()), "127.0.0.1");
  EXPECT_EQ(g_gate.calls.load(), 1);
  // Without a deadline the lookup runs on the caller's thread.
  found = redis::resolve("redis.example", 6380, std::nullopt, 0ms);
  ASSERT_TRUE(found) << found.error().text;
  EXPECT_EQ(g_gate.calls.load(), 2);
}

TEST_F(ResolverTest, AStalledLookupIsAConnectTimeoutNamingTheHostAndTheTimeout) {
  redis::testing::set_lookup(&gated_lookup);
  g_gate.close();
  auto found = redis::resolve("stalled.example", 6379, In(20ms), 20ms);
  ASSERT_FALSE(found);
  const RedisFailure& f = found.error();
  EXPECT_EQ(f.kind, RedisFailure::Kind::kConnect);
  EXPECT_TRUE(redis::is_timeout(f));
  EXPECT_TRUE(redis::breaks_connection(f));
  EXPECT_EQ(f.text, "resolution of stalled.example timed out after 20 ms");
  const Error e = redis::to_error(f, "redis://stalled.example:6379/0", "connect");
  EXPECT_EQ(e.code, ErrorCode::kTimeout) << e.to_string();
  EXPECT_EQ(e.message,
            "redis redis://stalled.example:6379/0: connect: resolution of stalled.example timed "
            "out after 20 ms");
  // The lookup is still running; let go, it frees its result (TearDown
  // waits for it; ASan would report the addresses otherwise).
  EXPECT_EQ(redis::testing::abandoned_lookups(), 1);
}

TEST_F(ResolverTest, ADeadlineAlreadyPastFailsWithoutStartingALookup) {
  redis::testing::set_lookup(&gated_lookup);
  auto found = redis::resolve("late.example", 6379, Clock::now() - 1ms, 5ms);
  ASSERT_FALSE(found);
  EXPECT_TRUE(redis::is_timeout(found.error()));
  EXPECT_EQ(g_gate.calls.load(), 0);
}

// While the DNS does not answer, abandoned lookups pile up only so far:
// beyond the cap a lookup fails at once (unavailable, not a timeout).
TEST_F(ResolverTest, AbandonedLookupsAreCapped) {
  redis::testing::set_lookup(&gated_lookup);
  g_gate.close();
  for (int i = 0; i < redis::kMaxAbandonedLookups; ++i) {
    ASSERT_FALSE(redis::resolve("stalled.example", 6379, In(1ms), 1ms));
  }
  EXPECT_EQ(redis::testing::abandoned_lookups(), redis::kMaxAbandonedLookups);
  const int calls = g_gate.calls.load();
  auto found = redis::resolve("stalled.example", 6379, In(60s), 60s);
  ASSERT_FALSE(found);
  EXPECT_FALSE(redis::is_timeout(found.error()));
  EXPECT_THAT(found.error().text, HasSubstr("16 earlier lookups are still unanswered"));
  EXPECT_EQ(redis::to_error(found.error(), "redis://x", "connect").code, ErrorCode::kUnavailable);
  g_gate.release();
  while (redis::testing::abandoned_lookups() > 0) std::this_thread::yield();
  // Answered: lookups start again.
  EXPECT_TRUE(redis::resolve("stalled.example", 6379, In(60s), 60s));
  EXPECT_GE(g_gate.calls.load(), calls + 1);
}

// The real resolver: .invalid never resolves (RFC 6761). A resolver that
// answers says so ("cannot resolve"); one that does not answer within the
// connect timeout is cut short — either way the call returns, naming the
// host.
TEST_F(ResolverTest, AnUnknownNameFailsNamingTheHost) {
  auto found = redis::resolve("no-such-host.invalid", 6379, In(1000ms), 1000ms);
  ASSERT_FALSE(found);
  EXPECT_EQ(found.error().kind, RedisFailure::Kind::kConnect);
  EXPECT_THAT(found.error().text, AnyOf(HasSubstr("cannot resolve no-such-host.invalid"),
                                        HasSubstr("resolution of no-such-host.invalid timed out")));
}

// RedisConnection::open resolves through resolve(): a name the injected
// lookup answers reaches the server; a stalled one is the connect's timeout.
TEST_F(ResolverTest, ConnectionsResolveWithinTheConnectTimeout) {
  redis::testing::set_lookup(&gated_lookup);
  RedisEndpoint endpoint;
  endpoint.host = "redis.example";
  endpoint.port = testing::shared_redis_server().port();
  auto conn = redis::RedisConnection::open({.endpoint = endpoint});
  ASSERT_TRUE(conn) << conn.error().text;
  const std::string_view ping[] = {"PING"};
  auto pong = (*conn)->command(ping);
  ASSERT_TRUE(pong) << pong.error().text;
  EXPECT_EQ(std::string((*pong)->str, (*pong)->len), "PONG");

  g_gate.close();
  auto stalled = redis::RedisConnection::open({.endpoint = endpoint, .connect_timeout = 30ms});
  ASSERT_FALSE(stalled);
  EXPECT_EQ(stalled.error().text, "resolution of redis.example timed out after 30 ms");
}

}  // namespace
}  // namespace aicache
