#include "support/server_fixture.h"

#include <gtest/gtest.h>

#include "support/local_server.h"

namespace aicache::testing {

ServerFixture::~ServerFixture() { stop(); }

void ServerFixture::start(std::shared_ptr<AssistantCache> cache,
                          std::shared_ptr<TokenManager> tokens, ServerOptions options) {
  ASSERT_FALSE(server_) << "the fixture's server was started already";
  auto server = start_local_server(std::move(cache), std::move(tokens), std::move(options));
  ASSERT_TRUE(server) << server.error().to_string();
  server_ = std::move(*server);
  ASSERT_NE(server_->port(), 0);
}

void ServerFixture::stop() {
  if (server_) server_->stop();
}

HttpTestClient ServerFixture::client(HttpTestClientOptions options) const {
  return HttpTestClient(port(), options);
}

std::shared_ptr<AssistantCache> make_memory_cache(MemoryStoreOptions store,
                                                  AssistantCacheOptions options) {
  auto cache = AssistantCache::create(make_memory_store(std::move(store)), std::move(options));
  EXPECT_TRUE(cache) << cache.error().to_string();
  return cache ? std::shared_ptr<AssistantCache>(std::move(*cache)) : nullptr;
}

}  // namespace aicache::testing
