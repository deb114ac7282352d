// RedisStore over TLS (rediss://) against a real redis-server with a TLS
// port and certificates made by openssl at test time: client certificates,
// ACL users, host and IP checks, and the refusals (another CA, expired,
// wrong host, plain <-> TLS mismatches), each with its reason.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "aicache/config.h"
#include "aicache/from_config.h"
#include "aicache/redis_store.h"
#include "redis/redis_connection.h"
#include "redis/redis_errors.h"
#include "redis/redis_tls.h"
#include "support/log_capture.h"
#include "support/redis_server.h"
#include "support/tls_certs.h"

namespace aicache::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kAclUser = "tls-user";
constexpr std::string_view kAclPassword = "tls-secret-7d1e";

const TestCertificates& certs() {
  static const TestCertificates c;
  return c;
}

RedisServerOptions tls_server_options(const CertAndKey& server_cert, bool auth_clients = false) {
  RedisServerOptions o;
  o.acl_user = std::string(kAclUser);
  o.acl_password = std::string(kAclPassword);
  o.tls = RedisServerTls{.cert_file = server_cert.cert,
                         .key_file = server_cert.key,
                         .ca_file = certs().ca(),
                         .auth_clients = auth_clients};
  return o;
}

// The server with the good certificate, shared by the tests of this process.
RedisServer& good_server() {
  static RedisServer server(tls_server_options(certs().server()));
  return server;
}

RedisStoreOptions tls_options(const std::string& url) {
  auto endpoint = parse_redis_url(url);
  EXPECT_TRUE(endpoint) << endpoint.error().to_string();
  RedisStoreOptions options;
  options.endpoint = endpoint.value_or(RedisEndpoint{});
  options.tls.ca_file = certs().ca().string();
  options.pool_size = 4;
  options.connect_timeout = std::chrono::milliseconds(2000);
  options.socket_timeout = std::chrono::milliseconds(2000);
  return options;
}

std::string tls_url(const RedisServer& server, std::string_view host = "127.0.0.1") {
  return server.tls_url(0, host);
}

void expect_round_trip(Store& store, std::string_view key) {
  ASSERT_TRUE(store.set(key, "value over TLS", std::chrono::seconds(60)));
  auto got = store.get(key);
  ASSERT_TRUE(got) << got.error().to_string();
  EXPECT_EQ(*got, std::optional<std::string>("value over TLS"));
}

TEST(RedisTls, ConnectsByIpAndByHostName) {
  for (std::string_view host : {"127.0.0.1", "localhost"}) {
    SCOPED_TRACE(host);
    auto store = make_redis_store(tls_options(tls_url(good_server(), host)));
    ASSERT_TRUE(store) << store.error().to_string();
    expect_round_trip(**store, "tls:by-host");
  }
}

TEST(RedisTls, AclUserOverTlsAndPlain) {
  for (bool tls : {true, false}) {
    SCOPED_TRACE(tls ? "tls" : "plain");
    const std::string url =
        fmt::format("{}://{}:{}@127.0.0.1:{}/0", tls ? "rediss" : "redis", kAclUser, kAclPassword,
                    tls ? good_server().tls_port() : good_server().port());
    RedisStoreOptions options = tls_options(url);
    if (!tls) options.tls = {};
    auto store = make_redis_store(options);
    ASSERT_TRUE(store) << store.error().to_string();
    expect_round_trip(**store, "tls:acl");

    const std::string wrong = fmt::format("{}://{}:wrong@127.0.0.1:{}/0", tls ? "rediss" : "redis",
                                          kAclUser, tls ? good_server().tls_port() : good_server().port());
    RedisStoreOptions wrong_options = tls_options(wrong);
    if (!tls) wrong_options.tls = {};
    auto refused = make_redis_store(wrong_options);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kConfig);
    EXPECT_THAT(refused.error().message, HasSubstr("authentication failed"));
    EXPECT_THAT(refused.error().message, HasSubstr(tls ? "rediss://" : "redis://"));
  }
}

