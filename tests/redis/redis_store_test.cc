// RedisStore against real redis-servers: URL parsing, authentication, the
// pool, faults (restart, SIGSTOP), and the error mapping.
#include "aicache/redis_store.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "redis/redis_connection.h"
#include "redis/redis_errors.h"
#include "redis/redis_script.h"
#include "support/redis_server.h"
#include "support/timing.h"

namespace aicache::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;

// ---------------------------------------------------------------------------
// Helpers

RedisStoreOptions OptionsFor(const std::string& url) {
  auto endpoint = parse_redis_url(url);
  EXPECT_TRUE(endpoint) << endpoint.error().to_string();
  RedisStoreOptions options;
  if (endpoint) options.endpoint = *endpoint;
  return options;
}

std::shared_ptr<Store> MakeStore(RedisStoreOptions options) {
  auto store = make_redis_store(std::move(options));
  EXPECT_TRUE(store) << store.error().to_string();
  return store ? std::move(*store) : nullptr;
}

std::shared_ptr<Store> MakeStore(const std::string& url) { return MakeStore(OptionsFor(url)); }

// Keys of this process, so parallel test processes sharing nothing collide
// on nothing either.
std::string Key(const std::string& name) { return fmt::format("rst:{}:{}", ::getpid(), name); }

// A raw hiredis command against a server, for setup the Store API cannot do
// (a list key, SCRIPT FLUSH).
void RawCommand(const RedisServer& server, std::vector<std::string> args) {
  redisContext* c = redisConnect("127.0.0.1", server.port());
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->err, 0) << c->errstr;
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* reply = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
  ASSERT_NE(reply, nullptr);
  EXPECT_NE(reply->type, REDIS_REPLY_ERROR) << std::string(reply->str, reply->len);
  freeReplyObject(reply);
  redisFree(c);
}

// Bytes queued in the kernel on the established TCP connections to or from
// `port` on this host: what senders have written that no receiver has read
// yet (tx_queue + rx_queue of /proc/net/tcp and tcp6, both ends).
std::uint64_t QueuedBytes(std::uint16_t port) {
  std::uint64_t total = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues;
      if (!(fields >> slot >> local >> remote >> state >> queues)) continue;
      if (state != "01") continue;  // TCP_ESTABLISHED
      const auto port_of = [](const std::string& address) {
        return std::stoul(address.substr(address.rfind(':') + 1), nullptr, 16);
      };
      if (port_of(local) != port && port_of(remote) != port) continue;
      const auto colon = queues.find(':');
      total += std::stoull(queues.substr(0, colon), nullptr, 16) +
               std::stoull(queues.substr(colon + 1), nullptr, 16);
    }
  }
  return total;
}

// ---------------------------------------------------------------------------
// URLs

struct UrlCase {
  std::string url;
  std::string host;
  std::uint16_t port;
  std::string unix_socket;
  std::string user;
  std::string password;
  std::int64_t db;
};

TEST(RedisUrl, ParsesValidUrls) {
  const UrlCase cases[] = {
      {"redis://127.0.0.1:6379/0", "127.0.0.1", 6379, "", "", "", 0},
      {"redis://localhost", "localhost", 6379, "", "", "", 0},
      {"redis://cache.internal:6380/", "cache.internal", 6380, "", "", "", 0},
      {"REDIS://Cache:1/15", "Cache", 1, "", "", "", 15},
      {"redis://:secret@host:6380/2", "host", 6380, "", "", "secret", 2},
      {"redis://alice:s3cr%40t%2F%3A@host/1", "host", 6379, "", "alice", "s3cr@t/:", 1},
      {"redis://al%20ice@host", "host", 6379, "", "al ice", "", 0},
      {"redis://:p@ss/w@host:7000/3", "host", 7000, "", "", "p@ss/w", 3},
      {"redis://[::1]:6390/4", "::1", 6390, "", "", "", 4},
      {"redis://[::1]", "::1", 6379, "", "", "", 0},
      {"redis://host:6379?db=5", "host", 6379, "", "", "", 5},
      {"unix:///run/redis/redis.sock", "", 0, "/run/redis/redis.sock", "", "", 0},
      {"unix:///tmp/r.sock?db=4", "", 0, "/tmp/r.sock", "", "", 4},
      {"unix://bob:pw@/tmp/r.sock?db=1", "", 0, "/tmp/r.sock", "bob", "pw", 1},
  };
  for (const UrlCase& c : cases) {
    SCOPED_TRACE(c.url);
    auto ep = parse_redis_url(c.url);
    ASSERT_TRUE(ep) << ep.error().to_string();
    EXPECT_EQ(ep->host, c.host);
    if (c.unix_socket.empty()) {
      EXPECT_EQ(ep->port, c.port);
    }
    EXPECT_EQ(ep->unix_socket, c.unix_socket);
    EXPECT_EQ(ep->user, c.user);
    EXPECT_EQ(ep->password, c.password);
    EXPECT_EQ(ep->db, c.db);
  }
}

