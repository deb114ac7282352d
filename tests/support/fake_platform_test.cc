// The platform fake's own HTTP behaviour, which the token tests take for
// granted: connections kept alive, percent-decoded queries, the cut-short
// answer of kCloseConnection, latency that holds up no other request, and a
// destructor that does not wait for it. Raw connections, so the bytes on the
// wire are what is checked.
#include "support/fake_platform.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/text.h"
#include "support/raw_connection.h"

namespace aicache::testing {
namespace {

using namespace std::chrono_literals;

std::string get(std::string_view target) {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: fake\r\n\r\n";
}

std::string plain_token_target(std::string_view appid, std::string_view secret) {
  return "/cgi-bin/token?grant_type=client_credential&appid=" + internal::percent_encode(appid) +
         "&secret=" + internal::percent_encode(secret);
}

// The body's "access_token", or its "errcode" as text if it has none.
std::string token_or_errcode(const std::string& body) {
  const auto json = nlohmann::json::parse(body, nullptr, false);
  if (!json.is_object()) return "not JSON: " + body;
  if (json.contains("access_token")) return json["access_token"].get<std::string>();
  return "errcode " + std::to_string(json.value("errcode", 0));
}

class FakePlatformTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_.add_app({.channel = Channel::kWeChat, .app_id = "wx1", .secret = "s3cret"});
  }
  FakePlatform fake_{{.clock = std::make_shared<ManualClock>()}};
};

TEST_F(FakePlatformTest, KeepsTheConnectionAliveBetweenRequests) {
  RawConnection c(fake_.port());
  ASSERT_TRUE(c.connected());
  std::string first, second;
  ASSERT_TRUE(c.send(get(plain_token_target("wx1", "s3cret"))));
  ASSERT_EQ(c.read_response(&first), 200);
  ASSERT_FALSE(c.closed_by_server());
  ASSERT_TRUE(c.send(get(plain_token_target("wx1", "s3cret"))));
  ASSERT_EQ(c.read_response(&second), 200);
  // Two answers on one connection, each a new plain token.
  EXPECT_NE(token_or_errcode(first), token_or_errcode(second));
  EXPECT_EQ(fake_.calls(FakeEndpoint::kWeChatToken), 2u);
}

TEST_F(FakePlatformTest, DecodesPercentEncodedQueries) {
  // Secrets and app ids arrive percent-encoded; '+' is a space.
  const std::string secret = "a&b=c+d %/?é";
  fake_.add_app({.channel = Channel::kWeChat, .app_id = "wx 2", .secret = secret});
  RawConnection c(fake_.port());
  std::string body;
  ASSERT_TRUE(c.send(get(plain_token_target("wx 2", secret))));
  ASSERT_EQ(c.read_response(&body), 200);
  EXPECT_TRUE(token_or_errcode(body).starts_with("wxplain-")) << body;

  ASSERT_TRUE(c.send(get("/cgi-bin/token?grant_type=client_credential&appid=wx+2&secret=" +
                         internal::percent_encode(secret))));
  ASSERT_EQ(c.read_response(&body), 200);
  EXPECT_TRUE(token_or_errcode(body).starts_with("wxplain-")) << body;

  // Not decoded twice: "%2541" is "%41", not "A".
  fake_.add_app({.channel = Channel::kWeChat, .app_id = "wx3", .secret = "%41"});
  ASSERT_TRUE(c.send(get("/cgi-bin/token?grant_type=client_credential&appid=wx3&secret=%2541")));
  ASSERT_EQ(c.read_response(&body), 200);
  EXPECT_TRUE(token_or_errcode(body).starts_with("wxplain-")) << body;

  ASSERT_TRUE(c.send(get(plain_token_target("wx 2", "a&b=c d %/?é"))));
  ASSERT_EQ(c.read_response(&body), 200);
  EXPECT_EQ(token_or_errcode(body), "errcode 40001");
}

TEST_F(FakePlatformTest, UnknownPathsAndWrongMethodsAre404) {
  RawConnection c(fake_.port());
  ASSERT_TRUE(c.send(get("/nowhere")));
  EXPECT_EQ(c.read_response(), 404);
  ASSERT_TRUE(c.send(get("/cgi-bin/stable_token")));  // POST only
  EXPECT_EQ(c.read_response(), 404);
  EXPECT_EQ(fake_.token_calls(), 0u);
}

TEST_F(FakePlatformTest, CloseConnectionCutsTheAnswerShort) {
  fake_.inject(FakeEndpoint::kWeChatToken, FakeFault::close_connection());
  RawConnection c(fake_.port());
  ASSERT_TRUE(c.send(get(plain_token_target("wx1", "s3cret"))));
  // No complete response comes (the headers promise more body than is sent)
  // and the server closes the connection.
  EXPECT_EQ(c.read_response(nullptr, 5s), 0);
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_EQ(fake_.calls(FakeEndpoint::kWeChatToken), 1u);

  // The fault was used up: the next connection is served.
  RawConnection next(fake_.port());
  std::string body;
  ASSERT_TRUE(next.send(get(plain_token_target("wx1", "s3cret"))));
  ASSERT_EQ(next.read_response(&body), 200);
  EXPECT_TRUE(token_or_errcode(body).starts_with("wxplain-")) << body;
}

TEST(FakePlatformShutdown, DoesNotWaitForRequestsHeldByTheLatency) {
  constexpr int kClients = 8;
  auto fake = std::make_unique<FakePlatform>(
      FakePlatformOptions{.clock = std::make_shared<ManualClock>()});
  fake->add_app({.channel = Channel::kWeChat, .app_id = "wx1", .secret = "s3cret"});
  fake->set_latency(60s);
  std::vector<RawConnection> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(fake->port());
    ASSERT_TRUE(clients.back().send(get(plain_token_target("wx1", "s3cret"))));
  }
  // All of them arrive and wait at once: latency holds up no other request
  // (each is counted when it arrives, before its wait).
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (fake->calls(FakeEndpoint::kWeChatToken) < kClients &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(fake->calls(FakeEndpoint::kWeChatToken), static_cast<std::uint64_t>(kClients));

  const auto start = std::chrono::steady_clock::now();
  fake.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  // Their connections are closed without an answer.
  for (auto& c : clients) EXPECT_EQ(c.read_response(nullptr, 5s), 0);
}

}  // namespace
}  // namespace aicache::testing