TEST(RedisTls, ClientCertificateWhenTheServerRequiresOne) {
  RedisServer server(tls_server_options(certs().server(), /*auth_clients=*/true));
  RedisStoreOptions options = tls_options(tls_url(server));
  options.tls.cert_file = certs().client().cert.string();
  options.tls.key_file = certs().client().key.string();
  auto store = make_redis_store(options);
  ASSERT_TRUE(store) << store.error().to_string();
  expect_round_trip(**store, "tls:client-cert");

  // Without one the server refuses (TLS 1.3: after the client's side of the
  // handshake, so the client sees an alert or a reset), and the error says
  // what may be wrong.
  auto refused = make_redis_store(tls_options(tls_url(server)));
  ASSERT_FALSE(refused);
  RecordProperty("error", refused.error().to_string());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable) << refused.error().to_string();
  EXPECT_THAT(refused.error().message, ::testing::AnyOf(HasSubstr("certificate required"),
                                                        HasSubstr("client certificate")));
}

struct Refusal {
  const char* name;
  const CertAndKey& (TestCertificates::*cert)() const noexcept;
  const char* host;
  const char* reason;
};

TEST(RedisTls, RefusesABadServerCertificateWithTheReason) {
  const Refusal refusals[] = {
      {"another CA", &TestCertificates::other_ca_server, "127.0.0.1",
       "unable to get local issuer certificate"},
      {"expired", &TestCertificates::expired_server, "127.0.0.1", "certificate has expired"},
      {"wrong host name", &TestCertificates::wrong_host_server, "localhost", "hostname mismatch"},
      {"wrong IP", &TestCertificates::wrong_host_server, "127.0.0.1", "IP address mismatch"},
      // The good certificate names localhost and 127.0.0.1, not ::1's name.
      {"IP without its SAN", &TestCertificates::server, "127.0.0.2", "IP address mismatch"},
  };
  for (const Refusal& r : refusals) {
    SCOPED_TRACE(r.name);
    RedisServerOptions o = tls_server_options((certs().*r.cert)());
    if (std::string_view(r.host) == "127.0.0.2") {
      o.extra_args = {"--bind", "127.0.0.1", "127.0.0.2"};
    }
    RedisServer server(o);
    auto store = make_redis_store(tls_options(tls_url(server, r.host)));
    ASSERT_FALSE(store);
    RecordProperty(std::string("error: ") + r.name, store.error().to_string());
    EXPECT_EQ(store.error().code, ErrorCode::kConfig) << store.error().to_string();
    EXPECT_THAT(store.error().message, HasSubstr("certificate was refused"));
    EXPECT_THAT(store.error().message, HasSubstr(r.reason));

    // tls_verify = false connects anyway, with a warning.
    LogCapture log;
    RedisStoreOptions unverified = tls_options(tls_url(server, r.host));
    unverified.tls.verify = false;
    auto store2 = make_redis_store(unverified);
    ASSERT_TRUE(store2) << store2.error().to_string();
    expect_round_trip(**store2, "tls:unverified");
    EXPECT_THAT(log.all(), HasSubstr("verification is off"));
  }
}

TEST(RedisTls, ServerNameOverridesTheHostForTheCheck) {
  RedisServer server(tls_server_options(certs().wrong_host_server()));
  RedisStoreOptions options = tls_options(tls_url(server));
  options.tls.server_name = "other.example";
  auto store = make_redis_store(options);
  ASSERT_TRUE(store) << store.error().to_string();
  expect_round_trip(**store, "tls:server-name");
}

TEST(RedisTls, PlainClientOnTheTlsPortFailsClearly) {
  RedisStoreOptions options;
  options.endpoint = *parse_redis_url(fmt::format("redis://127.0.0.1:{}/0", good_server().tls_port()));
  options.connect_timeout = std::chrono::milliseconds(1000);
  options.socket_timeout = std::chrono::milliseconds(1000);
  auto store = make_redis_store(options);
  ASSERT_FALSE(store);
  RecordProperty("error", store.error().to_string());
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable) << store.error().to_string();
}