TEST(RedisUrl, RefusesInvalidUrlsWithoutEchoingThePassword) {
  const std::string invalid[] = {
      "",
      "http://:hunter2@host",
      "redis://:hunter2@",
      "redis://:hunter2@host:abc",
      "redis://:hunter2@host:0",
      "redis://:hunter2@host:70000",
      "redis://:hunter2@host/abc",
      "redis://:hunter2@host/-1",
      "redis://:hunter2@[::1",
      "redis://:hunter2@[::1]x",
      "redis://:hunt%zzer2@host",
      "redis://hunter2%@host",
      "redis://:hunter2@host?timeout=5",
      "redis://:hunter2@host?db=x",
      "unix://relative/path",
      "unix://:hunter2@relative",
      "unix:///tmp/r.sock?db=-2",
      "rediss://:hunter2@[::1",
      "rediss://:hunter2@host:0/0",
  };
  for (const std::string& url : invalid) {
    SCOPED_TRACE(url);
    auto ep = parse_redis_url(url);
    ASSERT_FALSE(ep);
    EXPECT_EQ(ep.error().code, ErrorCode::kConfig);
    EXPECT_THAT(ep.error().message, Not(HasSubstr("hunter2")));
    EXPECT_THAT(ep.error().message, Not(HasSubstr("hunt")));
  }
}

TEST(RedisUrl, ParsesTlsUrls) {
  auto ep = parse_redis_url("rediss://alice:s%40cret@redis.example.com:6380/3");
  ASSERT_TRUE(ep) << ep.error().to_string();
  EXPECT_TRUE(ep->tls);
  EXPECT_EQ(ep->host, "redis.example.com");
  EXPECT_EQ(ep->port, 6380);
  EXPECT_EQ(ep->user, "alice");
  EXPECT_EQ(ep->password, "s@cret");
  EXPECT_EQ(ep->db, 3);
  EXPECT_EQ(ep->redacted_url(), "rediss://alice:***@redis.example.com:6380/3");

  auto upper = parse_redis_url("REDISS://[::1]");
  ASSERT_TRUE(upper);
  EXPECT_TRUE(upper->tls);
  EXPECT_EQ(upper->host, "::1");
  EXPECT_EQ(upper->port, 6379);
  EXPECT_EQ(upper->redacted_url(), "rediss://[::1]:6379/0");

  EXPECT_FALSE(parse_redis_url("redis://host")->tls);
  EXPECT_FALSE(parse_redis_url("unix:///tmp/r.sock")->tls);
}

TEST(RedisUrl, RedactedUrlHidesThePassword) {
  auto ep = parse_redis_url("redis://alice:top%20secret@host:6380/2");
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->redacted_url(), "redis://alice:***@host:6380/2");
  EXPECT_EQ(parse_redis_url("redis://[::1]:7000")->redacted_url(), "redis://[::1]:7000/0");
  EXPECT_EQ(parse_redis_url("redis://h")->redacted_url(), "redis://h:6379/0");
  EXPECT_EQ(parse_redis_url("unix://:pw@/tmp/s.sock?db=3")->redacted_url(),
            "unix://:***@/tmp/s.sock?db=3");
  // A redacted URL without a password parses back to the same endpoint.
  auto back = parse_redis_url(parse_redis_url("redis://a%40b@h:1/2")->redacted_url());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->user, "a@b");
  EXPECT_EQ(back->port, 1);
  EXPECT_EQ(back->db, 2);
}

// What a URL holds reaches messages only through printable(): no line break
// or terminal escape from REDIS_URL in a log line.
TEST(RedisUrl, MessagesShowTheUrlsTextPrintably) {
  auto param = parse_redis_url("redis://host?\x1b[2J\n=1");
  ASSERT_FALSE(param);
  EXPECT_THAT(param.error().message, HasSubstr("unsupported parameter '?[2J?'"));
  auto port = parse_redis_url("redis://host:6\r\n9");
  ASSERT_FALSE(port);
  EXPECT_THAT(port.error().message, HasSubstr("invalid port '6??9'"));
  auto host = parse_redis_url("redis://ho\x1b]0;x\x07st:1/0");
  ASSERT_TRUE(host);
  EXPECT_EQ(host->redacted_url(), "redis://ho?]0;x?st:1/0");
  auto path = parse_redis_url("unix:///tmp/a\nb.sock");
  ASSERT_TRUE(path);
  EXPECT_EQ(path->redacted_url(), "unix:///tmp/a?b.sock?db=0");
}

