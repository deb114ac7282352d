#include "aicache/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/clock.h"
#include "aicache/from_config.h"
#include "aicache/testing/manual_clock.h"
#include "aicache/token_manager.h"
#include "aicache/token_provider.h"
#include "config/config_internal.h"
#include "support/fake_platform.h"
#include "support/temp_dir.h"

namespace aicache {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using Env = std::map<std::string, std::string, std::less<>>;
namespace fs = std::filesystem;

// Each test runs in its own empty directory, so that ./.env and
// ./aicache.toml are only what the test writes, and with an explicit
// environment, so the real one never leaks in.
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    old_cwd_ = fs::current_path();
    fs::current_path(dir_.path());
  }
  void TearDown() override { fs::current_path(old_cwd_); }

  ConfigSources sources(Env environment = {}) const {
    ConfigSources s;
    s.environment = std::move(environment);
    return s;
  }

  void write(std::string_view name, std::string_view text) const { dir_.write(name, text); }

  Config load_ok(const ConfigSources& s) const {
    auto config = load_config(s);
    EXPECT_TRUE(config) << config.error().to_string();
    return config ? *config : Config{};
  }

  std::string load_error(const ConfigSources& s) const {
    auto config = load_config(s);
    EXPECT_FALSE(config);
    if (config) return {};
    EXPECT_EQ(config.error().code, ErrorCode::kConfig);
    return config.error().message;
  }

  testing::TempDir dir_;
  fs::path old_cwd_;
};

TEST_F(ConfigTest, NothingConfiguredGivesDefaultsAndTheMemoryStore) {
  const Config config = load_ok(sources());
  EXPECT_EQ(config.redis_url, std::nullopt);
  EXPECT_EQ(config.key_prefix, "");
  EXPECT_EQ(config.key_version, 1);
  EXPECT_EQ(config.default_timeout, std::chrono::seconds(300));
  EXPECT_EQ(config.memory_max_bytes, 268435456u);
  EXPECT_EQ(config.memory_max_entries, 1'000'000u);
  EXPECT_EQ(config.near_cache_max_bytes, 67108864u);
  EXPECT_EQ(config.redis_pool_size, 50u);
  EXPECT_EQ(config.redis_connect_timeout, std::chrono::milliseconds(1000));
  EXPECT_EQ(config.redis_command_timeout, std::chrono::milliseconds(1000));
  EXPECT_EQ(config.redis_tls_ca_file, "");
  EXPECT_EQ(config.redis_tls_cert_file, "");
  EXPECT_EQ(config.redis_tls_key_file, "");
  EXPECT_TRUE(config.redis_tls_verify);
  EXPECT_EQ(config.config_file, std::nullopt);
  EXPECT_TRUE(config.environment.empty());
}

// Which layers hold AICACHE_KEY_PREFIX / AICACHE_KEY_VERSION, and the winner.
struct PrecedenceCase {
  std::string_view name;
  bool override_layer, environment, dotenv, file;
  std::string_view expected_prefix;
  std::int64_t expected_version;
};

class Precedence : public ConfigTest, public ::testing::WithParamInterface<PrecedenceCase> {};

TEST_P(Precedence, HigherLayerWins) {
  const auto& c = GetParam();
  ConfigSources s = sources();
  if (c.override_layer) {
    s.overrides = {{"AICACHE_KEY_PREFIX", "override"}, {"AICACHE_KEY_VERSION", "4"}};
  }
  if (c.environment) {
    s.environment = Env{{"AICACHE_KEY_PREFIX", "environment"}, {"AICACHE_KEY_VERSION", "3"}};
  }
  if (c.dotenv) write(".env", "AICACHE_KEY_PREFIX=dotenv\nAICACHE_KEY_VERSION=2\n");
  if (c.file) write("aicache.toml", "[store]\nkey_prefix = \"file\"\nkey_version = 1\n");
  if (c.file) s.config_file = dir_.path() / "aicache.toml";

  const Config config = load_ok(s);
  EXPECT_EQ(config.key_prefix, c.expected_prefix);
  EXPECT_EQ(config.key_version, c.expected_version);
}

