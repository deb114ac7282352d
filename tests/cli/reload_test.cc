// `aicache serve` reloading its configuration on SIGHUP, end to end: the real
// binary as a child process over the memory store, token apps on the
// platform fake, a new aicache.toml written while it serves.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.h"
#include "support/fake_platform.h"
#include "support/http_test_client.h"
#include "support/raw_connection.h"
#include "support/redis_server.h"
#include "support/temp_dir.h"

namespace aicache {
namespace {

using namespace std::chrono_literals;
using testing::FakePlatform;
using ::testing::HasSubstr;
using testing::HttpTestClient;
using testing::Outcome;

constexpr std::string_view kSecret = "reload-test-app-secret";

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* id : {"wx1", "wx2", "wx3"}) {
      fake_.add_app({.channel = Channel::kWeChat, .app_id = id, .secret = std::string(kSecret)});
    }
  }

  // An aicache.toml with these WeChat apps and TTLs; `extra` is appended.
  void WriteConfig(const std::vector<std::string>& apps, int conversation_ttl,
                   std::string_view extra = {}) {
    std::string text = "[ttl]\nconversation = " + std::to_string(conversation_ttl) + "\n";
    for (const std::string& app : apps) {
      text += "\n[[apps]]\nchannel = \"wechat\"\napp_id = \"" + app +
              "\"\napi = \"plain\"\nsecret_env = \"WX_SECRET\"\nbase_url = \"" + fake_.base_url() +
              "\"\n";
    }
    text += extra;
    dir_.write("aicache.toml", text);
  }

  // Runs `aicache serve`; `drive` talks to it, then the test stops it.
  Outcome Serve(const std::function<void(pid_t)>& drive) {
    return testing::run_child(
        AICACHE_CLI_PATH, {"serve"}, dir_.path(),
        {"WX_SECRET=" + std::string(kSecret), "AICACHE_LISTEN=127.0.0.1:" + std::to_string(port_),
         "AICACHE_ACCESS_LOG=off"},
        [&](pid_t pid) {
          drive(pid);
          ::kill(pid, SIGTERM);
        });
  }

  bool WaitHealthy() {
    for (int i = 0; i < 400; ++i) {
      auto health = client_.get("/healthz");
      if (health && health->status == 200) return true;
      std::this_thread::sleep_for(25ms);
    }
    return false;
  }

  // The value of aicache_config_reloads_total{result=...}, -1 if unreadable.
  int Reloads(std::string_view result) {
    auto metrics = client_.get("/metrics");
    if (!metrics || metrics->status != 200) return -1;
    const std::regex line("aicache_config_reloads_total\\{result=\"" + std::string(result) +
                          "\"\\} ([0-9]+)");
    std::smatch m;
    if (!std::regex_search(metrics->body, m, line)) return -1;
    return std::stoi(m[1]);
  }

  // Sends SIGHUP and waits (polling, with a generous bound) until the
  // reload with `result` has been counted.
  bool Reload(pid_t pid, std::string_view result) {
    const int before = Reloads(result);
    ::kill(pid, SIGHUP);
    for (int i = 0; i < 1000; ++i) {
      if (Reloads(result) > before) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  int Status(std::string_view path) {
    auto r = client_.get(path);
    return r ? r->status : 0;
  }

  // The TTL the service gives a conversation written without one.
  int ConversationTtl(const std::string& id) {
    auto put = client_.put("/v1/conversations/" + id, R"({"m": 1})");
    if (!put || put->status != 200) return -1;
    auto head = client_.head("/v1/conversations/" + id);
    if (!head || !head->header("X-Aicache-Ttl")) return -1;
    return std::stoi(*head->header("X-Aicache-Ttl"));
  }

  FakePlatform fake_;
  testing::TempDir dir_;
  const std::uint16_t port_ = testing::pick_free_port();
  HttpTestClient client_{port_, {.connect_timeout = 1s, .total_timeout = 10s}};
};

TEST_F(ReloadTest, SighupAppliesAppsAndTtlsAndKeepsConnectionsAndABrokenFileChangesNothing) {
  WriteConfig({"wx1", "wx2"}, 100);
  bool healthy = false;
  int keep_alive_before = 0, keep_alive_after = 0, keep_alive_after_failure = 0;
  const Outcome r = Serve([&](pid_t pid) {
    healthy = WaitHealthy();
    if (!healthy) return;
    testing::RawConnection kept(port_);
    const std::string request = "GET /v1/tokens/wechat/wx2 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    kept.send(request);
    keep_alive_before = kept.read_response();

    EXPECT_EQ(Status("/v1/tokens/wechat/wx1"), 200);
    EXPECT_EQ(Status("/v1/tokens/wechat/wx3"), 404);
    const int ttl_before = ConversationTtl("before");
    EXPECT_GT(ttl_before, 0);
    EXPECT_LE(ttl_before, 100);

    // wx1 removed, wx3 added, wx2 kept; a longer conversation TTL.
    WriteConfig({"wx2", "wx3"}, 5000);
    ASSERT_TRUE(Reload(pid, "ok"));
    auto token = client_.get("/v1/tokens/wechat/wx3");
    ASSERT_TRUE(token);
    EXPECT_EQ(token->status, 200) << token->body;
    const std::string access_token = nlohmann::json::parse(token->body)["access_token"];
    EXPECT_EQ(fake_.check_token(Channel::kWeChat, access_token), 0);
    auto removed = client_.get("/v1/tokens/wechat/wx1");
    ASSERT_TRUE(removed);
    EXPECT_EQ(removed->status, 404);
    EXPECT_THAT(removed->body, HasSubstr("no token app wechat/wx1 is configured"));
    EXPECT_EQ(Status("/v1/tokens/wechat/wx2"), 200);
    const int ttl_after = ConversationTtl("after");
    EXPECT_GT(ttl_after, 100);
    EXPECT_LE(ttl_after, 5000);
    // The connection opened before the reload is still served.
    kept.send(request);
    keep_alive_after = kept.read_response();

    // A syntax error: nothing changes, and it is reported.
    dir_.write("aicache.toml", "[ttl]\nconversation = 7\n[[apps]\nchannel = \"wechat\"\n");
    ASSERT_TRUE(Reload(pid, "failed"));
    EXPECT_EQ(Status("/v1/tokens/wechat/wx3"), 200);
    EXPECT_EQ(Status("/v1/tokens/wechat/wx1"), 404);
    EXPECT_GT(ConversationTtl("after-failure"), 100);
    kept.send(request);
    keep_alive_after_failure = kept.read_response();
    auto stats = client_.get("/v1/stats");
    ASSERT_TRUE(stats);
    const auto config = nlohmann::json::parse(stats->body)["config"];
    EXPECT_EQ(config["reloads_succeeded_total"], 1);
    EXPECT_EQ(config["reloads_failed_total"], 1);
    EXPECT_EQ(config["last_reload_successful"], false);
    EXPECT_THAT(config["last_reload_error"].get<std::string>(), HasSubstr("aicache.toml:3"));
    auto metrics = client_.get("/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_THAT(metrics->body, HasSubstr("aicache_config_last_reload_successful 0\n"));
  });
  ASSERT_TRUE(healthy) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(keep_alive_before, 200);
  EXPECT_EQ(keep_alive_after, 200);
  EXPECT_EQ(keep_alive_after_failure, 200);
  EXPECT_THAT(r.err, HasSubstr("added: wechat/wx3; removed: wechat/wx1"));
  EXPECT_THAT(r.err, HasSubstr("SIGHUP: the configuration was not reloaded, the running one "
                               "keeps serving: "));
  EXPECT_THAT(r.err, HasSubstr("aicache.toml:3"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr(kSecret)));
}

// The API token rotated in .env (read again on reload, unlike the process
// environment): the old one is refused from the next request on, on a
// connection opened before the reload too; turning it off is refused.
TEST_F(ReloadTest, ApiTokenRotatedInDotEnvStopsTheOldOneAtOnce) {
  const std::string old_token = "old-api-token-0123456789abcdef-0123456789";
  const std::string new_token = "new-api-token-0123456789abcdef-0123456789";
  WriteConfig({"wx1"}, 100);
  dir_.write(".env", "AICACHE_API_TOKEN=" + old_token + "\n");
  bool healthy = false;
  int kept_old = 0, kept_old_after = 0, kept_new_after = 0;
  const Outcome r = Serve([&](pid_t pid) {
    healthy = WaitHealthy();
    if (!healthy) return;
    auto request = [](const std::string& token) {
      return "GET /v1/kv/k HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + token +
             "\r\n\r\n";
    };
    testing::RawConnection kept(port_);
    kept.send(request(old_token));
    kept_old = kept.read_response();  // 404: allowed, no such key

    dir_.write(".env", "AICACHE_API_TOKEN=" + new_token + "\n");
    ASSERT_TRUE(Reload(pid, "ok"));
    kept.send(request(old_token));
    kept_old_after = kept.read_response();
    kept.send(request(new_token));
    kept_new_after = kept.read_response();
    const testing::HttpTestHeaders old_auth = {{"Authorization", "Bearer " + old_token}};
    const testing::HttpTestHeaders new_auth = {{"Authorization", "Bearer " + new_token}};
    EXPECT_EQ(client_.get("/v1/tokens/wechat/wx1", old_auth)->status, 401);
    EXPECT_EQ(client_.get("/v1/tokens/wechat/wx1", new_auth)->status, 200);

    // No token at all: refused, the new one stays required.
    dir_.write(".env", "\n");
    ASSERT_TRUE(Reload(pid, "failed"));
    EXPECT_EQ(client_.get("/v1/tokens/wechat/wx1")->status, 401);
    EXPECT_EQ(client_.get("/v1/tokens/wechat/wx1", new_auth)->status, 200);
  });
  ASSERT_TRUE(healthy) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(kept_old, 404);
  EXPECT_EQ(kept_old_after, 401);
  EXPECT_EQ(kept_new_after, 404);
  EXPECT_THAT(r.err, HasSubstr("the API token cannot be turned off by a reload"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr(old_token)));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr(new_token)));
}