// ---------------------------------------------------------------------------
// Internals: script names and the error mapping

TEST(RedisScript, Sha1MatchesKnownVectors) {
  EXPECT_EQ(redis::sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_EQ(redis::sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(redis::sha1_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  EXPECT_EQ(redis::sha1_hex(std::string(1000, 'a')).size(), 40u);
}

TEST(RedisErrors, MapsEachKindOfFailure) {
  using K = redis::RedisFailure::Kind;
  struct Case {
    redis::RedisFailure failure;
    ErrorCode code;
  };
  const Case cases[] = {
      {{K::kReply, 0, 0, "WRONGPASS invalid username-password pair or user is disabled."},
       ErrorCode::kConfig},
      {{K::kReply, 0, 0, "NOAUTH Authentication required."}, ErrorCode::kConfig},
      {{K::kReply, 0, 0, "ERR invalid password"}, ErrorCode::kConfig},
      {{K::kReply, 0, 0, "ERR DB index is out of range"}, ErrorCode::kConfig},
      {{K::kReply, 0, 0, "OOM command not allowed when used memory > 'maxmemory'."},
       ErrorCode::kResourceExhausted},
      {{K::kReply, 0, 0, "ERR string exceeds maximum allowed size (proto-max-bulk-len)"},
       ErrorCode::kResourceExhausted},
      {{K::kReply, 0, 0, "ERR max number of clients reached exceeded"},
       ErrorCode::kResourceExhausted},
      {{K::kReply, 0, 0, "WRONGTYPE Operation against a key holding the wrong kind of value"},
       ErrorCode::kFailedPrecondition},
      {{K::kReply, 0, 0,
        "ERR value is not an integer or out of range script: 1f0, on @user_script:3."},
       ErrorCode::kFailedPrecondition},
      {{K::kReply, 0, 0, "ERR increment or decrement would overflow"}, ErrorCode::kOutOfRange},
      {{K::kReply, 0, 0, "LOADING Redis is loading the dataset in memory"},
       ErrorCode::kUnavailable},
      {{K::kReply, 0, 0, "ERR unknown command 'FOO'"}, ErrorCode::kInternal},
      {{K::kIo, REDIS_ERR_IO, EAGAIN, "Resource temporarily unavailable"}, ErrorCode::kTimeout},
      {{K::kConnect, REDIS_ERR_IO, ETIMEDOUT, "Connection timed out"}, ErrorCode::kTimeout},
      {{K::kConnect, REDIS_ERR_IO, ECONNREFUSED, "Connection refused"}, ErrorCode::kUnavailable},
      {{K::kConnect, REDIS_ERR_OTHER, 0, "Name or service not known"}, ErrorCode::kUnavailable},
      {{K::kIo, REDIS_ERR_EOF, 0, "Server closed the connection"}, ErrorCode::kUnavailable},
      {{K::kIo, REDIS_ERR_IO, ECONNRESET, "Connection reset by peer"}, ErrorCode::kUnavailable},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.failure.text);
    const Error e = redis::to_error(c.failure, "redis://:***@h:1/0", "GET");
    EXPECT_EQ(e.code, c.code) << e.to_string();
    EXPECT_THAT(e.message, HasSubstr("redis://:***@h:1/0"));
  }
  // The server's text is quoted through printable(), bounded.
  const Error echoed = redis::to_error(
      {K::kReply, 0, 0, "ERR unknown command 'a\r\nb\x1b[0m'" + std::string(1000, 'x')},
      "redis://h:1/0", "GET");
  EXPECT_THAT(echoed.message, HasSubstr("'a??b?[0m'xxx"));
  EXPECT_THAT(echoed.message, Not(HasSubstr("\x1b")));
  EXPECT_LT(echoed.message.size(), 600u);
  const Error protocol = redis::to_error(
      {K::kIo, REDIS_ERR_PROTOCOL, 0, "Protocol error, got \"\x9b\" as reply type byte"},
      "redis://h:1/0", "GET");
  EXPECT_THAT(protocol.message, HasSubstr("got \"?\" as reply type byte"));
  EXPECT_TRUE(redis::is_timeout({K::kIo, REDIS_ERR_IO, EAGAIN, "x"}));
  EXPECT_FALSE(redis::is_disconnect({K::kIo, REDIS_ERR_IO, EAGAIN, "x"}));
  EXPECT_TRUE(redis::is_disconnect({K::kIo, REDIS_ERR_EOF, 0, "x"}));
  EXPECT_FALSE(redis::breaks_connection({K::kReply, 0, 0, "WRONGTYPE x"}));
  EXPECT_TRUE(redis::is_noscript({K::kReply, 0, 0, "NOSCRIPT No matching script."}));
}

// ---------------------------------------------------------------------------
// Connecting

TEST(RedisStoreConnect, RefusedPortIsUnavailableQuickly) {
  const std::uint16_t port = pick_free_port();  // nothing listens there
  const auto start = std::chrono::steady_clock::now();
  auto store = make_redis_store(OptionsFor(fmt::format("redis://:pw123@127.0.0.1:{}/0", port)));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable) << store.error().to_string();
  EXPECT_THAT(store.error().message, HasSubstr(fmt::format("127.0.0.1:{}", port)));
  EXPECT_THAT(store.error().message, Not(HasSubstr("pw123")));
  EXPECT_LT(elapsed, scaled(5s));
}

// .invalid never resolves (RFC 6761), so this needs no network; a resolver
// that is slow to say so only makes the test slower.
TEST(RedisStoreConnect, UnknownHostIsUnavailableAndNamesTheHost) {
  auto store = make_redis_store(OptionsFor("redis://:pw123@redis.aicache-test.invalid:6379/0"));
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable) << store.error().to_string();
  EXPECT_THAT(store.error().message, HasSubstr("redis.aicache-test.invalid:6379"));
  EXPECT_THAT(store.error().message, Not(HasSubstr("pw123")));
}

