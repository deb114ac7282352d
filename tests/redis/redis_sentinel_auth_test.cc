// The store's own connections to Redis Sentinels (issue 15): an ACL user,
// and TLS, with real processes (support/redis_sentinel_group.h: a master and
// three sentinels, no replica, ready as soon as they run) and certificates
// made by openssl at test time (support/tls_certs.h).
//
// - Sentinels whose default user is off: the store gets in with
//   AUTH user password; a wrong user (or the password alone) is kConfig
//   naming every sentinel, never a password.
// - Sentinels (with the ACL user) and master on TLS ports, found through a
//   rediss:// URL, the sentinels reached by host name (checked against the
//   certificate); a plain store against the same ports fails with a clear
//   error naming the sentinels and the setting that chooses TLS; a sentinel
//   certificate from an unknown CA is kConfig with OpenSSL's reason.
// - An ordered failover followed through the TLS +switch-master
//   subscription.
// - The same from the configuration's names (REDIS_SENTINEL_USERNAME,
//   REDIS_SENTINEL_TLS) through load_config and open_store.
// - Which TLS context serves which side (tls_contexts_for), without servers.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "aicache/config.h"
#include "aicache/from_config.h"
#include "aicache/redis_store.h"
#include "redis/redis_tls.h"
#include "support/redis_sentinel_group.h"
#include "support/tls_certs.h"

namespace aicache::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr std::string_view kSentinelUser = "sentinel-watcher";
constexpr std::string_view kSentinelPassword = "sentinel-acl-secret-3f9a";

RedisStoreOptions StoreOptions(const RedisSentinelGroup& group) {
  RedisStoreOptions options;
  options.sentinel = group.sentinel_options();
  options.connect_timeout = 1000ms;
  options.socket_timeout = 1000ms;
  options.pool_size = 4;
  return options;
}

std::string Address(std::uint16_t port) { return fmt::format("127.0.0.1:{}", port); }

void ExpectRoundTrip(Store& store, std::string_view key) {
  ASSERT_TRUE(store.set(key, "through the sentinels", Ttl::never()));
  auto got = store.get(key);
  ASSERT_TRUE(got) << got.error().to_string();
  EXPECT_EQ(*got, std::optional<std::string>("through the sentinels"));
}

TEST(RedisSentinelAuth, AnAclUserGetsInAWrongOneIsAConfigErrorNamingEachSentinel) {
  RedisSentinelGroupOptions group_options;
  group_options.failover_ready = false;
  group_options.sentinel_user = std::string(kSentinelUser);
  group_options.sentinel_password = std::string(kSentinelPassword);
  RedisSentinelGroup group(group_options);

  RedisStoreOptions options = StoreOptions(group);
  ASSERT_EQ(options.sentinel.username, kSentinelUser);
  auto store = make_redis_store(options);
  ASSERT_TRUE(store) << store.error().to_string();
  ExpectRoundTrip(**store, "sentinel:acl");

  // A user the sentinels do not know; then the right password without the
  // user (the default user is off).
  for (const std::string user : {"no-such-user", ""}) {
    SCOPED_TRACE(user);
    options.sentinel.username = user;
    auto refused = make_redis_store(options);
    ASSERT_FALSE(refused);
    const std::string& m = refused.error().message;
    EXPECT_EQ(refused.error().code, ErrorCode::kConfig) << m;
    EXPECT_THAT(m, AllOf(HasSubstr("authentication failed"), HasSubstr(group.master_name()),
                         Not(HasSubstr(kSentinelPassword))));
    for (std::size_t i = 0; i < RedisSentinelGroup::kSentinels; ++i) {
      EXPECT_THAT(m, HasSubstr(Address(group.sentinel(i).port())));
    }
  }
}

class RedisSentinelTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_ = new TestCertificates();
    RedisSentinelGroupOptions o;
    o.failover_ready = false;
    o.tls = RedisServerTls{.cert_file = certs_->server().cert,
                           .key_file = certs_->server().key,
                           .ca_file = certs_->ca()};
    // TLS and ACL users together, as a locked-down deployment runs them.
    o.sentinel_user = std::string(kSentinelUser);
    o.sentinel_password = std::string(kSentinelPassword);
    group_ = new RedisSentinelGroup(o);
  }
  static void TearDownTestSuite() {
    delete group_;
    delete certs_;
    group_ = nullptr;
    certs_ = nullptr;
  }

  // The master's URL (rediss://, its address asked of the sentinels) and
  // the CA of the certificates.
  static RedisStoreOptions TlsOptions() {
    RedisStoreOptions options = StoreOptions(*group_);
    options.endpoint = *parse_redis_url("rediss://127.0.0.1/0");
    options.tls.ca_file = certs_->ca().string();
    return options;
  }

  static TestCertificates* certs_;
  static RedisSentinelGroup* group_;
};