// Settings bound at start are kept and named; the rest of the file applies.
TEST_F(ReloadTest, SettingsThatNeedARestartAreNamedAndKept) {
  WriteConfig({"wx1"}, 100);
  bool healthy = false;
  const Outcome r = Serve([&](pid_t pid) {
    healthy = WaitHealthy();
    if (!healthy) return;
    WriteConfig({"wx1", "wx2"}, 100,
                "\n[store]\nkey_prefix = \"other\"\nmemory_max_bytes = 1000000\n"
                "pool_size = 7\ncommand_timeout_ms = 500\n"
                "\n[tokens]\nrefresh_margin = 100\nwarmup_timeout = 5\n");
    ASSERT_TRUE(Reload(pid, "ok"));
    EXPECT_EQ(Status("/v1/tokens/wechat/wx2"), 200);
  });
  ASSERT_TRUE(healthy) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* name : {"[store] key_prefix", "[store] memory_max_bytes", "[store] pool_size",
                           "[store] command_timeout_ms", "[tokens] refresh_margin",
                           "[tokens] warmup_timeout"}) {
    EXPECT_THAT(r.err, HasSubstr(std::string("SIGHUP: ") + name));
  }
  EXPECT_THAT(r.err, HasSubstr("that needs a restart, the running value is kept"));
}