TEST(RedisStoreConnect, ZeroPoolSizeIsAConfigError) {
  RedisStoreOptions options = OptionsFor(shared_redis_server().url());
  options.pool_size = 0;
  auto store = make_redis_store(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kConfig);
}

TEST(RedisStoreConnect, WrongDbIndexIsAConfigError) {
  auto store = make_redis_store(OptionsFor(shared_redis_server().url(99)));
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kConfig) << store.error().to_string();
}

TEST(RedisStoreConnect, SelectsTheDatabase) {
  auto db3 = MakeStore(shared_redis_server().url(3));
  auto db0 = MakeStore(shared_redis_server().url(0));
  ASSERT_TRUE(db3 && db0);
  ASSERT_TRUE(db3->set(Key("db"), "three"));
  EXPECT_THAT(*db3->get(Key("db")), Optional(std::string("three")));
  EXPECT_EQ(*db0->get(Key("db")), std::nullopt);
  EXPECT_TRUE(*db3->remove(Key("db")));
}

TEST(RedisStoreConnect, AuthenticatesWithAPassword) {
  RedisServer server({.password = "p@ss:w/rd%"});
  const std::string base = fmt::format("127.0.0.1:{}/0", server.port());
  // Percent-encoded in the URL, decoded before AUTH.
  auto store = MakeStore("redis://:p%40ss%3Aw%2Frd%25@" + base);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->set("k", "v"));
  EXPECT_THAT(*store->get("k"), Optional(std::string("v")));

  auto wrong = make_redis_store(OptionsFor("redis://:not-the-one@" + base));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, ErrorCode::kConfig);
  EXPECT_THAT(wrong.error().message, HasSubstr("authentication failed"));
  EXPECT_THAT(wrong.error().message, Not(HasSubstr("not-the-one")));

  auto none = make_redis_store(OptionsFor("redis://" + base));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kConfig) << none.error().to_string();
}

TEST(RedisStoreConnect, AuthenticatesAsAnAclUser) {
  RedisServer server({.acl_user = "alice", .acl_password = "alice-secret"});
  const std::string base = fmt::format("127.0.0.1:{}/0", server.port());
  auto store = MakeStore("redis://alice:alice-secret@" + base);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->set("k", "v"));
  EXPECT_THAT(*store->get("k"), Optional(std::string("v")));

  auto wrong = make_redis_store(OptionsFor("redis://alice:bad-secret@" + base));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, ErrorCode::kConfig);
  EXPECT_THAT(wrong.error().message, Not(HasSubstr("bad-secret")));
  EXPECT_THAT(wrong.error().message, Not(HasSubstr("alice-secret")));
}

TEST(RedisStoreConnect, ConnectsOverAUnixSocket) {
  RedisServer server({.unix_socket = true});
  auto store = MakeStore(server.unix_url(2));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->set("k", "over unix"));
  EXPECT_THAT(*store->get("k"), Optional(std::string("over unix")));
}

// True if this host can bind [::1]: a machine without IPv6 is the only
// reason to skip; a redis-server that fails to start on a host that has it
// is a failure.
bool HasIpv6Loopback() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  const bool bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return bound;
}