TEST(RedisTls, TlsClientOnThePlainPortFailsClearly) {
  RedisStoreOptions options =
      tls_options(fmt::format("rediss://127.0.0.1:{}/0", good_server().port()));
  options.connect_timeout = std::chrono::milliseconds(1000);
  auto store = make_redis_store(options);
  ASSERT_FALSE(store);
  RecordProperty("error", store.error().to_string());
  // Redis reads the ClientHello as the start of an inline command and
  // waits for its end: the handshake times out, within the connect timeout.
  EXPECT_THAT(store.error().code, ::testing::AnyOf(ErrorCode::kTimeout, ErrorCode::kUnavailable))
      << store.error().to_string();
  EXPECT_THAT(store.error().message, HasSubstr("TLS"));
  EXPECT_THAT(store.error().message, HasSubstr("tls-port"));
}

TEST(RedisTls, BadFilesAreConfigErrorsNamingTheFile) {
  const auto garbage = certs().dir() / "garbage.pem";
  std::ofstream(garbage) << "not a key: SECRET-KEY-CONTENT-91f2\n";
  // The client's key under a passphrase: OpenSSL's default would ask for it
  // on the terminal.
  const auto encrypted_key = certs().dir() / "client-encrypted.key";
  ASSERT_EQ(std::system(fmt::format("openssl pkey -in '{}' -aes256 -passout pass:pw -out '{}'",
                                    certs().client().key.string(), encrypted_key.string())
                            .c_str()),
            0);
  struct Case {
    const char* name;
    RedisTlsOptions tls;
    std::string named;
  };
  const Case cases[] = {
      {"missing CA", {.ca_file = (certs().dir() / "missing.crt").string()}, "missing.crt"},
      {"garbage CA", {.ca_file = garbage.string()}, "garbage.pem"},
      {"garbage key",
       {.ca_file = certs().ca().string(), .cert_file = certs().client().cert.string(),
        .key_file = garbage.string()},
       "garbage.pem"},
      {"key of another certificate",
       {.ca_file = certs().ca().string(), .cert_file = certs().client().cert.string(),
        .key_file = certs().server().key.string()},
       "server.key"},
      {"encrypted key (refused, never prompted for)",
       {.ca_file = certs().ca().string(), .cert_file = certs().client().cert.string(),
        .key_file = encrypted_key.string()},
       "client-encrypted.key"},
      {"certificate without key",
       {.ca_file = certs().ca().string(), .cert_file = certs().client().cert.string()},
       "both tls_cert_file and tls_key_file"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    RedisStoreOptions options = tls_options(tls_url(good_server()));
    options.tls.verify = true;
    options.tls = c.tls;
    auto store = make_redis_store(options);
    ASSERT_FALSE(store);
    RecordProperty(std::string("error: ") + c.name, store.error().to_string());
    EXPECT_EQ(store.error().code, ErrorCode::kConfig);
    EXPECT_THAT(store.error().message, HasSubstr(c.named));
    EXPECT_THAT(store.error().message, Not(HasSubstr("SECRET-KEY-CONTENT")));
  }
  // TLS files for a plain URL: asked for TLS, so refused rather than plain.
  RedisStoreOptions plain = tls_options(good_server().url());
  auto store = make_redis_store(plain);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kConfig);
  EXPECT_THAT(store.error().message, HasSubstr("rediss://"));
}

