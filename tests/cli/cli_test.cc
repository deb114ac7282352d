// Runs the real `aicache` binary as a subprocess, in an empty directory and
// an empty environment (as `env -i`), and checks exit codes and output.

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/log.h"
#include "aicache/memory_store.h"
#include "aicache/server.h"
#include "aicache/token_manager.h"
#include "aicache/token_provider.h"
#include "aicache/version.h"
#include "support/fake_platform.h"
#include "support/redis_server.h"
#include "support/child_process.h"
#include "support/temp_dir.h"
#include "support/local_server.h"

namespace aicache {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
namespace fs = std::filesystem;

using testing::Outcome;

// The real binary in `cwd` with only `env`; output captured.
Outcome run_cli(const std::vector<std::string>& args, const fs::path& cwd,
                const std::vector<std::string>& env = {}) {
  return testing::run_child(AICACHE_CLI_PATH, args, cwd, env);
}

class CliTest : public ::testing::Test {
 protected:
  Outcome run(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    return run_cli(args, dir_.path(), env);
  }
  testing::TempDir dir_;
};

TEST_F(CliTest, Version) {
  const Outcome r = run({"--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "aicache " + std::string(kVersion) + "\n");
}

TEST_F(CliTest, HelpListsCommandsAndGlobalOptions) {
  const Outcome r = run({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* word :
       {"get", "set", "del", "ttl", "stats", "--config", "--url", "--prefix", "--version"}) {
    EXPECT_THAT(r.out, HasSubstr(word));
  }
}

TEST_F(CliTest, HelpOnEveryCommand) {
  const std::vector<std::pair<std::string, std::string>> commands = {
      {"get", "--raw"}, {"set", "--ttl"}, {"del", "KEY"}, {"ttl", "KEY"}, {"stats", "--json"}};
  for (const auto& [command, mentions] : commands) {
    SCOPED_TRACE(command);
    const Outcome r = run({command, "--help"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr(mentions));
  }
}

TEST_F(CliTest, GetMissExitsOneWithNothingOnStdout) {
  const Outcome r = run({"get", "nothing-here"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(r.err, HasSubstr("not found"));
}

TEST_F(CliTest, DelMissExitsOne) {
  const Outcome r = run({"del", "nothing-here"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(CliTest, TtlMissPrintsMissing) {
  const Outcome r = run({"ttl", "nothing-here"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(r.err, HasSubstr("missing"));
}

TEST_F(CliTest, SetSucceeds) {
  // The memory store lives only as long as the process, so set's own result
  // is all there is to check.
  const std::vector<std::vector<std::string>> invocations = {
      {"set", "greeting", "hello world"},
      {"set", "answer", "42", "--json"},
      {"set", "doc", R"({"messages":[{"role":"user"}]})", "--json"},
      {"set", "short", "v", "--ttl", "10"},
      {"set", "gone", "v", "--ttl", "0"},
      {"set", "negative-value", "-5"},
      {"--prefix", "blbs_erp", "set", "k", "v"},
      {"set", "k", "v", "--prefix", "blbs_erp"},
  };
  for (const auto& args : invocations) {
    SCOPED_TRACE(::testing::PrintToString(args));
    const Outcome r = run(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "OK\n");
  }
}

TEST_F(CliTest, InvalidKeysAreUsageErrors) {
  const std::vector<std::string> keys = {"has space", "", std::string(300, 'k'), "tab\there"};
  for (const auto& key : keys) {
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"get", key}, {"set", key, "v"}, {"del", key}, {"ttl", key}}) {
      SCOPED_TRACE(args[0] + " '" + key.substr(0, 20) + "'");
      const Outcome r = run(args);
      EXPECT_EQ(r.exit_code, 2) << r.err;
      EXPECT_THAT(r.out, IsEmpty());
      EXPECT_THAT(r.err, HasSubstr("key"));
    }
  }
}

TEST_F(CliTest, BadTtlIsAUsageErrorAndStoresNothing) {
  for (const std::string ttl :
       {"-5", "abc", "1.5", "5s", "", "+5", "99999999999999999999", "3153600001"}) {
    SCOPED_TRACE(ttl);
    const Outcome r = run({"set", "k", "v", "--ttl", ttl});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_THAT(r.out, IsEmpty());
    EXPECT_THAT(r.err, HasSubstr("--ttl"));
  }
  const Outcome joined = run({"set", "k", "v", "--ttl=-1"});
  EXPECT_EQ(joined.exit_code, 2) << joined.err;
}

TEST_F(CliTest, MalformedJsonIsAUsageError) {
  for (const std::string value : {R"({"a":)", "not json", "[1,]", ""}) {
    SCOPED_TRACE(value);
    const Outcome r = run({"set", "k", value, "--json"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_THAT(r.out, IsEmpty());
    EXPECT_THAT(r.err, HasSubstr("JSON"));
  }
}

TEST_F(CliTest, MalformedDotenvIsAConfigurationError) {
  dir_.write(".env", "AICACHE_KEY_PREFIX=app\n\nthis line is wrong\n");
  const Outcome r = run({"get", "k"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(".env:3"));
}

TEST_F(CliTest, BadNumberInDotenvNamesTheLine) {
  dir_.write(".env", "AICACHE_DEFAULT_TIMEOUT=soon\n");
  const Outcome r = run({"set", "k", "v"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(".env:1: AICACHE_DEFAULT_TIMEOUT"));
}

TEST_F(CliTest, MalformedConfigFileIsAConfigurationError) {
  dir_.write("aicache.toml", "[store]\nurll = \"redis://127.0.0.1\"\n");
  const Outcome r = run({"get", "k"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("aicache.toml:2"));
  EXPECT_THAT(r.err, HasSubstr("unknown key 'urll' in [store]"));
}

TEST_F(CliTest, TomlSyntaxErrorIsAConfigurationError) {
  dir_.write("aicache.toml", "[store]\nkey_version = \n");
  const Outcome r = run({"stats"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("aicache.toml:2"));
}

TEST_F(CliTest, MissingConfigFileIsAConfigurationError) {
  const Outcome r = run({"--config", "nope.toml", "get", "k"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nope.toml"));
}

TEST_F(CliTest, ConfigFileFromAicacheConfigEnvironment) {
  dir_.write("custom.toml", "[store]\nkey_version = \"x\"\n");
  const Outcome r = run({"get", "k"}, {"AICACHE_CONFIG=custom.toml"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("custom.toml:2:15: key_version must be an integer"));
}

TEST_F(CliTest, InvalidPrefixIsAUsageError) {
  const Outcome r = run({"--prefix", "bad prefix", "get", "k"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("prefix"));
}

TEST_F(CliTest, StatsJsonIsOneJsonObject) {
  const Outcome r = run({"stats", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j.value("backend", ""), "memory");
  for (const char* field :
       {"used_memory", "used_memory_human", "entries", "hits", "misses", "evictions", "expirations",
        "commands_processed", "store_errors", "families", "ttl_signals", "details"}) {
    EXPECT_TRUE(j.contains(field)) << field;
  }
}

TEST_F(CliTest, StatsText) {
  const Outcome r = run({"stats"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("backend: memory\n"));
  EXPECT_THAT(r.out, HasSubstr("entries: 0\n"));
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  const std::vector<std::vector<std::string>> invocations = {
      {"frobnicate"}, {},        {"get"},          {"get", "k", "--bogus"},
      {"set", "k"},   {"--url"}, {"get", "a", "b"},
      {"token"},      {"token", "wechat"},
      {"token", "wechat", "wx1", "extra"},
      {"token", "get", "wechat"},
      {"token", "invalidate", "wechat", "wx1"},
      {"token", "invalidate", "wechat", "wx1", "T", "--json"},
      {"token", "invalidate", "wechat", "wx1", "T", "--force-refresh"}};
  for (const auto& args : invocations) {
    SCOPED_TRACE(::testing::PrintToString(args));
    const Outcome r = run(args);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.out, IsEmpty());
    EXPECT_THAT(r.err, Not(IsEmpty()));
  }
}

TEST_F(CliTest, ServeRefusesWhatItCannotServeSafely) {
  // Beyond loopback without an API token: refused before listening.
  Outcome open = run({"serve", "--listen", "0.0.0.0:0"});
  EXPECT_EQ(open.exit_code, 2);
  EXPECT_THAT(open.err, HasSubstr("API token"));
  // Malformed settings are usage errors, not ignored.
  EXPECT_EQ(run({"serve", "--listen", "127.0.0.1:0"}, {"AICACHE_ACCESS_LOG=maybe"}).exit_code, 2);
  EXPECT_EQ(run({"serve", "--listen", "127.0.0.1:0"}, {"AICACHE_MAX_BODY_BYTES=-1"}).exit_code, 2);
  EXPECT_EQ(run({"serve", "--listen", "127.0.0.1:0"}, {"AICACHE_MAX_CONNECTIONS=0"}).exit_code, 2);
  Outcome timeout = run({"serve", "--listen", "127.0.0.1:0"}, {"AICACHE_REQUEST_TIMEOUT=10s"});
  EXPECT_EQ(timeout.exit_code, 2);
  EXPECT_THAT(timeout.err, HasSubstr("AICACHE_REQUEST_TIMEOUT"));
  EXPECT_EQ(run({"serve", "--listen", "nonsense"}).exit_code, 2);
}

// Threat model, finding 4: a one-character API token used to be enough to
// listen beyond loopback. Refused when the configuration is loaded.
TEST_F(CliTest, WeakApiTokenIsRefusedAtStart) {
  for (const std::string token : {"x", "0123456789abcdef0123456789abcde", "has space and is long "
                                                                         "enough to pass"}) {
    SCOPED_TRACE(token);
    const Outcome serve = run({"serve", "--listen", "0.0.0.0:0"}, {"AICACHE_API_TOKEN=" + token});
    EXPECT_EQ(serve.exit_code, 2);
    EXPECT_THAT(serve.err, HasSubstr("environment AICACHE_API_TOKEN: the API token"));
    EXPECT_THAT(serve.err, HasSubstr("make one with: openssl rand -hex 32"));
    if (token.size() > 8) {
      EXPECT_THAT(serve.err, Not(HasSubstr(token)));
    }
    EXPECT_EQ(run({"get", "k"}, {"AICACHE_API_TOKEN=" + token}).exit_code, 2);
  }
}

TEST_F(CliTest, UnreachableRedisNeverPrintsThePassword) {
  // Port 1 refuses connections; the Redis store reports the failure, and no
  // message may carry the password, raw or percent-encoded.
  const std::string password = "Sup3r-s3cret";
  const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> cases = {
      {{"--url", "redis://:" + password + "@127.0.0.1:1/0", "get", "k"}, {}},
      {{"get", "k", "--url", "redis://user:" + password + "@127.0.0.1:1/0"}, {}},
      {{"stats"}, {"REDIS_URL=redis://:" + password + "@127.0.0.1:1/0"}},
      {{"set", "k", "v"},
       {"REDIS_HOST=127.0.0.1", "REDIS_PORT=1", "REDIS_PASSWORD=" + password + "@:/%"}},
      {{"--url", "redis://:" + password + "@[bad", "get", "k"}, {}},
  };
  for (const auto& [args, env] : cases) {
    SCOPED_TRACE(::testing::PrintToString(args) + ::testing::PrintToString(env));
    const Outcome r = run(args, env);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_THAT(r.out + r.err, Not(HasSubstr(password)));
    EXPECT_THAT(r.out + r.err, Not(HasSubstr("s3cret")));
    EXPECT_THAT(r.err, Not(IsEmpty()));
  }
}

// --- token -------------------------------------------------------------------------

// The three platforms faked in this process; the binary reaches them through
// base_url. Secrets come from the environment (WeChat), the file (WeCom) and
// .env (DingTalk), and none may ever be printed.
constexpr std::string_view kWeChatSecret = "wx-S3cret-111";
constexpr std::string_view kWeComSecret = "wecom-S3cret-222";
constexpr std::string_view kDingTalkSecret = "ding-S3cret-333";

std::string token_apps_toml(const std::string& base_url) {
  return "[[apps]]\n"
         "channel = \"wechat\"\n"
         "app_id = \"wx1\"\n"
         "secret_env = \"WX_SECRET\"\n"
         "base_url = \"" + base_url + "\"\n"
         "\n[[apps]]\n"
         "channel = \"wecom\"\n"
         "app_id = \"corp1\"\n"
         "agent_id = 1000002\n"
         "secret = \"" + std::string(kWeComSecret) + "\"\n"
         "base_url = \"" + base_url + "\"\n"
         "\n[[apps]]\n"
         "channel = \"dingtalk\"\n"
         "app_id = \"ding1\"\n"
         "secret_env = \"DING_SECRET\"\n"
         "base_url = \"" + base_url + "\"\n";
}

void add_token_apps(testing::FakePlatform& fake) {
  fake.add_app({.channel = Channel::kWeChat, .app_id = "wx1", .secret = std::string(kWeChatSecret)});
  fake.add_app({.channel = Channel::kWeCom,
                .app_id = "corp1",
                .agent_id = "1000002",
                .secret = std::string(kWeComSecret)});
  fake.add_app(
      {.channel = Channel::kDingTalk, .app_id = "ding1", .secret = std::string(kDingTalkSecret)});
}

// A file holding secrets, as it should be: readable by its owner only (else
// serve and token warn; see SecretFilesReadableByOthersWarnOnEveryStart).
void write_secret_file(const testing::TempDir& dir, std::string_view name, std::string_view text) {
  fs::permissions(dir.write(name, text), fs::perms::owner_read | fs::perms::owner_write,
                  fs::perm_options::replace);
}

void expect_no_secret(const Outcome& r) {
  for (std::string_view secret : {kWeChatSecret, kWeComSecret, kDingTalkSecret}) {
    EXPECT_THAT(r.out + r.err, Not(HasSubstr(std::string(secret))));
  }
  EXPECT_THAT(r.out + r.err, Not(HasSubstr("S3cret")));
}

class CliTokenTest : public CliTest {
 protected:
  void SetUp() override {
    add_token_apps(fake_);
    write_secret_file(dir_, "aicache.toml", token_apps_toml(fake_.base_url()));
    write_secret_file(dir_, ".env", "DING_SECRET=" + std::string(kDingTalkSecret) + "\n");
  }

  // Runs with the WeChat secret in the environment; checks no secret leaks.
  Outcome token(const std::vector<std::string>& args) {
    Outcome r = run(args, {"WX_SECRET=" + std::string(kWeChatSecret)});
    expect_no_secret(r);
    return r;
  }

  testing::FakePlatform fake_;
};

// Threat model, finding 8: a file holding a secret that group or others may
// read is named, with the fix, whenever the secrets are about to be used.
TEST_F(CliTokenTest, SecretFilesReadableByOthersWarnOnEveryStart) {
  fs::permissions(dir_.path() / "aicache.toml", fs::perms::group_read | fs::perms::others_read,
                  fs::perm_options::add);
  fs::permissions(dir_.path() / ".env", fs::perms::group_read, fs::perm_options::add);
  for (const auto& args : {std::vector<std::string>{"token", "wechat", "wx1"},
                           std::vector<std::string>{"token", "dingtalk", "ding1"},
                           std::vector<std::string>{"serve", "--listen", "nonsense"}}) {
    SCOPED_TRACE(::testing::PrintToString(args));
    const Outcome r = token(args);
    EXPECT_THAT(r.err, HasSubstr("aicache: warning: aicache.toml holds an app secret and is "
                                 "readable by group or others (mode 0644)"));
    EXPECT_THAT(r.err, HasSubstr("chmod 600 aicache.toml"));
    EXPECT_THAT(r.err, HasSubstr("aicache: warning: .env holds a secret"));
    EXPECT_THAT(r.err, HasSubstr("(mode 0640)"));
    EXPECT_THAT(r.err, HasSubstr("chmod 600 .env"));
  }
  EXPECT_EQ(token({"token", "wechat", "wx1"}).exit_code, 0);
  // Data commands do not touch the secrets: no warning there.
  EXPECT_THAT(run({"get", "k"}, {"WX_SECRET=" + std::string(kWeChatSecret)}).err,
              Not(HasSubstr("chmod")));
}

TEST_F(CliTokenTest, HelpNamesTheForms) {
  const Outcome r = run({"token", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* word : {"CHANNEL", "APP_KEY", "invalidate", "--json", "--force-refresh"}) {
    EXPECT_THAT(r.out, HasSubstr(word));
  }
  EXPECT_THAT(run({"--help"}).out, HasSubstr("token"));
}

TEST_F(CliTokenTest, PrintsTheTokenOfEveryChannel) {
  const std::vector<std::pair<std::string, std::string>> apps = {
      {"wechat", "wx1"}, {"wecom", "corp1.1000002"}, {"dingtalk", "ding1"}};
  for (const auto& [channel, key] : apps) {
    SCOPED_TRACE(channel);
    const Outcome r = token({"token", channel, key});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(r.out.ends_with('\n')) << r.out;
    const std::string printed = r.out.substr(0, r.out.size() - 1);
    EXPECT_FALSE(printed.empty());
    EXPECT_EQ(printed.find_first_of(" \n\t"), std::string::npos) << r.out;
    EXPECT_EQ(fake_.check_token(*parse_channel(channel), printed), 0);
    EXPECT_THAT(r.err, IsEmpty());

    // "token get" is the same command; these platforms hand out the same
    // token again.
    const Outcome again = token({"token", "get", channel, key});
    EXPECT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(again.out, r.out);
  }
}

TEST_F(CliTokenTest, JsonHasTheTokenAndItsLifetime) {
  const Outcome r = token({"token", "wechat", "wx1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j.size(), 2u) << r.out;
  ASSERT_TRUE(j.contains("access_token") && j["access_token"].is_string()) << r.out;
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, j["access_token"].get<std::string>()), 0);
  ASSERT_TRUE(j.contains("expires_in") && j["expires_in"].is_number_integer()) << r.out;
  EXPECT_EQ(j["expires_in"].get<std::int64_t>(), 7200);

  // Flags before the arguments, and the global options after them, work too.
  const Outcome before = token({"token", "--json", "get", "dingtalk", "ding1", "--config",
                                "aicache.toml"});
  EXPECT_EQ(before.exit_code, 0) << before.err;
  EXPECT_TRUE(nlohmann::json::parse(before.out, nullptr, false).is_object()) << before.out;
}

TEST_F(CliTokenTest, ForceRefreshFetchesANewToken) {
  const Outcome first = token({"token", "wechat", "wx1"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const Outcome forced = token({"token", "wechat", "wx1", "--force-refresh"});
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_NE(forced.out, first.out);
  // WeChat's stable API revoked the old token when it issued the new one.
  const std::string old_token = first.out.substr(0, first.out.size() - 1);
  EXPECT_NE(fake_.check_token(Channel::kWeChat, old_token), 0);
  EXPECT_EQ(fake_.calls(testing::FakeEndpoint::kWeChatStableToken), 2u);
}

TEST_F(CliTokenTest, UnknownAppIsAUsageError) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"token", "wechat", "wx-nope"},
           {"token", "wecom", "corp1"},          // the app key of WeCom is corp.agent
           {"token", "wecom", "corp1.999"},
           {"token", "dingtalk", "wx1"},         // wx1 is a wechat app
           {"token", "invalidate", "wechat", "wx-nope", "T"}}) {
    SCOPED_TRACE(::testing::PrintToString(args));
    const Outcome r = token(args);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.out, IsEmpty());
    EXPECT_THAT(r.err, HasSubstr("is configured"));
    EXPECT_THAT(r.err, HasSubstr("wechat/wx1, wecom/corp1.1000002, dingtalk/ding1"));
  }
  EXPECT_EQ(fake_.token_calls(), 0u);
}

TEST_F(CliTokenTest, UnknownChannelIsAUsageError) {
  for (const std::string channel : {"weixin", "WeChat", "", "slack"}) {
    SCOPED_TRACE(channel);
    const Outcome r = token({"token", channel, "wx1"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.out, IsEmpty());
    EXPECT_THAT(r.err, HasSubstr("unknown channel"));
  }
  EXPECT_EQ(fake_.token_calls(), 0u);
}

TEST_F(CliTokenTest, MissingSecretVariableIsAConfigurationError) {
  const Outcome r = run({"token", "wechat", "wx1"});  // no WX_SECRET
  expect_no_secret(r);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(r.err, HasSubstr("aicache.toml:4:14: secret_env: WX_SECRET is not set"));
  EXPECT_EQ(fake_.token_calls(), 0u);
}

TEST_F(CliTokenTest, WrongSecretIsAConfigurationErrorWithoutTheSecret) {
  const Outcome r = run({"token", "wechat", "wx1"}, {"WX_SECRET=wrong-S3cret-444"});
  expect_no_secret(r);
  EXPECT_THAT(r.out + r.err, Not(HasSubstr("wrong-S3cret")));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("40125"));  // the stable API's "invalid appsecret"
}

TEST_F(CliTokenTest, PlatformConfigurationErrorExitsTwoWithItsCode) {
  fake_.inject(testing::FakeEndpoint::kWeChatStableToken, testing::FakeFault::platform_error(40164));
  const Outcome r = token({"token", "wechat", "wx1"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(r.err, HasSubstr("40164"));
  EXPECT_EQ(fake_.calls(testing::FakeEndpoint::kWeChatStableToken), 1u);  // not retried
}

TEST_F(CliTokenTest, UpstreamFailureExitsThree) {
  // More 503s than the manager's attempts: it gives up after its backoff.
  fake_.inject(testing::FakeEndpoint::kDingTalkOAuth2Token,
               testing::FakeFault::http_status_code(503), 10);
  const Outcome r = token({"token", "dingtalk", "ding1"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(r.err, HasSubstr("503"));
}

TEST_F(CliTokenTest, InvalidateOnTheMemoryStoreIsNotCurrent) {
  // Each run has its own memory store: the token printed by one run is not
  // stored in the next.
  const Outcome got = token({"token", "wechat", "wx1"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  const Outcome r =
      token({"token", "invalidate", "wechat", "wx1", got.out.substr(0, got.out.size() - 1)});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_EQ(r.err, "not current\n");
}

TEST_F(CliTokenTest, InvalidateRefusesAMalformedToken) {
  const Outcome r = token({"token", "invalidate", "wechat", "wx1", "has space"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.out, IsEmpty());
}

// Round trips need a store that outlives one invocation: a real Redis, with
// a password that needs percent-encoding, reached through REDIS_HOST & co.
// Threat model, finding 1: set and del wrote any key, so `aicache set` could
// forge a token or freeze refreshes through the token's lease.
TEST_F(CliTest, SetAndDelOfReservedKeysAreUsageErrorsNamingTheTypedCommand) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{"set", "ai_assistant:access_token:wechat:wx1", "evil"}, "aicache token"},
      {{"set", "ai_assistant:token_lease:wechat:wx1", "x", "--ttl", "86400"}, "aicache token"},
      {{"del", "ai_assistant:access_token:wechat:wx1"}, "aicache token"},
      {{"set", "ai_assistant:conversation:c1", "{}", "--json"}, "/v1/conversations/{id}"},
      {{"del", "ai_assistant:ai_config:u1"}, "/v1/ai-configs/{user_id}"},
      {{"set", "ai_assistant:anything", "v"}, "reserved"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.args));
    const Outcome r = run(c.args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_THAT(r.out, IsEmpty());
    EXPECT_THAT(r.err, HasSubstr("reserved"));
    EXPECT_THAT(r.err, HasSubstr(c.names));
  }
  // Reads stay: a miss on this memory store, not a refusal.
  EXPECT_EQ(run({"get", "ai_assistant:access_token:wechat:wx1"}).exit_code, 1);
  EXPECT_EQ(run({"ttl", "ai_assistant:access_token:wechat:wx1"}).exit_code, 1);
  EXPECT_EQ(run({"set", "ai_assistant", "v"}).exit_code, 0);
}

class CliRedisTest : public CliTest {
 protected:
  static constexpr std::string_view kPassword = "p@ss:w/rd%Cli";

  void SetUp() override {
    try {
      testing::RedisServerOptions options;
      options.password = std::string(kPassword);
      server_ = std::make_unique<testing::RedisServer>(options);
    } catch (const std::exception& e) {
      FAIL() << "redis-server did not start: " << e.what();  // never a silent skip
    }
    env_ = {"REDIS_HOST=127.0.0.1", "REDIS_PORT=" + std::to_string(server_->port()),
            "REDIS_PASSWORD=" + std::string(kPassword), "AICACHE_KEY_PREFIX=cli"};
  }

  Outcome redis(const std::vector<std::string>& args) { return run(args, env_); }

  std::unique_ptr<testing::RedisServer> server_;
  std::vector<std::string> env_;
};

// 100,000 lines into Redis: read a line at a time, so memory stays bounded
// by the longest line, not the file.
TEST_F(CliRedisTest, WarmLoadsAHundredThousandLines) {
  std::string text;
  for (int i = 0; i < 100'000; ++i) {
    text += fmt::format(R"({{"family": "kv", "id": "k{}", "value": {{"n": {}}}, "ttl": 600}})"
                        "\n", i, i);
  }
  dir_.write("big.jsonl", text);
  const Outcome r = redis({"warm", "big.jsonl"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("warm: 100000 loaded, 0 failed"));
  EXPECT_EQ(redis({"get", "k99999"}).out, "{\"n\":99999}\n");
  EXPECT_EQ(redis({"ttl", "k0"}).exit_code, 0);
}

TEST_F(CliRedisTest, SetThenGetAString) {
  EXPECT_EQ(redis({"set", "greeting", "hello world"}).out, "OK\n");
  const Outcome r = redis({"get", "greeting"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hello world\n");
  EXPECT_EQ(redis({"get", "greeting", "--raw"}).out, "\"hello world\"\n");
}

TEST_F(CliRedisTest, JsonValuesPrintAsJson) {
  ASSERT_EQ(redis({"set", "n", "42", "--json"}).exit_code, 0);
  EXPECT_EQ(redis({"get", "n", "--raw"}).out, "42\n");  // digits, as django-redis
  EXPECT_EQ(redis({"get", "n"}).out, "42\n");
  ASSERT_EQ(redis({"set", "doc", R"({"a":[1,2]})", "--json"}).exit_code, 0);
  EXPECT_EQ(redis({"get", "doc"}).out, "{\"a\":[1,2]}\n");
  ASSERT_EQ(redis({"set", "s", R"("quoted")", "--json"}).exit_code, 0);
  EXPECT_EQ(redis({"get", "s"}).out, "quoted\n");
}

TEST_F(CliRedisTest, TtlReportsSecondsNeverAndMissing) {
  ASSERT_EQ(redis({"set", "default", "v"}).exit_code, 0);
  EXPECT_EQ(redis({"ttl", "default"}).out, "300\n");  // the configured default
  ASSERT_EQ(redis({"set", "short", "v", "--ttl", "100"}).exit_code, 0);
  EXPECT_EQ(redis({"ttl", "short"}).out, "100\n");  // rounded up, never 99
  const Outcome missing = redis({"ttl", "nothing"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.err, "missing\n");
}

TEST_F(CliRedisTest, TtlZeroRemoves) {
  ASSERT_EQ(redis({"set", "k", "v"}).exit_code, 0);
  ASSERT_EQ(redis({"set", "k", "v", "--ttl", "0"}).exit_code, 0);
  EXPECT_EQ(redis({"get", "k"}).exit_code, 1);
}

TEST_F(CliRedisTest, BadTtlStoresNothing) {
  ASSERT_EQ(redis({"set", "k", "v", "--ttl", "-1"}).exit_code, 2);
  EXPECT_EQ(redis({"get", "k"}).exit_code, 1);
}

TEST_F(CliRedisTest, DelReportsWhetherTheKeyExisted) {
  ASSERT_EQ(redis({"set", "k", "v"}).exit_code, 0);
  EXPECT_EQ(redis({"del", "k"}).exit_code, 0);
  EXPECT_EQ(redis({"del", "k"}).exit_code, 1);
}

TEST_F(CliRedisTest, PrefixFlagSeparatesNamespaces) {
  ASSERT_EQ(redis({"set", "k", "v"}).exit_code, 0);
  EXPECT_EQ(redis({"get", "k", "--prefix", "other"}).exit_code, 1);
  EXPECT_EQ(redis({"--prefix", "cli", "get", "k"}).out, "v\n");
}

TEST_F(CliRedisTest, StatsJsonSaysRedisWithoutThePassword) {
  const Outcome r = redis({"stats", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j.value("backend", ""), "redis");
  EXPECT_THAT(r.out, Not(HasSubstr("p@ss")));
  EXPECT_THAT(r.out, Not(HasSubstr("p%40ss")));
}

TEST_F(CliRedisTest, WrongPasswordIsNeverPrinted) {
  const Outcome r =
      run({"get", "k"}, {"REDIS_HOST=127.0.0.1", "REDIS_PORT=" + std::to_string(server_->port()),
                         "REDIS_PASSWORD=Wrong-Secret-77"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 1);
  EXPECT_THAT(r.out + r.err, Not(HasSubstr("Wrong-Secret")));
}

// Tokens across processes: the first run fetches and stores, the others read
// the store, and invalidate removes what an earlier run stored.
class CliRedisTokenTest : public CliRedisTest {
 protected:
  void SetUp() override {
    CliRedisTest::SetUp();
    if (IsSkipped()) return;
    add_token_apps(fake_);
    write_secret_file(dir_, "aicache.toml", token_apps_toml(fake_.base_url()));
    env_.push_back("WX_SECRET=" + std::string(kWeChatSecret));
    env_.push_back("DING_SECRET=" + std::string(kDingTalkSecret));
  }

  Outcome token(const std::vector<std::string>& args) {
    Outcome r = redis(args);
    expect_no_secret(r);
    return r;
  }

  testing::FakePlatform fake_;
};

TEST_F(CliRedisTokenTest, TheTokenIsFetchedOnceAndInvalidatedByValue) {
  const Outcome first = token({"token", "wechat", "wx1"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string printed = first.out.substr(0, first.out.size() - 1);
  const Outcome second = token({"token", "wechat", "wx1", "--json"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const auto j = nlohmann::json::parse(second.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << second.out;
  EXPECT_EQ(j.value("access_token", ""), printed);
  EXPECT_GE(j.value("expires_in", 0), 7190);
  EXPECT_EQ(fake_.token_calls(), 1u);  // the second run read the store

  // The cache's own view: the Django key, a JSON string.
  EXPECT_EQ(redis({"get", "ai_assistant:access_token:wechat:wx1"}).out, first.out);

  // A token that is not the stored one is left alone.
  const Outcome other = token({"token", "invalidate", "wechat", "wx1", "not-the-token"});
  EXPECT_EQ(other.exit_code, 1) << other.err;
  EXPECT_EQ(other.err, "not current\n");

  const Outcome invalidated = token({"token", "invalidate", "wechat", "wx1", printed});
  EXPECT_EQ(invalidated.exit_code, 0) << invalidated.err;
  EXPECT_EQ(invalidated.out, "invalidated\n");
  const Outcome again = token({"token", "invalidate", "wechat", "wx1", printed});
  EXPECT_EQ(again.exit_code, 1) << again.err;
  EXPECT_EQ(again.err, "not current\n");

  // The next run fetches again.
  const Outcome refetched = token({"token", "wechat", "wx1"});
  EXPECT_EQ(refetched.exit_code, 0) << refetched.err;
  EXPECT_EQ(fake_.token_calls(), 2u);
}

// Threat model, findings 1 and 2 across processes sharing Redis: set cannot
// forge the stored token, and --force-refresh goes through the same refresh
// limits as the service (a second one within the interval makes no call).
TEST_F(CliRedisTokenTest, NeitherSetNorRepeatedForceRefreshReachTheToken) {
  const Outcome first = token({"token", "wechat", "wx1"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const Outcome forged = token({"set", "ai_assistant:access_token:wechat:wx1", "evil"});
  EXPECT_EQ(forged.exit_code, 2) << forged.err;
  EXPECT_EQ(token({"token", "wechat", "wx1"}).out, first.out);
  EXPECT_EQ(redis({"get", "ai_assistant:access_token:wechat:wx1"}).out, first.out);

  const Outcome forced = token({"token", "wechat", "wx1", "--force-refresh"});
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_EQ(fake_.token_calls(), 2u);
  const Outcome again = token({"token", "wechat", "wx1", "--force-refresh"});
  EXPECT_EQ(again.exit_code, 3) << again.err;
  EXPECT_THAT(again.out, IsEmpty());
  EXPECT_THAT(again.err, HasSubstr("min_refresh_interval"));
  EXPECT_THAT(again.err, HasSubstr("try again in"));
  EXPECT_EQ(fake_.token_calls(), 2u);
}

TEST_F(CliRedisTokenTest, WeComAppsAreKeyedByCorpAndAgent) {
  const Outcome r = token({"token", "wecom", "corp1.1000002"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(redis({"get", "ai_assistant:access_token:wecom:corp1.1000002"}).out, r.out);
}

}  // namespace
}  // namespace aicache

namespace aicache {
namespace {

// --- --server: the same commands through a running `aicache serve` ------------------
//
// The service runs in this test process (a memory store, a free port); the
// real binary talks to it, so two CLI processes share one memory store.

// 32 characters at least (threat model, finding 4).
constexpr std::string_view kApiToken = "api-T0ken-never-printed-0123456789abcdef";
constexpr std::string_view kServiceSecret = "service-S3cret-never-printed";

// A loopback port nothing listens on (bound, then closed).
int closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << "cannot find a free port";
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

class CliServerTest : public CliTest {
 protected:
  void SetUp() override { set_log_handler({}); }
  void TearDown() override {
    if (server_) server_->stop();
    set_log_handler({});
  }

  // Starts the service: a memory store, one WeChat app "wx1" on the fake.
  void StartServer(std::string api_token = {}) {
    // kv_ttl as `aicache serve` sets it from [ttl] default.
    auto cache = AssistantCache::create(
        make_memory_store(),
        {.key_prefix = "cli", .kv_ttl = std::chrono::seconds(300), .hot_keys_sample_every = 1});
    ASSERT_TRUE(cache) << cache.error().to_string();
    cache_ = std::move(*cache);
    auto tokens = TokenManager::create(cache_);
    ASSERT_TRUE(tokens) << tokens.error().to_string();
    tokens_ = std::move(*tokens);
    const AppCredentials app{.channel = Channel::kWeChat,
                             .app_id = "wx1",
                             .secret = std::string(kServiceSecret),
                             .base_url = fake_.base_url()};
    fake_.add_app(app);
    ASSERT_TRUE(tokens_->add_app(app));
    ServerOptions options;
    options.api_token = std::move(api_token);
    options.access_log = false;
    auto server = testing::start_local_server(cache_, tokens_, std::move(options));
    ASSERT_TRUE(server) << server.error().to_string();
    server_ = std::move(*server);
    url_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }

  // Runs `args --server URL`; nothing printed may hold a secret.
  Outcome remote(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    args.insert(args.end(), {"--server", url_});
    Outcome r = run(args, env);
    EXPECT_THAT(r.out + r.err, Not(HasSubstr(std::string(kApiToken))));
    EXPECT_THAT(r.out + r.err, Not(HasSubstr(std::string(kServiceSecret))));
    return r;
  }

  testing::FakePlatform fake_;
  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> tokens_;
  std::shared_ptr<Server> server_;
  std::string url_;
};

TEST_F(CliServerTest, HelpNamesTheOption) {
  const Outcome r = run({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("--server"));
  EXPECT_THAT(r.out, HasSubstr("AICACHE_SERVER"));
}

TEST_F(CliServerTest, SetThenGetInTwoProcessesShareTheStore) {
  StartServer();
  Outcome set = remote({"set", "greeting", "hello"});
  EXPECT_EQ(set.exit_code, 0) << set.err;
  EXPECT_EQ(set.out, "OK\n");
  Outcome get = remote({"get", "greeting"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "hello\n");
  EXPECT_THAT(get.err, IsEmpty());
  // --raw: the JSON text the service answered.
  EXPECT_EQ(remote({"get", "greeting", "--raw"}).out, "\"hello\"\n");
  // The service's store holds it, under the service's prefix.
  auto stored = cache_->get("greeting");
  ASSERT_TRUE(stored.hit());
  EXPECT_EQ(stored->text(), "\"hello\"");

  // JSON values print as their JSON text, as locally.
  EXPECT_EQ(remote({"set", "doc", R"({"a": [1, 2]})", "--json"}).exit_code, 0);
  EXPECT_EQ(remote({"get", "doc"}).out, "{\"a\": [1, 2]}\n");

  // Any valid key is one path segment: slashes, '?', '#', '%' and UTF-8.
  const std::string odd = "a/b?c#d%20e/你好";
  EXPECT_EQ(remote({"set", odd, "v"}).exit_code, 0);
  EXPECT_EQ(remote({"get", odd}).out, "v\n");
  auto odd_stored = cache_->get(odd);
  ASSERT_TRUE(odd_stored.hit());
}

TEST_F(CliServerTest, TtlAfterSetTtl) {
  StartServer();
  ASSERT_EQ(remote({"set", "t", "x", "--ttl", "100"}).exit_code, 0);
  Outcome ttl = remote({"ttl", "t"});
  EXPECT_EQ(ttl.exit_code, 0) << ttl.err;
  EXPECT_EQ(ttl.out, "100\n");

  ASSERT_TRUE(cache_->set("forever", JsonDocument::string("x"), Ttl::never()));
  EXPECT_EQ(remote({"ttl", "forever"}).out, "never\n");

  Outcome missing = remote({"ttl", "nope"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.err, "missing\n");
  EXPECT_THAT(missing.out, IsEmpty());

  // --ttl 0 removes, as locally.
  EXPECT_EQ(remote({"set", "t", "x", "--ttl", "0"}).exit_code, 0);
  EXPECT_EQ(remote({"get", "t"}).exit_code, 1);
}

TEST_F(CliServerTest, DelThenGetIsNotFound) {
  StartServer();
  ASSERT_EQ(remote({"set", "k", "v"}).exit_code, 0);
  Outcome del = remote({"del", "k"});
  EXPECT_EQ(del.exit_code, 0) << del.err;
  EXPECT_EQ(del.out, "deleted\n");
  Outcome get = remote({"get", "k"});
  EXPECT_EQ(get.exit_code, 1);
  EXPECT_THAT(get.out, IsEmpty());
  EXPECT_THAT(get.err, HasSubstr("not found"));
  EXPECT_EQ(remote({"del", "k"}).exit_code, 1);
}

TEST_F(CliServerTest, StatsJsonIsTheServicesStore) {
  StartServer();
  ASSERT_EQ(remote({"set", "k", "v"}).exit_code, 0);
  ASSERT_EQ(remote({"get", "k"}).exit_code, 0);
  ASSERT_EQ(remote({"get", "absent"}).exit_code, 1);
  Outcome r = remote({"stats", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["backend"], "memory");
  EXPECT_EQ(j["entries"], 1);
  for (const char* field : {"used_memory", "used_memory_human", "max_memory", "hits", "misses",
                            "evictions", "expirations", "store_errors", "details"}) {
    EXPECT_TRUE(j.contains(field)) << field;
  }
  // The service's reads by family.
  EXPECT_EQ(j["families"]["kv"], nlohmann::json({{"hits", 1}, {"misses", 1}}));
  EXPECT_EQ(j["families"]["conversation"], nlohmann::json({{"hits", 0}, {"misses", 0}}));
  Outcome text = remote({"stats"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("backend: memory\n"));
  EXPECT_THAT(text.out, HasSubstr("kv_hits: 1\nkv_misses: 1\n"));
  // The TTL signals (docs/operations.md, "Tuning TTLs"): the service's kv
  // hit has an age (kv_ttl), no key expired.
  EXPECT_EQ(j["ttl_signals"]["families"]["kv"]["hit_age_count"], 1);
  EXPECT_EQ(j["ttl_signals"]["families"]["kv"]["expired_recently_misses"], 0);
  EXPECT_FALSE(j["ttl_signals"]["families"].contains("token"));
  EXPECT_THAT(text.out, HasSubstr("kv_hit_ages: <=1s:"));
  EXPECT_THAT(text.out, HasSubstr("kv_expired_recently_misses: 0\n"));
}

TEST_F(CliServerTest, BadInputIsAUsageErrorWithTheServicesMessage) {
  StartServer();
  Outcome spaced = remote({"get", "has space"});
  EXPECT_EQ(spaced.exit_code, 2);
  EXPECT_THAT(spaced.err, HasSubstr("space"));
  EXPECT_EQ(remote({"set", "has space", "v"}).exit_code, 2);
  EXPECT_EQ(remote({"get", ""}).exit_code, 2);
  EXPECT_EQ(remote({"set", std::string(300, 'k'), "v"}).exit_code, 2);
  EXPECT_EQ(remote({"set", "k", "v", "--ttl", "-5"}).exit_code, 2);
  EXPECT_EQ(remote({"set", "k", "{nope", "--json"}).exit_code, 2);
  EXPECT_TRUE(cache_->get("k").miss());
}

// Through the service: the reserved keys are refused as locally (exit 2),
// and a refresh within the interval is the service's 429 (exit 3, saying
// when to try again), with no upstream call.
TEST_F(CliServerTest, ReservedKeysAndRefreshLimitsThroughTheService) {
  StartServer();
  const Outcome set = remote({"set", "ai_assistant:access_token:wechat:wx1", "evil"});
  EXPECT_EQ(set.exit_code, 2) << set.err;
  EXPECT_THAT(set.err, HasSubstr("aicache token"));
  EXPECT_EQ(remote({"del", "ai_assistant:token_lease:wechat:wx1"}).exit_code, 2);
  EXPECT_TRUE(cache_->get("ai_assistant:access_token:wechat:wx1").miss());

  ASSERT_EQ(remote({"token", "wechat", "wx1", "--force-refresh"}).exit_code, 0);
  const std::uint64_t calls = fake_.token_calls();
  const Outcome again = remote({"token", "wechat", "wx1", "--force-refresh"});
  EXPECT_EQ(again.exit_code, 3) << again.err;
  EXPECT_THAT(again.err, HasSubstr("429"));
  EXPECT_THAT(again.err, HasSubstr("try again in"));
  EXPECT_EQ(fake_.token_calls(), calls);
}

TEST_F(CliServerTest, ApiTokenFromTheEnvironment) {
  StartServer(std::string(kApiToken));
  Outcome without = remote({"get", "k"});
  EXPECT_EQ(without.exit_code, 2);
  EXPECT_THAT(without.err, HasSubstr("AICACHE_API_TOKEN"));

  const std::vector<std::string> env = {"AICACHE_API_TOKEN=" + std::string(kApiToken)};
  Outcome set = remote({"set", "k", "v"}, env);
  EXPECT_EQ(set.exit_code, 0) << set.err;
  Outcome get = remote({"get", "k"}, env);
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "v\n");
  EXPECT_EQ(remote({"stats", "--json"}, env).exit_code, 0);

  Outcome wrong = remote({"get", "k"}, {"AICACHE_API_TOKEN=" + std::string(kApiToken) + "x"});
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_THAT(wrong.err, HasSubstr("AICACHE_API_TOKEN"));
  EXPECT_THAT(wrong.err, Not(HasSubstr(std::string(kApiToken))));

  // From .env too.
  dir_.write(".env", "AICACHE_API_TOKEN=" + std::string(kApiToken) + "\n");
  EXPECT_EQ(remote({"get", "k"}).exit_code, 0);
}

// Threat model, finding 7: the API token goes in a header of every request;
// over http:// to another machine it can be read on the way.
TEST_F(CliServerTest, ApiTokenOverPlainHttpBeyondLoopbackIsWarnedAbout) {
  const std::vector<std::string> env = {"AICACHE_API_TOKEN=" + std::string(kApiToken)};
  // 0.0.0.0 is not loopback, and refuses at once on port 1.
  Outcome far = run({"get", "k", "--server", "http://0.0.0.0:1"}, env);
  EXPECT_EQ(far.exit_code, 3);
  EXPECT_THAT(far.err, HasSubstr("aicache: warning: --server/AICACHE_SERVER is http:// to a host "
                                 "that is not loopback: the API token (AICACHE_API_TOKEN) "
                                 "travels in clear text; use https://"));
  EXPECT_THAT(far.err, Not(HasSubstr(std::string(kApiToken))));
  // From AICACHE_SERVER too.
  EXPECT_THAT(run({"get", "k"}, {env[0], "AICACHE_SERVER=http://0.0.0.0:1"}).err,
              HasSubstr("travels in clear text"));
  // Loopback, or no token to carry: nothing to say.
  EXPECT_THAT(run({"get", "k", "--server", "http://127.0.0.1:1"}, env).err,
              Not(HasSubstr("clear text")));
  EXPECT_THAT(run({"get", "k", "--server", "http://[::1]:1"}, env).err,
              Not(HasSubstr("clear text")));
  EXPECT_THAT(run({"get", "k", "--server", "http://0.0.0.0:1"}).err, Not(HasSubstr("clear text")));
}

TEST_F(CliServerTest, ServerDownExitsThreeNamingTheUrl) {
  url_ = "http://127.0.0.1:" + std::to_string(closed_port());
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"get", "k"}, {"set", "k", "v"}, {"stats"},
                                             {"ttl", "k"}, {"token", "wechat", "wx1"}}) {
    SCOPED_TRACE(args.front());
    Outcome r = remote(args);
    EXPECT_EQ(r.exit_code, 3) << r.err;
    EXPECT_THAT(r.err, HasSubstr(url_));
    EXPECT_THAT(r.out, IsEmpty());
  }
}

TEST_F(CliServerTest, MalformedServerUrlIsAUsageError) {
  for (const char* url : {"ftp://host", "http://", "http://host:99999", "http://u:pw@host:1"}) {
    SCOPED_TRACE(url);
    Outcome r = run({"get", "k", "--server", url});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("--server"));
    EXPECT_THAT(r.err, Not(HasSubstr("pw")));
  }
  EXPECT_EQ(run({"serve", "--server", "http://127.0.0.1:1"}).exit_code, 2);
}

// --- warm (issue 16) --------------------------------------------------------------------

TEST_F(CliServerTest, WarmLoadsTheGoodLinesAndReportsEachBadOne) {
  StartServer();
  dir_.write("entries.jsonl",
             R"({"family": "conversation", "id": "c1", "value": {"messages": [1, 2]}, "ttl": 120})" "\n"
             R"({"family": "ai_config", "id": "u1", "value": {"model": "m"}})" "\n"
             "\n"
             R"({"family": "token", "id": "wechat:wx1", "value": "forged"})" "\n"
             R"({"family": "kv", "id": "k1", "value": [1, "two"]})" "\n"
             "not json\n"
             R"({"family": "sessions", "id": "s", "value": 1})" "\n"
             R"({"family": "kv", "id": "k2", "value": 1, "ttl": 0})" "\n"
             R"({"family": "kv", "id": "has space", "value": 1})" "\n"
             R"({"family": "kv", "id": "k3", "val)");  // truncated: no newline either
  const Outcome r = remote({"warm", "entries.jsonl"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(r.err, HasSubstr("entries.jsonl:4: tokens are never imported"));
  EXPECT_THAT(r.err, HasSubstr("entries.jsonl:6: not JSON"));
  EXPECT_THAT(r.err, HasSubstr("entries.jsonl:7: unknown family \"sessions\""));
  EXPECT_THAT(r.err, HasSubstr("entries.jsonl:8: \"ttl\" is not a whole number"));
  EXPECT_THAT(r.err, HasSubstr("entries.jsonl:9: "));
  EXPECT_THAT(r.err, HasSubstr("entries.jsonl:10: not JSON"));
  EXPECT_THAT(r.err, HasSubstr("warm: 3 loaded, 6 failed"));
  EXPECT_THAT(r.err, Not(HasSubstr("\r"))) << "no progress bar off a terminal";

  auto conversation = cache_->get_conversation("c1");
  ASSERT_TRUE(conversation);
  EXPECT_EQ(conversation->value(), nlohmann::json::parse(R"({"messages": [1, 2]})"));
  auto ttl = cache_->conversation_ttl("c1");
  ASSERT_TRUE(ttl);
  EXPECT_EQ(ttl->state, KeyTtl::State::kExpiring);
  EXPECT_LE(ttl->remaining, std::chrono::seconds(120));
  EXPECT_GT(ttl->remaining, std::chrono::seconds(60));
  EXPECT_TRUE(cache_->get_ai_config("u1"));
  EXPECT_EQ(cache_->get("k1")->value(), nlohmann::json::parse(R"([1, "two"])"));
  EXPECT_FALSE(cache_->get_access_token("wechat", "wx1")) << "tokens are never imported";
}

// export | warm moves a family between stores: here from a service on the
// memory store into Redis, with the TTLs left.
TEST_F(CliServerTest, ExportFromTheServiceThenWarmIntoRedis) {
  StartServer();
  for (int i = 0; i < 1200; ++i) {
    ASSERT_TRUE(cache_->set_conversation("c" + std::to_string(i),
                                         JsonDocument(nlohmann::json({{"n", i}})),
                                         std::chrono::seconds(600)));
  }
  ASSERT_TRUE(cache_->set("k", JsonDocument(nlohmann::json("v"))));
  const Outcome out = remote({"export", "--family", "conversation"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  EXPECT_THAT(out.err, HasSubstr("export: 1200 conversation entries written"));
  EXPECT_EQ(std::count(out.out.begin(), out.out.end(), '\n'), 1200);
  dir_.write("conversations.jsonl", out.out);

  std::unique_ptr<testing::RedisServer> redis;
  try {
    redis = std::make_unique<testing::RedisServer>();
  } catch (const std::exception& e) {
    FAIL() << "redis-server did not start: " << e.what();
  }
  const std::vector<std::string> env = {"REDIS_URL=redis://127.0.0.1:" +
                                        std::to_string(redis->port()) + "/0"};
  const Outcome in = run({"warm", "conversations.jsonl"}, env);
  EXPECT_EQ(in.exit_code, 0) << in.err;
  EXPECT_THAT(in.err, HasSubstr("warm: 1200 loaded, 0 failed"));
  const Outcome got = run({"get", "ai_assistant:conversation:c1199"}, env);
  EXPECT_EQ(got.out, "{\"n\":1199}\n");
  const Outcome ttl = run({"ttl", "ai_assistant:conversation:c0"}, env);
  ASSERT_EQ(ttl.exit_code, 0);
  EXPECT_LE(std::stoi(ttl.out), 600);
  EXPECT_GT(std::stoi(ttl.out), 500);

  EXPECT_EQ(remote({"export", "--family", "token"}).exit_code, 2);
  EXPECT_EQ(remote({"export", "--family", "sessions"}).exit_code, 2);
  // And straight out of Redis again (RedisStore::scan): the same entries,
  // with their TTLs.
  const Outcome from_redis = run({"export", "--family", "conversation"}, env);
  ASSERT_EQ(from_redis.exit_code, 0) << from_redis.err;
  EXPECT_THAT(from_redis.err, HasSubstr("export: 1200 conversation entries written"));
  std::vector<std::string> lines_in, lines_out;
  for (const auto& [text, lines] : {std::pair{&out.out, &lines_in}, {&from_redis.out, &lines_out}}) {
    std::istringstream stream(*text);
    for (std::string line; std::getline(stream, line);) {
      auto entry = nlohmann::json::parse(line);
      ASSERT_TRUE(entry.contains("ttl")) << line;
      EXPECT_GT(entry["ttl"].get<int>(), 500) << line;
      entry.erase("ttl");  // seconds may have passed between the two
      lines->push_back(entry.dump());
    }
    std::sort(lines->begin(), lines->end());
  }
  EXPECT_EQ(lines_in, lines_out);
}

TEST_F(CliServerTest, HotKeysAreTheServicesHottestFirst) {
  StartServer();
  ASSERT_EQ(remote({"set", "often", "1"}).exit_code, 0);
  ASSERT_EQ(remote({"set", "sometimes", "1"}).exit_code, 0);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(remote({"get", "often"}).exit_code, 0);
  ASSERT_EQ(remote({"get", "sometimes"}).exit_code, 0);
  const Outcome r = remote({"hotkeys"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "3 kv often\n1 kv sometimes\n");
  const Outcome j = remote({"hotkeys", "--json"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  EXPECT_EQ(nlohmann::json::parse(j.out)[0],
            nlohmann::json({{"family", "kv"}, {"id", "often"}, {"reads", 3}}));
}

TEST_F(CliServerTest, WarmOfAMissingFileIsAUsageError) {
  StartServer();
  const Outcome r = remote({"warm", "absent.jsonl"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot read absent.jsonl"));
}

TEST_F(CliServerTest, AicacheServerFromTheEnvironmentAndDotenv) {
  StartServer();
  ASSERT_EQ(remote({"set", "k", "v"}).exit_code, 0);
  Outcome env = run({"get", "k"}, {"AICACHE_SERVER=" + url_});
  EXPECT_EQ(env.exit_code, 0) << env.err;
  EXPECT_EQ(env.out, "v\n");

  // --server wins over AICACHE_SERVER.
  const std::string down = "http://127.0.0.1:" + std::to_string(closed_port());
  Outcome wins = run({"get", "k", "--server", url_}, {"AICACHE_SERVER=" + down});
  EXPECT_EQ(wins.exit_code, 0) << wins.err;
  Outcome used = run({"get", "k"}, {"AICACHE_SERVER=" + down});
  EXPECT_EQ(used.exit_code, 3);
  EXPECT_THAT(used.err, HasSubstr(down));

  // The merged environment: .env counts.
  dir_.write(".env", "AICACHE_SERVER=" + url_ + "\n");
  EXPECT_EQ(run({"get", "k"}).out, "v\n");
}

TEST_F(CliServerTest, RedisSettingsAreIgnored) {
  StartServer();
  ASSERT_EQ(remote({"set", "k", "v"}).exit_code, 0);
  Outcome r = remote({"get", "k", "--url", "redis://127.0.0.1:1", "--prefix", "other"},
                     {"REDIS_URL=redis://:pw@127.0.0.1:1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "v\n");
}

TEST_F(CliServerTest, TokensThroughTheService) {
  StartServer();
  Outcome plain = remote({"token", "wechat", "wx1"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  auto token = tokens_->get("wechat", "wx1");
  ASSERT_TRUE(token) << token.error().to_string();
  EXPECT_EQ(plain.out, token->access_token + "\n");

  Outcome json = remote({"token", "get", "wechat", "wx1", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto j = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << json.out;
  EXPECT_EQ(j["access_token"], token->access_token);
  EXPECT_GT(j["expires_in"].get<std::int64_t>(), 0);

  // --force-refresh: POST .../refresh?force_refresh=true, a fetch from the
  // platform that, as locally, revokes the old token (WeChat's stable API).
  const std::uint64_t calls = fake_.token_calls();
  Outcome refreshed = remote({"token", "wechat", "wx1", "--force-refresh"});
  ASSERT_EQ(refreshed.exit_code, 0) << refreshed.err;
  EXPECT_GT(fake_.token_calls(), calls);
  auto current = tokens_->get("wechat", "wx1");
  ASSERT_TRUE(current);
  EXPECT_EQ(refreshed.out, current->access_token + "\n");
  EXPECT_NE(current->access_token, token->access_token);
  EXPECT_NE(fake_.check_token(Channel::kWeChat, token->access_token), 0);

  Outcome stale = remote({"token", "invalidate", "wechat", "wx1", "stale-token"});
  EXPECT_EQ(stale.exit_code, 1) << stale.err;
  EXPECT_EQ(stale.err, "not current\n");
  Outcome invalidated =
      remote({"token", "invalidate", "wechat", "wx1", current->access_token});
  EXPECT_EQ(invalidated.exit_code, 0) << invalidated.err;
  EXPECT_EQ(invalidated.out, "invalidated\n");

  Outcome unknown = remote({"token", "wechat", "nope"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("nope"));
  EXPECT_EQ(remote({"token", "telegram", "wx1"}).exit_code, 2);
}

}  // namespace
}  // namespace aicache