TEST(RedisStoreConnect, ConnectsOverIpv6) {
  if (!HasIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback here";
  // The later --bind replaces the launcher's 127.0.0.1-only one.
  RedisServer server(RedisServerOptions{.extra_args = {"--bind", "127.0.0.1", "::1"}});
  auto store = MakeStore(fmt::format("redis://[::1]:{}/1", server.port()));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->set("k", "over IPv6"));
  EXPECT_THAT(*store->get("k"), Optional(std::string("over IPv6")));
}

// ---------------------------------------------------------------------------
// Operations beyond the contract

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = MakeStore(shared_redis_server().url());
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    if (store_) (void)store_->clear(Key(""));
  }
  std::shared_ptr<Store> store_;
};

TEST_F(RedisStoreTest, KeysAndValuesAreBinarySafe) {
  const std::string key = Key(std::string("nul\0 key\xff", 9));
  const std::string value("\0\0a\0b\r\n\xfe", 8);
  ASSERT_TRUE(store_->set(key, value));
  EXPECT_THAT(*store_->get(key), Optional(value));
  auto many = store_->get_many(std::vector<std::string>{key});
  ASSERT_TRUE(many);
  EXPECT_THAT((*many)[0], Optional(value));
  EXPECT_TRUE(*store_->remove_if_equals(key, value));
}

TEST_F(RedisStoreTest, LargeValuesRoundTrip) {
  std::string mb(1 << 20, '\0');
  for (std::size_t i = 0; i < mb.size(); ++i) mb[i] = static_cast<char>(i * 131 % 251);
  ASSERT_TRUE(store_->set(Key("mb"), mb));
  EXPECT_THAT(*store_->get(Key("mb")), Optional(mb));
  const std::string kb85(8704, 'x');
  ASSERT_TRUE(store_->set(Key("kb"), kb85));
  EXPECT_THAT(*store_->get(Key("kb")), Optional(kb85));
}

TEST_F(RedisStoreTest, TtlsAreSetAsMilliseconds) {
  // 1500 ms stored as whole seconds would read 1000 ms or 2000 ms at most.
  // What Redis reports is 1500 ms less the time between SET and PTTL, which
  // the client's own measure of both calls bounds; a busy machine that takes
  // longer than 250 ms for them gets another try rather than a weaker check.
  KeyTtl ttl;
  auto elapsed = std::chrono::steady_clock::duration::max();
  for (int attempt = 0; attempt < 20 && elapsed > 250ms; ++attempt) {
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(store_->set(Key("px"), "v", 1500ms));
    auto got = store_->ttl(Key("px"));
    elapsed = std::chrono::steady_clock::now() - start;
    ASSERT_TRUE(got) << got.error().to_string();
    ttl = *got;
  }
  ASSERT_LE(elapsed, 250ms) << "SET and PTTL never took less than 250 ms in 20 tries";
  EXPECT_EQ(ttl.state, KeyTtl::State::kExpiring);
  EXPECT_GE(ttl.remaining, 1500ms - std::chrono::ceil<std::chrono::milliseconds>(elapsed) - 1ms);
  EXPECT_LE(ttl.remaining, 1500ms);

  ASSERT_TRUE(store_->set(Key("never"), "v", Ttl::never()));
  EXPECT_EQ(store_->ttl(Key("never"))->state, KeyTtl::State::kPersistent);
  ASSERT_TRUE(store_->set(Key("default"), "v"));
  EXPECT_GT(store_->ttl(Key("default"))->remaining, 299s);
}

TEST_F(RedisStoreTest, TouchNeverPersistsAndReportsExistence) {
  ASSERT_TRUE(store_->set(Key("t"), "v", 10s));
  EXPECT_TRUE(*store_->touch(Key("t"), Ttl::never()));
  EXPECT_EQ(store_->ttl(Key("t"))->state, KeyTtl::State::kPersistent);
  // Already persistent: PERSIST says 0, but the key exists.
  EXPECT_TRUE(*store_->touch(Key("t"), Ttl::never()));
  EXPECT_FALSE(*store_->touch(Key("absent"), Ttl::never()));
  EXPECT_FALSE(*store_->touch(Key("absent"), 5s));
}

TEST_F(RedisStoreTest, IncrIsExactBeyondDoublePrecision) {
  ASSERT_TRUE(store_->set(Key("big"), "9007199254740992"));  // 2^53
  EXPECT_EQ(store_->incr(Key("big"), 1), 9007199254740993);
  EXPECT_EQ(store_->incr(Key("min"), INT64_MIN, Ttl::never()), INT64_MIN);
  auto r = store_->incr(Key("min"), -1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kOutOfRange);
}