// The configuration's names reach the store: REDIS_URL=rediss://...,
// REDIS_TLS_* and the pool and timeout settings.
TEST(RedisTls, FromTheConfiguration) {
  RedisServer server(tls_server_options(certs().server(), /*auth_clients=*/true));
  std::map<std::string, std::string, std::less<>> env{
      {"REDIS_URL", fmt::format("rediss://{}:{}@localhost:{}/2", kAclUser, kAclPassword,
                                server.tls_port())},
      {"REDIS_TLS_CA_FILE", certs().ca().string()},
      {"REDIS_TLS_CERT_FILE", certs().client().cert.string()},
      {"REDIS_TLS_KEY_FILE", certs().client().key.string()},
      {"REDIS_POOL_SIZE", "3"},
      {"REDIS_CONNECT_TIMEOUT_MS", "2000"},
      {"REDIS_COMMAND_TIMEOUT_MS", "2000"}};
  ConfigSources sources;
  sources.environment = env;
  sources.dotenv = certs().dir() / "no.env";
  auto config = load_config(sources);
  ASSERT_TRUE(config) << config.error().to_string();
  auto store = open_store(*config);
  ASSERT_TRUE(store) << store.error().to_string();
  expect_round_trip(**store, "tls:config");
  auto stats = (*store)->stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->details.at("pool_size"), "3");

  // A CA file that is not there: the start fails, naming it.
  env["REDIS_TLS_CA_FILE"] = (certs().dir() / "nowhere-ca.pem").string();
  sources.environment = env;
  config = load_config(sources);
  ASSERT_TRUE(config);
  store = open_store(*config);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kConfig);
  EXPECT_THAT(store.error().message, HasSubstr("nowhere-ca.pem"));
}

// redis_errors.cc maps OpenSSL's failures and the stages of a connection:
// each code and hint.
TEST(RedisTlsErrors, MapToClearErrors) {
  using F = redis::RedisFailure;
  auto map = [](F f) { return redis::to_error(f, "rediss://h:1/0", "connect"); };

  F verify{.kind = F::Kind::kConnect, .hiredis_err = REDIS_ERR_OTHER, .text = "certificate has expired",
           .tls = true, .tls_verify = 10};
  EXPECT_EQ(map(verify).code, ErrorCode::kConfig);
  EXPECT_THAT(map(verify).message, HasSubstr("certificate was refused: certificate has expired"));

  F plain_port{.kind = F::Kind::kConnect, .hiredis_err = REDIS_ERR_OTHER,
               .text = "wrong version number", .tls = true};
  EXPECT_EQ(map(plain_port).code, ErrorCode::kUnavailable);
  EXPECT_THAT(map(plain_port).message, HasSubstr("tls-port"));

  F handshake_timeout{.kind = F::Kind::kConnect, .hiredis_err = REDIS_ERR_IO, .sys_errno = ETIMEDOUT,
                      .text = "Connection timed out", .stage = F::Stage::kTlsHandshake};
  EXPECT_EQ(map(handshake_timeout).code, ErrorCode::kTimeout);
  EXPECT_THAT(map(handshake_timeout).message, HasSubstr("TLS handshake timed out"));

  F closed_in_handshake{.kind = F::Kind::kConnect, .hiredis_err = REDIS_ERR_EOF,
                        .text = "Server closed the connection", .stage = F::Stage::kTlsHandshake};
  EXPECT_EQ(map(closed_in_handshake).code, ErrorCode::kUnavailable);
  EXPECT_THAT(map(closed_in_handshake).message, HasSubstr("during the TLS handshake"));

  F tls_alert_as_reply{.kind = F::Kind::kIo, .hiredis_err = REDIS_ERR_PROTOCOL,
                       .text = "Protocol error, got \"\\x15\" as reply type byte"};
  EXPECT_THAT(map(tls_alert_as_reply).message, HasSubstr("use rediss://"));

  F reset_after_handshake{.kind = F::Kind::kIo, .hiredis_err = REDIS_ERR_IO,
                          .sys_errno = ECONNRESET, .text = "Connection reset by peer",
                          .stage = F::Stage::kFirstReplyTls};
  EXPECT_EQ(map(reset_after_handshake).code, ErrorCode::kUnavailable);
  EXPECT_THAT(map(reset_after_handshake).message, HasSubstr("client certificate"));

  F reset_plain{.kind = F::Kind::kIo, .hiredis_err = REDIS_ERR_EOF,
                .text = "Server closed the connection", .stage = F::Stage::kFirstReplyPlain};
  EXPECT_THAT(map(reset_plain).message, HasSubstr("if this port is TLS, use rediss://"));

  // An established connection that drops gets no hint.
  F later{.kind = F::Kind::kIo, .hiredis_err = REDIS_ERR_EOF, .text = "Server closed the connection"};
  EXPECT_EQ(map(later).message, "redis rediss://h:1/0: connect: connection closed by the server");
}