// Reload under load: reloads one after another while clients keep asking.
// A request for what every configuration has (an app kept throughout, the
// data routes) never fails; an app that comes and goes answers 200 or 404,
// nothing else.
TEST_F(ReloadTest, ReloadsUnderLoadFailNoRequest) {
  WriteConfig({"wx1", "wx2"}, 100);
  bool healthy = false;
  std::atomic<int> failed{0}, unexpected{0}, answered{0};
  const Outcome r = Serve([&](pid_t pid) {
    healthy = WaitHealthy();
    if (!healthy) return;
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t) {
      clients.emplace_back([&, t] {
        HttpTestClient client(port_, {.connect_timeout = 2s, .total_timeout = 10s});
        for (int i = 0; !stop.load(); ++i) {
          const std::string key = "/v1/kv/k" + std::to_string(t);
          auto stable = client.get("/v1/tokens/wechat/wx1");
          auto put = client.put(key, std::to_string(i));
          auto get = client.get(key);
          auto coming_and_going = client.get("/v1/tokens/wechat/wx2");
          for (const auto* must : {&stable, &put, &get}) {
            if (!*must || (*must)->status != 200) ++failed;
          }
          if (!coming_and_going ||
              (coming_and_going->status != 200 && coming_and_going->status != 404)) {
            ++unexpected;
          }
          ++answered;
        }
      });
    }
    // Ten reloads at least, and on until the clients have made 40 rounds
    // between them (however the threads are scheduled).
    for (int i = 0; i < 10 || answered.load() < 40; ++i) {
      if (i % 2 == 0) {
        WriteConfig({"wx1"}, 200 + i);
      } else {
        WriteConfig({"wx1", "wx2"}, 200 + i);
      }
      EXPECT_TRUE(Reload(pid, "ok")) << "reload " << i;
    }
    stop = true;
    for (auto& client : clients) client.join();
  });
  ASSERT_TRUE(healthy) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(answered.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(unexpected.load(), 0);
}

}  // namespace
}  // namespace aicache