TEST_F(RedisStoreTest, IncrCreatesWithTheGivenTtl) {
  EXPECT_EQ(store_->incr(Key("never"), 2, Ttl::never()), 2);
  EXPECT_EQ(store_->ttl(Key("never"))->state, KeyTtl::State::kPersistent);
  EXPECT_EQ(store_->incr(Key("short"), 2, 2s), 2);
  EXPECT_LE(store_->ttl(Key("short"))->remaining, 2s);
  // A removing TTL computes the value but keeps nothing.
  EXPECT_EQ(store_->incr(Key("gone"), 3, 0s), 3);
  EXPECT_EQ(store_->ttl(Key("gone"))->state, KeyTtl::State::kMissing);
}

TEST_F(RedisStoreTest, WrongRedisTypeIsAFailedPrecondition) {
  RawCommand(shared_redis_server(), {"RPUSH", Key("list"), "x"});
  auto got = store_->get(Key("list"));
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kFailedPrecondition) << got.error().to_string();
  auto n = store_->incr(Key("list"));
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, ErrorCode::kFailedPrecondition) << n.error().to_string();
  // The connection stays usable after an error reply.
  EXPECT_TRUE(store_->set(Key("ok"), "v"));
}

TEST_F(RedisStoreTest, ScriptsSurviveScriptFlush) {
  EXPECT_EQ(store_->incr(Key("n"), 1), 1);
  RawCommand(shared_redis_server(), {"SCRIPT", "FLUSH"});
  EXPECT_EQ(store_->incr(Key("n"), 1), 2);  // NOSCRIPT, then EVAL
  ASSERT_TRUE(store_->set(Key("lease"), "me"));
  RawCommand(shared_redis_server(), {"SCRIPT", "FLUSH"});
  EXPECT_TRUE(*store_->remove_if_equals(Key("lease"), "me"));
}

TEST_F(RedisStoreTest, ClearDeletesOnlyThePrefixAcrossScanPages) {
  std::vector<std::pair<std::string, std::string>> entries;
  for (int i = 0; i < 2500; ++i) entries.emplace_back(Key(fmt::format("clr:{}", i)), "v");
  ASSERT_TRUE(store_->set_many(entries, 60s));
  ASSERT_TRUE(store_->set(Key("clr"), "no colon: not under the prefix"));
  ASSERT_TRUE(store_->set(Key("keep:1"), "v"));
  EXPECT_EQ(store_->clear(Key("clr:")), 2500u);
  EXPECT_TRUE(*store_->get(Key("clr")));
  EXPECT_TRUE(*store_->get(Key("keep:1")));
  EXPECT_EQ(*store_->get(Key("clr:7")), std::nullopt);
}

TEST_F(RedisStoreTest, StatsReportServerAndClientFigures) {
  ASSERT_TRUE(store_->set(Key("s"), "v"));
  auto stats = store_->stats();
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->backend, "redis");
  EXPECT_GT(stats->used_memory_bytes, 0u);
  EXPECT_FALSE(stats->used_memory_human.empty());
  EXPECT_GE(stats->entries, 1u);
  EXPECT_GT(stats->commands_processed, 0u);
  for (const char* name : {"connected_clients", "redis_version", "pool_size", "pool_in_use",
                           "pool_waits", "errors", "retries", "reconnects"}) {
    EXPECT_TRUE(stats->details.contains(name)) << name;
  }
  EXPECT_EQ(stats->details["pool_size"], "50");
  EXPECT_EQ(stats->details["pool_open"], "1");    // one connection did it all
  EXPECT_EQ(stats->details["pool_in_use"], "0");  // counted after INFO gave it back
}