TestCertificates* RedisSentinelTls::certs_ = nullptr;
RedisSentinelGroup* RedisSentinelTls::group_ = nullptr;

TEST_F(RedisSentinelTls, FoundThroughRedissWithTheSentinelsHostNamesChecked) {
  RedisStoreOptions options = TlsOptions();
  // By name: the certificate's DNS name is checked (its IP for the master,
  // which the sentinels name by address).
  for (RedisHostPort& s : options.sentinel.sentinels) s.host = "localhost";
  auto store = make_redis_store(options);
  ASSERT_TRUE(store) << store.error().to_string();
  ExpectRoundTrip(**store, "sentinel:tls");
  auto stats = (*store)->stats();
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->details["sentinel_master_address"], Address(group_->server(0).tls_port()));
}

TEST_F(RedisSentinelTls, APlainStoreAgainstTlsSentinelsFailsClearly) {
  RedisStoreOptions options = StoreOptions(*group_);  // redis://: plain sentinels
  auto plain = make_redis_store(options);
  ASSERT_FALSE(plain);
  RecordProperty("error", plain.error().to_string());
  const std::string& m = plain.error().message;
  EXPECT_EQ(plain.error().code, ErrorCode::kUnavailable) << m;
  EXPECT_THAT(m, AllOf(HasSubstr(group_->master_name()), HasSubstr("plain TCP"),
                       HasSubstr("REDIS_SENTINEL_TLS=1")));
  for (std::size_t i = 0; i < RedisSentinelGroup::kSentinels; ++i) {
    EXPECT_THAT(m, HasSubstr(Address(group_->sentinel(i).tls_port())));
  }

  // rediss:// with sentinel_tls = false: the same, by choice.
  options = TlsOptions();
  options.sentinel.tls = false;
  auto overridden = make_redis_store(options);
  ASSERT_FALSE(overridden);
  EXPECT_EQ(overridden.error().code, ErrorCode::kUnavailable) << overridden.error().message;
  EXPECT_THAT(overridden.error().message, HasSubstr("plain TCP"));
}

TEST_F(RedisSentinelTls, ASentinelCertificateFromAnUnknownCaIsRefusedWithTheReason) {
  RedisStoreOptions options = TlsOptions();
  // A trust anchor that did not sign the sentinels' certificate.
  options.tls.ca_file = certs_->other_ca_server().cert.string();
  auto store = make_redis_store(options);
  ASSERT_FALSE(store);
  const std::string& m = store.error().message;
  EXPECT_EQ(store.error().code, ErrorCode::kConfig) << m;
  // OpenSSL's reason follows ("self-signed certificate in certificate
  // chain": the server sends its CA along).
  EXPECT_THAT(m, AllOf(HasSubstr("certificate was refused: "), HasSubstr("rediss://"),
                       HasSubstr(Address(group_->sentinel(0).tls_port())),
                       Not(HasSubstr(kSentinelPassword))));
}

// The settings by their environment names, through load_config and
// open_store: the sentinels' user, and TLS because the URL is rediss://.
TEST_F(RedisSentinelTls, FromTheConfiguration) {
  std::map<std::string, std::string, std::less<>> env{
      {"REDIS_URL", "rediss://127.0.0.1/0"},
      {"REDIS_SENTINELS", group_->sentinel_list()},
      {"REDIS_SENTINEL_MASTER", group_->master_name()},
      {"REDIS_SENTINEL_USERNAME", std::string(kSentinelUser)},
      {"REDIS_SENTINEL_PASSWORD", std::string(kSentinelPassword)},
      {"REDIS_TLS_CA_FILE", certs_->ca().string()}};
  ConfigSources sources;
  sources.environment = env;
  sources.dotenv = certs_->dir() / "no.env";
  auto config = load_config(sources);
  ASSERT_TRUE(config) << config.error().to_string();
  auto store = open_store(*config);
  ASSERT_TRUE(store) << store.error().to_string();
  ExpectRoundTrip(**store, "sentinel:tls:config");

  // Told to reach them in clear: refused by the TLS ports, never silently
  // plain where TLS was meant.
  env["REDIS_SENTINEL_TLS"] = "off";
  sources.environment = env;
  config = load_config(sources);
  ASSERT_TRUE(config) << config.error().to_string();
  store = open_store(*config);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable) << store.error().message;
  EXPECT_THAT(store.error().message,
              AllOf(HasSubstr("plain TCP"), Not(HasSubstr(kSentinelPassword))));
}

