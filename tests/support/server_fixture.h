// The service under test, for every suite that starts one (server_test,
// connections_test, http_framing_test, hostile_input_test, secrets_test):
// a Server on 127.0.0.1 and a free port, stopped when the fixture goes.
//
//   class MyTest : public ::testing::Test {
//    protected:
//     std::shared_ptr<AssistantCache> cache_ = testing::make_memory_cache();
//     testing::ServerFixture server_;  // last: stopped first
//   };
//   TEST_F(MyTest, X) {
//     ASSERT_NO_FATAL_FAILURE(server_.start(cache_));
//     auto r = server_.client().get("/healthz");
//     RawConnection c(server_.port());
//     server_->stop();                 // the Server itself, through ->
//   }
//
// A member rather than a base class, so suites that derive from a fixture
// of their own (a Redis one) use it too.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "aicache/assistant_cache.h"
#include "aicache/memory_store.h"
#include "aicache/server.h"
#include "aicache/token_manager.h"
#include "support/http_test_client.h"

namespace aicache::testing {

class ServerFixture {
 public:
  ServerFixture() = default;
  ~ServerFixture();  // stop()
  ServerFixture(const ServerFixture&) = delete;
  ServerFixture& operator=(const ServerFixture&) = delete;

  // Creates and starts the server (start_local_server: `options.listen` is
  // replaced by "127.0.0.1:0"). `tokens` may be null (token routes then
  // answer 404). A fatal test failure if it cannot: call it under
  // ASSERT_NO_FATAL_FAILURE.
  void start(std::shared_ptr<AssistantCache> cache, std::shared_ptr<TokenManager> tokens = nullptr,
             ServerOptions options = {});
  // Stops the server if one was started; idempotent.
  void stop();

  explicit operator bool() const { return server_ != nullptr; }
  Server& operator*() const { return *server_; }
  Server* operator->() const { return server_.get(); }
  std::uint16_t port() const { return server_ ? server_->port() : 0; }

  // A client of this server (10 s for a whole request by default).
  HttpTestClient client(HttpTestClientOptions options = {
                            .total_timeout = std::chrono::seconds(10)}) const;

 private:
  std::shared_ptr<Server> server_;
};

// An AssistantCache over a new memory store: what most suites serve.
std::shared_ptr<AssistantCache> make_memory_cache(MemoryStoreOptions store = {},
                                                  AssistantCacheOptions options = {});

}  // namespace aicache::testing