TEST_F(RedisStoreTest, ThirtyTwoThreadsOfMixedOperations) {
  RedisStoreOptions options = OptionsFor(shared_redis_server().url());
  options.pool_size = 8;  // fewer connections than threads: callers wait
  options.pool_wait_timeout = 10s;
  auto store = MakeStore(options);
  ASSERT_TRUE(store);
  constexpr int kThreads = 32;
  constexpr int kRounds = 60;
  std::atomic<int> failures{0};
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      auto check = [&](bool ok) {
        if (!ok) ++failures;
      };
      for (int i = 0; i < kRounds; ++i) {
        const std::string mine = Key(fmt::format("mt:{}:{}", t, i % 5));
        const std::string value = fmt::format("{}-{}", t, i);
        check(store->set(mine, value, 60s).has_value());
        auto got = store->get(mine);
        check(got && *got == value);
        check(store->incr(Key("mt:counter"), 1, Ttl::never()).has_value());
        auto added = store->add(Key(fmt::format("mt:once:{}", i)), value, 60s);
        check(added.has_value());
        check(store->remove_if_equals(mine, value).value_or(false));
        check(store->ttl(mine).has_value());
        check(store->touch(Key("mt:counter"), Ttl::never()).has_value());
        std::vector<std::string> keys{mine, Key("mt:counter")};
        check(store->get_many(keys).has_value());
        if (i % 20 == 0) check(store->stats().has_value());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_THAT(*store->get(Key("mt:counter")), Optional(std::to_string(kThreads * kRounds)));
  auto stats = store->stats();
  ASSERT_TRUE(stats);
  EXPECT_LE(std::stoul(stats->details["pool_open"]), 8u);
}

TEST(RedisStoreLimits, OutOfMemoryIsResourceExhausted) {
  RedisServer server({.extra_args = {"--maxmemory", "3mb", "--maxmemory-policy", "noeviction"}});
  auto store = MakeStore(server.url());
  ASSERT_TRUE(store);
  const std::string mb(1 << 20, 'x');
  Status last;
  for (int i = 0; i < 16 && last; ++i) last = store->set(fmt::format("big:{}", i), mb);
  ASSERT_FALSE(last);
  EXPECT_EQ(last.error().code, ErrorCode::kResourceExhausted) << last.error().to_string();
  // Reads still work.
  EXPECT_TRUE(store->get("big:0"));
}

// ---------------------------------------------------------------------------
// Faults

TEST(RedisStoreFaults, PoolExhaustionAfterTheWaitTimeout) {
  RedisServer server;
  RedisStoreOptions options = OptionsFor(server.url());
  options.pool_size = 1;
  options.pool_wait_timeout = 100ms;
  options.socket_timeout = 1000ms;
  options.retry_on_timeout = false;
  auto store = MakeStore(options);
  ASSERT_TRUE(store);
  // The only connection gets stuck on a paused server; the other caller
  // waits 100 ms for it, then gives up.
  server.pause();
  ErrorCode codes[2] = {ErrorCode::kInternal, ErrorCode::kInternal};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      auto r = store->get("k");
      codes[t] = r ? ErrorCode::kInternal : r.error().code;
    });
  }
  for (auto& th : threads) th.join();
  server.resume();
  EXPECT_THAT(codes,
              ::testing::UnorderedElementsAre(ErrorCode::kTimeout, ErrorCode::kResourceExhausted));
  // The timed-out connection was discarded; a new one works.
  EXPECT_TRUE(store->get("k"));
  auto stats = store->stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->details["pool_waits"], "1");
  EXPECT_EQ(stats->details["errors"], "2");
}

TEST(RedisStoreFaults, PausedServerTimesOut) {
  RedisServer server;
  RedisStoreOptions options = OptionsFor(server.url());
  options.socket_timeout = 200ms;
  auto store = MakeStore(options);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->set("k", "v"));
  server.pause();
  auto got = store->get("k");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kTimeout) << got.error().to_string();
  auto n = store->incr("n");  // not retried, times out as well
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, ErrorCode::kTimeout) << n.error().to_string();
  server.resume();
  EXPECT_THAT(*store->get("k"), Optional(std::string("v")));
  auto stats = store->stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->details["retries"], "1");  // the GET, once
}

TEST(RedisStoreFaults, RecoversAfterARestartWithoutANewStore) {
  RedisServer server;
  RedisStoreOptions options = OptionsFor(server.url());
  options.pool_size = 4;
  auto store = MakeStore(options);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->set("k", "v"));

  server.stop();
  auto down = store->get("k");
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code, ErrorCode::kUnavailable) << down.error().to_string();
  EXPECT_FALSE(store->set("k", "v"));

  server.restart();
  EXPECT_EQ(*store->get("k"), std::nullopt);  // nothing persisted
  ASSERT_TRUE(store->set("k", "again"));
  EXPECT_EQ(store->incr("n", 5), 5);
  auto stats = store->stats();
  ASSERT_TRUE(stats);
  EXPECT_GE(std::stoul(stats->details["reconnects"]), 1u);
}

TEST(RedisStoreFaults, StaleIdleConnectionsAreReplacedAfterARestart) {
  RedisServer server;
  RedisStoreOptions options = OptionsFor(server.url());
  options.pool_size = 4;
  auto store = MakeStore(options);
  ASSERT_TRUE(store);
  // Open several connections, all idle afterwards.
  {
    std::barrier start(4);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        for (int i = 0; i < 20; ++i) (void)store->set("warm", "v");
      });
    }
    for (auto& th : threads) th.join();
  }
  server.stop();
  server.restart();
  // The first GET meets a dead connection, drops the idle ones and retries
  // on a fresh connection: the caller sees no error.
  auto got = store->get("warm");
  ASSERT_TRUE(got) << got.error().to_string();
  EXPECT_EQ(*got, std::nullopt);
  // A non-idempotent call right after finds only fresh connections too.
  EXPECT_EQ(store->incr("n", 1), 1);
}