// A failover behind TLS sentinels with an ACL user (a replica now, and the
// sentinels' vote): the store hears +switch-master on its TLS subscription
// (it makes no call meanwhile, so nothing else tells it) and moves to the
// promoted replica's TLS port.
TEST(RedisSentinelTlsFailover, TheSubscriptionOverTlsFollowsAnOrderedFailover) {
  const TestCertificates certs;
  RedisSentinelGroupOptions o;
  o.tls = RedisServerTls{
      .cert_file = certs.server().cert, .key_file = certs.server().key, .ca_file = certs.ca()};
  o.sentinel_user = std::string(kSentinelUser);
  o.sentinel_password = std::string(kSentinelPassword);
  RedisSentinelGroup group(o);

  RedisStoreOptions options = StoreOptions(group);
  options.endpoint = *parse_redis_url("rediss://127.0.0.1/0");
  options.tls.ca_file = certs.ca().string();
  auto store = make_redis_store(options);
  ASSERT_TRUE(store) << store.error().to_string();
  ASSERT_TRUE((*store)->set("sentinel:tls:kept", "before", Ttl::never()));
  const auto master = [&] {
    auto stats = (*store)->stats();
    return stats ? stats->details["sentinel_master_address"] : std::string();
  };
  ASSERT_EQ(master(), Address(group.server(0).tls_port()));

  const auto waited = RedisSentinelGroup::commands(
      group.server(0).port(), {{"SET", "sentinel:tls:marker", "1"}, {"WAIT", "1", "5000"}});
  ASSERT_EQ(waited, std::vector<std::string>{"1"});
  const auto ordered = RedisSentinelGroup::command(group.sentinel(0).port(),
                                                   {"SENTINEL", "FAILOVER", group.master_name()},
                                                   o.sentinel_password, o.sentinel_user);
  ASSERT_EQ(ordered, std::vector<std::string>{"OK"});
  ASSERT_TRUE(group.wait_for_master(1, 60s)) << group.sentinel(0).read_log();

  // Polling for the announcement's effect, with a deadline to give up by.
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (master() != Address(group.server(1).tls_port()) &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(master(), Address(group.server(1).tls_port()));
  auto kept = (*store)->get("sentinel:tls:kept");
  ASSERT_TRUE(kept) << kept.error().to_string();
  EXPECT_EQ(*kept, std::optional<std::string>("before"));
}

// Which side gets a TLS context: the rule of RedisSentinelOptions::tls.
TEST(RedisSentinelTlsRule, SentinelsFollowTheUrlUnlessTold) {
  const TestCertificates certs;
  RedisStoreOptions options;
  options.sentinel.sentinels = {{"127.0.0.1", kRedisSentinelPort}};
  options.sentinel.master_name = "m";
  options.tls.ca_file = certs.ca().string();

  struct Case {
    std::string_view url;
    std::optional<bool> sentinel_tls;
    bool servers;
    bool sentinels;
  };
  const Case cases[] = {
      {"rediss://h/0", std::nullopt, true, true},
      {"rediss://h/0", false, true, false},
      {"redis://h/0", true, false, true},
      {"rediss://h/0", true, true, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{} sentinel_tls={}", c.url,
                             c.sentinel_tls ? (*c.sentinel_tls ? "1" : "0") : "unset"));
    options.endpoint = *parse_redis_url(c.url);
    options.sentinel.tls = c.sentinel_tls;
    auto contexts = redis::tls_contexts_for(options);
    ASSERT_TRUE(contexts) << contexts.error().to_string();
    EXPECT_EQ(contexts->servers != nullptr, c.servers);
    EXPECT_EQ(contexts->sentinels != nullptr, c.sentinels);
    if (c.servers && c.sentinels) {
      EXPECT_EQ(contexts->servers, contexts->sentinels);
    }
  }
  // Nothing TLS, files set: they ask for TLS, so an error rather than plain.
  options.endpoint = *parse_redis_url("redis://h/0");
  options.sentinel.tls = std::nullopt;
  auto refused = redis::tls_contexts_for(options);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConfig);
  EXPECT_THAT(refused.error().message, HasSubstr("sentinel_tls"));
}

}  // namespace
}  // namespace aicache::testing
