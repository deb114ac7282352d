// The service under test: a Server on 127.0.0.1 and a free port, started.
//
//   auto server = testing::start_local_server(cache, tokens, options);
//   ASSERT_TRUE(server) << server.error().to_string();
//   HttpTestClient client((*server)->port());
#pragma once

#include <memory>

#include "aicache/assistant_cache.h"
#include "aicache/server.h"
#include "aicache/status.h"
#include "aicache/token_manager.h"

namespace aicache::testing {

// `options.listen` is replaced by "127.0.0.1:0"; everything else is kept.
// `tokens` may be null (token routes then answer 404).
Result<std::shared_ptr<Server>> start_local_server(std::shared_ptr<AssistantCache> cache,
                                                   std::shared_ptr<TokenManager> tokens,
                                                   ServerOptions options = {});

}  // namespace aicache::testing
