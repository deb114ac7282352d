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

#include "aicache/clock.h"
#include "support/temp_dir.h"

namespace aicache {
namespace {

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
                                         {"AICACHE_KEY_VERSION", "0"}}));
  EXPECT_EQ(config.default_timeout, std::chrono::seconds(60));
  EXPECT_EQ(config.memory_max_bytes, 1048576u);
  EXPECT_EQ(config.memory_max_entries, 1000u);
  EXPECT_EQ(config.key_version, 0);
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
        "\n[server]\nlisten = \"127.0.0.1:8080\"\n"
        "\n[[apps]]\nchannel = \"wechat\"\napp_id = \"wx1\"\n"
        "\n[[apps]]\nchannel = \"dingtalk\"\napp_id = \"ding1\"\n");
  const Config config = load_ok(sources());  // found as ./aicache.toml
  EXPECT_EQ(config.redis_url, "redis://127.0.0.1:6379/3");
  EXPECT_EQ(config.key_prefix, "blbs_erp");
  EXPECT_EQ(config.key_version, 7);
  EXPECT_EQ(config.default_timeout, std::chrono::seconds(60));
  EXPECT_EQ(config.memory_max_bytes, 4096u);
  EXPECT_EQ(config.memory_max_entries, 10u);
  EXPECT_EQ(config.config_file, fs::path("aicache.toml"));
}

TEST_F(ConfigTest, EnvironmentIsMergedOverDotenv) {
  write(".env", "APP_SECRET=from-dotenv\nONLY_DOTENV=1\n");
  const Config config = load_ok(sources({{"APP_SECRET", "from-env"}}));
  EXPECT_EQ(config.environment, (Env{{"APP_SECRET", "from-env"}, {"ONLY_DOTENV", "1"}}));
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

TEST_F(ConfigTest, ConfigFileErrorsUseTheNameGiven) {
  ConfigSources s = sources();
  s.config_file = dir_.write("x.toml", "[store]\nbogus = 1\n");
  EXPECT_THAT(load_error(s), StartsWith(s.config_file->string() + ":2:1: unknown key 'bogus'"));
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

}  // namespace
}  // namespace aicache