// The near cache's invalidations arrive over TLS: another client's write
// drops the cached value.
TEST(RedisTls, NearCacheInvalidationsArriveOverTls) {
  RedisStoreOptions options = tls_options(tls_url(good_server()));
  auto reader = make_redis_store(options);
  ASSERT_TRUE(reader) << reader.error().to_string();
  options.near_cache_max_bytes = 0;
  auto writer = make_redis_store(options);
  ASSERT_TRUE(writer) << writer.error().to_string();
  auto stats = (*reader)->stats();
  ASSERT_TRUE(stats);
  ASSERT_EQ(stats->details.at("near_tracking_live"), "1");

  ASSERT_TRUE((*writer)->set("tls:near", "v1", std::chrono::seconds(60)));
  ASSERT_EQ(*(*reader)->get("tls:near"), std::optional<std::string>("v1"));
  ASSERT_EQ(*(*reader)->get("tls:near"), std::optional<std::string>("v1"));  // now near
  ASSERT_TRUE((*writer)->set("tls:near", "v2", std::chrono::seconds(60)));
  // Waits for the invalidation message (an event), never for a duration.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::optional<std::string> seen;
  while (std::chrono::steady_clock::now() < deadline) {
    seen = *(*reader)->get("tls:near");
    if (seen == "v2") break;
    std::this_thread::yield();
  }
  EXPECT_EQ(seen, std::optional<std::string>("v2"));
}

// TLS 1.3 servers send session tickets after the handshake: an idle
// connection that received them is not "closed by the peer", and a message
// read skips them; a connection the server closed is.
TEST(RedisTls, SessionTicketsAreNotAClosedConnection) {
  auto ctx = redis::make_tls_context({.ca_file = certs().ca().string()});
  ASSERT_TRUE(ctx) << ctx.error().to_string();
  redis::ConnectionOptions options{.endpoint = *parse_redis_url(tls_url(good_server())),
                                   .tls = *ctx};
  auto conn = redis::RedisConnection::open(options);
  ASSERT_TRUE(conn) << conn.error().text;
  // The tickets come right after the handshake; nothing else will.
  auto message = (*conn)->next_message(std::chrono::milliseconds(200));
  ASSERT_TRUE(message) << message.error().text;
  EXPECT_EQ(*message, nullptr);
  auto idle = redis::RedisConnection::open(options);
  ASSERT_TRUE(idle);
  for (int i = 0; i < 20; ++i) {
    ASSERT_FALSE((*idle)->closed_by_peer());
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  constexpr std::string_view kPing[] = {"PING"};
  for (auto* c : {conn->get(), idle->get()}) {
    auto pong = c->command(kPing);
    ASSERT_TRUE(pong) << pong.error().text;
    EXPECT_EQ(std::string_view((*pong)->str, (*pong)->len), "PONG");
  }

  // The server closes it: seen as closed (an alert or EOF, never as data).
  constexpr std::string_view kKill[] = {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"};
  auto killer = redis::RedisConnection::open(options);
  ASSERT_TRUE(killer);
  ASSERT_TRUE((*killer)->command(kKill));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!(*idle)->closed_by_peer() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_TRUE((*idle)->closed_by_peer());
}

}  // namespace
}  // namespace aicache::testing