INSTANTIATE_TEST_SUITE_P(
    Layers, Precedence,
    ::testing::Values(
        PrecedenceCase{"OverrideOverEnvironment", true, true, true, true, "override", 4},
        PrecedenceCase{"EnvironmentOverDotenv", false, true, true, true, "environment", 3},
        PrecedenceCase{"DotenvOverFile", false, false, true, true, "dotenv", 2},
        PrecedenceCase{"FileOverDefaults", false, false, false, true, "file", 1},
        PrecedenceCase{"OverrideOverFile", true, false, false, true, "override", 4},
        PrecedenceCase{"Defaults", false, false, false, false, "", 1}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST_F(ConfigTest, EveryIntegerSettingIsRead) {
  const Config config = load_ok(sources({{"AICACHE_DEFAULT_TIMEOUT", "60"},
                                         {"AICACHE_MEMORY_MAX_BYTES", "1048576"},
                                         {"AICACHE_MEMORY_MAX_ENTRIES", "1000"},
                                         {"AICACHE_NEAR_CACHE_MAX_BYTES", "0"},
                                         {"AICACHE_KEY_VERSION", "0"}}));
  EXPECT_EQ(config.default_timeout, std::chrono::seconds(60));
  EXPECT_EQ(config.memory_max_bytes, 1048576u);
  EXPECT_EQ(config.memory_max_entries, 1000u);
  EXPECT_EQ(config.near_cache_max_bytes, 0u);  // 0: the near cache off
  EXPECT_EQ(config.key_version, 0);
}

TEST_F(ConfigTest, RedisConnectionSettingsFromTheEnvironment) {
  const Config config = load_ok(sources({{"REDIS_URL", "rediss://redis.example:6380/0"},
                                         {"REDIS_POOL_SIZE", "8"},
                                         {"REDIS_CONNECT_TIMEOUT_MS", "250"},
                                         {"REDIS_COMMAND_TIMEOUT_MS", "1500"},
                                         {"REDIS_TLS_CA_FILE", "/etc/redis/ca.crt"},
                                         {"REDIS_TLS_CERT_FILE", "/etc/redis/client.crt"},
                                         {"REDIS_TLS_KEY_FILE", "/etc/redis/client.key"},
                                         {"REDIS_TLS_VERIFY", "off"}}));
  EXPECT_EQ(config.redis_url, "rediss://redis.example:6380/0");
  EXPECT_EQ(config.redis_pool_size, 8u);
  EXPECT_EQ(config.redis_connect_timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(config.redis_command_timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(config.redis_tls_ca_file, "/etc/redis/ca.crt");
  EXPECT_EQ(config.redis_tls_cert_file, "/etc/redis/client.crt");
  EXPECT_EQ(config.redis_tls_key_file, "/etc/redis/client.key");
  EXPECT_FALSE(config.redis_tls_verify);
  EXPECT_EQ(config.environment.at("REDIS_POOL_SIZE"), "8");
}

TEST_F(ConfigTest, RedisConnectionSettingsFromTheFile) {
  write("aicache.toml",
        "[store]\n"
        "url = \"rediss://redis.example:6380/0\"\n"
        "pool_size = 16\n"
        "connect_timeout_ms = 300\n"
        "command_timeout_ms = 2000\n"
        "tls_ca_file = \"ca.pem\"\n"
        "tls_cert_file = \"client.pem\"\n"
        "tls_key_file = \"client.key\"\n"
        "tls_verify = false\n");
  Config config = load_ok(sources());
  EXPECT_EQ(config.redis_pool_size, 16u);
  EXPECT_EQ(config.redis_connect_timeout, std::chrono::milliseconds(300));
  EXPECT_EQ(config.redis_command_timeout, std::chrono::milliseconds(2000));
  EXPECT_EQ(config.redis_tls_ca_file, "ca.pem");
  EXPECT_EQ(config.redis_tls_cert_file, "client.pem");
  EXPECT_EQ(config.redis_tls_key_file, "client.key");
  EXPECT_FALSE(config.redis_tls_verify);
  // The environment wins over the file, as for every setting.
  config = load_ok(sources({{"REDIS_TLS_VERIFY", "true"}, {"REDIS_POOL_SIZE", "2"}}));
  EXPECT_TRUE(config.redis_tls_verify);
  EXPECT_EQ(config.redis_pool_size, 2u);
}

TEST_F(ConfigTest, RedisConnectionSettingsAreChecked) {
  const std::pair<Env, std::string> cases[] = {
      {{{"REDIS_POOL_SIZE", "0"}},
       "environment REDIS_POOL_SIZE: must be between 1 and 10000 (got 0)"},
      {{{"REDIS_POOL_SIZE", "10001"}},
       "environment REDIS_POOL_SIZE: must be between 1 and 10000 (got 10001)"},
      {{{"REDIS_CONNECT_TIMEOUT_MS", "0"}}, "environment REDIS_CONNECT_TIMEOUT_MS: must be > 0"},
      {{{"REDIS_COMMAND_TIMEOUT_MS", "600001"}},
       "environment REDIS_COMMAND_TIMEOUT_MS: must be at most 600000 (got 600001)"},
      {{{"REDIS_COMMAND_TIMEOUT_MS", "1s"}}, "is not an integer"},
      {{{"REDIS_TLS_VERIFY", "maybe"}}, "environment REDIS_TLS_VERIFY: \"maybe\" is not on/off"},
  };
  for (const auto& [env, expected] : cases) {
    SCOPED_TRACE(expected);
    EXPECT_THAT(load_error(sources(env)), HasSubstr(expected));
  }
  write("aicache.toml", "[store]\ntls_verify = \"no\"\n");
  EXPECT_THAT(load_error(sources()), HasSubstr("tls_verify must be true or false"));
  write("aicache.toml", "[store]\npool_size = 0\n");
  EXPECT_THAT(load_error(sources()), HasSubstr("pool_size"));
}

TEST_F(ConfigTest, EveryFileSettingIsRead) {
  write("aicache.toml",
        "[store]\n"
        "url = \"redis://127.0.0.1:6379/3\"\n"
        "key_prefix = \"blbs_erp\"\n"
        "key_version = 7\n"
        "default_timeout = 60\n"
        "memory_max_bytes = 4096\n"
        "memory_max_entries = 10\n"
        "near_cache_max_bytes = 1048576\n"
        "\n[server]\nlisten = \"127.0.0.1:8080\"\n"
        "\n[tokens]\nrefresh_margin = 120\nrefresh_lead = 30\n"
        "\n[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\nsecret = \"s1\"\n"
        "\n[[apps]]\nchannel = \"dingtalk\"\napp_id = \"ding1\"\nsecret = \"s2\"\n");
  const Config config = load_ok(sources());  // found as ./aicache.toml
  EXPECT_EQ(config.redis_url, "redis://127.0.0.1:6379/3");
  EXPECT_EQ(config.key_prefix, "blbs_erp");
  EXPECT_EQ(config.key_version, 7);
  EXPECT_EQ(config.default_timeout, std::chrono::seconds(60));
  EXPECT_EQ(config.memory_max_bytes, 4096u);
  EXPECT_EQ(config.memory_max_entries, 10u);
  EXPECT_EQ(config.near_cache_max_bytes, 1048576u);
  EXPECT_EQ(config.token_refresh_margin, std::chrono::seconds(120));
  EXPECT_EQ(config.token_refresh_lead, std::chrono::seconds(30));
  EXPECT_EQ(config.apps.size(), 2u);
  EXPECT_EQ(config.config_file, fs::path("aicache.toml"));
}

TEST_F(ConfigTest, EnvironmentIsMergedOverDotenv) {
  write(".env", "APP_SECRET=from-dotenv\nAICACHE_LISTEN=127.0.0.1:1\n");
  write("aicache.toml", "[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\n"
                        "secret_env = \"APP_SECRET\"\n");
  const Config config = load_ok(sources({{"APP_SECRET", "from-env"}}));
  EXPECT_EQ(config.environment,
            (Env{{"AICACHE_LISTEN", "127.0.0.1:1"}, {"APP_SECRET", "from-env"}}));
}

TEST_F(ConfigTest, AbsentDotenvIsFine) {
  ConfigSources s = sources();
  s.dotenv = dir_.path() / "no-such.env";
  EXPECT_TRUE(load_config(s));
}

// --- Redis target ------------------------------------------------------------

TEST_F(ConfigTest, RedisHostBecomesUrlWithEncodedPassword) {
  const Config config = load_ok(sources({{"REDIS_HOST", "redis.internal"},
                                         {"REDIS_PORT", "6380"},
                                         {"REDIS_PASSWORD", "p@ss:w/rd%"},
                                         {"REDIS_DB", "2"}}));
  EXPECT_EQ(config.redis_url, "redis://:p%40ss%3Aw%2Frd%25@redis.internal:6380/2");
}

TEST_F(ConfigTest, RedisHostAloneUsesDefaultPortAndDb) {
  EXPECT_EQ(load_ok(sources({{"REDIS_HOST", "redis"}})).redis_url, "redis://redis:6379/0");
}

TEST_F(ConfigTest, RedisIpv6HostIsBracketed) {
  EXPECT_EQ(load_ok(sources({{"REDIS_HOST", "::1"}})).redis_url, "redis://[::1]:6379/0");
}

// --- Redis Cluster -------------------------------------------------------------

TEST_F(ConfigTest, ClusterNodesFromTheEnvironmentWithThePassword) {
  const Config config = load_ok(sources(
      {{"REDIS_CLUSTER_NODES", " 10.0.0.1:7000, 10.0.0.2:7001,"}, {"REDIS_PASSWORD", "p@ss"}}));
  EXPECT_EQ(config.redis_cluster_nodes,
            (std::vector<std::string>{"10.0.0.1:7000", "10.0.0.2:7001"}));
  // The store's URL: the first seed, the password, db 0.
  EXPECT_EQ(config.redis_url, "redis://:p%40ss@10.0.0.1:7000/0");
}

TEST_F(ConfigTest, ClusterNodesFromTheFileKeepTheUrlsUser) {
  write("aicache.toml",
        "[store]\nurl = \"redis://app:pw@10.0.0.9:7000/0\"\n"
        "cluster_nodes = [\"10.0.0.1:7000\", \"[::1]:7001\"]\n");
  const Config config = load_ok(sources());
  EXPECT_EQ(config.redis_cluster_nodes, (std::vector<std::string>{"10.0.0.1:7000", "[::1]:7001"}));
  EXPECT_EQ(config.redis_url, "redis://app:pw@10.0.0.9:7000/0");
}

TEST_F(ConfigTest, ReadFromReplicasNeedsACluster) {
  EXPECT_FALSE(load_ok(sources({{"REDIS_CLUSTER_NODES", "h:1"}})).redis_read_from_replicas);
  EXPECT_TRUE(load_ok(sources({{"REDIS_CLUSTER_NODES", "h:1"}, {"REDIS_READ_FROM_REPLICAS", "1"}}))
                  .redis_read_from_replicas);
  write("aicache.toml", "[store]\ncluster_nodes = [\"h:1\"]\nread_from_replicas = true\n");
  EXPECT_TRUE(load_ok(sources()).redis_read_from_replicas);
  write("aicache.toml", "[store]\nread_from_replicas = \"yes please\"\n");
  EXPECT_THAT(load_error(sources({{"REDIS_CLUSTER_NODES", "h:1"}})), HasSubstr("read_from_replicas"));
  write("aicache.toml", "");
  // Off without a Cluster is harmless; on is refused, naming the setting.
  EXPECT_FALSE(load_ok(sources({{"REDIS_READ_FROM_REPLICAS", "0"}})).redis_read_from_replicas);
  EXPECT_THAT(load_error(sources({{"REDIS_READ_FROM_REPLICAS", "1"}})),
              HasSubstr("REDIS_READ_FROM_REPLICAS: applies to a Redis Cluster only"));
}

TEST_F(ConfigTest, ClusterNodesAreCheckedAndNeedDbZero) {
  EXPECT_THAT(load_error(sources({{"REDIS_CLUSTER_NODES", "10.0.0.1"}})),
              HasSubstr("environment REDIS_CLUSTER_NODES: \"10.0.0.1\" is not a comma-separated "
                        "list of host:port"));
  // Seeds go through the sentinels' parser (parse_redis_host_port), whose
  // reason follows; a seed's port is required.
  EXPECT_THAT(load_error(sources({{"REDIS_CLUSTER_NODES", "10.0.0.1"}})), HasSubstr(": no port"));
  EXPECT_THAT(load_error(sources({{"REDIS_CLUSTER_NODES", "h:70000"}})), HasSubstr("host:port"));
  EXPECT_THAT(load_error(sources({{"REDIS_CLUSTER_NODES", "h:70000"}})),
              HasSubstr("invalid port '70000'"));
  EXPECT_THAT(load_error(sources({{"REDIS_CLUSTER_NODES", "a b:1"}})), HasSubstr("host:port"));
  EXPECT_THAT(load_error(sources({{"REDIS_CLUSTER_NODES", "::1:7000"}})),
              HasSubstr("IPv6 address in brackets"));
  EXPECT_THAT(load_error(sources({{"REDIS_CLUSTER_NODES", "h:1"}, {"REDIS_URL", "redis://h:1/2"}})),
              HasSubstr("needs database 0"));
  write("aicache.toml", "[store]\ncluster_nodes = [\"h:1\", 2]\n");
  EXPECT_THAT(load_error(sources()), HasSubstr("cluster_nodes must be an array of strings"));
}

TEST_F(ConfigTest, RedisHostCompanionsComeFromAnyLayer) {
  // Django read them all from one merged environment.
  write(".env", "REDIS_HOST=redis\nREDIS_PASSWORD=from-dotenv\n");
  const Config config = load_ok(sources({{"REDIS_PASSWORD", "from-env"}, {"REDIS_DB", "1"}}));
  EXPECT_EQ(config.redis_url, "redis://:from-env@redis:6379/1");
}

struct TargetCase {
  std::string_view name;
  Env overrides;
  Env environment;
  std::string_view dotenv;
  std::string_view file;
  std::optional<std::string> expected;
};

class RedisTarget : public ConfigTest, public ::testing::WithParamInterface<TargetCase> {};

TEST_P(RedisTarget, HighestLayerMentioningRedisDecides) {
  const auto& c = GetParam();
  ConfigSources s = sources(c.environment);
  s.overrides = c.overrides;
  if (!c.dotenv.empty()) write(".env", c.dotenv);
  if (!c.file.empty()) write("aicache.toml", c.file);
  EXPECT_EQ(load_ok(s).redis_url, c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Layers, RedisTarget,
    ::testing::Values(
        TargetCase{"UrlOverHostInOneLayer",
                   {},
                   {{"REDIS_URL", "redis://u:6379/0"}, {"REDIS_HOST", "h"}},
                   "",
                   "",
                   "redis://u:6379/0"},
        TargetCase{"HigherHostOverLowerUrl",
                   {},
                   {{"REDIS_HOST", "h"}},
                   "REDIS_URL=redis://dotenv:6379/0\n",
                   "",
                   "redis://h:6379/0"},
        TargetCase{"DotenvHostOverFileUrl",
                   {},
                   {},
                   "REDIS_HOST=h\n",
                   "[store]\nurl = \"redis://file:6379/0\"\n",
                   "redis://h:6379/0"},
        TargetCase{"OverrideUrlOverEnvironmentHost",
                   {{"REDIS_URL", "redis://cli:1/0"}},
                   {{"REDIS_HOST", "h"}},
                   "",
                   "",
                   "redis://cli:1/0"},
        TargetCase{"EmptyUrlCountsAsNotSet",
                   {},
                   {{"REDIS_URL", ""}},
                   "REDIS_HOST=h\n",
                   "",
                   "redis://h:6379/0"},
        TargetCase{"EmptyHostCountsAsNotSet", {}, {{"REDIS_HOST", ""}}, "", "", std::nullopt},
        TargetCase{"EmptyOverrideFallsThrough",
                   {{"REDIS_URL", ""}},
                   {{"REDIS_URL", "redis://env:6379/0"}},
                   "",
                   "",
                   "redis://env:6379/0"},
        TargetCase{"FileUrl",
                   {},
                   {},
                   "",
                   "[store]\nurl = \"redis://file:6379/0\"\n",
                   "redis://file:6379/0"},
        TargetCase{"PortWithoutHostIsMemory", {}, {{"REDIS_PORT", "6380"}}, "", "", std::nullopt}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

// --- Bad values from the environment and .env --------------------------------

struct BadValueCase {
  std::string_view name;
  Env environment;
  std::string_view dotenv;
  std::string_view expected;  // the whole message, or its start for .env
};

class BadValue : public ConfigTest, public ::testing::WithParamInterface<BadValueCase> {};

TEST_P(BadValue, IsAnErrorNamingTheSource) {
  const auto& c = GetParam();
  if (!c.dotenv.empty()) write(".env", c.dotenv);
  EXPECT_EQ(load_error(sources(c.environment)), c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Values, BadValue,
    ::testing::Values(
        BadValueCase{"NotAnInteger",
                     {{"AICACHE_KEY_VERSION", "abc"}},
                     "",
                     "environment AICACHE_KEY_VERSION: \"abc\" is not an integer"},
        BadValueCase{"TrailingSpace",
                     {{"AICACHE_KEY_VERSION", "1 "}},
                     "",
                     "environment AICACHE_KEY_VERSION: \"1 \" is not an integer"},
        BadValueCase{"PlusSign",
                     {{"AICACHE_DEFAULT_TIMEOUT", "+5"}},
                     "",
                     "environment AICACHE_DEFAULT_TIMEOUT: \"+5\" is not an integer"},
        BadValueCase{"EmptyNumber",
                     {{"AICACHE_MEMORY_MAX_ENTRIES", ""}},
                     "",
                     "environment AICACHE_MEMORY_MAX_ENTRIES: \"\" is not an integer"},
        BadValueCase{"Overflow",
                     {{"AICACHE_MEMORY_MAX_BYTES", "99999999999999999999"}},
                     "",
                     "environment AICACHE_MEMORY_MAX_BYTES: \"99999999999999999999\" is out of "
                     "range"},
        BadValueCase{"NegativeVersion",
                     {{"AICACHE_KEY_VERSION", "-1"}},
                     "",
                     "environment AICACHE_KEY_VERSION: must be >= 0 (got -1)"},
        BadValueCase{"ZeroTimeout",
                     {{"AICACHE_DEFAULT_TIMEOUT", "0"}},
                     "",
                     "environment AICACHE_DEFAULT_TIMEOUT: must be > 0 (got 0)"},
        BadValueCase{"ZeroMaxBytes",
                     {{"AICACHE_MEMORY_MAX_BYTES", "0"}},
                     "",
                     "environment AICACHE_MEMORY_MAX_BYTES: must be > 0 (got 0)"},
        BadValueCase{"ZeroMaxEntries",
                     {{"AICACHE_MEMORY_MAX_ENTRIES", "0"}},
                     "",
                     "environment AICACHE_MEMORY_MAX_ENTRIES: must be > 0 (got 0)"},
        BadValueCase{"PortZero",
                     {{"REDIS_HOST", "h"}, {"REDIS_PORT", "0"}},
                     "",
                     "environment REDIS_PORT: must be between 1 and 65535 (got 0)"},
        BadValueCase{"PortTooLarge",
                     {{"REDIS_HOST", "h"}, {"REDIS_PORT", "65536"}},
                     "",
                     "environment REDIS_PORT: must be between 1 and 65535 (got 65536)"},
        BadValueCase{"PortNotANumber",
                     {{"REDIS_HOST", "h"}, {"REDIS_PORT", "redis"}},
                     "",
                     "environment REDIS_PORT: \"redis\" is not an integer"},
        BadValueCase{"NegativeDb",
                     {{"REDIS_HOST", "h"}, {"REDIS_DB", "-1"}},
                     "",
                     "environment REDIS_DB: must be >= 0 (got -1)"},
        BadValueCase{"HostWithSlash",
                     {{"REDIS_HOST", "h/x"}},
                     "",
                     "environment REDIS_HOST: is not a valid host name"},
        BadValueCase{"DotenvNamesItsLine",
                     {},
                     "# c\nAICACHE_KEY_VERSION=1\nAICACHE_DEFAULT_TIMEOUT=x\n",
                     ".env:3: AICACHE_DEFAULT_TIMEOUT: \"x\" is not an integer"},
        BadValueCase{"DotenvPort",
                     {{"REDIS_HOST", "h"}},
                     "REDIS_PORT=70000\n",
                     ".env:1: REDIS_PORT: must be between 1 and 65535 (got 70000)"},
        BadValueCase{"MalformedDotenv", {}, "A=1\nB\n", ".env:2: expected KEY=VALUE"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST_F(ConfigTest, OverrideErrorsNameTheOverride) {
  ConfigSources s = sources();
  s.overrides = {{"AICACHE_KEY_VERSION", "x"}};
  EXPECT_EQ(load_error(s), "override AICACHE_KEY_VERSION: \"x\" is not an integer");
}

TEST_F(ConfigTest, DotenvPathAppearsInErrors) {
  ConfigSources s = sources();
  s.dotenv = dir_.write("prod.env", "ok=1\n'oops\n");
  EXPECT_EQ(load_error(s), (dir_.path() / "prod.env").string() + ":2: expected KEY=VALUE");
}

// --- The config file ------------------------------------------------------------

struct BadFileCase {
  std::string_view name;
  std::string_view text;
  std::string_view location;  // "aicache.toml:LINE:COLUMN"
  std::string_view what;
};

class BadFile : public ConfigTest, public ::testing::WithParamInterface<BadFileCase> {};

TEST_P(BadFile, IsAnErrorWithFileLineAndColumn) {
  write("aicache.toml", GetParam().text);
  const std::string message = load_error(sources());
  EXPECT_THAT(message, StartsWith(std::string(GetParam().location) + ": "));
  EXPECT_THAT(message, HasSubstr(GetParam().what));
}

INSTANTIATE_TEST_SUITE_P(
    Toml, BadFile,
    ::testing::Values(
        BadFileCase{"UnknownStoreKey", "[store]\nurll = \"redis://h\"\n", "aicache.toml:2:1",
                    "unknown key 'urll' in [store]"},
        BadFileCase{"UnknownTable", "# c\n[stor]\nurl = \"x\"\n", "aicache.toml:2:2",
                    "unknown table [stor]"},
        BadFileCase{"UnknownTopLevelKey", "\nfoo = 1\n", "aicache.toml:2:1", "unknown key 'foo'"},
        BadFileCase{"VersionNotInteger", "[store]\nkey_version = \"1\"\n", "aicache.toml:2:15",
                    "key_version must be an integer"},
        BadFileCase{"UrlNotString", "[store]\nurl = 5\n", "aicache.toml:2:7",
                    "url must be a string"},
        BadFileCase{"PrefixNotString", "[store]\nkey_prefix = true\n", "aicache.toml:2:14",
                    "key_prefix must be a string"},
        BadFileCase{"NegativeVersion", "[store]\nkey_version = -1\n", "aicache.toml:2:15",
                    "key_version must be >= 0 (got -1)"},
        BadFileCase{"ZeroTimeout", "[store]\n\ndefault_timeout = 0\n", "aicache.toml:3:19",
                    "default_timeout must be > 0 (got 0)"},
        BadFileCase{"ZeroMaxBytes", "[store]\nmemory_max_bytes = 0\n", "aicache.toml:2:20",
                    "memory_max_bytes must be > 0"},
        BadFileCase{"ZeroMaxEntries", "[store]\nmemory_max_entries = 0\n", "aicache.toml:2:22",
                    "memory_max_entries must be > 0"},
        BadFileCase{"TimeoutIsFloat", "[store]\ndefault_timeout = 1.5\n", "aicache.toml:2:19",
                    "default_timeout must be an integer"},
        BadFileCase{"StoreNotTable", "store = 1\n", "aicache.toml:1:9", "store must be a table"},
        BadFileCase{"AppsNotArrayOfTables", "apps = 1\n", "aicache.toml:1:8",
                    "apps must be an array of tables"},
        BadFileCase{"SyntaxError", "[store]\nurl = \n", "aicache.toml:2:7", "expected value"},
        BadFileCase{"UnterminatedTable", "\n\n[store\n", "aicache.toml:3:7", "expected ']'"},
        BadFileCase{"HugeTimeout", "[store]\ndefault_timeout = 9223372036854775807\n",
                    "aicache.toml:2:19", "default_timeout must be at most 3153600000"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST_F(ConfigTest, ConfigFileFromAicacheConfig) {
  const auto file = dir_.write("custom.toml", "[store]\nkey_prefix = \"custom\"\n");
  write("aicache.toml", "[store]\nkey_prefix = \"default\"\n");
  const Config config = load_ok(sources({{"AICACHE_CONFIG", file.string()}}));
  EXPECT_EQ(config.key_prefix, "custom");
  EXPECT_EQ(config.config_file, file);
}

TEST_F(ConfigTest, AicacheConfigFromDotenv) {
  dir_.write("custom.toml", "[store]\nkey_prefix = \"custom\"\n");
  write(".env", "AICACHE_CONFIG=custom.toml\n");
  EXPECT_EQ(load_ok(sources()).key_prefix, "custom");
}

TEST_F(ConfigTest, ExplicitConfigFileOverAicacheConfig) {
  const auto chosen = dir_.write("chosen.toml", "[store]\nkey_prefix = \"chosen\"\n");
  const auto other = dir_.write("other.toml", "[store]\nkey_prefix = \"other\"\n");
  ConfigSources s = sources({{"AICACHE_CONFIG", other.string()}});
  s.config_file = chosen;
  EXPECT_EQ(load_ok(s).key_prefix, "chosen");
}

TEST_F(ConfigTest, MissingExplicitConfigFileIsAnError) {
  ConfigSources s = sources();
  s.config_file = "missing.toml";
  EXPECT_EQ(load_error(s), "config file missing.toml: no such file");
}

TEST_F(ConfigTest, MissingAicacheConfigFileIsAnError) {
  EXPECT_THAT(load_error(sources({{"AICACHE_CONFIG", "/nonexistent/aicache.toml"}})),
              HasSubstr("/nonexistent/aicache.toml"));
}

// Found by fuzz_config_toml: names of unknown keys and tables, and toml++'s
// syntax errors, were quoted with their raw bytes; a TOML escape can put any
// control character there, and errors end up in logs and terminals.
TEST_F(ConfigTest, FileErrorsShowNoControlCharacters) {
  const struct {
    std::string_view text;
    std::string_view what;
  } cases[] = {
      {"[store]\n\"url\\u001b[2J\" = \"x\"\n", "unknown key 'url?[2J' in [store]"},
      {"\"quoted key\\n\" = 1\n", "unknown key 'quoted key?'"},
      {"[\"t\\u0007\"]\n", "unknown table [t?]"},
      {"[tokens]\nref = t\x16\x16\n", "saw 't?'"},
  };
  for (const auto& c : cases) {
    write("aicache.toml", c.text);
    const std::string message = load_error(sources());
    EXPECT_THAT(message, HasSubstr(c.what)) << c.text;
    for (char ch : message) {
      EXPECT_FALSE(static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) << message;
    }
  }
}

TEST_F(ConfigTest, ConfigFileErrorsUseTheNameGiven) {
  ConfigSources s = sources();
  s.config_file = dir_.write("x.toml", "[store]\nbogus = 1\n");
  EXPECT_THAT(load_error(s), StartsWith(s.config_file->string() + ":2:1: unknown key 'bogus'"));
}

// load_config_with_text (the fuzz target's way in) is load_config with the
// file's text given: same values, same errors, the name it is given.
TEST_F(ConfigTest, ConfigTextGivesWhatTheSameFileGives) {
  const Env environment = {{"WX_SECRET", "wx-secret"}};
  for (std::string_view text : {
           std::string_view("[store]\nkey_prefix = \"p\"\nkey_version = 7\n[tokens]\n"
                            "refresh_lead = 5\n[[apps]]\nchannel = \"wechat\"\n"
                            "app_id = \"wx1\"\nsecret_env = \"WX_SECRET\"\n"),
           std::string_view("[store]\nbogus = 1\n"),
           std::string_view("[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\n"
                            "secret_env = \"UNSET\"\n"),
           std::string_view("not toml ="),
       }) {
    ConfigSources s = sources(environment);
    s.config_file = dir_.write("x.toml", text);
    auto from_file = load_config(s);
    auto from_text = config_internal::load_config_with_text(
        {s.config_file->string(), std::string(text)}, sources(environment));
    ASSERT_EQ(from_file.has_value(), from_text.has_value()) << text;
    if (!from_file) {
      EXPECT_EQ(from_file.error().message, from_text.error().message);
      continue;
    }
    EXPECT_EQ(from_text->config_file, s.config_file);
    EXPECT_EQ(from_text->key_prefix, from_file->key_prefix);
    EXPECT_EQ(from_text->key_version, from_file->key_version);
    EXPECT_EQ(from_text->token_refresh_lead, from_file->token_refresh_lead);
    ASSERT_EQ(from_text->apps.size(), from_file->apps.size());
    for (std::size_t i = 0; i < from_file->apps.size(); ++i) {
      EXPECT_EQ(from_text->apps[i].app_id, from_file->apps[i].app_id);
      EXPECT_EQ(from_text->apps[i].secret, from_file->apps[i].secret);
    }
  }
}

TEST_F(ConfigTest, ConfigTextIgnoresTheFileTheSourcesName) {
  write("aicache.toml", "[store]\nkey_prefix = \"from-disk\"\n");
  ConfigSources s = sources({{"AICACHE_CONFIG", "aicache.toml"}});
  s.config_file = "aicache.toml";
  auto config =
      config_internal::load_config_with_text({"given.toml", "[store]\nkey_version = 2\n"}, s);
  ASSERT_TRUE(config) << config.error().to_string();
  EXPECT_EQ(config->key_prefix, "");
  EXPECT_EQ(config->key_version, 2);
  EXPECT_EQ(config->config_file, fs::path("given.toml"));
}

// --- Secrets -------------------------------------------------------------------

TEST_F(ConfigTest, ErrorsNeverContainSecrets) {
  const std::string secret = "hunter2-Secret";
  struct Case {
    std::string_view name;
    Env environment;
    std::string dotenv;
    std::string file;
  };
  const Case cases[] = {
      {"BadPortNextToPassword",
       {{"REDIS_HOST", "h"}, {"REDIS_PASSWORD", secret}, {"REDIS_PORT", "x"}},
       "",
       ""},
      {"MalformedDotenvPasswordLine", {}, "REDIS_PASSWORD='" + secret + "\n", ""},
      {"DotenvSecretWithoutEquals", {}, secret + "\n", ""},
      {"UnterminatedUrlInFile", {}, "", "[store]\nurl = \"redis://:" + secret + "@h\n"},
      {"UrlWithBadTypeNeighbour",
       {},
       "",
       "[store]\nurl = \"redis://:" + secret + "@h\"\nkey_version = \"x\"\n"},
      {"UnterminatedAppSecret", {}, "", "[[apps]]\nchannel = \"wechat\"\nsecret = \"" + secret + "\n"},
      {"BareAppSecret", {}, "", "[[apps]]\nchannel = \"wechat\"\nsecret = " + secret + "\n"},
      {"AppSecretWithBadNeighbour",
       {},
       "",
       "[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\nsecret = \"" + secret +
           "\"\napi = \"x\"\n"},
      // The secret pasted into secret_env by mistake: not a name, or a name
      // (WeChat secrets are lower-case hex) of no variable.
      {"SecretPastedIntoSecretEnv",
       {},
       "",
       "[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\nsecret_env = \"" + secret + "\"\n"},
      {"HexSecretPastedIntoSecretEnv",
       {},
       "",
       "[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\nsecret_env = \"hunter2abcdef\"\n"},
      {"SecretEnvOfAnInvalidApp",
       {{"WX_SECRET", secret}},
       "",
       "[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\nsecret_env = \"WX_SECRET\"\n"
       "agent_id = \"1\"\n"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::error_code ignored;
    fs::remove(dir_.path() / ".env", ignored);
    fs::remove(dir_.path() / "aicache.toml", ignored);
    if (!c.dotenv.empty()) write(".env", c.dotenv);
    if (!c.file.empty()) write("aicache.toml", c.file);
    auto config = load_config(sources(c.environment));
    ASSERT_FALSE(config);
    EXPECT_THAT(config.error().message, Not(HasSubstr(secret)));
    EXPECT_THAT(config.error().message, Not(HasSubstr("hunter2")));
  }
}

// --- Token apps ([[apps]], [tokens]) --------------------------------------------

constexpr std::string_view kSecret = "S3cr3t-Value-xyz";

TEST_F(ConfigTest, AppsOfEveryChannelAreRead) {
  write(".env", "DING_SECRET=from-dotenv\nWX2_SECRET=dotenv-loses\n");
  write("aicache.toml",
        "[[apps]]\n"
        "channel = \"wechat\"\n"
        "app_id = \"wx1\"\n"
        "secret = \"inline-secret\"\n"
        "\n[[apps]]\n"
        "channel = \"wechat\"\n"
        "app_id = \"wx2\"\n"
        "secret_env = \"WX2_SECRET\"\n"
        "api = \"plain\"\n"
        "base_url = \"http://127.0.0.1:9/\"\n"
        "\n[[apps]]\n"
        "channel = \"wecom\"\n"
        "app_id = \"ww-corp\"\n"
        "agent_id = \"1000002\"\n"
        "secret_env = \"WECOM_SECRET\"\n"
        "\n[[apps]]\n"
        "channel = \"wecom\"\n"
        "app_id = \"ww-corp\"\n"
        "agent_id = 1000003\n"  // a TOML integer is fine too
        "secret = \"other-agent\"\n"
        "\n[[apps]]\n"
        "channel = \"dingtalk\"\n"
        "app_id = \"dingabc\"\n"
        "secret_env = \"DING_SECRET\"\n"
        "api = \"legacy\"\n"
        "\n[[apps]]\n"
        "channel = \"dingtalk\"\n"
        "app_id = \"wx1\"\n"  // the same app id on another channel is another app
        "secret = \"d2\"\n"
        "api = \"oauth2\"\n"
        "base_url = \"https://proxy.internal/dingtalk\"\n");
  const Config config =
      load_ok(sources({{"WX2_SECRET", "from-env"}, {"WECOM_SECRET", "wecom-secret"}}));
  ASSERT_EQ(config.apps.size(), 6u);

  struct Expected {
    Channel channel;
    std::string_view app_id, agent_id, secret, api, base_url, app_key;
  };
  const Expected expected[] = {
      {Channel::kWeChat, "wx1", "", "inline-secret", "", "", "wx1"},
      {Channel::kWeChat, "wx2", "", "from-env", "plain", "http://127.0.0.1:9", "wx2"},
      {Channel::kWeCom, "ww-corp", "1000002", "wecom-secret", "", "", "ww-corp.1000002"},
      {Channel::kWeCom, "ww-corp", "1000003", "other-agent", "", "", "ww-corp.1000003"},
      {Channel::kDingTalk, "dingabc", "", "from-dotenv", "legacy", "", "dingabc"},
      {Channel::kDingTalk, "wx1", "", "d2", "oauth2", "https://proxy.internal/dingtalk", "wx1"},
  };
  for (std::size_t i = 0; i < config.apps.size(); ++i) {
    SCOPED_TRACE(i);
    const AppCredentials& app = config.apps[i];
    EXPECT_EQ(app.channel, expected[i].channel);
    EXPECT_EQ(app.app_id, expected[i].app_id);
    EXPECT_EQ(app.agent_id, expected[i].agent_id);
    EXPECT_EQ(app.secret, expected[i].secret);
    EXPECT_EQ(app.api, expected[i].api);
    EXPECT_EQ(app.base_url, expected[i].base_url);
    EXPECT_EQ(TokenManager::app_key(app), expected[i].app_key);
  }
  // No [tokens]: the defaults.
  EXPECT_EQ(config.token_refresh_margin, std::chrono::seconds(300));
  EXPECT_EQ(config.token_refresh_lead, std::chrono::seconds(60));
  EXPECT_EQ(config.token_min_refresh_interval, std::chrono::seconds(60));
  EXPECT_EQ(config.token_forced_refreshes_per_day, 10);
}

TEST_F(ConfigTest, NoAppsIsFine) {
  write("aicache.toml", "[store]\nkey_prefix = \"p\"\n");
  EXPECT_TRUE(load_ok(sources()).apps.empty());
}

TEST_F(ConfigTest, TokenOptionsCarryTheTokensTable) {
  write("aicache.toml",
        "[tokens]\nrefresh_margin = 0\nrefresh_lead = 3600\nmin_refresh_interval = 300\n"
        "forced_refreshes_per_day = 0\n");
  const Config config = load_ok(sources());
  const TokenManagerOptions options = token_options(config);
  EXPECT_EQ(options.refresh_margin, std::chrono::seconds(0));
  EXPECT_EQ(options.refresh_lead, std::chrono::seconds(3600));
  EXPECT_EQ(options.min_refresh_interval, std::chrono::seconds(300));
  EXPECT_EQ(options.forced_refreshes_per_day, 0);
  EXPECT_EQ(options.lease_ttl, TokenManagerOptions{}.lease_ttl);  // the rest: defaults
}

struct BadAppCase {
  std::string_view name;
  std::string text;  // the whole aicache.toml
  Env environment;
  std::string_view location;  // "aicache.toml:LINE:COLUMN"
  std::string_view what;
};

class BadApp : public ConfigTest, public ::testing::WithParamInterface<BadAppCase> {};

TEST_P(BadApp, IsAnErrorWithFileLineAndColumnAndNoSecret) {
  const auto& c = GetParam();
  write("aicache.toml", c.text);
  const std::string message = load_error(sources(c.environment));
  EXPECT_THAT(message, StartsWith(std::string(c.location) + ": "));
  EXPECT_THAT(message, HasSubstr(c.what));
  EXPECT_THAT(message, Not(HasSubstr(kSecret)));
  EXPECT_THAT(message, Not(HasSubstr("S3cr3t")));
}

// A valid [[apps]] entry's lines around `extra` (which starts on line 4).
std::string wechat_app(std::string_view extra, std::string_view secret_line = {}) {
  std::string text = "[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\n";
  text += extra;
  text += secret_line.empty() ? "secret = \"" + std::string(kSecret) + "\"\n"
                              : std::string(secret_line);
  return text;
}
const std::string kSecretLine = "secret = \"" + std::string(kSecret) + "\"\n";

INSTANTIATE_TEST_SUITE_P(
    Toml, BadApp,
    ::testing::Values(
        BadAppCase{"UnknownKey", wechat_app("secrett = \"x\"\n"), {}, "aicache.toml:4:1",
                   "unknown key \"secrett\" in [[apps]]"},
        BadAppCase{"ChannelMissing",
                   "[[apps]]\napp_id = \"wx1\"\n" + kSecretLine,
                   {},
                   "aicache.toml:1:1",
                   "needs a channel"},
        BadAppCase{"ChannelUnknown",
                   "[[apps]]\nchannel = \"weixin\"\napp_id = \"wx1\"\n" + kSecretLine,
                   {},
                   "aicache.toml:2:11",
                   "channel \"weixin\" is unknown (wechat, wecom or dingtalk)"},
        BadAppCase{"ChannelNotString",
                   "[[apps]]\nchannel = 1\napp_id = \"wx1\"\n" + kSecretLine,
                   {},
                   "aicache.toml:2:11",
                   "channel must be a string"},
        BadAppCase{"AppIdMissing",
                   "\n[[apps]]\nchannel = \"wechat\"\n" + kSecretLine,
                   {},
                   "aicache.toml:2:1",
                   "needs an app_id"},
        BadAppCase{"AppIdNotString",
                   "[[apps]]\nchannel = \"wechat\"\napp_id = 12\n" + kSecretLine,
                   {},
                   "aicache.toml:3:10",
                   "app_id must be a string"},
        BadAppCase{"AppIdWithColon",
                   "[[apps]]\nchannel = \"wechat\"\napp_id = \"wx:1\"\n" + kSecretLine,
                   {},
                   "aicache.toml:3:10",
                   "app_id contains ':'"},
        BadAppCase{"AppIdEmpty",
                   "[[apps]]\nchannel = \"wechat\"\napp_id = \"\"\n" + kSecretLine,
                   {},
                   "aicache.toml:3:10",
                   "app_id"},
        BadAppCase{"WeComWithoutAgent",
                   "[[apps]]\nchannel = \"wecom\"\napp_id = \"corp\"\n" + kSecretLine,
                   {},
                   "aicache.toml:1:1",
                   "wecom app needs an agent_id"},
        BadAppCase{"AgentIdNotDigits",
                   "[[apps]]\nchannel = \"wecom\"\napp_id = \"corp\"\nagent_id = \"10a\"\n" +
                       kSecretLine,
                   {},
                   "aicache.toml:4:12",
                   "agent_id \"10a\" must be digits"},
        BadAppCase{"AgentIdNegative",
                   "[[apps]]\nchannel = \"wecom\"\napp_id = \"corp\"\nagent_id = -5\n" +
                       kSecretLine,
                   {},
                   "aicache.toml:4:12",
                   "agent_id must not be negative"},
        BadAppCase{"AgentIdFloat",
                   "[[apps]]\nchannel = \"wecom\"\napp_id = \"corp\"\nagent_id = 1.5\n" +
                       kSecretLine,
                   {},
                   "aicache.toml:4:12",
                   "agent_id must be a string of digits or an integer"},
        BadAppCase{"AgentIdOnWeChat", wechat_app("agent_id = \"1\"\n"), {}, "aicache.toml:4:12",
                   "agent_id is for wecom apps only"},
        BadAppCase{"SecretAndSecretEnv", wechat_app("secret_env = \"WX_SECRET\"\n"),
                   {{"WX_SECRET", std::string(kSecret)}}, "aicache.toml:4:14",
                   "secret and secret_env are exclusive"},
        BadAppCase{"NoSecret", wechat_app("", "api = \"stable\"\n"), {}, "aicache.toml:1:1",
                   "needs a secret or a secret_env"},
        BadAppCase{"EmptySecret", wechat_app("", "secret = \"\"\n"), {}, "aicache.toml:4:10",
                   "secret is empty"},
        BadAppCase{"SecretNotString", wechat_app("", "secret = 123456\n"), {}, "aicache.toml:4:10",
                   "secret must be a string"},
        BadAppCase{"SecretEnvNotAName", wechat_app("", "secret_env = \"WX-SECRET\"\n"),
                   {}, "aicache.toml:4:14", "secret_env is not a variable name"},
        BadAppCase{"SecretEnvLowerCaseUnset",
                   wechat_app("", "secret_env = \"" + std::string(kSecret.substr(0, 6)) +
                                      "_lower\"\n"),
                   {}, "aicache.toml:4:14",
                   "secret_env: the variable is not set (environment or .env; a name with "
                   "lower-case letters is not shown"},
        BadAppCase{"SecretEnvUnset", wechat_app("", "secret_env = \"WX_SECRET\"\n"),
                   {{"OTHER", std::string(kSecret)}}, "aicache.toml:4:14",
                   "secret_env: WX_SECRET is not set (environment or .env)"},
        BadAppCase{"SecretEnvEmpty", wechat_app("", "secret_env = \"WX_SECRET\"\n"),
                   {{"WX_SECRET", ""}}, "aicache.toml:4:14", "secret_env: WX_SECRET is empty"},
        BadAppCase{"ApiUnknownOnWeChat", wechat_app("api = \"oauth2\"\n"), {}, "aicache.toml:4:7",
                   "api \"oauth2\" is unknown (wechat: stable or plain)"},
        BadAppCase{"ApiUnknownOnDingTalk",
                   "[[apps]]\nchannel = \"dingtalk\"\napp_id = \"d1\"\napi = \"stable\"\n" +
                       kSecretLine,
                   {},
                   "aicache.toml:4:7",
                   "api \"stable\" is unknown (dingtalk: oauth2 or legacy)"},
        BadAppCase{"ApiOnWeCom",
                   "[[apps]]\nchannel = \"wecom\"\napp_id = \"c\"\nagent_id = \"1\"\napi = \"x\"\n" +
                       kSecretLine,
                   {},
                   "aicache.toml:5:7",
                   "wecom has one token api"},
        BadAppCase{"ApiNotString", wechat_app("api = true\n"), {}, "aicache.toml:4:7",
                   "api must be a string"},
        BadAppCase{"BaseUrlNotHttp", wechat_app("base_url = \"ftp://host\"\n"), {},
                   "aicache.toml:4:12", "base_url must be http://"},
        BadAppCase{"BaseUrlWithoutHost", wechat_app("base_url = \"http://\"\n"), {},
                   "aicache.toml:4:12", "base_url must be http://"},
        BadAppCase{"BaseUrlWithQuery", wechat_app("base_url = \"http://h/x?secret=1\"\n"), {},
                   "aicache.toml:4:12", "base_url must not hold a query"},
        BadAppCase{"Duplicate", wechat_app("") + "\n" + wechat_app("api = \"plain\"\n"), {},
                   "aicache.toml:6:1", "duplicate app wechat/wx1 (first at aicache.toml:1:1)"},
        BadAppCase{"DuplicateWeComAgent",
                   "[[apps]]\nchannel = \"wecom\"\napp_id = \"c\"\nagent_id = 7\n" + kSecretLine +
                       "[[apps]]\nchannel = \"wecom\"\napp_id = \"c\"\nagent_id = \"7\"\n" +
                       kSecretLine,
                   {},
                   "aicache.toml:6:1",
                   "duplicate app wecom/c.7"},
        BadAppCase{"AppsNotTables", "apps = [1, 2]\n", {}, "aicache.toml:1:8",
                   "apps must be an array of tables"},
        BadAppCase{"AppsTable", "[apps]\nchannel = \"wechat\"\n", {}, "aicache.toml:1:1",
                   "apps must be an array of tables"},
        BadAppCase{"SecondAppIsNamed",
                   wechat_app("") + "\n[[apps]]\nchannel = \"dingtalk\"\nsecret = \"" +
                       std::string(kSecret) + "\"\n",
                   {},
                   "aicache.toml:6:1",
                   "needs an app_id"},
        BadAppCase{"TokensUnknownKey", "[tokens]\nmargin = 5\n", {}, "aicache.toml:2:1",
                   "unknown key \"margin\" in [tokens]"},
        BadAppCase{"TokensNotInteger", "[tokens]\nrefresh_margin = \"300\"\n", {},
                   "aicache.toml:2:18", "refresh_margin must be an integer"},
        BadAppCase{"TokensNegative", "[tokens]\nrefresh_lead = -1\n", {}, "aicache.toml:2:16",
                   "refresh_lead must be between 0 and 3600 (got -1)"},
        BadAppCase{"TokensTooLarge", "[tokens]\nrefresh_margin = 7200\n", {},
                   "aicache.toml:2:18", "refresh_margin must be between 0 and 3600 (got 7200)"},
        BadAppCase{"TokensIntervalTooLarge", "[tokens]\nmin_refresh_interval = 86401\n", {},
                   "aicache.toml:2:24",
                   "min_refresh_interval must be at most 86400 (got 86401)"},
        BadAppCase{"TokensForcedOverThePlatforms", "[tokens]\nforced_refreshes_per_day = 21\n",
                   {}, "aicache.toml:2:28",
                   "forced_refreshes_per_day must be between 0 and 20 (got 21)"},
        BadAppCase{"TokensNotTable", "tokens = 5\n", {}, "aicache.toml:1:10",
                   "tokens must be a table"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST_F(ConfigTest, SecretEnvFromTheEnvironmentWinsOverDotenv) {
  write(".env", "WX_SECRET=dotenv\n");
  write("aicache.toml", wechat_app("", "secret_env = \"WX_SECRET\"\n"));
  EXPECT_EQ(load_ok(sources({{"WX_SECRET", "environment"}})).apps.at(0).secret, "environment");
  EXPECT_EQ(load_ok(sources()).apps.at(0).secret, "dotenv");
}

TEST_F(ConfigTest, SecretEnvErrorNamesTheConfigFileGiven) {
  ConfigSources s = sources();
  s.config_file = dir_.write("prod.toml", wechat_app("", "secret_env = \"MISSING\"\n"));
  EXPECT_EQ(load_error(s), s.config_file->string() +
                               ":4:14: secret_env: MISSING is not set (environment or .env)");
}

// --- open_token_manager ------------------------------------------------------------

TEST_F(ConfigTest, OpenTokenManagerAddsEveryConfiguredApp) {
  testing::FakePlatform fake;
  fake.add_app({.channel = Channel::kWeChat, .app_id = "wx1", .secret = std::string(kSecret)});
  fake.add_app({.channel = Channel::kWeCom,
                .app_id = "corp",
                .agent_id = "1000002",
                .secret = "wecom-secret"});
  fake.add_app({.channel = Channel::kDingTalk, .app_id = "ding1", .secret = "ding-secret"});
  write("aicache.toml", "[tokens]\nrefresh_margin = 100\n"
                        "[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\n"
                        "secret_env = \"WX_SECRET\"\nbase_url = \"" + fake.base_url() + "\"\n"
                        "[[apps]]\nchannel = \"wecom\"\napp_id = \"corp\"\nagent_id = 1000002\n"
                        "secret = \"wecom-secret\"\nbase_url = \"" + fake.base_url() + "\"\n"
                        "[[apps]]\nchannel = \"dingtalk\"\napp_id = \"ding1\"\n"
                        "secret = \"ding-secret\"\nbase_url = \"" + fake.base_url() + "\"\n");
  const Config config = load_ok(sources({{"WX_SECRET", std::string(kSecret)}}));
  auto store = open_store(config);
  ASSERT_TRUE(store);
  auto cache = AssistantCache::create(std::shared_ptr<Store>(std::move(*store)),
                                      cache_options(config));
  ASSERT_TRUE(cache);
  auto manager = open_token_manager(config, std::shared_ptr<AssistantCache>(std::move(*cache)));
  ASSERT_TRUE(manager) << manager.error().to_string();

  const std::vector<std::pair<std::string_view, std::string_view>> apps = {
      {"wechat", "wx1"}, {"wecom", "corp.1000002"}, {"dingtalk", "ding1"}};
  for (const auto& [channel, key] : apps) {
    SCOPED_TRACE(std::string(channel));
    auto token = (*manager)->get(channel, key);
    ASSERT_TRUE(token) << token.error().to_string();
    EXPECT_FALSE(token->access_token.empty());
    EXPECT_GT(token->expires_in, std::chrono::seconds(7000));
  }
  EXPECT_EQ(fake.token_calls(), 3u);
  EXPECT_EQ((*manager)->stats().size(), 3u);

  auto unknown = (*manager)->get("wechat", "wx-nope");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
}

TEST_F(ConfigTest, OpenTokenManagerReportsBadCredentialsWithoutTheSecret) {
  // A Config built by hand skips load_config's checks; add_app still refuses.
  Config config;
  config.apps.push_back({.channel = Channel::kWeChat,
                         .app_id = "wx1",
                         .secret = std::string(kSecret),
                         .api = "bogus"});
  auto store = open_store(config);
  ASSERT_TRUE(store);
  auto cache = AssistantCache::create(std::shared_ptr<Store>(std::move(*store)));
  ASSERT_TRUE(cache);
  auto manager = open_token_manager(config, std::shared_ptr<AssistantCache>(std::move(*cache)),
                                    TokenManagerOptions{});
  ASSERT_FALSE(manager);
  EXPECT_EQ(manager.error().code, ErrorCode::kConfig);
  EXPECT_THAT(manager.error().message, HasSubstr("wechat/wx1"));
  EXPECT_THAT(manager.error().message, Not(HasSubstr(kSecret)));
}

// --- open_store and cache_options ----------------------------------------------

TEST_F(ConfigTest, OpenStoreWithoutRedisIsMemoryWithTheConfiguredDefaultTtl) {
  Config config;
  config.default_timeout = std::chrono::seconds(42);
  auto clock = std::make_shared<ManualClock>();
  auto store = open_store(config, clock);
  ASSERT_TRUE(store) << store.error().to_string();
  auto stats = (*store)->stats();
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->backend, "memory");

  ASSERT_TRUE((*store)->set("k", "v"));
  auto ttl = (*store)->ttl("k");
  ASSERT_TRUE(ttl);
  EXPECT_EQ(ttl->state, KeyTtl::State::kExpiring);
  EXPECT_EQ(ttl->remaining, std::chrono::seconds(42));
  clock->advance(std::chrono::seconds(43));
  auto gone = (*store)->get("k");
  ASSERT_TRUE(gone);
  EXPECT_EQ(*gone, std::nullopt);
}

TEST_F(ConfigTest, OpenStoreRespectsTheEntryLimit) {
  Config config;
  config.memory_max_entries = 2;
  auto store = open_store(config);
  ASSERT_TRUE(store);
  for (const char* key : {"a", "b", "c", "d"}) ASSERT_TRUE((*store)->set(key, "v"));
  auto stats = (*store)->stats();
  ASSERT_TRUE(stats);
  EXPECT_LE(stats->entries, 2u);
}

TEST_F(ConfigTest, OpenStoreRefusesABadRedisUrl) {
  Config config;
  config.redis_url = "http://:hunter2@127.0.0.1:6379";
  auto store = open_store(config);
  ASSERT_FALSE(store);
  EXPECT_THAT(store.error().message, Not(HasSubstr("hunter2")));
}

TEST_F(ConfigTest, OpenStoreReportsAnUnreachableRedisWithoutThePassword) {
  Config config;
  config.redis_url = "redis://:hunter2@127.0.0.1:1/0";
  auto store = open_store(config);
  ASSERT_FALSE(store);
  EXPECT_THAT(store.error().message, Not(HasSubstr("hunter2")));
}

TEST_F(ConfigTest, CacheOptionsCopyPrefixAndVersion) {
  Config config;
  config.key_prefix = "blbs_erp";
  config.key_version = 3;
  const AssistantCacheOptions options = cache_options(config);
  EXPECT_EQ(options.key_prefix, "blbs_erp");
  EXPECT_EQ(options.key_version, 3);
}

// --- [ttl] (issue 16) -------------------------------------------------------------

TEST_F(ConfigTest, TtlsHaveTheirDefaults) {
  const Config config = load_ok(sources());
  EXPECT_EQ(config.default_timeout, std::chrono::seconds(300));
  EXPECT_EQ(config.conversation_ttl, std::chrono::seconds(3600));
  EXPECT_EQ(config.ai_config_ttl, std::chrono::seconds(300));
  EXPECT_EQ(config.token_warmup_timeout, std::chrono::seconds(30));
}

TEST_F(ConfigTest, TtlTableAndEnvironmentNamesAreRead) {
  write("aicache.toml",
        "[ttl]\ndefault = 60\nconversation = 7200\nai_config = 120\n"
        "[tokens]\nwarmup_timeout = 5\n");
  Config config = load_ok(sources());
  EXPECT_EQ(config.default_timeout, std::chrono::seconds(60));
  EXPECT_EQ(config.conversation_ttl, std::chrono::seconds(7200));
  EXPECT_EQ(config.ai_config_ttl, std::chrono::seconds(120));
  EXPECT_EQ(config.token_warmup_timeout, std::chrono::seconds(5));
  const AssistantCacheOptions options = cache_options(config);
  EXPECT_EQ(options.conversation_ttl, Ttl(std::chrono::seconds(7200)));
  EXPECT_EQ(options.ai_config_ttl, Ttl(std::chrono::seconds(120)));
  EXPECT_EQ(options.kv_ttl, Ttl(std::chrono::seconds(60)));  // [ttl] default

  // The environment is above the file.
  config = load_ok(sources({{"AICACHE_TTL_CONVERSATION", "10"},
                            {"AICACHE_TTL_AI_CONFIG", "11"},
                            {"AICACHE_TTL_DEFAULT", "12"}}));
  EXPECT_EQ(config.conversation_ttl, std::chrono::seconds(10));
  EXPECT_EQ(config.ai_config_ttl, std::chrono::seconds(11));
  EXPECT_EQ(config.default_timeout, std::chrono::seconds(12));
}

// [ttl] default and [store] default_timeout are one setting: the highest
// layer decides, the new name within a layer.
TEST_F(ConfigTest, TtlDefaultAndDefaultTimeoutAreOneSetting) {
  write("aicache.toml", "[store]\ndefault_timeout = 40\n[ttl]\ndefault = 50\n");
  EXPECT_EQ(load_ok(sources()).default_timeout, std::chrono::seconds(50));
  EXPECT_EQ(load_ok(sources({{"AICACHE_DEFAULT_TIMEOUT", "70"}})).default_timeout,
            std::chrono::seconds(70));
  write("aicache.toml", "[store]\ndefault_timeout = 40\n");
  EXPECT_EQ(load_ok(sources({{"AICACHE_TTL_DEFAULT", "80"}})).default_timeout,
            std::chrono::seconds(80));
}

TEST_F(ConfigTest, BadTtlsAreErrorsNamingTheSource) {
  write("aicache.toml", "[ttl]\nconversation = 0\n");
  EXPECT_THAT(load_error(sources()), HasSubstr("aicache.toml:2:16: conversation"));
  write("aicache.toml", "[ttl]\nconversation = \"1h\"\n");
  EXPECT_THAT(load_error(sources()), HasSubstr("must be an integer (seconds)"));
  write("aicache.toml", "[ttl]\ntoken = 60\n");
  EXPECT_THAT(load_error(sources()), HasSubstr("unknown key 'token' in [ttl]"));
  write("aicache.toml", "ttl = 5\n");
  EXPECT_THAT(load_error(sources()), HasSubstr("ttl must be a table"));
  write("aicache.toml", "");
  EXPECT_THAT(load_error(sources({{"AICACHE_TTL_AI_CONFIG", "-1"}})),
              HasSubstr("environment AICACHE_TTL_AI_CONFIG"));
  EXPECT_THAT(load_error(sources({{"AICACHE_TTL_DEFAULT", "soon"}})),
              HasSubstr("environment AICACHE_TTL_DEFAULT"));
  write("aicache.toml", "[tokens]\nwarmup_timeout = 3601\n");
  EXPECT_THAT(load_error(sources()), HasSubstr("warmup_timeout"));
}

// --- Threat model (issue 11) ------------------------------------------------------

// Finding 4: a weak API token (one character used to be enough to listen
// beyond loopback) is refused when loading, whichever command runs.
TEST_F(ConfigTest, WeakApiTokenIsRefusedWithHowToMakeOne) {
  const std::string strong = "0123456789abcdef0123456789ABCDEF";  // 32: the minimum
  const std::vector<std::string> weak = {
      "x", strong.substr(1), strong.substr(1) + " ", strong + "\"", strong + "\xc3\xa9",
      strong + "\n", strong + ",", strong + "%"};
  for (const std::string& token : weak) {
    SCOPED_TRACE(::testing::PrintToString(token));
    const std::string message = load_error(sources({{"AICACHE_API_TOKEN", token}}));
    EXPECT_THAT(message, StartsWith("environment AICACHE_API_TOKEN: "));
    EXPECT_THAT(message, HasSubstr("openssl rand -hex 32"));
    if (token.size() > 8) {
      EXPECT_THAT(message, Not(HasSubstr(token.substr(0, 20))));
    }
  }
  write(".env", "AICACHE_API_TOKEN=short\n");
  EXPECT_THAT(load_error(sources()), StartsWith(".env:1: AICACHE_API_TOKEN: the API token is 5 "
                                                "characters long; at least 32 are needed"));

  EXPECT_EQ(validate_api_token("x").error().code, ErrorCode::kConfig);
  EXPECT_TRUE(validate_api_token(strong));
  const std::string allowed = strong + "._~+/=-";
  EXPECT_EQ(load_ok(sources({{"AICACHE_API_TOKEN", allowed}})).api_token, allowed);
  // Empty counts as not set, as before.
  EXPECT_EQ(load_ok(sources({{"AICACHE_API_TOKEN", ""}})).api_token, std::nullopt);
}

// Finding 5: prefix "a" with version 1 clears "a:1:*", every key of prefix
// "a:1" included; a prefix with ':' or a glob character is refused.
TEST_F(ConfigTest, KeyPrefixWithSeparatorOrGlobIsRefused) {
  for (const std::string prefix : {"a:1", "a*", "a?", "a[b]", "a\\"}) {
    SCOPED_TRACE(prefix);
    const std::string message = load_error(sources({{"AICACHE_KEY_PREFIX", prefix}}));
    EXPECT_THAT(message,
                StartsWith("environment AICACHE_KEY_PREFIX: invalid: key prefix contains"));
    EXPECT_THAT(message, HasSubstr("not allowed in a prefix"));
  }
  write("aicache.toml", "[store]\nkey_prefix = \"erp:1\"\n");
  EXPECT_THAT(load_error(sources()),
              StartsWith("aicache.toml:2:14: key_prefix invalid: key prefix contains ':'"));
  EXPECT_EQ(load_ok(sources({{"AICACHE_KEY_PREFIX", "blbs_erp"}})).key_prefix, "blbs_erp");
}

// Finding 6: every duration and size of the service is bounded when loading,
// so that no "now + timeout" downstream can overflow.
// AICACHE_ALLOWED_HOSTS ends up compared with every request's Host: only
// names a Host header could hold, bounded in length and number.
TEST_F(ConfigTest, AllowedHostsAreCheckedHostNames) {
  const Config config =
      load_ok(sources({{"AICACHE_ALLOWED_HOSTS", " aicache.internal , [::1]:8080,,10.0.0.5 "}}));
  EXPECT_EQ(config.allowed_hosts,
            (std::vector<std::string>{"aicache.internal", "[::1]:8080", "10.0.0.5"}));
  std::string many;
  for (int i = 0; i < 65; ++i) many += "h" + std::to_string(i) + ",";
  const std::string hostile[] = {"evil.example\r\nX-Injected: 1", "a b", "a/b", "*.example",
                                 "\xe2\x80\x8b" "aicache", std::string(256, 'a'), many};
  for (const std::string& value : hostile) {
    SCOPED_TRACE(value.substr(0, 40));
    EXPECT_THAT(load_error(sources({{"AICACHE_ALLOWED_HOSTS", value}})),
                StartsWith("environment AICACHE_ALLOWED_HOSTS: "));
  }
}

TEST_F(ConfigTest, ServiceDurationsAndSizesAreBounded) {
  struct Case {
    std::string name, value, expected;
  };
  const Case cases[] = {
      {"AICACHE_REQUEST_TIMEOUT", "18446744073709551615", "is out of range"},
      {"AICACHE_REQUEST_TIMEOUT", "9223372036854775807", "must be between 1 and 3600"},
      {"AICACHE_REQUEST_TIMEOUT", "3601", "must be between 1 and 3600"},
      {"AICACHE_REQUEST_TIMEOUT", "0", "must be between 1 and 3600"},
      {"AICACHE_REQUEST_TIMEOUT", "10s", "is not an integer"},
      {"AICACHE_MAX_BODY_BYTES", "1073741825", "must be at most 1073741824"},
      {"AICACHE_MAX_BODY_BYTES", "-1", "must be > 0"},
      {"AICACHE_MAX_CONNECTIONS", "100001", "must be at most 100000"},
      {"AICACHE_ACCESS_LOG", "maybe", "is not on/off"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name + "=" + c.value);
    EXPECT_THAT(load_error(sources({{c.name, c.value}})),
                StartsWith("environment " + c.name + ": "));
    EXPECT_THAT(load_error(sources({{c.name, c.value}})), HasSubstr(c.expected));
  }
  const Config config = load_ok(sources({{"AICACHE_REQUEST_TIMEOUT", "3600"},
                                         {"AICACHE_MAX_BODY_BYTES", "1073741824"},
                                         {"AICACHE_MAX_CONNECTIONS", "100000"},
                                         {"AICACHE_ACCESS_LOG", "off"},
                                         {"AICACHE_LISTEN", "[::1]:8080"},
                                         {"AICACHE_SERVER", "http://127.0.0.1:8080"}}));
  EXPECT_EQ(config.request_timeout, std::chrono::seconds(3600));
  EXPECT_EQ(config.max_body_bytes, std::size_t{1} << 30);
  EXPECT_EQ(config.max_connections, 100000u);
  EXPECT_EQ(config.access_log, false);
  EXPECT_EQ(config.listen, "[::1]:8080");
  EXPECT_EQ(config.server, "http://127.0.0.1:8080");
  const Config defaults = load_ok(sources());
  EXPECT_EQ(defaults.request_timeout, std::nullopt);
  EXPECT_EQ(defaults.api_token, std::nullopt);
}

// Finding 7: an http:// base_url would send the app secret in clear text (a
// query string for three of the five APIs); only loopback may be plain.
TEST_F(ConfigTest, PlainHttpBaseUrlOnlyForLoopback) {
  for (const std::string url :
       {"http://proxy.internal:8080", "http://10.0.0.5", "http://127.0.0.1.example.com",
        "http://localhost.example.com", "http://[::2]:80", "http://user:pw@example.com/x",
        "http://0.0.0.0:80"}) {
    SCOPED_TRACE(url);
    write("aicache.toml", wechat_app("base_url = \"" + url + "\"\n"));
    const std::string message = load_error(sources());
    EXPECT_THAT(message, StartsWith("aicache.toml:1:1: "));
    EXPECT_THAT(message, HasSubstr("clear text; use https://"));
    EXPECT_THAT(message, Not(HasSubstr("pw")));
  }
  for (const std::string url :
       {"https://proxy.internal:8080", "http://127.0.0.1:9", "http://127.8.9.10",
        "http://localhost:9/x", "http://LOCALHOST", "http://[::1]:9", "http://[0:0:0:0:0:0:0:1]"}) {
    SCOPED_TRACE(url);
    write("aicache.toml", wechat_app("base_url = \"" + url + "\"\n"));
    EXPECT_EQ(load_ok(sources()).apps.at(0).base_url, url);
  }
}

// Finding 8: a file holding a secret that others may read is worth a warning
// (naming the file and the fix), every time; 0600 is quiet.
TEST_F(ConfigTest, SecretFilesReadableByOthersAreWarnedAbout) {
  write("aicache.toml",
        "[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\nsecret = \"inline\"\n"
        "\n[[apps]]\nchannel = \"dingtalk\"\napp_id = \"ding1\"\nsecret_env = \"DING_SECRET\"\n");
  write(".env", "DING_SECRET=from-dotenv\n");
  const auto mode = [&](const char* name, fs::perms perms) {
    fs::permissions(dir_.path() / name, perms, fs::perm_options::replace);
  };
  const fs::perms owner = fs::perms::owner_read | fs::perms::owner_write;
  mode("aicache.toml", owner | fs::perms::group_read | fs::perms::others_read);
  mode(".env", owner | fs::perms::group_read);
  Config config = load_ok(sources());
  ASSERT_EQ(config.warnings.size(), 2u) << ::testing::PrintToString(config.warnings);
  EXPECT_THAT(config.warnings[0], StartsWith("aicache.toml holds an app secret"));
  EXPECT_THAT(config.warnings[0], HasSubstr("mode 0644"));
  EXPECT_THAT(config.warnings[0], HasSubstr("chmod 600 aicache.toml"));
  EXPECT_THAT(config.warnings[1], StartsWith(".env holds a secret"));
  EXPECT_THAT(config.warnings[1], HasSubstr("mode 0640"));
  EXPECT_THAT(config.warnings[1], HasSubstr("chmod 600 .env"));
  for (const auto& w : config.warnings) EXPECT_THAT(w, Not(HasSubstr("inline")));
  for (const auto& w : config.warnings) EXPECT_THAT(w, Not(HasSubstr("from-dotenv")));

  mode("aicache.toml", owner);
  mode(".env", owner);
  EXPECT_THAT(load_ok(sources()).warnings, ::testing::IsEmpty());

  // A file without a secret may be read by anyone.
  write("aicache.toml", "[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\n"
                        "secret_env = \"WX_SECRET\"\n");
  write(".env", "AICACHE_KEY_PREFIX=erp\n");
  mode("aicache.toml", owner | fs::perms::others_read);
  mode(".env", owner | fs::perms::others_read);
  EXPECT_THAT(load_ok(sources({{"WX_SECRET", "s"}})).warnings, ::testing::IsEmpty());
}

// Finding 11: the Config keeps the variables the configuration refers to,
// not the whole environment with every other program's secrets.
TEST_F(ConfigTest, EnvironmentKeepsOnlyWhatTheConfigurationRefersTo) {
  write(".env", "DOTENV_UNRELATED=1\nDING_SECRET=from-dotenv\nREDIS_PORT=6380\n");
  write("aicache.toml", "[[apps]]\nchannel = \"dingtalk\"\napp_id = \"ding1\"\n"
                        "secret_env = \"DING_SECRET\"\n");
  const Config config = load_ok(sources({{"AWS_SECRET_ACCESS_KEY", "unrelated"},
                                         {"GITHUB_TOKEN", "unrelated"},
                                         {"REDIS_HOST", "10.0.0.5"},
                                         {"HOME", "/home/u"}}));
  EXPECT_EQ(config.environment, (Env{{"DING_SECRET", "from-dotenv"},
                                     {"REDIS_HOST", "10.0.0.5"},
                                     {"REDIS_PORT", "6380"}}));
}

// --- Redis Sentinel

TEST_F(ConfigTest, SentinelSettingsFromTheEnvironment) {
  const Config config = load_ok(sources({{"REDIS_SENTINELS", "10.0.0.1:26379, sentinel-2 ,[::1]:5000"},
                                         {"REDIS_SENTINEL_MASTER", "mymaster"},
                                         {"REDIS_SENTINEL_PASSWORD", "s3ntinel"},
                                         {"REDIS_PASSWORD", "m@ster"},
                                         {"REDIS_DB", "2"}}));
  EXPECT_EQ(config.redis_sentinels,
            (std::vector<std::string>{"10.0.0.1:26379", "sentinel-2", "[::1]:5000"}));
  EXPECT_EQ(config.redis_sentinel_master, "mymaster");
  EXPECT_EQ(config.redis_sentinel_password, "s3ntinel");
  EXPECT_EQ(config.redis_sentinel_username, "");
  EXPECT_EQ(config.redis_sentinel_tls, std::nullopt);  // as the URL
  // No URL: the master's password and db still apply; its address does not.
  EXPECT_EQ(config.redis_url, "redis://:m%40ster@127.0.0.1:6379/2");
}

TEST_F(ConfigTest, SentinelSettingsFromTheConfigFile) {
  write("aicache.toml",
        "[store]\n"
        "url = \"redis://:pw@ignored:6379/1\"\n"
        "sentinels = [\"s1:26379\", \"s2:26380\"]\n"
        "sentinel_master = \"cache\"\n"
        "sentinel_password = \"sp\"\n"
        "sentinel_username = \"watcher\"\n"
        "sentinel_tls = true\n");
  const Config config = load_ok(sources());
  EXPECT_EQ(config.redis_sentinels, (std::vector<std::string>{"s1:26379", "s2:26380"}));
  EXPECT_EQ(config.redis_sentinel_master, "cache");
  EXPECT_EQ(config.redis_sentinel_password, "sp");
  EXPECT_EQ(config.redis_sentinel_username, "watcher");
  EXPECT_EQ(config.redis_sentinel_tls, std::optional<bool>(true));
  EXPECT_EQ(config.redis_url, "redis://:pw@ignored:6379/1");
  // The environment wins over the file, as for every setting.
  const Config env =
      load_ok(sources({{"REDIS_SENTINEL_USERNAME", "from-env"}, {"REDIS_SENTINEL_TLS", "0"}}));
  EXPECT_EQ(env.redis_sentinel_username, "from-env");
  EXPECT_EQ(env.redis_sentinel_tls, std::optional<bool>(false));
}

TEST_F(ConfigTest, BadSentinelUserOrTlsValuesAreErrorsNamingTheSource) {
  const auto with = [&](std::string name, std::string value) {
    return sources({{"REDIS_SENTINELS", "s1"},
                    {"REDIS_SENTINEL_MASTER", "m"},
                    {std::move(name), std::move(value)}});
  };
  EXPECT_THAT(load_error(with("REDIS_SENTINEL_TLS", "maybe")),
              AllOf(StartsWith("environment REDIS_SENTINEL_TLS"), HasSubstr("on/off")));
  EXPECT_THAT(
      load_error(with("REDIS_SENTINEL_USERNAME", "two words")),
      AllOf(StartsWith("environment REDIS_SENTINEL_USERNAME"), HasSubstr("without spaces")));
  EXPECT_THAT(load_error(with("REDIS_SENTINEL_USERNAME", std::string(257, 'u'))),
              StartsWith("environment REDIS_SENTINEL_USERNAME"));
  write("aicache.toml",
        "[store]\nsentinels = [\"s1\"]\nsentinel_master = \"m\"\n"
        "sentinel_tls = \"yes\"\n");
  EXPECT_THAT(load_error(sources()), HasSubstr("sentinel_tls must be true or false"));
}

TEST_F(ConfigTest, SentinelsWithoutAMasterNameAreAnError) {
  EXPECT_THAT(load_error(sources({{"REDIS_SENTINELS", "s1:26379"}})),
              AllOf(StartsWith("environment REDIS_SENTINELS"), HasSubstr("REDIS_SENTINEL_MASTER")));
}

TEST_F(ConfigTest, BadSentinelAddressesAreErrorsNamingTheSource) {
  const std::string_view bad[] = {"s1:0", "s1:65536", "s1:port", "::1:26379", "s1:26379,user@s2",
                                  ", ,"};
  for (std::string_view list : bad) {
    SCOPED_TRACE(list);
    EXPECT_THAT(load_error(sources({{"REDIS_SENTINELS", std::string(list)},
                                    {"REDIS_SENTINEL_MASTER", "m"}})),
                StartsWith("environment REDIS_SENTINELS"));
  }
  write("aicache.toml", "[store]\nsentinels = \"s1:26379\"\nsentinel_master = \"m\"\n");
  EXPECT_THAT(load_error(sources()), HasSubstr("sentinels must be an array of strings"));
  write("aicache.toml", "[store]\nsentinels = [\"s1:1,s2:2\"]\nsentinel_master = \"m\"\n");
  EXPECT_THAT(load_error(sources()), HasSubstr("without commas"));
  fs::remove("aicache.toml");
  EXPECT_THAT(load_error(sources({{"REDIS_SENTINELS", "s1"}, {"REDIS_SENTINEL_MASTER", "a b"}})),
              StartsWith("environment REDIS_SENTINEL_MASTER"));
}

TEST_F(ConfigTest, OpenStoreWithSentinelsNoneReachableNamesTheMasterNotThePasswords) {
  Config config;
  config.redis_url.emplace("redis://:hunter2@127.0.0.1:6379/0");
  config.redis_sentinels = {"127.0.0.1:1"};
  config.redis_sentinel_master = "mymaster";
  config.redis_sentinel_password = "sentinel-hunter3";
  auto store = open_store(config);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(store.error().message, HasSubstr("'mymaster'"));
  EXPECT_THAT(store.error().message, Not(HasSubstr("hunter2")));
  EXPECT_THAT(store.error().message, Not(HasSubstr("sentinel-hunter3")));
}

}  // namespace
}  // namespace aicache