TEST(RedisStoreFaults, NonIdempotentCallsAfterARestartFindFreshConnections) {
  RedisServer server;
  RedisStoreOptions options = OptionsFor(server.url());
  options.retry_on_timeout = false;  // no retry to hide a stale connection
  auto store = MakeStore(options);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->incr("n", 1), 1);
  server.stop();
  server.restart();
  // The idle connection is found closed before anything is sent on it.
  EXPECT_EQ(store->incr("n", 1), 1);
  EXPECT_EQ(store->add("lease", "me", 10s), true);
  EXPECT_EQ(store->remove_if_equals("lease", "me"), true);
}

TEST(RedisStoreFaults, ServerDyingMidWriteIsAnErrorNotSigpipe) {
  RedisServer server;
  RedisStoreOptions options = OptionsFor(server.url());
  options.socket_timeout = 5000ms;
  options.retry_on_timeout = false;
  auto store = MakeStore(options);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->set("warm", "v"));
  server.pause();
  // 32 MB cannot fit in the socket buffers of a server that reads nothing:
  // the writer blocks in send(2) until the server dies, then gets EPIPE,
  // which would raise SIGPIPE had the store not sent with MSG_NOSIGNAL.
  Status result;
  std::thread writer([&] { result = store->set("big", std::string(32 << 20, 'x')); });
  // The server dies only once the writer is inside send(2): a megabyte of
  // the value is queued in the kernel (the rest cannot follow, so the writer
  // is still there).
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (QueuedBytes(server.port()) < (1u << 20) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_GE(QueuedBytes(server.port()), 1u << 20) << "the writer never filled the buffers";
  server.kill();
  writer.join();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kUnavailable) << result.error().to_string();
}

// A pipeline's replies are all read, then checked: the first error reply is
// the call's failure, and the connection stays in step for the next command.
TEST(RedisConnection, PipelineFailsWithTheFirstErrorReplyAndStaysInStep) {
  auto endpoint = parse_redis_url(shared_redis_server().url());
  ASSERT_TRUE(endpoint);
  auto conn = redis::RedisConnection::open({.endpoint = *endpoint});
  ASSERT_TRUE(conn);
  const std::string key = Key("pipeline");
  const redis::Command ok[] = {{"SET", key, "v"}, {"GET", key}};
  auto replies = (*conn)->pipeline(ok);
  ASSERT_TRUE(replies);
  ASSERT_EQ(replies->size(), 2u);
  EXPECT_EQ(std::string((*replies)[1]->str, (*replies)[1]->len), "v");

  const redis::Command failing[] = {{"INCR", key}, {"LPUSH", key, "x"}, {"SET", key, "w"}};
  auto failed = (*conn)->pipeline(failing);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().kind, redis::RedisFailure::Kind::kReply);
  EXPECT_THAT(failed.error().text, HasSubstr("not an integer"));  // the first of two
  EXPECT_FALSE((*conn)->broken());
  // The commands after the error ran, and their replies were consumed.
  const std::string_view get[] = {"GET", key};
  auto value = (*conn)->command(get);
  ASSERT_TRUE(value);
  EXPECT_EQ(std::string((*value)->str, (*value)->len), "w");
  const std::string_view del[] = {"DEL", key};
  EXPECT_TRUE((*conn)->command(del));
}

TEST(RedisConnectionFaults, WritingToAClosedConnectionIsAnErrorNotSigpipe) {
  RedisServer server;
  auto endpoint = parse_redis_url(server.url());
  ASSERT_TRUE(endpoint);
  auto conn = redis::RedisConnection::open({.endpoint = *endpoint});
  ASSERT_TRUE(conn);
  server.stop();
  // The peer is gone: the first write(2) goes out and is answered with a
  // reset, the next one fails with EPIPE, raising SIGPIPE in a process that
  // does not ignore it, unless the connection blocks it.
  const std::string big(32 << 20, 'x');
  const std::string_view args[] = {"SET", "k", big};
  auto reply = (*conn)->command(args);
  ASSERT_FALSE(reply);
  EXPECT_TRUE((*conn)->broken());
  EXPECT_EQ(redis::to_error(reply.error(), "r", "SET").code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace aicache::testing
